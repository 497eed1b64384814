//! The federation endpoint ([`Federation`]): bind, serve, the public sending API, stats and
//! shutdown.
//!
//! One quinn endpoint per server both accepts (`quic/inbound.rs`) and dials (`quic/outbound.rs`). The shared
//! state lives in [`Inner`](crate::quic::endpoint::Inner); [`Federation`] is a cheap handle to it.
//! Like quinn's `Endpoint` and its `accept()`, binding and serving are two steps: [`bind`]
//! returns the sending handle (so the homeserver can build its state around it), and [`serve`]
//! then runs the accept loop with the handler. The accept loop holds the handler, not the
//! endpoint state, so a handler that owns the sending handle makes no reference cycle: when the
//! endpoint is closed (shutdown, or the last handle dropped) the accept loop and every connection
//! task end and drop the handler.
//!
//! [`bind`]: Federation::bind
//! [`serve`]: Federation::serve

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mobium_spec::federation::Transaction;
use mobium_spec::federation::{Ack, FedBody, FedResponse, FedResponseBody, Query, QueryResult};
use mobium_spec::{ServerName, SignedEnvelope};
use quinn::VarInt;
use quinn::crypto::rustls::QuicServerConfig;

use crate::config::FedConfig;
use crate::discovery::{Discovery, PeerInfo};
use crate::error::FedError;
use crate::handler::FederationHandler;
use crate::now_ms;
use crate::quic::endpoint::{InFlight, Inner, TxnIds, transport_config};
use crate::quic::inbound;
use crate::quic::pool::Pool;
use crate::quic::tls::{self, Identity};
use crate::replay::{self, ReplayCache};
use crate::stats::FedStats;

/// How long shutdown waits for requests being handled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for connections to close cleanly.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A federation endpoint: accepts other servers' requests and sends ours. Cheap to clone.
#[derive(Clone)]
pub struct Federation {
    inner: Arc<Inner>,
    _close: Arc<CloseOnDrop>,
    serving: Arc<AtomicBool>,
}

/// Closes the endpoint when the last [`Federation`] handle goes away.
struct CloseOnDrop(quinn::Endpoint);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(VarInt::from_u32(0), b"dropped");
    }
}

impl Federation {
    /// [`bind`](Self::bind) and [`serve`](Self::serve) in one step.
    pub async fn start(
        config: FedConfig,
        handler: Arc<dyn FederationHandler>,
    ) -> Result<Federation, FedError> {
        let federation = Federation::bind(config)?;
        federation.serve(handler);
        Ok(federation)
    }

    /// Binds the UDP socket and generates the TLS certificate from the server key. The handle
    /// can send at once; incoming connections wait (in quinn's queue) until [`serve`](Self::serve)
    /// is called. Fails with [`FedError::Unreachable`] if the address cannot be bound.
    pub fn bind(config: FedConfig) -> Result<Federation, FedError> {
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
            counters: Arc::default(),
            max_frame: config.max_frame,
            window: config.timestamp_window,
            request_timeout: config.request_timeout,
            shutting_down: AtomicBool::new(false),
            in_flight: InFlight::default(),
            txn_ids: TxnIds::new(now_ms(), config.instance),
        });
        tracing::info!(server = %inner.name, addr = %local_addr, key = %inner.keypair.public(), "federation endpoint bound");
        Ok(Federation {
            inner,
            _close: Arc::new(CloseOnDrop(endpoint)),
            serving: Arc::default(),
        })
    }

    /// Starts answering other servers' requests with `handler` (once; a second call is ignored
    /// with a warning). The accept loop runs until the endpoint is closed.
    pub fn serve(&self, handler: Arc<dyn FederationHandler>) {
        if self.serving.swap(true, Ordering::SeqCst) {
            tracing::warn!(server = %self.inner.name, "federation endpoint already serving");
            return;
        }
        tracing::info!(server = %self.inner.name, addr = %self.inner.local_addr, "federation endpoint serving");
        tokio::spawn(inbound::accept_loop(self.inner.clone(), handler));
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
