//! Storage: one interface ([`Store`]), two implementations (SQLite in [`sqlite`], PostgreSQL in
//! [`postgres`]), numbered migrations per backend under `homeserver/migrations/`.
//!
//! The two implementations share their SQL: each statement is written once, in `sql/` (one
//! file per area, compiled into each backend), and rows are decoded once, in `codec`. A backend
//! module keeps only what really differs: pool set-up, how a write transaction opens, the
//! locks PostgreSQL needs under `READ COMMITTED`, and the few statements whose text differs.
//!
//! Everything here does SQL and nothing else: permission checks, limits and event fan-out live in
//! the domain layer (`crate::domain`). Operations that must be atomic under concurrency (claiming
//! a one-time key, using an invite, enqueueing under a per-recipient cap, committing a change to
//! a hosted channel with the federation events announcing it) are single statements or single
//! transactions inside the store, so the domain layer never races itself.
//!
//! Ids (`MessageId`, channel ids, role ids) are `u64` in Rust and `BIGINT`/`INTEGER` (signed
//! 64-bit) in SQL; they are converted with a bit-preserving cast. Snowflakes stay below 2^63 until
//! 2095, so SQL ordering matches id ordering. User ids are stored in their canonical text form
//! (`pubkey@server`) so remote users can be members too.

mod cluster;
mod codec;
pub mod ops;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

pub use cluster::{ChannelLock, ClusterStore, RemoteSession};

use mobium_spec::client::{KeysCount, Prekey, PrekeyKind};
use mobium_spec::{ChannelId, MessageId, PublicKey, ServerName, UserId};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint was violated (duplicate key id, already a member, ...).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The recipient's offline queue is at its cap.
    #[error("queue full")]
    QueueFull,
    /// The client transaction id of a send was recorded before: nothing was written.
    #[error("client transaction id seen before")]
    TxnSeen,
    /// The database failed; the cause is logged, never sent to a peer.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed at start-up.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database server cannot be reached, or refused us, at start-up: a complete sentence
    /// saying where, why, and what to do.
    #[error("{0}")]
    Connect(String),
    /// A stored value no longer parses (corruption or a bug).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The group-commit transaction holding this write failed (nothing of it was written).
    #[error("group commit: {0}")]
    Group(std::sync::Arc<StoreError>),
    /// The writer has stopped: the server is shutting down.
    #[error("the server is shutting down")]
    Closed,
}

/// Result alias for storage calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A queued to-device message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectRow {
    /// Id (orders the recipient's queue).
    pub id: MessageId,
    /// Recipient.
    pub recipient: UserId,
    /// Sender.
    pub sender: UserId,
    /// Opaque ciphertext.
    pub ciphertext: Vec<u8>,
    /// Accepted at, Unix ms.
    pub sent_at: u64,
    /// Purged after, Unix ms.
    pub expires_at: u64,
}

/// The answer a client's named send got (spec `client/transport.md` §Retrying a send), kept so
/// that a repeat of the send gets it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTxn {
    /// Who sent it.
    pub user: UserId,
    /// The client's transaction id.
    pub txn: String,
    /// The encoded answer (`direct_sent`, `message_sent`).
    pub answer: Vec<u8>,
    /// Forgotten after, Unix ms.
    pub expires_at: u64,
}

/// A to-device message another server refused for good: its local sender is told with a
/// `direct_failed` event, queued until acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectFailureRow {
    /// The id the sender got in `direct_sent` (the id to acknowledge).
    pub id: MessageId,
    /// The local user who sent the message, and who is told.
    pub sender: UserId,
    /// The recipient the message was for.
    pub recipient: UserId,
    /// The refusal's code.
    pub code: mobium_spec::ErrorCode,
    /// The refusal's message (the peer's words).
    pub message: String,
    /// Purged after, Unix ms.
    pub expires_at: u64,
}

/// A channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRow {
    /// Id.
    pub id: ChannelId,
    /// Creator.
    pub owner: UserId,
    /// Encrypted metadata.
    pub metadata: Vec<u8>,
    /// Created at, Unix ms.
    pub created_at: u64,
}

