//! [`Client`]: an authenticated connection to a homeserver, either a single WebSocket
//! ([`Client::connect`]) or one that comes back by itself ([`Client::connect_persistent`]).
//!
//! Requests are matched to answers by id and bounded by a timeout. On a persistent client, a
//! request that could not be sent waits for the next connection; a request that was in flight
//! when the connection broke is repeated only if it is idempotent ([`is_idempotent`]), otherwise
//! it fails with [`SdkError::Closed`] (its outcome is unknown).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mobium_spec::client::{Authed, Event, Request, Response};
use mobium_spec::{ServerName, Signer, UserId};
use tokio::sync::{mpsc, watch};

use super::SdkError;
use super::connection::{Connection, Incoming, RequestFailure};
use super::reconnect::{Backoff, Supervisor, notice_sink};

/// Connection options.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Registration token or invite code for a first connection to an `invite` server.
    pub invite: Option<String>,
    /// Per-request timeout (also bounds the handshake).
    pub request_timeout: Duration,
    /// Largest message accepted from the server.
    pub max_message_size: usize,
    /// The server name the challenge must carry (spec `client/auth.md`: a client MUST check it).
    /// `None` accepts any name, for a first connection that learns it.
    pub expected_server: Option<ServerName>,
    /// Delays between reconnection attempts of a persistent client.
    pub backoff: Backoff,
    /// How often a persistent client checks with `ping` that the server still answers; a
    /// connection whose ping gets no answer within the request timeout is dropped and replaced.
    pub keepalive: Option<Duration>,
    /// Extra trusted root certificates (DER) for `wss://`, beside the web PKI roots: for a server
    /// with a certificate of its own CA.
    pub extra_root_certs: Vec<Vec<u8>>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            invite: None,
            request_timeout: Duration::from_secs(10),
            max_message_size: 16 * 1024 * 1024,
            expected_server: None,
            backoff: Backoff::default(),
            keepalive: Some(Duration::from_secs(30)),
            extra_root_certs: Vec::new(),
        }
    }
}

/// Events pushed by the server over a single connection, in arrival order. Ends when the
/// connection closes.
pub type Events = mpsc::UnboundedReceiver<Event>;

/// What a persistent client reports, in order: for each connection, [`Notice::Connected`], then
/// its events, then [`Notice::Disconnected`]. Ends when the client is closed.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A connection authenticated; queued to-device messages follow as events.
    Connected(Authed),
    /// A pushed event.
    Event(Event),
    /// The connection ended; the client is reconnecting.
    Disconnected(String),
}

/// Receiver of a persistent client's [`Notice`]s.
pub type Notices = mpsc::UnboundedReceiver<Notice>;

struct Inner {
    conn: watch::Receiver<Option<Arc<Connection>>>,
    user_id: UserId,
    timeout: Duration,
    persistent: bool,
    shutdown: watch::Sender<bool>,
    /// Keeps the single connection's slot alive (a persistent client's supervisor owns it).
    _slot: Mutex<Option<watch::Sender<Option<Arc<Connection>>>>>,
}

