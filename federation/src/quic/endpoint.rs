//! The state one federation endpoint shares between its public handle ([`crate::Federation`]),
//! the requesting side ([`crate::outbound`]) and the responding side ([`crate::inbound`]): the
//! quinn endpoint, identity, discovery, connection pool, replay cache and counters, plus the QUIC
//! transport settings. Both sides import this module; neither imports the other or the handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mobium_spec::{Keypair, ServerName};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use tokio::sync::Notify;

use crate::discovery::Discovery;
use crate::quic::pool::Pool;
use crate::quic::tls::Identity;
use crate::replay::ReplayCache;
use crate::stats::Counters;

/// Connections without traffic are closed after this long.
pub(crate) const IDLE_TIMEOUT_MS: u32 = 60_000;
/// Keep-alive interval of outgoing connections (well under the idle timeout).
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Concurrent request streams a peer may open on one connection.
pub(crate) const MAX_STREAMS: u32 = 256;

/// State shared by the handle, the accept loop and the request tasks.
pub(crate) struct Inner {
    pub name: ServerName,
    pub keypair: Keypair,
    pub endpoint: quinn::Endpoint,
    pub local_addr: SocketAddr,
    pub identity: Identity,
    pub transport: Arc<TransportConfig>,
    pub discovery: Discovery,
    pub pool: Pool,
    pub replay: ReplayCache,
    pub counters: Arc<Counters>,
    pub max_frame: usize,
    pub window: Duration,
    pub request_timeout: Duration,
    pub shutting_down: AtomicBool,
    pub in_flight: InFlight,
    pub txn_ids: TxnIds,
}

/// Bits of a generated `txn_id` below the millisecond timestamp: the instance, then a counter.
const TXN_INSTANCE_BITS: u32 = 10;
const TXN_COUNTER_BITS: u32 = 12;

/// Hands out `txn_id`s unique per origin across restarts and across the instances of one
/// server (spec `federation.md` §Envelope): `ms << 22 | instance << 12 | counter`, where `ms`
/// starts at the start time and advances by one every 4096 ids. Ids never repeat as long as a
/// run hands out fewer than 4096 per millisecond of its uptime on average.
pub struct TxnIds {
    start_ms: u64,
    instance: u64,
    counter: AtomicU64,
}

impl TxnIds {
    pub fn new(start_ms: u64, instance: u16) -> Self {
        TxnIds {
            start_ms,
            instance: u64::from(instance) & ((1 << TXN_INSTANCE_BITS) - 1),
            counter: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let ms = self.start_ms + (n >> TXN_COUNTER_BITS);
        (ms << (TXN_INSTANCE_BITS + TXN_COUNTER_BITS))
            | (self.instance << TXN_COUNTER_BITS)
            | (n & ((1 << TXN_COUNTER_BITS) - 1))
    }
}

impl Inner {
    /// A fresh `txn_id` ([`TxnIds`]).
    pub fn next_txn_id(&self) -> u64 {
        self.txn_ids.next()
    }
}

/// Count of incoming requests being processed, for a graceful shutdown.
#[derive(Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Marks one incoming request as being processed until dropped.
pub(crate) struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self)
    }

    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

pub(crate) fn transport_config(max_frame: usize) -> TransportConfig {
    let window =
        VarInt::from_u32(u32::try_from(max_frame.clamp(1 << 20, 16 << 20)).unwrap_or(16 << 20));
    let mut transport = TransportConfig::default();
    transport
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))))
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(window)
        .receive_window(VarInt::from_u32(32 << 20))
        .send_window(32 << 20);
    transport
}

#[cfg(test)]
mod tests {
    use super::TxnIds;

    #[test]
    fn txn_ids_of_two_instances_started_together_never_meet() {
        let (a, b) = (
            TxnIds::new(1_700_000_000_000, 1),
            TxnIds::new(1_700_000_000_000, 2),
        );
        let mut seen = std::collections::HashSet::new();
        let mut last = 0;
        for _ in 0..10_000 {
            let id = a.next();
            assert!(id > last, "ids of one run increase");
            last = id;
            assert!(seen.insert(id));
            assert!(seen.insert(b.next()));
        }
        // A later start of the same instance begins above what the first run handed out in
        // its first 10,000 ids (fewer than 4096 per millisecond of uptime).
        let restart = TxnIds::new(1_700_000_000_003, 1);
        assert!(restart.next() > last);
    }
}
