//! Integration tests of the homeserver: real servers on port 0, real databases, real WebSockets.
//! One test binary for the crate (each extra binary costs a link of the whole stack).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

mod admin;
mod auth;
mod backup;
mod channels;
mod client_cli;
mod cluster;
mod cluster_chaos;
mod compose;
mod deploy;
mod direct;
mod doctor;
mod durability;
mod e2ee;
mod fed_delivery;
mod federation;
mod http;
mod keys;
mod logging;
mod member_servers;
mod pipeline;
mod presence;
mod proxy;
mod races;
mod sdk;
mod startup;
mod systemd;
mod transport;
mod txn;
