//! `mobium-federation`: the homeserver ↔ homeserver protocol (spec `federation.md`).
//!
//! TEMPORARY API SKELETON: the real QUIC transport is being built on another branch and
//! replaces this file when it lands (this session). It exists so the homeserver's federation
//! logic can compile against the agreed API meanwhile; every network call fails cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mobium_spec::client::ErrorBody;
use mobium_spec::federation::{Ack, Query, QueryResult, Transaction};
use mobium_spec::{ErrorCode, Keypair, PublicKey, ServerName};

/// Settings of a federation endpoint.
pub struct FedConfig {
    /// This server's name.
    pub server_name: ServerName,
    /// This server's signing key (also its TLS identity).
    pub keypair: Keypair,
    /// UDP address to bind.
    pub bind: SocketAddr,
    /// How peers are found.
    pub discovery: DiscoveryConfig,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Accepted clock skew.
    pub timestamp_window: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

/// How `/.well-known/mobium` is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WellKnownMode {
    /// Over HTTPS.
    #[default]
    Https,
    /// Over plain HTTP (tests and testnets only).
    Http,
    /// Not at all.
    Off,
}

/// Discovery settings.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryConfig {
    /// DNS servers; empty = the system's.
    pub nameservers: Vec<SocketAddr>,
    /// Known peers.
    pub static_peers: Vec<StaticPeer>,
    /// Well-known lookups.
    pub well_known: WellKnownMode,
    /// How long failures are cached.
    pub negative_ttl: Duration,
}

/// A peer known from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPeer {
    /// Its name.
    pub name: ServerName,
    /// Its federation address.
    pub addr: SocketAddr,
    /// Its server key.
    pub key: PublicKey,
}

/// Where a peer is and which key it must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Federation address.
    pub addr: SocketAddr,
    /// Server key.
    pub key: PublicKey,
}

/// What the homeserver does with verified requests.
#[async_trait::async_trait]
pub trait FederationHandler: Send + Sync + 'static {
    /// A verified transaction.
    async fn transaction(
        &self,
        origin: &ServerName,
        txn_id: u64,
        txn: Transaction,
    ) -> Result<Ack, ErrorBody>;
    /// A verified query.
    async fn query(&self, origin: &ServerName, query: Query) -> Result<QueryResult, ErrorBody>;
    /// A peer connected.
    fn peer_connected(&self, peer: &ServerName) {
        let _ = peer;
    }
    /// A request was refused before reaching the handler.
    fn rejected(&self, code: ErrorCode) {
        let _ = code;
    }
}

/// Federation failures.
#[derive(Debug, thiserror::Error)]
pub enum FedError {
    /// The name could not be resolved.
    #[error("discovery: {0}")]
    Discovery(String),
    /// The peer could not be reached.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The peer refused the request.
    #[error("rejected: {}", .0.code)]
    Rejected(ErrorBody),
    /// The peer spoke nonsense.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A federation endpoint.
#[derive(Clone)]
pub struct Federation {
    name: ServerName,
    addr: SocketAddr,
    _handler: Arc<dyn FederationHandler>,
}

impl Federation {
    /// Starts the endpoint.
    pub async fn start(
        config: FedConfig,
        handler: Arc<dyn FederationHandler>,
    ) -> Result<Federation, FedError> {
        Ok(Federation {
            name: config.server_name,
            addr: config.bind,
            _handler: handler,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// This server's name.
    pub fn server_name(&self) -> &ServerName {
        &self.name
    }

    /// Sends a transaction.
    pub async fn send_transaction(
        &self,
        destination: &ServerName,
        txn: Transaction,
    ) -> Result<Ack, FedError> {
        let _ = txn;
        Err(FedError::Unreachable(format!(
            "{destination}: transport not built yet"
        )))
    }

    /// Sends a query.
    pub async fn query(
        &self,
        destination: &ServerName,
        query: Query,
    ) -> Result<QueryResult, FedError> {
        let _ = query;
        Err(FedError::Unreachable(format!(
            "{destination}: transport not built yet"
        )))
    }

    /// Resolves a name.
    pub async fn resolve(&self, name: &ServerName) -> Result<PeerInfo, FedError> {
        Err(FedError::Discovery(format!(
            "{name}: transport not built yet"
        )))
    }

    /// Closes the endpoint.
    pub async fn shutdown(&self) {}
}
