//! The federation endpoint ([`Federation`]): start, public sending API, stats and shutdown.
//!
//! One quinn endpoint per server both accepts (`inbound.rs`) and dials (`outbound.rs`). The shared
//! state lives in [`Inner`]; [`Federation`] is a cheap handle to it. When the last handle is
//! dropped the endpoint is closed, which ends the accept loop and every connection task, so no
//! background task outlives its owner.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mobium_spec::federation::Transaction;
use mobium_spec::federation::{Ack, FedBody, FedResponse, FedResponseBody, Query, QueryResult};
use mobium_spec::{Keypair, ServerName, SignedEnvelope};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{IdleTimeout, TransportConfig, VarInt};
use tokio::sync::Notify;

use crate::config::FedConfig;
use crate::discovery::{Discovery, PeerInfo};
use crate::error::FedError;
use crate::handler::FederationHandler;
use crate::pool::Pool;
use crate::replay::{self, ReplayCache};
use crate::stats::{Counters, FedStats};
use crate::tls::{self, Identity};
use crate::{inbound, now_ms};

/// Connections without traffic are closed after this long.
const IDLE_TIMEOUT_MS: u32 = 60_000;
/// Keep-alive interval of outgoing connections (well under the idle timeout).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Concurrent request streams a peer may open on one connection.
const MAX_STREAMS: u32 = 256;
/// How long shutdown waits for requests being handled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for connections to close cleanly.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Bits of a generated `txn_id` below the millisecond timestamp.
const TXN_COUNTER_BITS: u32 = 20;

/// A federation endpoint: accepts other servers' requests and sends ours. Cheap to clone.
#[derive(Clone)]
pub struct Federation {
    inner: Arc<Inner>,
    _close: Arc<CloseOnDrop>,
}

