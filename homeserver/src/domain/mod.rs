//! Domain logic: the protocol's rules (permissions, limits, registration policy, delivery) on
//! top of storage and the outbox. The two edges call in: the client edge
//! (`crate::client_edge`) and the federation edge (`crate::fed`).
//!
//! One file per area of the client protocol (spec `client/*.md`); [`remote`] is everything the
//! domain asks of other servers; this file holds the shared [`App`] state and the dispatch from
//! a decoded [`Request`] to its handler.

mod change;
mod channels;
mod direct;
mod error;
mod keys;
mod membership;
mod messages;
pub(crate) mod perms;
mod presence;
mod remote;
mod roles;
mod session;
mod txn;

pub(crate) use change::{ChannelOrder, apply_replica, message_to_wire};
pub(crate) use channels::join_hosted;
pub(crate) use keys::claim_local;
pub(crate) use membership::{depart, member_list};
pub(crate) use messages::{NewMessage, delete_hosted, edit_hosted, send_hosted};
pub(crate) use presence::relay_typing;
pub(crate) use session::{authenticate, authenticated, disconnected};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mobium_client_api::server::{ConnectionLimiter, Entry};
use mobium_spec::client::{ErrorBody, Request, Response};
use mobium_spec::{
    ErrorCode, Keypair, MessageId, MessageIdGenerator, PublicKey, ServerName, UserId,
};

use crate::cluster::Cluster;
use crate::hub::Hub;
use crate::metrics::Metrics;
pub use crate::now_ms;
use crate::outbox::Link;
use crate::ratelimit::RateLimiter;
use crate::storage::{SharedStore, StoreError};
use crate::writer::Writer;
pub use error::DomainError;

/// Who may register (`SC_REGISTRATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Any key is registered on first authentication.
    Open,
    /// New keys need a registration token or a channel invite code.
    Invite,
    /// Only existing users.
    Closed,
}

/// The limits and policies the domain enforces.
#[derive(Debug, Clone)]
pub struct DomainSettings {
    /// Registration policy.
    pub registration: Policy,
    /// Per-recipient cap of queued to-device messages.
    pub max_offline_messages: u32,
    /// Lifetime of a queued to-device message.
    pub message_ttl: Duration,
    /// Requests per second per user, sustained.
    pub rate_per_sec: u32,
    /// Requests per user at once.
    pub rate_burst: u32,
    /// Largest WebSocket message to or from a client (`SC_MAX_MESSAGE_SIZE`).
    pub max_message_size: usize,
    /// How long a session outlives its last connection (`SC_PRESENCE_GRACE`).
    pub presence_grace: Duration,
}

/// Room left in a client frame for everything but the ciphertext (ids, names, field names):
/// a ciphertext of at most `SC_MAX_MESSAGE_SIZE - EVENT_OVERHEAD` bytes always fits the event
/// that carries it to clients.
pub const EVENT_OVERHEAD: usize = 1024;

/// The homeserver's shared state; one per process, behind an `Arc`.
pub struct App {
    /// Storage.
    pub store: SharedStore,
    /// This server's name.
    pub server_name: ServerName,
    /// This server's signing key.
    pub keypair: Keypair,
    /// Policies and limits.
    pub settings: DomainSettings,
    /// Live connections.
    pub hub: Arc<Hub>,
    /// Metrics.
    pub metrics: Metrics,
    /// Connection caps (shared with the transport).
    pub limiter: Arc<ConnectionLimiter>,
    pub(crate) rate: RateLimiter,
    ids: Mutex<MessageIdGenerator>,
    /// Group commit for every write a caller is answered after.
    pub(crate) writer: Writer,
    cache: perms::PermCache,
    fed: Option<Link>,
    /// On a managed server: this instance's part of the cluster.
    cluster: Option<Arc<Cluster>>,
    channel_locks:
        Mutex<std::collections::HashMap<mobium_spec::ChannelId, Arc<tokio::sync::Mutex<()>>>>,
    /// This state itself, for tasks that outlive a request (a session's grace period); weak, so
    /// such a task ends with the server instead of keeping it alive.
    me: std::sync::Weak<App>,
}

