//! The Rust client SDK: connect over `ws://`/`wss://`, authenticate with the user's key, send
//! typed requests with timeouts, receive events.
//!
//! A [`Client`] is cheap to clone; a background task reads frames, completes pending requests by
//! id and forwards events to the [`Events`] receiver returned by [`Client::connect`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mobium_spec::client::{
    AuthProof, ClientFrame, ErrorBody, Event, Request, Response, ServerFrame,
};
use mobium_spec::{Keypair, UserId, encoding};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// What can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The WebSocket could not be opened or broke.
    #[error("connection: {0}")]
    Connection(String),
    /// The server sent something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server answered with an error.
    #[error("server error {}: {}", .0.code, .0.message)]
    Server(ErrorBody),
    /// No answer within the timeout.
    #[error("request timed out")]
    Timeout,
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
}

impl SdkError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<mobium_spec::ErrorCode> {
        match self {
            SdkError::Server(e) => Some(e.code),
            _ => None,
        }
    }
}

/// Connection options.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Registration token or invite code for a first connection to an `invite` server.
    pub invite: Option<String>,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Largest message accepted from the server.
    pub max_message_size: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            invite: None,
            request_timeout: Duration::from_secs(10),
            max_message_size: 16 * 1024 * 1024,
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Response, ErrorBody>>>>>;

/// An authenticated connection to a homeserver.
#[derive(Clone)]
pub struct Client {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    user_id: UserId,
    authed: mobium_spec::client::Authed,
    timeout: Duration,
}

/// Events pushed by the server, in arrival order. Ends when the connection closes.
pub type Events = mpsc::UnboundedReceiver<Event>;

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user_id", &self.user_id)
            .finish()
    }
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:8443/v1/ws`) and authenticates as `key`.
    pub async fn connect(
        url: &str,
        key: &Keypair,
        opts: ConnectOptions,
    ) -> Result<(Client, Events), SdkError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(opts.max_message_size))
            .max_frame_size(Some(opts.max_message_size));
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| SdkError::Connection(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();

        // The first frame is the challenge.
        let challenge = loop {
            let msg = tokio::time::timeout(opts.request_timeout, stream.next())
                .await
                .map_err(|_| SdkError::Timeout)?
                .ok_or(SdkError::Closed)?
                .map_err(|e| SdkError::Connection(e.to_string()))?;
            if let Message::Binary(data) = msg {
                match encoding::decode::<ServerFrame>(&data) {
                    Ok(ServerFrame::Event {
                        body: Event::Challenge(c),
                    }) => break c,
                    Ok(other) => {
                        return Err(SdkError::Protocol(format!(
                            "expected a challenge, got {other:?}"
                        )));
                    }
                    Err(e) => return Err(SdkError::Protocol(e.to_string())),
                }
            }
        };
        let proof = AuthProof {
            nonce: challenge.nonce,
            server: challenge.server.clone(),
            user: key.public(),
        };
        let auth = ClientFrame {
            id: 0,
            body: Request::Auth(proof.sign(key, opts.invite.clone())),
        };
        sink.send(Message::Binary(encoding::encode(&auth).into()))
            .await
            .map_err(|e| SdkError::Connection(e.to_string()))?;
        let authed = loop {
            let msg = tokio::time::timeout(opts.request_timeout, stream.next())
                .await
                .map_err(|_| SdkError::Timeout)?
                .ok_or(SdkError::Closed)?
                .map_err(|e| SdkError::Connection(e.to_string()))?;
            if let Message::Binary(data) = msg {
                match encoding::decode::<ServerFrame>(&data) {
                    Ok(ServerFrame::Response {
                        body: Response::Authed(a),
                        ..
                    }) => break a,
                    Ok(ServerFrame::Error { error, .. }) => return Err(SdkError::Server(error)),
                    Ok(other) => {
                        return Err(SdkError::Protocol(format!(
                            "expected authed, got {other:?}"
                        )));
                    }
                    Err(e) => return Err(SdkError::Protocol(e.to_string())),
                }
            }
        };

        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let closing = matches!(m, Message::Close(_));
                if sink.send(m).await.is_err() || closing {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader_pending = pending.clone();
        let pong_tx = out_tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
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
                        Ok(ServerFrame::Event { body }) => {
                            let _ = ev_tx.send(body);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "undecodable frame from server"),
                    },
                    Message::Ping(p) => {
                        let _ = pong_tx.send(Message::Pong(p));
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            // Fail whatever is still waiting.
            reader_pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        });

        Ok((
            Client {
                out: out_tx,
                pending,
                next_id: Arc::new(AtomicU64::new(1)),
                user_id: authed.user_id.clone(),
                authed,
                timeout: opts.request_timeout,
            },
            ev_rx,
        ))
    }

    /// This client's user id.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The server's answer to authentication (registration, queued message count).
    pub fn authed(&self) -> &mobium_spec::client::Authed {
        &self.authed
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&self, body: Request) -> Result<Response, SdkError> {
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
            return Err(SdkError::Closed);
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(Ok(resp))) => Ok(resp),
            Ok(Ok(Err(e))) => Err(SdkError::Server(e)),
            Ok(Err(_)) => Err(SdkError::Closed),
            Err(_) => {
                self.forget(id);
                Err(SdkError::Timeout)
            }
        }
    }

    /// Closes the connection.
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }

    fn forget(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
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
