//! The Rust client SDK: connect over `ws://`/`wss://`, authenticate with the user's key, send
//! typed requests with timeouts, receive events, reconnect, and encrypt end to end.
//!
//! Layers, bottom to top:
//! - [`Client`] (`client.rs`, over one connection at a time (`connection.rs`), [`reconnect`] for the
//!   persistent kind): the transport of spec `client/transport.md`, with typed helpers in
//!   [`requests`]. It signs with anything that implements [`mobium_spec::Signer`].
//! - [`e2ee`]: Olm and Megolm with vodozemac (spec `e2ee.md`), and [`e2ee::Messenger`], a
//!   client that only ever hands the server ciphertext.
//! - [`profile`]: the client's state on disk, encrypted with a passphrase.

mod client;
mod connection;
pub mod e2ee;
mod error;
pub mod profile;
pub mod reconnect;
pub mod requests;
mod tls;

pub use client::{Client, ConnectOptions, Events, Notice, Notices, is_idempotent, load_root_certs};
pub use error::SdkError;
pub use reconnect::Backoff;