/// What the [`App`] is built from (the server's start-up wires these).
pub struct AppParts {
    /// Storage.
    pub store: SharedStore,
    /// This server's name.
    pub server_name: ServerName,
    /// This server's signing key.
    pub keypair: Keypair,
    /// Policies and limits.
    pub settings: DomainSettings,
    /// Connection caps (shared with the transport).
    pub limiter: Arc<ConnectionLimiter>,
    /// Live connections.
    pub hub: Arc<Hub>,
    /// The federation link (`None` when federation is disabled).
    pub link: Option<Link>,
    /// This instance's part of its cluster, on a managed server.
    pub cluster: Option<Arc<Cluster>>,
}

impl App {
    /// Builds the state.
    pub fn new(parts: AppParts) -> Arc<Self> {
        let AppParts {
            store,
            server_name,
            keypair,
            settings,
            limiter,
            hub,
            link,
            cluster,
        } = parts;
        let node = cluster.as_ref().map_or(0, |c| c.instance);
        Arc::new_cyclic(|me| App {
            me: me.clone(),
            rate: RateLimiter::new(settings.rate_per_sec, settings.rate_burst),
            writer: Writer::start(store.clone()),
            store,
            server_name,
            keypair,
            settings,
            hub,
            metrics: Metrics::default(),
            limiter,
            ids: Mutex::new(MessageIdGenerator::new(node)),
            cache: perms::PermCache::default(),
            fed: link,
            cluster,
            channel_locks: Mutex::default(),
        })
    }

    /// A fresh time-ordered id.
    pub fn next_id(&self) -> MessageId {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next(now_ms())
    }

    /// `key@this-server`.
    pub fn local_user(&self, key: &PublicKey) -> UserId {
        UserId::new(*key, self.server_name.clone())
    }

    /// Whether this server hosts (orders) `channel`.
    pub fn hosts(&self, channel: &mobium_spec::ChannelId) -> bool {
        channel.host == self.server_name
    }

    /// Whether `user` belongs to this server.
    pub fn is_local(&self, user: &UserId) -> bool {
        user.server == self.server_name
    }

    /// Serializes changes to one hosted channel, so the order of ids, commits, local
    /// deliveries and federation events is the same (the host orders every event). On a
    /// managed server the lock is also taken in PostgreSQL, across every instance; cached
    /// permissions are dropped when another instance changed any since this one last looked.
    pub(crate) async fn channel_lock(
        &self,
        channel: &mobium_spec::ChannelId,
    ) -> Result<ChannelOrder, DomainError> {
        let lock = self
            .channel_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(channel.clone())
            .or_default()
            .clone();
        let local = lock.lock_owned().await;
        let shared = match &self.cluster {
            None => None,
            Some(c) => {
                let (held, stale) = c.channel_lock(channel).await?;
                if stale {
                    self.cache.clear();
                }
                Some(held)
            }
        };
        Ok(ChannelOrder::new(channel.clone(), local, shared))
    }

    /// The status others see of local user `key`: from their session here, or on a managed
    /// server from one on another instance.
    pub async fn visible_status(&self, key: &PublicKey) -> mobium_spec::client::PresenceStatus {
        use mobium_spec::client::PresenceStatus;
        let here = self.hub.visible_status(key);
        match &self.cluster {
            Some(c) if here == PresenceStatus::Offline && !self.hub.is_online(key) => c
                .status_elsewhere(key)
                .await
                .unwrap_or(PresenceStatus::Offline),
            _ => here,
        }
    }

    /// This instance's part of the cluster, on a managed server.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// The federation link (`None` when federation is disabled).
    pub fn federation(&self) -> Option<&Link> {
        self.fed.as_ref()
    }

    /// The one size rule for ciphertext that reaches clients, whoever sent it (a client of this
    /// server or another server): it must fit, with [`EVENT_OVERHEAD`], in one client frame, or
    /// no client could ever receive it.
    pub(crate) fn check_size(&self, ciphertext: &[u8]) -> Result<(), DomainError> {
        let limit = self
            .settings
            .max_message_size
            .saturating_sub(EVENT_OVERHEAD);
        if ciphertext.len() > limit {
            return Err(err(
                ErrorCode::TooLarge,
                &format!("ciphertext over this server's limit of {limit} bytes"),
            ));
        }
        Ok(())
    }

    /// [`check_size`](Self::check_size), and not empty: the rule for channel messages and edits.
    pub(crate) fn check_message(&self, ciphertext: &[u8]) -> Result<(), DomainError> {
        if ciphertext.is_empty() {
            return Err(err(ErrorCode::InvalidArgument, "empty ciphertext"));
        }
        self.check_size(ciphertext)
    }

