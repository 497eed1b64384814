//! Durable and ephemeral federation events (spec `federation.md` §Events).
//!
//! Channel traffic flows through the channel's host: member servers send `channel_*` requests
//! to the host, the host orders them, assigns the message id and fans one [`HostedEvent`] out to
//! every member server, which stores its users' copy and delivers it.

use serde::{Deserialize, Serialize};

use crate::client::{ChannelMessage, LeaveReason, PresenceStatus};
use crate::{ChannelId, MessageId, UserId};

/// A durable event, tagged by `type`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FedEvent {
    /// A to-device message for a user of the destination.
    Direct(FedDirect),
    /// Member server → host: a user sends to the channel.
    ChannelSend(ChannelSend),
    /// Member server → host: a user edits a message.
    ChannelEdit(ChannelEdit),
    /// Member server → host: a user deletes a message.
    ChannelDelete(ChannelDelete),
    /// Member server → host: a user leaves.
    ChannelLeave(ChannelLeave),
    /// Host → member server: an ordered channel event.
    Hosted(HostedEvent),
    /// An event type this build does not know; acknowledged, then dropped.
    #[serde(other)]
    Unknown,
}

/// A to-device message across servers.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FedDirect {
    /// Id assigned by the sender's server; with `from` it identifies the message for dedup.
    pub id: MessageId,
    /// Sender (a user of the origin server).
    pub from: UserId,
    /// Recipient (a user of the destination server).
    pub to: UserId,
    /// Olm ciphertext.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
    /// When the origin accepted it, Unix milliseconds.
    pub sent_at: u64,
}

/// A member's message on its way to the host.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSend {
    /// The channel (hosted by the destination).
    pub channel: ChannelId,
    /// Sender (a user of the origin).
    pub sender: UserId,
    /// The origin's id for this send; the host deduplicates on `(sender, origin_id)`.
    pub origin_id: MessageId,
    /// Megolm ciphertext.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
    /// Reply target.
    pub reply_to: Option<MessageId>,
}

/// A member's edit on its way to the host.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelEdit {
    /// The channel.
    pub channel: ChannelId,
    /// Who edits.
    pub editor: UserId,
    /// The message (host-assigned id).
    pub id: MessageId,
    /// New ciphertext.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// A member's deletion on its way to the host.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelDelete {
    /// The channel.
    pub channel: ChannelId,
    /// Who deletes.
    pub deleter: UserId,
    /// The message.
    pub id: MessageId,
}

/// A member leaving, on its way to the host.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelLeave {
    /// The channel.
    pub channel: ChannelId,
    /// Who leaves.
    pub user: UserId,
}

/// An event the host ordered, sent once to each member server.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostedEvent {
    /// The channel.
    pub channel: ChannelId,
    /// Host's per-channel sequence number, strictly increasing; receivers apply events in
    /// arrival order (the outbox keeps order per destination) and ignore a `seq` not above the
    /// last one they applied (a retried delivery).
    pub seq: u64,
    /// What happened.
    pub body: HostedBody,
}

/// What the host reports, tagged by `type`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostedBody {
    /// A new message.
    Message(ChannelMessage),
    /// A message's ciphertext was replaced.
    Edited {
        /// The message.
        id: MessageId,
        /// Who edited.
        editor: UserId,
        /// New ciphertext.
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
        /// When.
        edited_at: u64,
    },
    /// A message was deleted.
    Deleted {
        /// The message.
        id: MessageId,
        /// By whom.
        deleted_by: UserId,
    },
    /// A user joined.
    MemberJoined {
        /// Who.
        user: UserId,
    },
    /// A user left or was removed.
    MemberLeft {
        /// Who.
        user: UserId,
        /// Why.
        reason: LeaveReason,
    },
    /// The encrypted metadata changed.
    MetadataUpdated {
        /// New metadata.
        #[serde(with = "serde_bytes")]
        metadata: Vec<u8>,
    },
    /// A body this build does not know; stored nowhere, acknowledged.
    #[serde(other)]
    Unknown,
}

/// An ephemeral event, tagged by `type`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Ephemeral {
    /// A user of the origin changed presence.
    Presence {
        /// Who.
        user: UserId,
        /// As others see it.
        status: PresenceStatus,
    },
    /// A user is typing in a channel.
    Typing {
        /// Where.
        channel: ChannelId,
        /// Who.
        user: UserId,
    },
    /// An ephemeral type this build does not know.
    #[serde(other)]
    Unknown,
}
