//! What the instances of a managed server share through PostgreSQL besides the data itself
//! (spec `managed.md`): instance-id leases, per-destination outbox leases, who is online on which
//! instance, the cluster-wide rate-limit buckets, and each hosted channel's order lock.
//!
//! Only the PostgreSQL backend implements it ([`Store::cluster`](super::Store::cluster)); a
//! managed server refuses SQLite at start-up.

use mobium_spec::{ChannelId, PublicKey, ServerName};

use super::StoreResult;

/// A held order lock of one hosted channel, across every instance: while it lives, no other
/// instance commits a change to the channel. Dropping it lets go (its transaction rolls back).
pub struct ChannelLock {
    /// The last `seq` committed for the channel (0 if none recorded).
    pub last_seq: u64,
    /// The permission epoch when the lock was taken: a change to it since the instance last
    /// looked means its cached permissions may be stale.
    pub epoch: i64,
    /// What holds the lock (a transaction), kept until drop.
    _held: std::sync::Mutex<Box<dyn Send>>,
}

impl ChannelLock {
    /// A lock held by `held` (dropped to release it).
    pub fn new(last_seq: u64, epoch: i64, held: Box<dyn Send>) -> Self {
        ChannelLock {
            last_seq,
            epoch,
            _held: std::sync::Mutex::new(held),
        }
    }
}

/// A user's session on another live instance, as [`ClusterStore::presence_elsewhere`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSession {
    /// The instance.
    pub instance: u16,
    /// The status the user chose there (`None`: none chosen).
    pub status: Option<String>,
}

/// The shared state of a managed server's instances.
#[async_trait::async_trait]
pub trait ClusterStore: Send + Sync {
    /// Leases instance id `wanted` (or, if `None`, the lowest free one) to `holder` until
    /// `now + ttl_ms`; an id is free when unleased or its lease expired. `None`: `wanted` is
    /// held by a live instance, or every id is.
    async fn instance_take(
        &self,
        wanted: Option<u16>,
        holder: &str,
        now: u64,
        ttl_ms: u64,
    ) -> StoreResult<Option<u16>>;
    /// Extends `holder`'s lease of `id` to `now + ttl_ms`; `false` when it lost the lease (it
    /// expired and another instance took the id).
    async fn instance_renew(
        &self,
        id: u16,
        holder: &str,
        now: u64,
        ttl_ms: u64,
    ) -> StoreResult<bool>;
    /// Ends `holder`'s lease of `id` and everything it held (outbox leases, presence rows).
    async fn instance_release(&self, id: u16, holder: &str) -> StoreResult<()>;

    /// Takes `channel`'s order lock, waiting for the instance that holds it.
    async fn channel_lock(&self, channel: &ChannelId) -> StoreResult<ChannelLock>;

    /// Takes or renews the lease of `destination`'s outbox for `holder` (instance `instance`)
    /// until `now + ttl_ms`; `false` while another live instance holds it.
    async fn outbox_lease(
        &self,
        destination: &ServerName,
        instance: u16,
        holder: &str,
        now: u64,
        ttl_ms: u64,
    ) -> StoreResult<bool>;

    /// Records that `user` has a session on this instance, with the status they chose.
    async fn presence_put(
        &self,
        user: &PublicKey,
        instance: u16,
        holder: &str,
        status: Option<&str>,
    ) -> StoreResult<()>;
    /// Sets the chosen status of every session of `user`, on every instance.
    async fn presence_set_status(&self, user: &PublicKey, status: &str) -> StoreResult<()>;
    /// Records that `user`'s session on this instance ended.
    async fn presence_remove(&self, user: &PublicKey, instance: u16) -> StoreResult<()>;
    /// `user`'s sessions on live instances other than `instance`.
    async fn presence_elsewhere(
        &self,
        user: &PublicKey,
        instance: u16,
        now: u64,
    ) -> StoreResult<Vec<RemoteSession>>;

    /// Takes one token from `user`'s cluster-wide bucket (refilled at `per_sec`, at most
    /// `burst`); `false` when it is empty.
    async fn rate_take(
        &self,
        user: &PublicKey,
        now: u64,
        per_sec: u32,
        burst: u32,
    ) -> StoreResult<bool>;
}
