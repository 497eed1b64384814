//! Federation queries: questions answered at once, never queued (spec `federation.md` §Queries).

use serde::{Deserialize, Serialize};

use crate::client::{ChannelInfo, KeyBundle, Members, Messages, PresenceStatus};
use crate::{ChannelId, MessageId, UserId};

/// A question, tagged by `query`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "query", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Query {
    /// Liveness and version check.
    Ping,
    /// Claim a key bundle of a user of the destination (consumes a one-time key).
    ClaimKeys {
        /// Whose keys (a user of the destination).
        user: UserId,
        /// Who asks (a user of the origin); for rate limiting and logs.
        requester: UserId,
    },
    /// A user's public profile.
    Profile {
        /// Whom (a user of the destination).
        user: UserId,
    },
    /// A user of the origin joins a channel of the destination with an invite.
    JoinChannel {
        /// The invite code.
        code: String,
        /// Who joins.
        user: UserId,
    },
    /// History of a channel of the destination, on behalf of a member.
    History {
        /// The channel.
        channel: ChannelId,
        /// Who asks (must be a member).
        user: UserId,
        /// Exclusive upper bound.
        before: Option<MessageId>,
        /// Exclusive lower bound.
        after: Option<MessageId>,
        /// Page size.
        limit: Option<u32>,
    },
    /// Members of a channel of the destination, on behalf of a member (for Megolm key sharing).
    Members {
        /// The channel.
        channel: ChannelId,
        /// Who asks (must be a member).
        user: UserId,
    },
    /// A query this build does not know.
    #[serde(other)]
    Unknown,
}

/// Results, tagged by `result`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
#[non_exhaustive]
pub enum QueryResult {
    /// Answer to `ping`.
    Pong {
        /// The responder's protocol version.
        protocol_version: u32,
        /// The responder's software version.
        software: String,
    },
    /// Answer to `claim_keys`.
    KeyBundle(KeyBundle),
    /// Answer to `profile`.
    Profile {
        /// Whom.
        user: UserId,
        /// Current presence as others see it.
        presence: PresenceStatus,
    },
    /// Answer to `join_channel`: the user is now a member; `seq` is the host's sequence number
    /// of the join event, after which the member server starts receiving hosted events.
    Joined {
        /// The channel.
        channel: ChannelInfo,
        /// Sequence number of the `member_joined` event.
        seq: u64,
    },
    /// Answer to `history`.
    Messages(Messages),
    /// Answer to `members`.
    Members(Members),
    /// A result this build does not know.
    #[serde(other)]
    Unknown,
}
