//! Integration tests of `mobium-federation`: real QUIC endpoints on 127.0.0.1 (port 0 or reserved
//! free ports), a real authoritative DNS server (hickory-server) for DNS discovery, and hand-made
//! envelopes for every refusal of spec `federation.md` §Validation. One test binary for the crate.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod dns;
mod exchange;
mod rejections;
mod restart;
mod support;