/// An authenticated connection to a homeserver. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user_id", &self.inner.user_id)
            .field("persistent", &self.inner.persistent)
            .finish()
    }
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:8443/v1/ws`) and authenticates as `signer`: one
    /// connection, no reconnection. The events end when the connection closes.
    pub async fn connect(
        url: &str,
        signer: &(impl Signer + ?Sized),
        opts: ConnectOptions,
    ) -> Result<(Client, Events), SdkError> {
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let sink = move |incoming| {
            if let Incoming::Event(e) = incoming {
                let _ = ev_tx.send(e);
            }
        };
        let (conn, _reader) = Connection::open(url, signer, &opts, 0, sink).await?;
        let user_id = conn.authed.user_id.clone();
        let (slot_tx, slot_rx) = watch::channel(Some(conn));
        Ok((
            Client {
                inner: Arc::new(Inner {
                    conn: slot_rx,
                    user_id,
                    timeout: opts.request_timeout,
                    persistent: false,
                    shutdown: watch::Sender::new(false),
                    _slot: Mutex::new(Some(slot_tx)),
                }),
            },
            ev_rx,
        ))
    }

    /// Connects like [`Client::connect`], and keeps reconnecting with
    /// [`ConnectOptions::backoff`] whenever the connection ends, until [`Client::close`]. The
    /// first connection must succeed (so a refused registration is reported at once); later
    /// ones are retried forever. Reconnections check that the server keeps its name.
    pub async fn connect_persistent(
        url: &str,
        signer: Arc<dyn Signer + Send + Sync>,
        mut opts: ConnectOptions,
    ) -> Result<(Client, Notices), SdkError> {
        let (n_tx, n_rx) = mpsc::unbounded_channel();
        let (conn, reader) =
            Connection::open(url, &*signer, &opts, 0, notice_sink(n_tx.clone())).await?;
        let user_id = conn.authed.user_id.clone();
        opts.expected_server = Some(user_id.server.clone());
        let (slot_tx, slot_rx) = watch::channel(Some(conn));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let timeout = opts.request_timeout;
        let supervisor = Supervisor {
            url: url.to_owned(),
            signer,
            opts,
            conn: slot_tx,
            notices: n_tx,
            shutdown: shutdown_rx,
        };
        tokio::spawn(supervisor.run(reader, 0));
        Ok((
            Client {
                inner: Arc::new(Inner {
                    conn: slot_rx,
                    user_id,
                    timeout,
                    persistent: true,
                    shutdown: shutdown_tx,
                    _slot: Mutex::new(None),
                }),
            },
            n_rx,
        ))
    }

    /// This client's user id.
    pub fn user_id(&self) -> &UserId {
        &self.inner.user_id
    }

    /// The server's answer to the latest authentication (registration, queued message count).
    /// A persistent client that is reconnecting keeps the previous answer.
    pub fn authed(&self) -> Authed {
        match self.inner.conn.borrow().as_ref() {
            Some(c) => c.authed.clone(),
            None => Authed {
                user_id: self.inner.user_id.clone(),
                registered: false,
                queued: 0,
            },
        }
    }

    /// Whether a connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.inner.conn.borrow().is_some()
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Sends a request and waits for its answer, within the client's timeout.
    pub async fn request(&self, body: Request) -> Result<Response, SdkError> {
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        let mut conn_rx = self.inner.conn.clone();
        let retry = is_idempotent(&body);
        loop {
            let conn = if self.inner.persistent {
                let waited = tokio::time::timeout_at(deadline, conn_rx.wait_for(Option::is_some));
                match waited.await {
                    Err(_) => return Err(SdkError::Timeout),
                    Ok(Err(_)) => return Err(SdkError::Closed),
                    Ok(Ok(c)) => c.clone().ok_or(SdkError::Closed)?,
                }
            } else {
                self.inner.conn.borrow().clone().ok_or(SdkError::Closed)?
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match conn.request(body.clone(), left).await {
                Ok(r) => return Ok(r),
                Err(RequestFailure::Failed(SdkError::Closed)) if self.inner.persistent && retry => {
                }
                Err(RequestFailure::NotSent) if self.inner.persistent => {}
                Err(RequestFailure::NotSent) => return Err(SdkError::Closed),
                Err(RequestFailure::Failed(e)) => return Err(e),
            }
            // Wait for a connection other than the broken one before trying again.
            let generation = conn.generation;
            let newer =
                conn_rx.wait_for(|c| c.as_ref().is_some_and(|c| c.generation != generation));
            match tokio::time::timeout_at(deadline, newer).await {
                Err(_) => return Err(SdkError::Timeout),
                Ok(Err(_)) => return Err(SdkError::Closed),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Closes the connection (and stops reconnecting).
    pub fn close(&self) {
        let _ = self.inner.shutdown.send(true);
        if let Some(c) = self.inner.conn.borrow().as_ref() {
            c.close();
        }
    }

    /// Drops the current connection without closing the client, as a network failure would. A
    /// persistent client reconnects; for tests and benchmarks of recovery.
    pub fn drop_connection(&self) {
        if let Some(c) = self.inner.conn.borrow().as_ref() {
            c.close();
        }
    }
}

/// Whether repeating `request` after an unknown outcome cannot change the result: reads,
/// acknowledgements, settings that replace a value, and sends named by a client transaction id
/// (the server answers a repeat with the first answer). Everything else that creates something
/// (channels, invites, claims that consume a key) is not repeated.
pub fn is_idempotent(request: &Request) -> bool {
    match request {
        Request::MessageSend(m) => return m.txn.is_some(),
        Request::DirectSend(d) => return d.txn.is_some(),
        _ => {}
    }
    matches!(
        request,
        Request::Ping
            | Request::KeysCount
            | Request::DirectAck(_)
            | Request::ChannelUpdate(_)
            | Request::ChannelList
            | Request::InviteList(_)
            | Request::ChannelMembers(_)
            | Request::ChannelPermissions(_)
            | Request::RoleList
            | Request::OverrideSet(_)
            | Request::History(_)
            | Request::PresenceSet(_)
            | Request::PresenceList
            | Request::Typing(_)
    )
}

/// A fresh client transaction id for a send: 128 random bits in hex, so a repeat of this send
/// after a lost answer is recognised by the server and stored once.
pub fn new_txn() -> String {
    let mut bytes = [0u8; 16];
    // Without randomness the send goes out unnamed (and is then not repeated automatically).
    if getrandom::fill(&mut bytes).is_err() {
        return String::new();
    }
    hex::encode(bytes)
}

/// Reads trusted root certificates for [`ConnectOptions::extra_root_certs`] from a PEM file
/// (one or more `CERTIFICATE` blocks) or a DER file.
pub fn load_root_certs(path: &std::path::Path) -> Result<Vec<Vec<u8>>, SdkError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path)
        .map_err(|e| SdkError::Connection(format!("{}: {e}", path.display())))?;
    if !bytes.starts_with(b"-----") {
        return Ok(vec![bytes]);
    }
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&bytes)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| SdkError::Connection(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(SdkError::Connection(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use mobium_spec::client::{DirectSend, MessageSend, Request};
    use mobium_spec::{ChannelId, Keypair, UserId};

    use super::{is_idempotent, new_txn};

    #[test]
    fn named_sends_are_repeated_after_a_lost_answer_unnamed_ones_are_not() {
        let to = UserId::new(
            Keypair::generate().public(),
            "a.test".parse().expect("name"),
        );
        let channel: ChannelId = "#1@a.test".parse().expect("channel");
        let dm = |txn: Option<String>| {
            Request::DirectSend(DirectSend {
                to: to.clone(),
                ciphertext: vec![1],
                txn,
            })
        };
        let post = |txn: Option<String>| {
            Request::MessageSend(MessageSend {
                channel: channel.clone(),
                ciphertext: vec![1],
                reply_to: None,
                txn,
            })
        };
        assert!(!is_idempotent(&dm(None)));
        assert!(!is_idempotent(&post(None)));
        assert!(is_idempotent(&dm(Some(new_txn()))));
        assert!(is_idempotent(&post(Some(new_txn()))));
        let (a, b) = (new_txn(), new_txn());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b, "every send gets its own name");
    }
}
