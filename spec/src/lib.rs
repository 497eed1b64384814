//! `mobium-spec`: the Mobium protocol as Rust types, with no I/O.
//!
//! This crate is the executable half of the normative documents in `spec/` (start at
//! `spec/README.md`). It holds:
//! - validated identifiers ([`PublicKey`], [`ServerName`], [`UserId`], [`ChannelId`],
//!   [`MessageId`]) whose parsers accept only the canonical text form;
//! - Ed25519 keys and signatures with domain separation ([`Keypair`], [`Signature`], [`Domain`])
//!   and the [`SignedEnvelope`];
//! - every client ([`client`]) and federation ([`federation`]) message, as plain serde types
//!   encoded as MessagePack maps with named fields ([`encoding`]);
//! - the protocol error codes ([`ErrorCode`]) and the permission model ([`permissions`]).
//!
//! Golden test vectors in `spec/vectors/` pin the canonical bytes and signatures, so another
//! implementation can check itself against this one.

pub mod client;
pub mod encoding;
mod error;
pub mod federation;
mod ids;
mod keys;
pub mod permissions;
mod signing;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use error::{ErrorCode, IdError};
pub use ids::{
    ChannelId, MAX_SERVER_NAME_LEN, MOBIUM_EPOCH_MS, MessageId, MessageIdGenerator, ServerName,
    UserId,
};
pub use keys::{Keypair, PUBLIC_KEY_HEX_LEN, PublicKey, Signature, Signer};
pub use signing::{Domain, EnvelopeError, SignedEnvelope, canonical_bytes};

/// The protocol version this crate implements; see `spec/versioning.md` for what each changed.
///
/// - `1`: the first version.
pub const PROTOCOL_VERSION: u32 = 1;
