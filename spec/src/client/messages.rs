//! Channel messages: `message_send`, `history`, `message_edit`, `message_delete` and their events
//! (spec `client/messages.md`).
//!
//! Content is Megolm ciphertext; the server assigns each message a time-ordered [`MessageId`] and
//! keeps sender, time and size (the metadata it can see, spec `e2ee.md`).

use serde::{Deserialize, Serialize};

use crate::{ChannelId, MessageId, UserId};

/// Send to a channel (needs `send`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSend {
    /// The channel.
    pub channel: ChannelId,
    /// Megolm ciphertext.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
    /// The message this one answers, if any.
    pub reply_to: Option<MessageId>,
    /// The client's name for this send ([`MAX_TXN_BYTES`](super::MAX_TXN_BYTES) at most): a
    /// repeat with the same `txn` gets the first answer and stores nothing again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<String>,
}

/// The message is committed (it survives a crash from now on). For a channel hosted on another
/// server, `id` is provisional: the sender's homeserver queued the message durably for the host,
/// and the host's `message` event carries this id in `origin_id`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSent {
    /// The channel.
    pub channel: ChannelId,
    /// The id the server assigned.
    pub id: MessageId,
    /// Server time, Unix milliseconds.
    pub sent_at: u64,
}

/// A stored channel message; also the body of the `message` event.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMessage {
    /// The channel.
    pub channel: ChannelId,
    /// Time-ordered id.
    pub id: MessageId,
    /// Who sent it.
    pub sender: UserId,
    /// Megolm ciphertext.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
    /// Server time, Unix milliseconds.
    pub sent_at: u64,
    /// Last edit time, if edited.
    pub edited_at: Option<u64>,
    /// The message this one answers.
    pub reply_to: Option<MessageId>,
    /// For a message sent from another server than the channel's host: the id the sender's
    /// homeserver answered `message_send` with, so the sender can match its own message.
    #[serde(default)]
    pub origin_id: Option<MessageId>,
}

/// Page through history. With neither bound: the newest `limit` messages. With `before`: the
/// `limit` messages just older than it. With `after`: the `limit` messages just newer than it.
/// With both: messages strictly between, oldest first, at most `limit`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The channel (needs `view`).
    pub channel: ChannelId,
    /// Exclusive upper bound.
    pub before: Option<MessageId>,
    /// Exclusive lower bound.
    pub after: Option<MessageId>,
    /// Page size, 1 to [`super::HISTORY_MAX_LIMIT`] (default [`super::HISTORY_DEFAULT_LIMIT`]).
    pub limit: Option<u32>,
}

/// A page of history, always in ascending id order.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Messages {
    /// The channel.
    pub channel: ChannelId,
    /// The page.
    pub messages: Vec<ChannelMessage>,
    /// Whether more messages lie beyond the page in the direction of travel.
    pub has_more: bool,
}

/// Replace a message's ciphertext (its sender, or `manage_messages`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEdit {
    /// The channel.
    pub channel: ChannelId,
    /// The message.
    pub id: MessageId,
    /// New Megolm ciphertext.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// Names one message (for `message_delete`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    /// The channel.
    pub channel: ChannelId,
    /// The message.
    pub id: MessageId,
}

/// Body of `message_edited`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEdited {
    /// The channel.
    pub channel: ChannelId,
    /// The message.
    pub id: MessageId,
    /// Who edited it.
    pub editor: UserId,
    /// New ciphertext.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
    /// Edit time, Unix milliseconds.
    pub edited_at: u64,
}

/// Body of `message_deleted`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeleted {
    /// The channel.
    pub channel: ChannelId,
    /// The message.
    pub id: MessageId,
    /// Who deleted it.
    pub deleted_by: UserId,
}
