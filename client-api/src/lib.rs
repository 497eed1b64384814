//! `mobium-client-api`: both ends of the client ↔ homeserver protocol (spec `client/`).
//!
//! - [`server`]: the WebSocket endpoint `/v1/ws` for axum. It owns the transport rules — the
//!   challenge/response handshake, frame size limits, decoding, unknown operations, connection
//!   caps, keep-alive pings — and hands each authenticated, decoded request to a
//!   [`server::ClientHandler`] that the homeserver implements (one method per transport step,
//!   not one per operation).
//! - [`sdk`]: a Rust client: connect, authenticate with the user's key, typed requests with
//!   timeouts, a stream of events.

pub mod sdk;
pub mod server;
