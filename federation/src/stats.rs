//! Counters for metrics ([`FedStats`]).
//!
//! Plain atomics updated on the hot path; [`Federation::stats`](crate::Federation::stats) copies
//! them into a snapshot that the homeserver renders as Prometheus text. Rejections are rare, so
//! their per-code map sits behind a mutex.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use mobium_spec::ErrorCode;

/// A snapshot of a federation endpoint's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FedStats {
    /// Requests this server sent (one per call of a sending method, retries not counted twice).
    pub requests_sent: u64,
    /// Sent requests that ended without a verified answer (unreachable, timeout, protocol).
    pub requests_failed: u64,
    /// Request frames received on incoming streams, accepted or not.
    pub requests_received: u64,
    /// Received requests answered from the replay cache without calling the handler.
    pub replays: u64,
    /// Received requests refused before reaching the handler, by code.
    pub rejected: HashMap<ErrorCode, u64>,
    /// Incoming connections currently open.
    pub connections_in: u64,
    /// Outgoing (pooled) connections currently open.
    pub connections_out: u64,
}

impl FedStats {
    /// How many received requests were refused with `code`.
    pub fn rejected_with(&self, code: ErrorCode) -> u64 {
        self.rejected.get(&code).copied().unwrap_or(0)
    }
}

/// The live counters behind [`FedStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests_sent: AtomicU64,
    pub requests_failed: AtomicU64,
    pub requests_received: AtomicU64,
    pub replays: AtomicU64,
    pub connections_in: AtomicU64,
    pub connections_out: AtomicU64,
    rejected: Mutex<HashMap<ErrorCode, u64>>,
}

impl Counters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn reject(&self, code: ErrorCode) {
        let mut map = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(code).or_default() += 1;
    }

    pub fn snapshot(&self) -> FedStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FedStats {
            requests_sent: get(&self.requests_sent),
            requests_failed: get(&self.requests_failed),
            requests_received: get(&self.requests_received),
            replays: get(&self.replays),
            rejected: self
                .rejected
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            connections_in: get(&self.connections_in),
            connections_out: get(&self.connections_out),
        }
    }
}