/// Closes the endpoint when the last [`Federation`] handle goes away.
struct CloseOnDrop(quinn::Endpoint);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(VarInt::from_u32(0), b"dropped");
    }
}

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
    pub handler: Arc<dyn FederationHandler>,
    pub counters: Arc<Counters>,
    pub max_frame: usize,
    pub window: Duration,
    pub request_timeout: Duration,
    pub shutting_down: AtomicBool,
    pub in_flight: InFlight,
    next_txn: AtomicU64,
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

    async fn drained(&self) {
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

fn transport_config(max_frame: usize) -> TransportConfig {
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

impl Federation {
    /// Binds the UDP socket, generates the TLS certificate from the server key and starts
    /// accepting connections. Fails with [`FedError::Unreachable`] if the address cannot be bound.
    pub async fn start(
        config: FedConfig,
        handler: Arc<dyn FederationHandler>,
    ) -> Result<Federation, FedError> {
        let identity =
            Identity::new(&config.keypair, &config.server_name).map_err(FedError::Protocol)?;
        let server_crypto = identity.server_config().map_err(FedError::Protocol)?;
        let server_crypto = QuicServerConfig::try_from(server_crypto)
            .map_err(|e| FedError::Protocol(format!("QUIC TLS config: {e}")))?;
        let transport = Arc::new(transport_config(config.max_frame));
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server_config.transport_config(transport.clone());

        let bind_error =
            |e: std::io::Error| FedError::Unreachable(format!("bind {}: {e}", config.bind));
        let socket = std::net::UdpSocket::bind(config.bind).map_err(bind_error)?;
        socket.set_nonblocking(true).map_err(bind_error)?;
        let endpoint_config = tls::endpoint_config(&config.keypair);
        let endpoint = quinn::Endpoint::new(
            endpoint_config,
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error)?;
        let local_addr = endpoint.local_addr().map_err(bind_error)?;

        let inner = Arc::new(Inner {
            discovery: Discovery::new(&config.discovery),
            name: config.server_name,
            keypair: config.keypair,
            endpoint: endpoint.clone(),
            local_addr,
            identity,
            transport,
            pool: Pool::default(),
            replay: ReplayCache::new(config.timestamp_window, replay::DEFAULT_CAPACITY),
            handler,
            counters: Arc::default(),
            max_frame: config.max_frame,
            window: config.timestamp_window,
            request_timeout: config.request_timeout,
            shutting_down: AtomicBool::new(false),
            in_flight: InFlight::default(),
            next_txn: AtomicU64::new(now_ms() << TXN_COUNTER_BITS),
        });
        tracing::info!(server = %inner.name, addr = %local_addr, key = %inner.keypair.public(), "federation endpoint started");
        tokio::spawn(inbound::accept_loop(inner.clone()));
        Ok(Federation {
            inner,
            _close: Arc::new(CloseOnDrop(endpoint)),
        })
    }

    /// The bound UDP address (with the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// This server's name.
    pub fn server_name(&self) -> &ServerName {
        &self.inner.name
    }

    /// Sends a transaction (fresh unique txn_id, unique across restarts too) and returns the
    /// verified Ack.
    pub async fn send_transaction(
        &self,
        destination: &ServerName,
        txn: Transaction,
    ) -> Result<Ack, FedError> {
        let txn_id = self.inner.next_txn_id();
        self.send_transaction_with_id(destination, txn_id, txn)
            .await
    }

    /// Sends a transaction under a `txn_id` chosen by the caller, for an outbox that resends the
    /// same id on retry (spec `federation.md` §The outbox). The caller keeps ids unique per
    /// destination; [`next_txn_id`](Self::next_txn_id) hands out ids that never repeat.
    pub async fn send_transaction_with_id(
        &self,
        destination: &ServerName,
        txn_id: u64,
        txn: Transaction,
    ) -> Result<Ack, FedError> {
        match self
            .inner
            .send_request(destination, txn_id, FedBody::Transaction(txn))
            .await?
        {
            FedResponseBody::Ack(ack) => Ok(ack),
            other => Err(FedError::Protocol(format!(
                "a transaction was answered with {}",
                body_kind(&other)
            ))),
        }
    }

    /// Sends a query and returns its verified result.
    pub async fn query(
        &self,
        destination: &ServerName,
        query: Query,
    ) -> Result<QueryResult, FedError> {
        let txn_id = self.inner.next_txn_id();
        match self
            .inner
            .send_request(destination, txn_id, FedBody::Query(query))
            .await?
        {
            FedResponseBody::Result(result) => Ok(result),
            other => Err(FedError::Protocol(format!(
                "a query was answered with {}",
                body_kind(&other)
            ))),
        }
    }

    /// A fresh transaction id from the same generator [`send_transaction`](Self::send_transaction)
    /// uses (start time in ms × 2²⁰ + counter), for callers that record the id before sending.
    pub fn next_txn_id(&self) -> u64 {
        self.inner.next_txn_id()
    }

    /// Low-level / testing API: sends a hand-made envelope as one request frame over the pooled
    /// connection to `destination`, and returns the peer's answer after checking only that it is
    /// signed by `destination`'s key and comes from `destination` (not its `txn_id` or addressee:
    /// the envelope may be forged, misaddressed or unreadable on purpose). No size limit is
    /// applied to what is sent. Homeservers use [`send_transaction`](Self::send_transaction) and
    /// [`query`](Self::query).
    pub async fn send_envelope(
        &self,
        destination: &ServerName,
        envelope: SignedEnvelope,
    ) -> Result<FedResponse, FedError> {
        self.inner.send_envelope(destination, &envelope).await
    }

    /// Resolves a server name (cached) — exposed for diagnostics and the homeserver's metrics.
    pub async fn resolve(&self, name: &ServerName) -> Result<PeerInfo, FedError> {
        self.inner.discovery.resolve(name).await
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> FedStats {
        self.inner.counters.snapshot()
    }

    /// Closes the endpoint gracefully: new requests are answered `shutting_down`, requests being
    /// handled may finish (up to 5 s), then every connection is closed (waiting up to 3 s for the
    /// peers to be told).
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        if tokio::time::timeout(DRAIN_TIMEOUT, self.inner.in_flight.drained())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: requests still being handled, closing anyway");
        }
        self.inner
            .endpoint
            .close(VarInt::from_u32(0), b"shutting down");
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.inner.endpoint.wait_idle()).await;
        tracing::info!(server = %self.inner.name, "federation endpoint closed");
    }
}

/// The `type` of a response body, for error messages.
pub(crate) fn body_kind(body: &FedResponseBody) -> &'static str {
    match body {
        FedResponseBody::Ack(_) => "ack",
        FedResponseBody::Result(_) => "result",
        FedResponseBody::Error(_) => "error",
        _ => "an unknown answer type",
    }
}
