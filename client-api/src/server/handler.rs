//! What the transport needs from the homeserver: [`ClientHandler`], and the [`Connection`]
//! handle through which the homeserver pushes events to one client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use mobium_spec::client::{Authed, ErrorBody, Event, Request, Response, ServerFrame};
use mobium_spec::{ErrorCode, PublicKey, encoding};
use tokio::sync::{Notify, mpsc};

/// Process-unique id of one WebSocket connection.
pub type ConnectionId = u64;

/// An encoded frame waiting to be written.
pub type Outbound = Bytes;

/// A verified authentication attempt (the signature has already been checked).
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The proven key.
    pub user: PublicKey,
    /// The registration token or invite code, if the client sent one.
    pub invite: Option<String>,
}

/// A request's place in its connection's order of state changes (spec `client/transport.md`:
/// a connection's state-changing requests apply in the order received). The transport reads
/// and starts the connection's next request only once this one has *entered* the server's
/// write path — when the handler calls [`Entry::entered`], or when it returns — so a request
/// that waits for its commit does not hold up the ones behind it, which still enter after it.
#[derive(Debug)]
pub struct Entry {
    permit: std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl Entry {
    pub(crate) fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Entry {
            permit: std::sync::Mutex::new(Some(permit)),
        }
    }

    /// An entry that orders nothing (for a handler called outside a connection's sequence).
    pub fn detached() -> Self {
        Entry {
            permit: std::sync::Mutex::new(None),
        }
    }

    /// This request's change is in the write path, in order: the connection's next request
    /// may start. Calling it again does nothing.
    pub fn entered(&self) {
        self.permit.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// One client connection, as the homeserver sees it: who it is and how to reach it.
#[derive(Debug, Clone)]
pub struct Connection {
    inner: Arc<ConnInner>,
}

#[derive(Debug)]
struct ConnInner {
    id: ConnectionId,
    tx: mpsc::Sender<Outbound>,
    closed: AtomicBool,
    close_notify: Notify,
}

impl Connection {
    pub(crate) fn new(id: ConnectionId, tx: mpsc::Sender<Outbound>) -> Self {
        Connection {
            inner: Arc::new(ConnInner {
                id,
                tx,
                closed: AtomicBool::new(false),
                close_notify: Notify::new(),
            }),
        }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnectionId {
        self.inner.id
    }

    /// Queues an event. If the client is too slow to drain its queue, the connection is closed
    /// instead of blocking the sender (it will reconnect and catch up from durable state).
    /// Returns `false` when the connection is gone.
    pub fn push_event(&self, event: Event) -> bool {
        self.push_encoded(encode_event(&event))
    }

    /// Queues a pre-encoded frame (see [`encode_event`]); used for fan-out so an event is encoded
    /// once for all recipients.
    pub fn push_encoded(&self, frame: Outbound) -> bool {
        if self.is_closed() {
            return false;
        }
        match self.inner.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(conn = self.inner.id, "client too slow; disconnecting");
                self.close();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Asks the session to end.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.close_notify.notify_waiters();
        self.inner.close_notify.notify_one();
    }

    /// Whether the connection has ended or been asked to.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire) || self.inner.tx.is_closed()
    }

    pub(crate) async fn closed(&self) {
        if self.is_closed() {
            return;
        }
        self.inner.close_notify.notified().await;
    }
}

/// Encodes an event frame once, for pushing to many connections.
pub fn encode_event(event: &Event) -> Outbound {
    Bytes::from(encoding::encode(&ServerFrame::Event {
        body: event.clone(),
    }))
}

/// The homeserver side of the client protocol.
#[async_trait::async_trait]
pub trait ClientHandler: Send + Sync + 'static {
    /// A client proved it holds `auth.user`. Apply the registration policy, register the
    /// connection for live events and return the `authed` answer — or refuse.
    async fn authenticate(&self, conn: &Connection, auth: AuthRequest)
    -> Result<Authed, ErrorBody>;

    /// Runs after the `authed` answer has been queued: push anything that waited for the user
    /// (queued to-device messages).
    async fn authenticated(&self, conn: &Connection, user: &PublicKey);

    /// One request of an authenticated client. The connection's next request starts once
    /// this one calls `entry.entered()` (its change is in the write path, in order) or returns.
    async fn handle(
        &self,
        conn: &Connection,
        user: &PublicKey,
        request: Request,
        entry: &Entry,
    ) -> Result<Response, ErrorBody>;

    /// The connection ended (authenticated or not).
    async fn disconnected(&self, conn: &Connection, user: Option<&PublicKey>);

    /// An error answered by the transport itself (for metrics).
    fn record_error(&self, code: ErrorCode) {
        let _ = code;
    }
}
