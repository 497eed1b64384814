//! The client ↔ homeserver protocol (spec `client/`).
//!
//! One WebSocket binary message carries one MessagePack value. A client sends [`ClientFrame`]s
//! (a request id and a [`Request`]); the server answers each with exactly one
//! [`ServerFrame::Response`] or [`ServerFrame::Error`] carrying the same id, and pushes
//! [`ServerFrame::Event`]s at any time. Unknown operations decode as [`Request::Unknown`] and get an
//! `unknown_op` error; unknown events decode as [`Event::Unknown`] and are ignored by clients.

pub mod auth;
pub mod channels;
pub mod direct;
pub mod keys;
pub mod messages;
pub mod presence;
pub mod roles;

use serde::{Deserialize, Serialize};

use crate::ErrorCode;
pub use auth::*;
pub use channels::*;
pub use direct::*;
pub use keys::*;
pub use messages::*;
pub use presence::*;
pub use roles::*;

/// Largest history page a server returns.
pub const HISTORY_MAX_LIMIT: u32 = 100;
/// History page size when the request gives none.
pub const HISTORY_DEFAULT_LIMIT: u32 = 50;
/// Largest encrypted channel metadata blob.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most one-time keys in one upload.
pub const MAX_KEYS_PER_UPLOAD: usize = 100;
/// Most ids in one acknowledgement.
pub const MAX_ACK_IDS: usize = 1000;
/// Longest client transaction id (`txn` of `message_send` and `direct_send`), in bytes.
pub const MAX_TXN_BYTES: usize = 64;
/// Longest key id, role name or registration token, in bytes.
pub const MAX_SHORT_TEXT: usize = 64;
/// A `keys_low` event is pushed when the one-time key count drops below this.
pub const KEYS_LOW_THRESHOLD: u32 = 10;

/// A frame from client to server.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Chosen by the client; echoed in the response. Need not be unique, but clients that reuse
    /// ids cannot tell the answers apart.
    pub id: u64,
    /// The operation.
    pub body: Request,
}

/// Every client operation, tagged by `op`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// Answer the challenge; see [`auth`].
    Auth(Auth),
    /// Liveness check; answered with [`Response::Pong`].
    Ping,
    /// Upload prekeys.
    KeysUpload(KeysUpload),
    /// Claim a user's key bundle (consumes one one-time key).
    KeysClaim(KeysClaim),
    /// Count own remaining one-time keys.
    KeysCount,
    /// Send a to-device message.
    DirectSend(DirectSend),
    /// Acknowledge delivered to-device messages (the server then deletes them).
    DirectAck(DirectAck),
    /// Create a channel.
    ChannelCreate(ChannelCreate),
    /// Replace a channel's encrypted metadata.
    ChannelUpdate(ChannelUpdate),
    /// Channels the caller belongs to.
    ChannelList,
    /// Create an invite link.
    InviteCreate(InviteCreate),
    /// Revoke an invite link.
    InviteRevoke(InviteRevoke),
    /// List a channel's live invites.
    InviteList(ChannelRef),
    /// Join a channel with an invite code.
    ChannelJoin(ChannelJoin),
    /// Leave a channel.
    ChannelLeave(ChannelRef),
    /// Remove a member.
    ChannelKick(MemberRef),
    /// Remove a member and refuse their return.
    ChannelBan(MemberRef),
    /// Lift a ban.
    ChannelUnban(MemberRef),
    /// List a channel's members.
    ChannelMembers(ChannelRef),
    /// The caller's effective permissions in a channel.
    ChannelPermissions(ChannelRef),
    /// Create a server-wide role.
    RoleCreate(RoleCreate),
    /// Change a role.
    RoleUpdate(RoleUpdate),
    /// Delete a role.
    RoleDelete(RoleRef),
    /// List roles.
    RoleList,
    /// Give a role to a user.
    RoleGrant(RoleGrant),
    /// Take a role from a user.
    RoleRevoke(RoleGrant),
    /// Set a channel override.
    OverrideSet(OverrideSet),
    /// Remove a channel override.
    OverrideClear(OverrideClear),
    /// Send a message to a channel.
    MessageSend(MessageSend),
    /// Page through a channel's history.
    History(History),
    /// Replace a message's ciphertext.
    MessageEdit(MessageEdit),
    /// Delete a message.
    MessageDelete(MessageRef),
    /// Set own presence.
    PresenceSet(PresenceSet),
    /// Presence of everyone who shares a channel with the caller.
    PresenceList,
    /// Signal typing in a channel.
    Typing(ChannelRef),
    /// An operation this build does not know.
    #[serde(other)]
    Unknown,
}

