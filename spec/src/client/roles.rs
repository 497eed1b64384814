//! Roles and channel overrides (spec `client/channels.md` §Permissions).

use serde::{Deserialize, Serialize};

use crate::permissions::Permissions;
use crate::{ChannelId, UserId};

/// Id of the built-in role every user holds.
pub const EVERYONE_ROLE: u64 = 0;

/// A server-wide role.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Id (0 is `everyone`).
    pub id: u64,
    /// Display name (at most 64 bytes).
    pub name: String,
    /// Granted bits.
    pub permissions: Permissions,
}

/// All roles.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    /// Roles by id.
    pub roles: Vec<Role>,
}

/// Create a role (needs server-wide `manage_roles`; cannot grant bits the caller lacks).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleCreate {
    /// Name.
    pub name: String,
    /// Bits.
    pub permissions: Permissions,
}

/// Change a role; absent fields are left alone.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleUpdate {
    /// Which role.
    pub role: u64,
    /// New name.
    pub name: Option<String>,
    /// New bits.
    pub permissions: Option<Permissions>,
}

/// Names a role.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRef {
    /// Which role.
    pub role: u64,
}

/// Grant or revoke a role.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGrant {
    /// To or from whom.
    pub user: UserId,
    /// Which role.
    pub role: u64,
}

/// Whose bits a channel override changes.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OverrideTarget {
    /// A role (0 = everyone).
    Role {
        /// Which role.
        role: u64,
    },
    /// One user.
    User {
        /// Who.
        user: UserId,
    },
}

/// Set a channel override (needs `manage_channel`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideSet {
    /// The channel.
    pub channel: ChannelId,
    /// Whose bits.
    pub target: OverrideTarget,
    /// Bits granted.
    pub allow: Permissions,
    /// Bits removed.
    pub deny: Permissions,
}

/// Remove a channel override.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideClear {
    /// The channel.
    pub channel: ChannelId,
    /// Whose override.
    pub target: OverrideTarget,
}

/// The caller's effective permissions in a channel.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectivePermissions {
    /// The channel.
    pub channel: ChannelId,
    /// The bits.
    pub permissions: Permissions,
}