/// An invite link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRow {
    /// Secret code.
    pub code: String,
    /// Channel it opens.
    pub channel: ChannelId,
    /// Creator.
    pub created_by: UserId,
    /// Use limit.
    pub max_uses: Option<u32>,
    /// Times used.
    pub uses: u32,
    /// Expiry, Unix ms.
    pub expires_at: Option<u64>,
    /// Revoked invites stay (for a clear error) but cannot be used.
    pub revoked: bool,
}

/// Why an invite could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteUse {
    /// Used: the count went up by one.
    Used,
    /// No such code, or revoked.
    Invalid,
    /// Past its expiry.
    Expired,
    /// At its use limit.
    Exhausted,
}

/// A stored channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// Channel.
    pub channel: ChannelId,
    /// Id.
    pub id: MessageId,
    /// Sender.
    pub sender: UserId,
    /// Megolm ciphertext.
    pub ciphertext: Vec<u8>,
    /// Accepted at, Unix ms.
    pub sent_at: u64,
    /// Last edited at.
    pub edited_at: Option<u64>,
    /// Reply target.
    pub reply_to: Option<MessageId>,
    /// For a message a member server forwarded to this host: the id the sender's server gave
    /// it. Unique per (channel, sender, origin_id): the host stores a retried send only once.
    pub origin_id: Option<MessageId>,
}

/// A role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRow {
    /// Id (0 = everyone, created by the first migration with the default bits).
    pub id: u64,
    /// Name.
    pub name: String,
    /// Permission bits.
    pub permissions: u64,
}

/// Who a channel override applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverrideTargetRow {
    /// A role id.
    Role(u64),
    /// A user.
    User(UserId),
}

/// A channel override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideRow {
    /// Target.
    pub target: OverrideTargetRow,
    /// Allowed bits.
    pub allow: u64,
    /// Denied bits.
    pub deny: u64,
}

/// What `keys_claim` took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKeys {
    /// The identity key (none if never uploaded: then nothing was claimed).
    pub identity: Prekey,
    /// Signed prekey.
    pub signed: Option<Prekey>,
    /// The one-time key removed by this claim.
    pub one_time: Option<Prekey>,
    /// The fallback key, given only when no one-time key was left.
    pub fallback: Option<Prekey>,
    /// What the owner has left right after this claim, counted in the claim's transaction
    /// (concurrent claims of one user are serialised, so each sees its own true count).
    pub left: KeysCount,
}

/// History query bounds (exclusive), see `History` in the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Exclusive upper bound.
    pub before: Option<MessageId>,
    /// Exclusive lower bound.
    pub after: Option<MessageId>,
    /// Page size (already clamped by the caller, >= 1).
    pub limit: u32,
}

/// One encoded federation event waiting in the outbox for `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Receiving server.
    pub destination: ServerName,
    /// A MessagePack-encoded `mobium_spec::federation::FedEvent`.
    pub event: Vec<u8>,
}

/// A state change on a channel this server hosts, committed together with the outbox items that
/// tell the member servers about it (so a crash can never apply one without the other).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostedChange {
    /// Nothing besides the outbox items.
    Nothing,
    /// `message_insert`.
    Message(MessageRow),
    /// `message_edit`.
    Edit {
        /// Channel.
        channel: ChannelId,
        /// Message.
        id: MessageId,
        /// New ciphertext.
        ciphertext: Vec<u8>,
        /// When.
        edited_at: u64,
    },
    /// `message_delete`.
    Delete {
        /// Channel.
        channel: ChannelId,
        /// Message.
        id: MessageId,
    },
    /// `member_add`.
    MemberAdd {
        /// Channel.
        channel: ChannelId,
        /// Who.
        user: UserId,
        /// When.
        now: u64,
    },
    /// `member_remove`.
    MemberRemove {
        /// Channel.
        channel: ChannelId,
        /// Who.
        user: UserId,
    },
    /// `channel_set_metadata`.
    Metadata {
        /// Channel.
        channel: ChannelId,
        /// New metadata.
        metadata: Vec<u8>,
    },
}

