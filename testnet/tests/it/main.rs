//! Integration tests of the testnet: real networks started through the library (not the CLI),
//! on OS-chosen ports in temporary directories.
//!
//! - [`dns`]: the daemon's zone answers SRV, TXT and A queries as discovery expects, over UDP
//!   and TCP; the control channel cuts and heals links.
//! - [`lifecycle`]: `up` then `down` leaves no process behind, with the daemon detached as the
//!   CLI runs it; kill and restart keep a node's key and ports.
//! - [`scenarios`]: the `dm` and `partition` scenarios pass on a three-node network.
//!
//! Tests that run homeservers need the `mobium` binary: `cargo test --workspace` builds it into
//! the same target directory; alone, run `cargo build -p mobium-homeserver` first (or set
//! `MOBIUM_BIN`).

mod dns;
mod lifecycle;
mod scenarios;
mod support;
