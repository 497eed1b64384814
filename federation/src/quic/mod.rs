//! The QUIC transport of federation (spec `federation.md` §Transport, §Framing): one quinn
//! endpoint per server that both accepts and dials, mutual TLS whose certificates carry the
//! servers' Ed25519 keys, one bidirectional stream per request with a length-prefixed frame
//! each way, and a pool of outgoing connections.
//!
//! What this folder adds to the I/O-free [`protocol`](crate::protocol) core is only I/O:
//! reading and writing frames, handshakes, connection reuse and liveness, the discovery lookup
//! of validation step 4, the replay cache and the handler call. A second transport (the libp2p
//! overlay) is a sibling folder that runs the same core.

pub(crate) mod endpoint;
pub(crate) mod frame;
pub(crate) mod inbound;
pub(crate) mod outbound;
pub(crate) mod pool;
pub(crate) mod tls;