/// One caller's change for a group commit ([`Store::commit_writes`]): what the caller is
/// answered after, once the transaction holding it committed.
#[derive(Debug, Clone)]
pub enum Write {
    /// Outbox events, with the client transaction id of the send that queued them: `true`
    /// written, `false` the id was recorded before (nothing written).
    Outbox {
        /// The events, in order.
        items: Vec<OutboxItem>,
        /// The send's client transaction id.
        txn: Option<ClientTxn>,
    },
    /// A change to a hosted channel and the events announcing it, with the client transaction
    /// id of the send: what [`Store::commit_hosted`] returns, or `TxnSeen` when the id was
    /// recorded before (nothing written).
    Hosted {
        /// The change.
        change: HostedChange,
        /// Its events for the member servers.
        items: Vec<OutboxItem>,
        /// The send's client transaction id.
        txn: Option<ClientTxn>,
        /// The hosted event's `seq`, recorded as the channel's `last_seq` (a managed server's
        /// instances continue after it); `None` records nothing. A `seq` not above the
        /// recorded one is `Conflict`, and nothing is written.
        order: Option<(ChannelId, u64)>,
    },
}

impl Write {
    /// Whether the write has nothing to store.
    pub fn is_empty(&self) -> bool {
        match self {
            Write::Outbox { items, txn } => items.is_empty() && txn.is_none(),
            Write::Hosted { .. } => false,
        }
    }
}

