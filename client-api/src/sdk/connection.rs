//! One WebSocket connection to a homeserver: the challenge/`auth` handshake
//! (spec `client/auth.md`), then a writer task and a reader task that match answers to requests
//! by id and hand everything else to a sink (spec `client/transport.md`).
//!
//! A connection never reconnects by itself; [`super::reconnect`] opens a new one when it ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mobium_spec::client::{
    AuthProof, Authed, ClientFrame, ErrorBody, Event, Request, Response, ServerFrame,
};
use mobium_spec::{PROTOCOL_VERSION, Signer, encoding};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{ConnectOptions, SdkError};

/// What a connection reports to its owner, in the order it happened.
#[derive(Debug, Clone)]
pub(crate) enum Incoming {
    /// Authenticated; everything after this belongs to this connection.
    Connected(Authed),
    /// A pushed event.
    Event(Event),
    /// The connection ended (closed by either side or broken).
    Disconnected(String),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Response, ErrorBody>>>>>;

/// Why a request did not get an answer.
#[derive(Debug)]
pub(crate) enum RequestFailure {
    /// The request never left this process (the connection was already gone): safe to retry.
    NotSent,
    /// The request was sent (or may have been); the error says what happened.
    Failed(SdkError),
}

/// An authenticated connection: send requests, close.
pub(crate) struct Connection {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    /// The server's answer to `auth`.
    pub(crate) authed: Authed,
    /// Counts connections of one client, so a waiter can tell a new connection from the old.
    pub(crate) generation: u64,
    /// Ends the reader at once (a connection that stopped answering).
    kill: Arc<tokio::sync::Notify>,
}

impl Connection {
    /// Opens `url`, authenticates as `signer`, and starts the reader and writer tasks. `sink`
    /// gets [`Incoming::Connected`] before any event of this connection and
    /// [`Incoming::Disconnected`] last. The returned handle finishes when the connection ends.
    pub(crate) async fn open(
        url: &str,
        signer: &(impl Signer + ?Sized),
        opts: &ConnectOptions,
        generation: u64,
        sink: impl Fn(Incoming) + Send + Sync + 'static,
    ) -> Result<(Arc<Connection>, JoinHandle<()>), SdkError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(opts.max_message_size))
            .max_frame_size(Some(opts.max_message_size));
        let connector = if url.starts_with("wss:") {
            Some(tokio_tungstenite::Connector::Rustls(
                super::tls::client_config(opts)?,
            ))
        } else {
            None
        };
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, connector);
        let (ws, _) = tokio::time::timeout(opts.request_timeout, connecting)
            .await
            .map_err(|_| SdkError::Timeout)?
            .map_err(|e| SdkError::Connection(super::tls::describe_connect_error(&e)))?;
        let (mut sink_ws, mut stream) = ws.split();

        let challenge = match next_frame(&mut stream, opts.request_timeout).await? {
            ServerFrame::Event {
                body: Event::Challenge(c),
            } => c,
            other => {
                return Err(SdkError::Protocol(format!(
                    "expected a challenge, got {other:?}"
                )));
            }
        };
        if let Some(expected) = &opts.expected_server
            && *expected != challenge.server
        {
            // A server relaying another server's challenge: never answer it.
            let _ = sink_ws.close().await;
            return Err(SdkError::Protocol(format!(
                "the server calls itself {}, expected {expected}",
                challenge.server
            )));
        }
        if challenge.protocol_version != PROTOCOL_VERSION {
            let _ = sink_ws.close().await;
            return Err(SdkError::Protocol(format!(
                "unsupported protocol version {}",
                challenge.protocol_version
            )));
        }
        let proof = AuthProof {
            nonce: challenge.nonce,
            server: challenge.server.clone(),
            user: signer.public_key(),
        };
        let auth = ClientFrame {
            id: 0,
            body: Request::Auth(proof.sign(signer, opts.invite.clone())),
        };
        sink_ws
            .send(Message::Binary(encoding::encode(&auth).into()))
            .await
            .map_err(|e| SdkError::Connection(e.to_string()))?;
        let authed = match next_frame(&mut stream, opts.request_timeout).await? {
            ServerFrame::Response {
                body: Response::Authed(a),
                ..
            } => a,
            ServerFrame::Error { error, .. } => return Err(SdkError::Server(error)),
            other => {
                return Err(SdkError::Protocol(format!(
                    "expected authed, got {other:?}"
                )));
            }
        };
        sink(Incoming::Connected(authed.clone()));

        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let closing = matches!(m, Message::Close(_));
                if sink_ws.send(m).await.is_err() || closing {
                    break;
                }
            }
            let _ = sink_ws.close().await;
        });
        let reader_pending = pending.clone();
        let pong_tx = out_tx.clone();
        let kill = Arc::new(tokio::sync::Notify::new());
        let killed = kill.clone();
        let reader = tokio::spawn(async move {
            let reason = loop {
                let next = tokio::select! {
                    n = stream.next() => n,
                    _ = killed.notified() => break "the server stopped answering".to_owned(),
                };
                let msg = match next {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => break e.to_string(),
                    None => break "connection ended".to_owned(),
                };
                match msg {
                    Message::Binary(data) => match encoding::decode::<ServerFrame>(&data) {
                        Ok(ServerFrame::Response { id, body }) => {
                            complete(&reader_pending, id, Ok(body))
                        }
                        Ok(ServerFrame::Error {
                            id: Some(id),
                            error,
                        }) => complete(&reader_pending, id, Err(error)),
                        Ok(ServerFrame::Error { id: None, error }) => {
                            tracing::warn!(code = %error.code, message = %error.message, "server error");
                        }
                        Ok(ServerFrame::Event { body }) => sink(Incoming::Event(body)),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "undecodable frame from server"),
                    },
                    Message::Ping(p) => {
                        let _ = pong_tx.send(Message::Pong(p));
                    }
                    Message::Close(frame) => {
                        break frame.map_or_else(
                            || "closed by the server".to_owned(),
                            |f| {
                                format!(
                                    "closed by the server ({}: {})",
                                    u16::from(f.code),
                                    f.reason
                                )
                            },
                        );
                    }
                    _ => {}
                }
            };
            // Fail whatever is still waiting: dropping the senders answers `Closed`.
            reader_pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            drop(pong_tx);
            writer.abort();
            sink(Incoming::Disconnected(reason));
        });
        Ok((
            Arc::new(Connection {
                out: out_tx,
                pending,
                next_id: AtomicU64::new(1),
                authed,
                generation,
                kill,
            }),
            reader,
        ))
    }

    /// Sends a request and waits up to `timeout` for its answer.
    pub(crate) async fn request(
        &self,
        body: Request,
        timeout: Duration,
    ) -> Result<Response, RequestFailure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let frame = ClientFrame { id, body };
        if self
            .out
            .send(Message::Binary(encoding::encode(&frame).into()))
            .is_err()
        {
            self.forget(id);
            return Err(RequestFailure::NotSent);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(resp))) => Ok(resp),
            Ok(Ok(Err(e))) => Err(RequestFailure::Failed(SdkError::Server(e))),
            Ok(Err(_)) => Err(RequestFailure::Failed(SdkError::Closed)),
            Err(_) => {
                self.forget(id);
                Err(RequestFailure::Failed(SdkError::Timeout))
            }
        }
    }

    /// Asks the writer to close the WebSocket.
    pub(crate) fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }

    /// Ends the connection without a closing handshake, for a peer that stopped answering.
    pub(crate) fn kill(&self) {
        self.kill.notify_one();
    }

    fn forget(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// Reads the next binary frame during the handshake.
async fn next_frame<S>(stream: &mut S, timeout: Duration) -> Result<ServerFrame, SdkError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(timeout, stream.next())
            .await
            .map_err(|_| SdkError::Timeout)?
            .ok_or(SdkError::Closed)?
            .map_err(|e| SdkError::Connection(e.to_string()))?;
        match msg {
            Message::Binary(data) => {
                return encoding::decode::<ServerFrame>(&data)
                    .map_err(|e| SdkError::Protocol(e.to_string()));
            }
            Message::Close(_) => return Err(SdkError::Closed),
            _ => continue,
        }
    }
}

fn complete(pending: &Pending, id: u64, result: Result<Response, ErrorBody>) {
    let tx = pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    if let Some(tx) = tx {
        let _ = tx.send(result);
    }
}