    /// Drops cached permissions after a change to them (here, and on a managed server's other
    /// instances).
    pub fn invalidate_permissions(&self) {
        self.cache.clear();
        if let Some(c) = &self.cluster {
            c.permissions_changed();
        }
    }

    /// Drops cached permissions after another instance changed them.
    pub fn permissions_changed_elsewhere(&self) {
        self.cache.clear();
    }

    /// Runs a storage write and records its latency.
    pub(crate) async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let r = fut.await;
        self.metrics.db_latency(start.elapsed());
        r
    }
}

/// Storage failures as a wire error, for the edges that hand one on directly.
impl From<StoreError> for ErrorBody {
    fn from(e: StoreError) -> Self {
        DomainError::from(e).into_wire()
    }
}

/// Shorthand for a protocol error: a wire [`ErrorBody`], or (where the context asks for one) a
/// [`DomainError`] classified by its code.
pub(crate) fn err<E: From<ErrorBody>>(code: ErrorCode, message: &str) -> E {
    E::from(ErrorBody::new(code, message))
}

/// Result of a request handler.
pub(crate) type Handled = Result<Response, DomainError>;

/// Routes an authenticated request to the handler of its operation (one file per area of the
/// client protocol). `entry` lets the connection's next request start once this one's change
/// is in the write path (a handler that does not use it lets it go when it returns). Rate limiting, metrics and the mapping of errors happen at the edge
/// (`crate::client_edge`).
pub(crate) async fn dispatch(
    app: &App,
    user: &PublicKey,
    request: Request,
    entry: &Entry,
) -> Handled {
    let me = app.local_user(user);
    match request {
        Request::Ping => Ok(Response::Pong),
        Request::KeysUpload(r) => keys::upload(app, &me, r).await,
        Request::KeysCount => keys::count(app, &me).await,
        Request::KeysClaim(r) => keys::claim(app, &me, r).await,
        Request::DirectSend(r) => direct::send(app, &me, r).await,
        Request::DirectAck(r) => direct::ack(app, &me, r).await,
        Request::ChannelCreate(r) => channels::create(app, &me, r).await,
        Request::ChannelUpdate(r) => channels::update(app, &me, r).await,
        Request::ChannelList => channels::list(app, &me).await,
        Request::InviteCreate(r) => channels::invite_create(app, &me, r).await,
        Request::InviteRevoke(r) => channels::invite_revoke(app, &me, r).await,
        Request::InviteList(r) => channels::invite_list(app, &me, r).await,
        Request::ChannelJoin(r) => channels::join(app, &me, r).await,
        Request::ChannelLeave(r) => membership::leave(app, &me, r).await,
        Request::ChannelKick(r) => membership::remove(app, &me, r, false).await,
        Request::ChannelBan(r) => membership::remove(app, &me, r, true).await,
        Request::ChannelUnban(r) => membership::unban(app, &me, r).await,
        Request::ChannelMembers(r) => membership::members(app, &me, r).await,
        Request::ChannelPermissions(r) => membership::permissions(app, &me, r).await,
        Request::RoleCreate(r) => roles::create(app, &me, r).await,
        Request::RoleUpdate(r) => roles::update(app, &me, r).await,
        Request::RoleDelete(r) => roles::delete(app, &me, r).await,
        Request::RoleList => roles::list(app).await,
        Request::RoleGrant(r) => roles::grant(app, &me, r, true).await,
        Request::RoleRevoke(r) => roles::grant(app, &me, r, false).await,
        Request::OverrideSet(r) => roles::override_set(app, &me, r).await,
        Request::OverrideClear(r) => roles::override_clear(app, &me, r).await,
        Request::MessageSend(r) => messages::send(app, &me, r, entry).await,
        Request::History(r) => messages::history(app, &me, r).await,
        Request::MessageEdit(r) => messages::edit(app, &me, r).await,
        Request::MessageDelete(r) => messages::delete(app, &me, r).await,
        Request::PresenceSet(r) => presence::set(app, &me, r).await,
        Request::PresenceList => presence::list(app, &me).await,
        Request::Typing(r) => presence::typing(app, &me, r).await,
        Request::Auth(_) => Err(err(
            ErrorCode::AlreadyAuthenticated,
            "already authenticated",
        )),
        _ => Err(err(ErrorCode::UnknownOp, "unknown operation")),
    }
}
