//! `mobium-client-api`: both ends of the client ↔ homeserver protocol (spec `client/`).
//!
//! - [`server`]: the WebSocket endpoint `/v1/ws` for axum. It owns the transport rules — the
//!   challenge/response handshake, frame size limits, decoding, unknown operations, connection
//!   caps, keep-alive pings — and hands each authenticated, decoded request to a
//!   [`server::ClientHandler`] that the homeserver implements (one method per transport step,
//!   not one per operation).
//! - [`sdk`]: a Rust client: connect over `ws://` or `wss://`, authenticate with the user's key
//!   (any [`mobium_spec::Signer`], such as the E2EE account), typed requests with timeouts, a
//!   stream of events, automatic reconnection with backoff, and end-to-end encryption with
//!   vodozemac (Olm for to-device messages, Megolm for channels) over an encrypted profile.

pub mod sdk;
pub mod server;
