//! `mobium-federation`: the homeserver ↔ homeserver transport (spec `federation.md`).
//!
//! A [`Federation`] is one QUIC endpoint (quinn, ALPN `mobium-fed/1`) that both dials other
//! homeservers and accepts their connections. Everything a homeserver needs from the network side
//! of federation lives here, and nothing of its domain logic:
//!
//! - **Transport and identity** (`quic/tls.rs`): each side presents a self-signed
//!   certificate whose key *is* its Ed25519 server key; the dialler accepts the peer only if that
//!   key is the one discovery returned for the name it dialled, and the acceptor checks every
//!   request's `origin` against the key of the client certificate. No web PKI.
//! - **Framing**: one bidirectional stream per request, a 4-byte big-endian length and a
//!   MessagePack [`SignedEnvelope`](mobium_spec::SignedEnvelope) each way.
//! - **Validation** (`protocol.rs`, free of I/O and tested with a fake clock; the QUIC side in
//!   `quic/`) of incoming requests in the spec's order (size, decode, destination, origin
//!   key, signature, timestamp, replay), each refusal answered with a signed error.
//! - **Discovery** of a server name: static peers, then DNS (SRV + TXT), then `/.well-known/mobium`,
//!   with a positive and a negative cache.
//!
//! The homeserver implements [`FederationHandler`] (one method per kind of request, called only with
//! verified requests) and sends with [`Federation::send_transaction`] and [`Federation::query`].
//! Durable delivery (the outbox and its retries) is the homeserver's: this crate makes one attempt
//! per call (with one transparent reconnect when a pooled connection turns out to be dead).

mod config;
mod discovery;
mod error;
mod handler;
mod node;
mod protocol;
mod quic;
mod replay;
mod stats;
mod wellknown;

pub use config::{
    DEFAULT_NEGATIVE_TTL, DEFAULT_REQUEST_TIMEOUT, DiscoveryConfig, FedConfig, StaticPeer,
    WellKnownMode,
};
pub use discovery::{PeerInfo, lookup_dns};
pub use error::FedError;
pub use handler::FederationHandler;
pub use node::Federation;
pub use stats::FedStats;

/// The wire types this crate moves, re-exported for convenience.
pub use mobium_spec::federation::{
    ALPN, Ack, FedBody, FedRequest, FedResponse, FedResponseBody, MAX_FRAME_BYTES, Query,
    QueryResult, TIMESTAMP_WINDOW_MS, Transaction,
};

/// The current Unix time in milliseconds (0 if the clock is before 1970, which only a broken
/// clock reports; such a node's frames are then refused as stale by its peers).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
