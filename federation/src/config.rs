//! Configuration of a federation endpoint and of discovery.
//!
//! Plain structs with working defaults: a homeserver builds them from its own (TOML/env) config,
//! the testnet and the tests build them directly. Nothing here does I/O.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mobium_spec::federation::{DEFAULT_FED_PORT, MAX_FRAME_BYTES, TIMESTAMP_WINDOW_MS};
use mobium_spec::{Keypair, PublicKey, ServerName};

/// Default time a requester waits for an answer (connecting included).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a failed discovery is remembered (spec: 30 s).
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);

/// Everything [`Federation::start`](crate::Federation::start) needs.
#[derive(Debug, Clone)]
pub struct FedConfig {
    /// This server's name: requests to any other destination are refused.
    pub server_name: ServerName,
    /// The server's Ed25519 signing key; its public half is also the TLS identity.
    pub keypair: Keypair,
    /// UDP address to listen on; port 0 picks a free one (see
    /// [`Federation::local_addr`](crate::Federation::local_addr)).
    pub bind: SocketAddr,
    /// How peers' addresses and keys are found.
    pub discovery: DiscoveryConfig,
    /// Largest frame (envelope bytes, without the length prefix) accepted; default
    /// [`MAX_FRAME_BYTES`].
    pub max_frame: usize,
    /// Largest accepted difference between a request's `ts` and our clock; default
    /// [`TIMESTAMP_WINDOW_MS`]. Also how long answered requests are remembered for replays.
    pub timestamp_window: Duration,
    /// How long a request may take end to end before [`FedError::Timeout`](crate::FedError::Timeout);
    /// default 10 s.
    pub request_timeout: Duration,
    /// Which instance of its server this endpoint is (0-1023; 0 for a server of one process):
    /// the instances of a managed server share one name, and this keeps their `txn_id`s apart.
    pub instance: u16,
}

impl FedConfig {
    /// A configuration with the defaults: listen on `0.0.0.0:8448`, system DNS, well-known over
    /// HTTPS, no static peers, spec limits.
    pub fn new(server_name: ServerName, keypair: Keypair) -> Self {
        FedConfig {
            server_name,
            keypair,
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_FED_PORT)),
            discovery: DiscoveryConfig::default(),
            max_frame: MAX_FRAME_BYTES,
            timestamp_window: Duration::from_millis(TIMESTAMP_WINDOW_MS),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            instance: 0,
        }
    }
}

/// Where discovery looks, in this order: [`static_peers`](Self::static_peers), DNS, well-known
/// (spec `federation.md` §Discovery, with static peers moved first).
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// DNS servers to ask (UDP, falling back to TCP, on the given ports). Empty: the system's
    /// resolver configuration (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Peers configured by the operator. A name listed here is never looked up elsewhere.
    pub static_peers: Vec<StaticPeer>,
    /// Whether and how `/.well-known/mobium` is fetched when DNS has nothing.
    pub well_known: WellKnownMode,
    /// How long a failed discovery is remembered before trying again; default 30 s. Positive
    /// results are kept for their DNS TTL or HTTP `max-age`, clamped to 60 s – 24 h, but one older
    /// than this is discovered afresh when its peer presents another key (key rotation).
    pub negative_ttl: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            nameservers: Vec::new(),
            static_peers: Vec::new(),
            well_known: WellKnownMode::Https,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
        }
    }
}

/// A peer whose address and key come from configuration (testnets, air-gapped networks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPeer {
    /// Its server name.
    pub name: ServerName,
    /// Its federation (UDP) address.
    pub addr: SocketAddr,
    /// Its Ed25519 server key.
    pub key: PublicKey,
}

/// How the `/.well-known/mobium` discovery source is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WellKnownMode {
    /// `https://<name>/.well-known/mobium` with web PKI checks (the spec's source).
    #[default]
    Https,
    /// `http://<name>/.well-known/mobium`, unauthenticated: only for tests and local testnets.
    Http,
    /// The well-known source is skipped.
    Off,
}
