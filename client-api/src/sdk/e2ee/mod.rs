//! End-to-end encryption with vodozemac (spec `e2ee.md`): the server only ever sees ciphertext.
//!
//! - [`account`]: the Olm account whose Ed25519 key is the user's identity, and its prekeys.
//! - [`olm`]: pairwise sessions for to-device messages (DMs and key exchange).
//! - [`megolm`]: group sessions for channels, rotation, replay detection.
//! - [`payload`]: the MessagePack envelopes inside and around the ciphertexts.
//! - [`state`]: everything above plus contacts and servers, as persisted in a
//!   [`super::profile::Profile`].
//! - [`Messenger`] (`messenger.rs`, events handled in `process.rs`): a persistent [`super::Client`]
//!   that encrypts what it sends and decrypts what it receives, reporting [`ClientEvent`]s.

pub mod account;
pub mod events;
pub mod megolm;
mod messenger;
pub mod olm;
pub mod payload;
mod process;
mod shared;
pub mod state;
#[cfg(test)]
mod tests;

pub use account::{AccountSigner, UserAccount};
pub use events::{
    ClientEvent, DecryptedMessage, Decryption, DecryptionFailure, DirectText, MetadataDecryption,
};
pub use messenger::{Messenger, MessengerEvents};
pub use payload::{ChannelMeta, Content};
pub use shared::now_ms;
pub use state::CryptoState;

use super::SdkError;
use super::profile::ProfileError;

/// What can go wrong while encrypting, sending or keeping state.
#[derive(Debug, thiserror::Error)]
pub enum E2eeError {
    /// The server or the connection failed.
    #[error(transparent)]
    Sdk(#[from] SdkError),
    /// The profile could not be read or written.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A claimed key bundle failed verification; nothing was sent.
    #[error("key bundle refused: {0}")]
    BadBundle(&'static str),
    /// No session to encrypt with.
    #[error("no session")]
    NoSession,
    /// vodozemac refused an Olm operation.
    #[error("olm: {0}")]
    Olm(String),
    /// vodozemac refused a Megolm operation.
    #[error("megolm: {0}")]
    Megolm(String),
    /// The account's key is not a valid Ed25519 public key.
    #[error("the account's identity key is invalid")]
    InvalidAccount,
    /// The persisted state does not make sense.
    #[error("state: {0}")]
    State(String),
    /// The profile has not registered with a server yet.
    #[error("not registered with any server (use `mobium client register`)")]
    NotRegistered,
}
