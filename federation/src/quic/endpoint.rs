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
    pub next_txn: AtomicU64,
}

impl Inner {
    /// A fresh `txn_id`: the start time in milliseconds shifted left by 20 bits, plus a counter, so
    /// ids grow across restarts as long as fewer than a million requests per millisecond of uptime
    /// were sent.
    pub fn next_txn_id(&self) -> u64 {
        self.next_txn.fetch_add(1, Ordering::Relaxed)
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