/// The storage interface. Both backends pass the same test suite (`storage::tests`).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend (`sqlite` or `postgres`), for logs and metrics.
    fn backend(&self) -> &'static str;
    /// A cheap round trip (`SELECT 1`), for `/health` and the latency metric.
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the pool cleanly (SQLite checkpoints its WAL).
    async fn close(&self);

    // ---- server facts (`server_meta`) ----
    /// A stored fact, e.g. [`META_SERVER_NAME`].
    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>>;
    /// Stores `value` under `key` unless something is stored there already; returns what is
    /// stored afterwards (atomically: of two concurrent callers one value wins for both).
    async fn meta_insert_or_get(&self, key: &str, value: &str) -> StoreResult<String>;
    /// Stores `value` under `key`, replacing what was there.
    async fn meta_set(&self, key: &str, value: &str) -> StoreResult<()>;

    // ---- users ----
    /// Whether the user is registered here.
    async fn user_exists(&self, key: &PublicKey) -> StoreResult<bool>;
    /// Registers a user; `false` if they already were.
    async fn user_create(&self, key: &PublicKey, now: u64) -> StoreResult<bool>;
    /// Adds a registration token with `uses` uses, optionally expiring.
    async fn reg_token_create(
        &self,
        token: &str,
        uses: u32,
        expires_at: Option<u64>,
    ) -> StoreResult<()>;
    /// Uses a registration token once, atomically; `false` if unknown, expired or used up.
    async fn reg_token_consume(&self, token: &str, now: u64) -> StoreResult<bool>;

    // ---- prekeys ----
    /// Replaces the identity, signed or fallback key (kind `OneTime` is a caller bug → Conflict).
    async fn key_set(&self, user: &PublicKey, kind: PrekeyKind, key: &Prekey) -> StoreResult<()>;
    /// Adds one-time keys; a key id already present for this user → `Conflict`, nothing added.
    async fn keys_add_one_time(&self, user: &PublicKey, keys: &[Prekey]) -> StoreResult<()>;
    /// Remaining one-time keys and whether a fallback key exists.
    async fn keys_count(&self, user: &PublicKey) -> StoreResult<KeysCount>;
    /// Takes one one-time key (each handed out at most once, also under concurrent claims), or
    /// the fallback key when none is left. `None` when the user has no identity key.
    async fn keys_claim(&self, user: &PublicKey) -> StoreResult<Option<ClaimedKeys>>;

    // ---- to-device queue ----
    /// Queues a message unless the recipient already has `max_queued` messages (`QueueFull`).
    async fn direct_enqueue(&self, row: &DirectRow, max_queued: u32) -> StoreResult<()>;
    /// [`direct_enqueue`](Self::direct_enqueue), recording `txn` in the same transaction
    /// (`TxnSeen`, and nothing written, if the user's id was recorded before).
    async fn direct_enqueue_with_txn(
        &self,
        row: &DirectRow,
        max_queued: u32,
        txn: &ClientTxn,
    ) -> StoreResult<()>;
    /// The answer recorded for a user's client transaction id, if any.
    async fn client_txn_get(&self, user: &UserId, txn: &str) -> StoreResult<Option<Vec<u8>>>;
    /// The recipient's queued messages with id > `after`, oldest first, at most `limit`.
    async fn direct_pending(
        &self,
        recipient: &UserId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<DirectRow>>;
    /// Deletes the recipient's messages with these ids; returns how many were deleted.
    async fn direct_ack(&self, recipient: &UserId, ids: &[MessageId]) -> StoreResult<u64>;
    /// Failure notices queued for `sender`, ascending by id, after `after`, at most `limit`.
    async fn direct_failures_pending(
        &self,
        sender: &UserId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<DirectFailureRow>>;
    /// Deletes queued messages with `expires_at <= now`; returns how many.
    async fn direct_purge_expired(&self, now: u64) -> StoreResult<u64>;

    // ---- channels ----
    /// Creates a channel and makes its owner the first member, atomically.
    async fn channel_create(&self, row: &ChannelRow) -> StoreResult<()>;
    /// A channel by id.
    async fn channel_get(&self, id: &ChannelId) -> StoreResult<Option<ChannelRow>>;
    /// Replaces the metadata; `false` if no such channel.
    async fn channel_set_metadata(&self, id: &ChannelId, metadata: &[u8]) -> StoreResult<bool>;
    /// Channels the user is a member of, by id.
    async fn channels_of(&self, user: &UserId) -> StoreResult<Vec<ChannelRow>>;
    /// Adds a member; `false` if already one.
    async fn member_add(&self, channel: &ChannelId, user: &UserId, now: u64) -> StoreResult<bool>;
    /// Removes a member; `false` if not one.
    async fn member_remove(&self, channel: &ChannelId, user: &UserId) -> StoreResult<bool>;
    /// When the user joined, if a member.
    async fn member_joined_at(
        &self,
        channel: &ChannelId,
        user: &UserId,
    ) -> StoreResult<Option<u64>>;
    /// Members and join times, in join order.
    async fn members(&self, channel: &ChannelId) -> StoreResult<Vec<(UserId, u64)>>;
    /// Number of members.
    async fn member_count(&self, channel: &ChannelId) -> StoreResult<u32>;
    /// Bans a user (idempotent).
    async fn ban_add(
        &self,
        channel: &ChannelId,
        user: &UserId,
        by: &UserId,
        now: u64,
    ) -> StoreResult<()>;
    /// Lifts a ban; `false` if there was none.
    async fn ban_remove(&self, channel: &ChannelId, user: &UserId) -> StoreResult<bool>;
    /// Whether the user is banned.
    async fn is_banned(&self, channel: &ChannelId, user: &UserId) -> StoreResult<bool>;

    // ---- invites ----
    /// Stores a new invite (`Conflict` on a duplicate code).
    async fn invite_create(&self, row: &InviteRow) -> StoreResult<()>;
    /// An invite by code (revoked ones included).
    async fn invite_get(&self, code: &str) -> StoreResult<Option<InviteRow>>;
    /// A channel's usable invites (not revoked, not expired at `now`, not exhausted).
    async fn invites_of(&self, channel: &ChannelId, now: u64) -> StoreResult<Vec<InviteRow>>;
    /// Revokes; `false` if no such code.
    async fn invite_revoke(&self, code: &str) -> StoreResult<bool>;
    /// Uses an invite once, atomically (no over-use under concurrency).
    async fn invite_use(&self, code: &str, now: u64) -> StoreResult<InviteUse>;

    // ---- roles and overrides ----
    /// Creates a role; returns its id (> 0).
    async fn role_create(&self, name: &str, permissions: u64) -> StoreResult<u64>;
    /// Updates name and/or bits; `None` if no such role.
    async fn role_update(
        &self,
        id: u64,
        name: Option<&str>,
        permissions: Option<u64>,
    ) -> StoreResult<Option<RoleRow>>;
    /// Deletes a role (not 0) with its grants and overrides; `false` if none.
    async fn role_delete(&self, id: u64) -> StoreResult<bool>;
    /// A role by id.
    async fn role_get(&self, id: u64) -> StoreResult<Option<RoleRow>>;
    /// All roles, by id (0 first).
    async fn roles(&self) -> StoreResult<Vec<RoleRow>>;
    /// Grants (idempotent).
    async fn role_grant(&self, user: &UserId, role: u64) -> StoreResult<()>;
    /// Revokes; `false` if not held.
    async fn role_revoke(&self, user: &UserId, role: u64) -> StoreResult<bool>;
    /// Roles a user holds (not including 0), by id.
    async fn roles_of(&self, user: &UserId) -> StoreResult<Vec<RoleRow>>;
    /// Sets (inserts or replaces) an override.
    async fn override_set(&self, channel: &ChannelId, row: &OverrideRow) -> StoreResult<()>;
    /// Clears an override; `false` if none.
    async fn override_clear(
        &self,
        channel: &ChannelId,
        target: &OverrideTargetRow,
    ) -> StoreResult<bool>;
    /// A channel's overrides.
    async fn overrides(&self, channel: &ChannelId) -> StoreResult<Vec<OverrideRow>>;

    // ---- messages ----
    /// Stores a message; when this returns `Ok` the row is committed (durable).
    async fn message_insert(&self, row: &MessageRow) -> StoreResult<()>;
    /// A message by id.
    async fn message_get(
        &self,
        channel: &ChannelId,
        id: MessageId,
    ) -> StoreResult<Option<MessageRow>>;
    /// Replaces ciphertext and sets `edited_at`; `false` if no such message.
    async fn message_edit(
        &self,
        channel: &ChannelId,
        id: MessageId,
        ciphertext: &[u8],
        edited_at: u64,
    ) -> StoreResult<bool>;
    /// Deletes; `false` if no such message.
    async fn message_delete(&self, channel: &ChannelId, id: MessageId) -> StoreResult<bool>;
    /// A page of history in ascending id order, and whether more lie beyond it in the direction
    /// of travel (older when paging back or with no bounds, newer when paging with `after` only).
    async fn history(
        &self,
        channel: &ChannelId,
        q: HistoryQuery,
    ) -> StoreResult<(Vec<MessageRow>, bool)>;
    /// Deletes channel messages sent before `cutoff` (history retention); returns how many.
    async fn messages_purge_before(&self, cutoff: u64) -> StoreResult<u64>;

    // ---- federation: channels hosted elsewhere (replicas) ----
    /// Inserts or replaces the local copy of a channel hosted on another server (no membership
    /// change; `channel_create` is for channels hosted here).
    async fn channel_put(&self, row: &ChannelRow) -> StoreResult<()>;
    /// The last hosted-event `seq` applied for a replicated channel (0 if none).
    async fn channel_last_seq(&self, channel: &ChannelId) -> StoreResult<u64>;
    /// Records the last applied `seq` (a lower one than recorded changes nothing, so two
    /// instances applying retried deliveries never move it back). The channel must be stored
    /// (`channel_put`) first; for an unknown channel this fails with a `Database` error (a
    /// foreign key).
    async fn channel_set_last_seq(&self, channel: &ChannelId, seq: u64) -> StoreResult<()>;

    // ---- federation: outbox ----
    /// Appends events to the outbox, atomically, keeping their order per destination.
    async fn outbox_push(&self, items: &[OutboxItem], now: u64) -> StoreResult<()> {
        let write = Write::Outbox {
            items: items.to_vec(),
            txn: None,
        };
        self.commit_one(write, now).await.map(|_| ())
    }
    /// Applies `change` and appends `items`, in one transaction. Returns what the single
    /// operation would (`true` for `Nothing`, inserted/added/removed/found otherwise); on
    /// `false` (e.g. already a member, no such message) nothing is written, outbox included.
    /// A duplicate `Message` (same id, or same channel+sender+origin_id) is `Conflict`.
    async fn commit_hosted(
        &self,
        change: &HostedChange,
        items: &[OutboxItem],
        now: u64,
    ) -> StoreResult<bool> {
        let write = Write::Hosted {
            change: change.clone(),
            items: items.to_vec(),
            txn: None,
            order: None,
        };
        self.commit_one(write, now).await
    }
    /// One [`Write`] in a transaction of its own.
    async fn commit_one(&self, write: Write, now: u64) -> StoreResult<bool> {
        self.commit_writes(std::slice::from_ref(&write), now)
            .await?
            .pop()
            .unwrap_or(Ok(true))
    }
    /// Applies several callers' writes in one transaction (group commit): each succeeds or
    /// fails alone (see [`Write`] for what each returns); `Err` as a whole, with nothing
    /// written, only when the transaction itself fails.
    async fn commit_writes(
        &self,
        writes: &[Write],
        now: u64,
    ) -> StoreResult<Vec<StoreResult<bool>>>;
    /// The oldest pending events for `destination` as (outbox sequence number, event bytes),
    /// in push order, at most `limit`.
    async fn outbox_peek(
        &self,
        destination: &ServerName,
        limit: u32,
    ) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        self.outbox_peek_after(destination, 0, limit).await
    }
    /// [`outbox_peek`](Self::outbox_peek) from the first event after sequence number `after`.
    async fn outbox_peek_after(
        &self,
        destination: &ServerName,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<(u64, Vec<u8>)>>;
    /// Deletes delivered events by sequence number; returns how many.
    async fn outbox_remove(&self, destination: &ServerName, seqs: &[u64]) -> StoreResult<u64> {
        self.outbox_settle(destination, seqs, &[]).await
    }
    /// Deletes delivered events by sequence number and, in the same transaction, queues the
    /// failure notices of those the peer refused for good (a notice already queued is kept
    /// once). Returns how many events were deleted.
    async fn outbox_settle(
        &self,
        destination: &ServerName,
        seqs: &[u64],
        failures: &[DirectFailureRow],
    ) -> StoreResult<u64>;
    /// Destinations with pending events (to restart delivery workers at start-up).
    async fn outbox_destinations(&self) -> StoreResult<Vec<ServerName>>;
    /// Number of pending events for `destination`.
    async fn outbox_len(&self, destination: &ServerName) -> StoreResult<u64>;

    /// [`direct_enqueue_remote`](Self::direct_enqueue_remote) for several messages from one
    /// origin, committed together (one commit per federation transaction); each item is
    /// independent: `Ok(true)` queued, `Ok(false)` queued before, `Err(QueueFull | Conflict)`
    /// refused. An `Err` of the whole call means nothing was written.
    async fn direct_enqueue_remote_many(
        &self,
        origin: &ServerName,
        items: &[(DirectRow, MessageId)],
        max_queued: u32,
    ) -> StoreResult<Vec<StoreResult<bool>>>;

    // ---- federation: inbound idempotency ----
    /// Whether a transaction `(origin, txn_id)` was already processed.
    async fn txn_seen(&self, origin: &ServerName, txn_id: u64) -> StoreResult<bool>;
    /// Records a processed transaction (idempotent).
    async fn txn_record(&self, origin: &ServerName, txn_id: u64, now: u64) -> StoreResult<()>;
    /// Forgets transactions recorded before `cutoff`; returns how many.
    async fn txn_purge_before(&self, cutoff: u64) -> StoreResult<u64>;
    /// Queues a to-device message that arrived from `origin`, where the sender's server called
    /// it `origin_id`; `false` (and nothing written) if that pair was queued before. Respects
    /// the cap like `direct_enqueue` (`QueueFull`). The pair is remembered after the message is
    /// acknowledged, until it would have expired (`direct_purge_expired` forgets it then).
    async fn direct_enqueue_remote(
        &self,
        row: &DirectRow,
        origin: &ServerName,
        origin_id: MessageId,
        max_queued: u32,
    ) -> StoreResult<bool>;
}

/// The `server_meta` key of the server name the database was created under.
pub const META_SERVER_NAME: &str = "server_name";
/// The server key a managed server's instances serve (`server_meta` key).
pub const META_SERVER_KEY: &str = "server_key";

/// The `server_meta` key `/health` rewrites to prove that writes succeed.
pub const META_HEALTH_PROBE: &str = "health_probe";

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// Opens the store named by a `sqlite://…` or `postgres://…` URL and applies migrations.
pub async fn open(url: &str) -> StoreResult<SharedStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url).await?))
    } else {
        Ok(Arc::new(sqlite::SqliteStore::connect(url).await?))
    }
}

/// Opens the PostgreSQL database a managed server's instances share: the store, and the same
/// database as the [`ClusterStore`].
pub async fn open_cluster(url: &str) -> StoreResult<(SharedStore, Arc<dyn ClusterStore>)> {
    let pg = Arc::new(postgres::PgStore::connect(url).await?);
    Ok((pg.clone(), pg))
}

#[cfg(test)]
mod tests;
