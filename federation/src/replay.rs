//! Replay protection: answered requests remembered by `(origin, txn_id)` (spec `federation.md`
//! §Validation, step 7).
//!
//! A request that passed the signature and timestamp checks is looked up here before the handler
//! sees it. The first arrival of a key takes the key's slot lock, runs the handler and stores the
//! answer; a replay (or a copy arriving concurrently, which waits on the same lock) gets the stored
//! answer and the handler is not called again.
//!
//! Only `ack` and `result` answers are stored. An `error` means nothing was applied, so a retry of
//! the same `txn_id` (the outbox does exactly that) is processed afresh rather than refused for
//! the rest of the window.
//!
//! Entries live for twice the timestamp window: a frame may carry a timestamp up to one window in
//! the future and is then acceptable for two windows after it arrived. Beyond that the timestamp
//! check refuses the frame (`fed_stale`) before this cache is consulted. The cache is bounded;
//! when full the oldest entries go first. The homeserver's own per-transaction record (kept 24 h)
//! and the idempotency of every durable event cover what falls out of it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mobium_spec::ServerName;
use mobium_spec::federation::FedResponseBody;

/// Default number of remembered requests.
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;

/// The stored answer of one `(origin, txn_id)`: `None` while the first copy is being handled or if
/// it ended without a storable answer.
pub(crate) type Slot = tokio::sync::Mutex<Option<FedResponseBody>>;

type Key = (ServerName, u64);

/// The bounded replay cache.
pub(crate) struct ReplayCache {
    retention: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<Key, Arc<Slot>>,
    /// Insertion order, for expiry and eviction.
    order: VecDeque<(Key, Instant)>,
}

impl ReplayCache {
    /// A cache keeping entries for `2 × window`, at most `capacity` of them.
    pub fn new(window: Duration, capacity: usize) -> Self {
        ReplayCache {
            retention: window.saturating_mul(2),
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The slot of `(origin, txn_id)`, created empty if the key is new.
    pub fn slot(&self, origin: &ServerName, txn_id: u64) -> Arc<Slot> {
        self.slot_at(origin, txn_id, Instant::now())
    }

    fn slot_at(&self, origin: &ServerName, txn_id: u64, now: Instant) -> Arc<Slot> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((_, at)) = inner.order.front() {
            if now.duration_since(*at) <= self.retention && inner.order.len() < self.capacity {
                break;
            }
            if let Some((key, _)) = inner.order.pop_front() {
                inner.slots.remove(&key);
            }
        }
        let key = (origin.clone(), txn_id);
        if let Some(slot) = inner.slots.get(&key) {
            return slot.clone();
        }
        let slot = Arc::new(Slot::new(None));
        inner.slots.insert(key.clone(), slot.clone());
        inner.order.push_back((key, now));
        slot
    }

    /// Number of remembered keys.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .slots
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobium_spec::federation::Ack;

    fn name() -> ServerName {
        "alpha.test".parse().expect("name")
    }

    #[tokio::test]
    async fn stored_answers_are_found_again() {
        let cache = ReplayCache::new(Duration::from_secs(60), 10);
        *cache.slot(&name(), 1).lock().await = Some(FedResponseBody::Ack(Ack::default()));
        assert!(cache.slot(&name(), 1).lock().await.is_some());
        assert!(cache.slot(&name(), 2).lock().await.is_none());
    }

    #[tokio::test]
    async fn oldest_entries_are_evicted_when_full() {
        let cache = ReplayCache::new(Duration::from_secs(60), 3);
        for id in 0..5 {
            *cache.slot(&name(), id).lock().await = Some(FedResponseBody::Ack(Ack::default()));
        }
        assert!(cache.len() <= 3);
        assert!(cache.slot(&name(), 0).lock().await.is_none());
        assert!(cache.slot(&name(), 4).lock().await.is_some());
    }

    #[tokio::test]
    async fn entries_expire() {
        let cache = ReplayCache::new(Duration::from_secs(1), 10);
        *cache.slot(&name(), 1).lock().await = Some(FedResponseBody::Ack(Ack::default()));
        let later = Instant::now() + Duration::from_millis(1500);
        assert!(cache.slot_at(&name(), 1, later).lock().await.is_some());
        let much_later = Instant::now() + Duration::from_secs(3);
        assert!(cache.slot_at(&name(), 1, much_later).lock().await.is_none());
    }
}