impl Request {
    /// The wire name of the operation, for logs and metrics.
    pub fn op_name(&self) -> &'static str {
        match self {
            Request::Auth(_) => "auth",
            Request::Ping => "ping",
            Request::KeysUpload(_) => "keys_upload",
            Request::KeysClaim(_) => "keys_claim",
            Request::KeysCount => "keys_count",
            Request::DirectSend(_) => "direct_send",
            Request::DirectAck(_) => "direct_ack",
            Request::ChannelCreate(_) => "channel_create",
            Request::ChannelUpdate(_) => "channel_update",
            Request::ChannelList => "channel_list",
            Request::InviteCreate(_) => "invite_create",
            Request::InviteRevoke(_) => "invite_revoke",
            Request::InviteList(_) => "invite_list",
            Request::ChannelJoin(_) => "channel_join",
            Request::ChannelLeave(_) => "channel_leave",
            Request::ChannelKick(_) => "channel_kick",
            Request::ChannelBan(_) => "channel_ban",
            Request::ChannelUnban(_) => "channel_unban",
            Request::ChannelMembers(_) => "channel_members",
            Request::ChannelPermissions(_) => "channel_permissions",
            Request::RoleCreate(_) => "role_create",
            Request::RoleUpdate(_) => "role_update",
            Request::RoleDelete(_) => "role_delete",
            Request::RoleList => "role_list",
            Request::RoleGrant(_) => "role_grant",
            Request::RoleRevoke(_) => "role_revoke",
            Request::OverrideSet(_) => "override_set",
            Request::OverrideClear(_) => "override_clear",
            Request::MessageSend(_) => "message_send",
            Request::History(_) => "history",
            Request::MessageEdit(_) => "message_edit",
            Request::MessageDelete(_) => "message_delete",
            Request::PresenceSet(_) => "presence_set",
            Request::PresenceList => "presence_list",
            Request::Typing(_) => "typing",
            Request::Unknown => "unknown",
        }
    }
}

/// Just enough of a client frame to answer it when the rest does not decode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FrameHead {
    /// The request id, if it could be read.
    pub id: Option<u64>,
}

/// A frame from server to client, tagged by `kind`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerFrame {
    /// The successful answer to request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The result.
        body: Response,
    },
    /// The failed answer to request `id` (`None` when the request was too broken to read its id).
    Error {
        /// The request's id.
        id: Option<u64>,
        /// What went wrong.
        error: ErrorBody,
    },
    /// A pushed event.
    Event {
        /// The event.
        body: Event,
    },
}

/// An error answer: a machine-readable code and a human-readable message.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The code; clients act on this.
    #[cfg_attr(test, proptest(strategy = "crate::test_support::error_code()"))]
    pub code: ErrorCode,
    /// For people; never contains internal details.
    pub message: String,
    /// With `rate_limited`: how long to wait before retrying.
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    /// An error with a message and no retry hint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

/// Every successful result, tagged by `type`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Response {
    /// Success with nothing to report.
    Ok,
    /// Answer to `ping`.
    Pong,
    /// Answer to `auth`.
    Authed(Authed),
    /// Answer to `keys_upload` and `keys_count`.
    KeysCount(KeysCount),
    /// Answer to `keys_claim`.
    KeyBundle(KeyBundle),
    /// Answer to `direct_send`.
    DirectSent(DirectSent),
    /// Answer to `direct_ack`.
    DirectAcked(DirectAcked),
    /// Answer to `channel_create`.
    ChannelCreated(ChannelCreated),
    /// Answer to `channel_list`.
    Channels(Channels),
    /// Answer to `invite_create`.
    Invite(InviteInfo),
    /// Answer to `invite_list`.
    Invites(Invites),
    /// Answer to `channel_join`.
    Joined(ChannelInfo),
    /// Answer to `channel_members`.
    Members(Members),
    /// Answer to `channel_permissions`.
    Permissions(EffectivePermissions),
    /// Answer to `role_create` and `role_update`.
    Role(Role),
    /// Answer to `role_list`.
    Roles(Roles),
    /// Answer to `message_send`.
    MessageSent(MessageSent),
    /// Answer to `history`.
    Messages(Messages),
    /// Answer to `presence_list`.
    Presences(Presences),
    /// A result type this build does not know.
    #[serde(other)]
    Unknown,
}

/// Every pushed event, tagged by `type`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// Sent once, first, on every connection.
    Challenge(Challenge),
    /// A to-device message (live or from the offline queue).
    Direct(DirectMessage),
    /// A to-device message sent to another server was refused there for good.
    DirectFailed(DirectFailed),
    /// One-time keys are running out.
    KeysLow(KeysCount),
    /// A new channel message.
    Message(ChannelMessage),
    /// A message's ciphertext was replaced.
    MessageEdited(MessageEdited),
    /// A message was deleted.
    MessageDeleted(MessageDeleted),
    /// Someone joined a channel.
    MemberJoined(MemberEvent),
    /// Someone left, was kicked or was banned.
    MemberLeft(MemberLeft),
    /// A channel's metadata changed.
    ChannelUpdated(ChannelUpdate),
    /// Someone's presence changed.
    Presence(PresenceEntry),
    /// Someone is typing.
    Typing(TypingEvent),
    /// An event this build does not know.
    #[serde(other)]
    Unknown,
}
