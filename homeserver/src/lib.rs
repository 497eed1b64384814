//! `mobium-homeserver`: the composition root of a Mobium homeserver.
//!
//! Layers inside this crate, bottom to top (each imports only from the floors below it):
//!
//! 1. [`config`] (settings), [`storage`] (SQL only), [`writer`] (group commit, the one write
//!    path callers are answered after), [`hub`] (live connections), [`metrics`], [`ratelimit`],
//!    [`keyfile`], [`datadir`];
//! 2. [`cluster`]: a managed server's instances (leases and locks in PostgreSQL, the NATS bus
//!    behind the hub);
//! 3. [`outbox`]: the sending side of federation (durable delivery to other servers; on a
//!    managed server, to the destinations whose lease this instance holds);
//! 4. [`domain`]: the protocol's rules, on top of storage and the outbox;
//! 5. the two edges that call into the domain: the client edge (`client_edge`, the
//!    `ClientHandler` the WebSocket transport calls) and the federation edge ([`fed`], the
//!    `FederationHandler` the QUIC transport calls), plus [`http`];
//! 6. [`preflight`] and [`server`], which wire the transports, the edges and the state together;
//!    beside them the operator's commands: [`backup`] (`mobium backup` / `restore`) and
//!    [`doctor`], over `storage::ops`;
//! 7. the `mobium` binary (`main.rs`, `cli/`).

pub mod backup;
mod client_edge;
pub mod cluster;
pub mod config;
pub mod datadir;
pub mod doctor;
pub mod domain;
pub mod fed;
pub mod http;
pub mod hub;
pub mod keyfile;
pub mod metrics;
pub mod outbox;
pub mod preflight;
pub mod ratelimit;
pub mod server;
pub mod storage;
pub mod writer;

/// Current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
