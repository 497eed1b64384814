//! What a [`super::Messenger`] reports: server events with their ciphertext replaced by what it
//! decrypts to, or by the reason it could not be decrypted ([`DecryptionFailure`], spec
//! `e2ee.md` §Receiving: a failure is a visible state, never a silent drop).

use mobium_spec::client::{ErrorBody, LeaveReason, PresenceStatus};
use mobium_spec::{ChannelId, MessageId, UserId};
use serde::Serialize;

use super::payload::{ChannelMeta, Content};

/// Why a message could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DecryptionFailure {
    /// No key for the sender's Megolm session yet; it was requested from the sender and the
    /// message is decrypted when the key arrives.
    #[error("the session key is missing (requested from the sender)")]
    MissingKey,
    /// The message is older than this user's membership: its key was never shared with them.
    #[error("sent before this user joined the channel")]
    NotAMemberThen,
    /// The ciphertext claims another sender or recipient than the server says.
    #[error("sender or recipient does not match")]
    SenderMismatch,
    /// A message index already seen on another message: a replay.
    #[error("replayed message")]
    Replayed,
    /// The ratchet refused the message (tampered, truncated or not meant for this session).
    #[error("corrupt: {detail}")]
    Corrupt {
        /// What failed.
        detail: String,
    },
}

impl DecryptionFailure {
    /// A [`DecryptionFailure::Corrupt`] with `detail`.
    pub fn corrupt(detail: impl std::fmt::Display) -> Self {
        DecryptionFailure::Corrupt {
            detail: detail.to_string(),
        }
    }
}

/// The outcome of decrypting one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Decryption {
    /// Decrypted.
    Ok {
        /// What the sender wrote.
        content: Content,
    },
    /// Not decrypted, and why.
    Failed {
        /// The reason.
        failure: DecryptionFailure,
    },
}

impl Decryption {
    /// The text, if decrypted.
    pub fn text(&self) -> Option<&str> {
        match self {
            Decryption::Ok { content } => Some(&content.body),
            Decryption::Failed { .. } => None,
        }
    }

    /// The failure, if any.
    pub fn failure(&self) -> Option<&DecryptionFailure> {
        match self {
            Decryption::Ok { .. } => None,
            Decryption::Failed { failure } => Some(failure),
        }
    }
}

impl From<Result<Content, DecryptionFailure>> for Decryption {
    fn from(r: Result<Content, DecryptionFailure>) -> Self {
        match r {
            Ok(content) => Decryption::Ok { content },
            Err(failure) => Decryption::Failed { failure },
        }
    }
}

/// A channel's metadata after decryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum MetadataDecryption {
    /// Decrypted (`None`: the channel has no metadata).
    Ok {
        /// Name and topic.
        meta: Option<ChannelMeta>,
    },
    /// Not decrypted, and why.
    Failed {
        /// The reason.
        failure: DecryptionFailure,
    },
}

impl From<Result<Option<ChannelMeta>, DecryptionFailure>> for MetadataDecryption {
    fn from(r: Result<Option<ChannelMeta>, DecryptionFailure>) -> Self {
        match r {
            Ok(meta) => MetadataDecryption::Ok { meta },
            Err(failure) => MetadataDecryption::Failed { failure },
        }
    }
}

/// A channel message after decryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecryptedMessage {
    /// The channel.
    pub channel: ChannelId,
    /// The host's message id.
    pub id: MessageId,
    /// Who sent it.
    pub sender: UserId,
    /// Server time, Unix milliseconds.
    pub sent_at: u64,
    /// Last edit, if edited.
    pub edited_at: Option<u64>,
    /// The message it answers.
    pub reply_to: Option<MessageId>,
    /// For a message sent from a member server: the provisional id its sender's homeserver
    /// answered `message_send` with, so the sender can match the host's id to its send.
    pub origin_id: Option<MessageId>,
    /// The plaintext, or why there is none.
    pub decryption: Decryption,
}

/// A direct message after decryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectText {
    /// The id the recipient's server gave it.
    pub id: MessageId,
    /// Who sent it (as the server says; checked against the ciphertext when decrypted).
    pub from: UserId,
    /// When the sender's server accepted it.
    pub sent_at: u64,
    /// The plaintext, or why there is none.
    pub decryption: Decryption,
}

/// Everything a [`super::Messenger`] reports, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientEvent {
    /// Authenticated (again); queued to-device messages follow.
    Connected {
        /// Own user id.
        user_id: UserId,
    },
    /// The connection broke; reconnecting.
    Disconnected {
        /// What happened.
        reason: String,
    },
    /// A direct message (or an undecryptable to-device message).
    Direct(DirectText),
    /// A direct message this user sent was refused for good by the recipient's server.
    DirectFailed {
        /// The id `send_dm` returned for it.
        id: MessageId,
        /// Whom it was for.
        to: UserId,
        /// Why the recipient's server refused it.
        error: ErrorBody,
    },
    /// A channel message: live, or retried after its key arrived.
    Message(DecryptedMessage),
    /// A message was edited; its new content.
    MessageEdited(DecryptedMessage),
    /// A message was deleted.
    MessageDeleted {
        /// The channel.
        channel: ChannelId,
        /// The message.
        id: MessageId,
        /// Who deleted it.
        deleted_by: UserId,
    },
    /// A Megolm session key arrived from a member.
    KeyReceived {
        /// The channel.
        channel: ChannelId,
        /// Whose session.
        sender: UserId,
        /// The session id.
        session_id: String,
    },
    /// Someone joined a channel.
    MemberJoined {
        /// The channel.
        channel: ChannelId,
        /// Who.
        user: UserId,
    },
    /// Someone left, was kicked or banned.
    MemberLeft {
        /// The channel.
        channel: ChannelId,
        /// Who.
        user: UserId,
        /// Why.
        reason: LeaveReason,
    },
    /// A channel's (encrypted) metadata changed.
    ChannelUpdated {
        /// The channel.
        channel: ChannelId,
        /// The new name and topic, or why they cannot be read.
        metadata: MetadataDecryption,
    },
    /// Someone's presence changed.
    Presence {
        /// Who.
        user: UserId,
        /// Their status as this user may see it.
        status: PresenceStatus,
    },
    /// Someone is typing.
    Typing {
        /// Where.
        channel: ChannelId,
        /// Who.
        user: UserId,
    },
}
