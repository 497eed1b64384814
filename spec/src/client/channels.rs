//! Channels, invites and membership (spec `client/channels.md`).
//!
//! A channel's name, topic and icon live in `metadata`, a blob the members encrypt; the server
//! stores it verbatim. Membership, invites, bans and the owner are plaintext the server needs to
//! enforce access.

use serde::{Deserialize, Serialize};

use crate::{ChannelId, UserId};

/// Names one channel.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRef {
    /// The channel.
    pub channel: ChannelId,
}

/// Names one member of one channel.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRef {
    /// The channel.
    pub channel: ChannelId,
    /// The member.
    pub user: UserId,
}

/// Create a channel hosted on this server; the caller becomes its owner.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCreate {
    /// Encrypted metadata (at most [`super::MAX_METADATA_BYTES`]).
    #[serde(with = "serde_bytes")]
    pub metadata: Vec<u8>,
}

/// The new channel's id.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCreated {
    /// The channel.
    pub channel: ChannelId,
}

/// Replace the metadata (needs `manage_channel`); also the body of the `channel_updated` event.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelUpdate {
    /// The channel.
    pub channel: ChannelId,
    /// New encrypted metadata.
    #[serde(with = "serde_bytes")]
    pub metadata: Vec<u8>,
}

/// What a member may know about a channel.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// The channel.
    pub channel: ChannelId,
    /// Encrypted metadata.
    #[serde(with = "serde_bytes")]
    pub metadata: Vec<u8>,
    /// Its creator.
    pub owner: UserId,
    /// Creation time, Unix milliseconds.
    pub created_at: u64,
    /// Number of members.
    pub member_count: u32,
}

/// The caller's channels.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channels {
    /// One entry per channel, by id.
    pub channels: Vec<ChannelInfo>,
}

/// Create an invite link (needs `create_invite`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteCreate {
    /// The channel.
    pub channel: ChannelId,
    /// Uses before the invite is exhausted; none means unlimited.
    pub max_uses: Option<u32>,
    /// Seconds until it expires; none means never.
    pub expires_in_secs: Option<u64>,
}

/// An invite link.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteInfo {
    /// The secret code (22 URL-safe characters).
    pub code: String,
    /// The channel it opens.
    pub channel: ChannelId,
    /// Who made it.
    pub created_by: UserId,
    /// Use limit.
    pub max_uses: Option<u32>,
    /// Times used.
    pub uses: u32,
    /// Expiry, Unix milliseconds.
    pub expires_at: Option<u64>,
}

/// A channel's live invites.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invites {
    /// Live invites.
    pub invites: Vec<InviteInfo>,
}

/// Revoke an invite (its creator, or `manage_channel`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRevoke {
    /// The code.
    pub code: String,
}

/// Join with an invite code. The code may be written `code@host` to join a channel on another
/// server; a bare code means this server.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelJoin {
    /// The invite code.
    pub code: String,
}

/// One member.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Who.
    pub user: UserId,
    /// Since when, Unix milliseconds.
    pub joined_at: u64,
    /// Server-wide roles held (ids).
    pub roles: Vec<u64>,
}

/// A channel's members.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// The channel.
    pub channel: ChannelId,
    /// Members in join order.
    pub members: Vec<Member>,
}

/// Body of `member_joined`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEvent {
    /// The channel.
    pub channel: ChannelId,
    /// Who.
    pub user: UserId,
}

/// Why a member is gone.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// They left.
    Left,
    /// They were kicked.
    Kicked,
    /// They were banned.
    Banned,
}

/// Body of `member_left`. Also sent to the removed member, so their client knows to stop.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLeft {
    /// The channel.
    pub channel: ChannelId,
    /// Who.
    pub user: UserId,
    /// Why.
    pub reason: LeaveReason,
}
