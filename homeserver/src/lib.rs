//! `mobium-homeserver`: the composition root of a Mobium homeserver.
//!
//! Layers inside this crate, bottom to top: [`config`] (settings), [`storage`] (SQL only),
//! the domain logic that enforces the protocol's rules, and the server that wires the
//! client API transport (crate `mobium-client-api`) to them.

pub mod config;
pub mod datadir;
pub mod domain;
pub mod fed;
pub mod http;
pub mod hub;
pub mod keyfile;
pub mod metrics;
pub mod preflight;
pub mod ratelimit;
pub mod server;
pub mod storage;
