//! To-device messages: `direct_send`, `direct_ack`, the `direct` and `direct_failed` events (spec
//! `client/direct.md`).
//!
//! Used for Olm-encrypted DMs and for Megolm session-key distribution alike; the server cannot
//! tell them apart. A message is queued until the recipient acknowledges it with `direct_ack`.

use serde::{Deserialize, Serialize};

use super::ErrorBody;
use crate::{MessageId, UserId};

/// Send opaque ciphertext to one user.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectSend {
    /// Recipient (local or remote).
    pub to: UserId,
    /// Olm ciphertext.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
    /// The client's name for this send ([`MAX_TXN_BYTES`](super::MAX_TXN_BYTES) at most): a
    /// repeat with the same `txn` gets the first answer and stores nothing again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<String>,
}

/// The message is stored (durably) and will be delivered.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectSent {
    /// Its id (also the ordering key of the recipient's queue).
    pub id: MessageId,
    /// Server time in Unix milliseconds.
    pub sent_at: u64,
}

/// A to-device message delivered to its recipient.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectMessage {
    /// Id to acknowledge.
    pub id: MessageId,
    /// Sender.
    pub from: UserId,
    /// Olm ciphertext, verbatim.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
    /// Server time the message was accepted, Unix milliseconds.
    pub sent_at: u64,
}

/// A to-device message this server accepted (`direct_sent`) was refused for good by the
/// recipient's server. Queued for the sender like a `direct` event, and acknowledged the same way
/// (`direct_ack` with this `id`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectFailed {
    /// The id the sender got in `direct_sent`; also the id to acknowledge.
    pub id: MessageId,
    /// The recipient the message was for.
    pub to: UserId,
    /// Why the recipient's server refused it.
    pub error: ErrorBody,
}

/// Acknowledge delivered messages; the server deletes them.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectAck {
    /// Ids from `direct` events (at most [`super::MAX_ACK_IDS`]).
    pub ids: Vec<MessageId>,
}

/// How many of the acknowledged ids were removed (ids already gone are not an error).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectAcked {
    /// Messages deleted.
    pub removed: u32,
}
