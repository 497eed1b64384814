//! Presence and typing (spec `client/presence.md`). Ephemeral: never stored, never queued.

use serde::{Deserialize, Serialize};

use crate::{ChannelId, UserId};

/// A user's availability.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// Connected and active.
    Online,
    /// Connected, away from keyboard.
    Idle,
    /// Do not disturb.
    Dnd,
    /// Connected but shown to others as offline (only ever sent to the user themself).
    Invisible,
    /// Not connected.
    Offline,
}

/// Set own presence. `offline` is accepted and shown as offline while connected.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceSet {
    /// New status.
    pub status: PresenceStatus,
}

/// One user's presence; also the body of the `presence` event.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEntry {
    /// Who.
    pub user: UserId,
    /// As others see it (`invisible` shows as `offline`).
    pub status: PresenceStatus,
}

/// Presence of the users who share a channel with the caller.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presences {
    /// One entry per user.
    pub entries: Vec<PresenceEntry>,
}

/// Body of `typing`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingEvent {
    /// The channel.
    pub channel: ChannelId,
    /// Who is typing.
    pub user: UserId,
}
