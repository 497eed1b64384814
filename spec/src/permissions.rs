//! Permission bitfield and how overrides combine (spec `client/channels.md` §Permissions).
//!
//! Roles are server-wide (the homeserver is the community); each channel may override a role's
//! or a single user's bits with an allow mask and a deny mask. The computation lives here, free
//! of I/O, so that a client can predict exactly what the server will decide.

use serde::{Deserialize, Serialize};

/// A 64-bit permission set. Bits not defined here are reserved and preserved.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Permissions(pub u64);

impl Permissions {
    /// See the channel and read its history and member list.
    pub const VIEW: Permissions = Permissions(1 << 0);
    /// Send messages.
    pub const SEND: Permissions = Permissions(1 << 1);
    /// Edit and delete other members' messages.
    pub const MANAGE_MESSAGES: Permissions = Permissions(1 << 2);
    /// Change the channel's metadata, revoke invites, set overrides.
    pub const MANAGE_CHANNEL: Permissions = Permissions(1 << 3);
    /// Create, change, grant and revoke roles (never beyond one's own permissions).
    pub const MANAGE_ROLES: Permissions = Permissions(1 << 4);
    /// Remove a member (who may rejoin with an invite).
    pub const KICK: Permissions = Permissions(1 << 5);
    /// Remove a member and refuse their return.
    pub const BAN: Permissions = Permissions(1 << 6);
    /// Create invite links.
    pub const CREATE_INVITE: Permissions = Permissions(1 << 7);
    /// Join the channel's voice session.
    pub const VOICE_CONNECT: Permissions = Permissions(1 << 8);
    /// Send audio in the voice session.
    pub const VOICE_SPEAK: Permissions = Permissions(1 << 9);
    /// Every permission, overrides notwithstanding.
    pub const ADMINISTRATOR: Permissions = Permissions(1 << 10);

    /// No permissions.
    pub const NONE: Permissions = Permissions(0);
    /// Every defined and reserved bit.
    pub const ALL: Permissions = Permissions(u64::MAX);
    /// What the built-in `everyone` role (id 0) grants on a fresh server.
    pub const DEFAULT_EVERYONE: Permissions = Permissions(
        Self::VIEW.0
            | Self::SEND.0
            | Self::CREATE_INVITE.0
            | Self::VOICE_CONNECT.0
            | Self::VOICE_SPEAK.0,
    );

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// Union.
    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }
}

/// One channel override: bits to allow and bits to deny for a role or a user.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Override {
    /// Bits granted in this channel.
    pub allow: Permissions,
    /// Bits removed in this channel.
    pub deny: Permissions,
}

/// Everything needed to compute one member's permissions in one channel.
#[derive(Debug, Clone, Default)]
pub struct PermissionInputs {
    /// The `everyone` role's server-wide bits.
    pub everyone: Permissions,
    /// Server-wide bits of every other role the user holds.
    pub roles: Vec<Permissions>,
    /// The channel's override for `everyone`, if any.
    pub everyone_override: Option<Override>,
    /// The channel's overrides for the roles the user holds.
    pub role_overrides: Vec<Override>,
    /// The channel's override for this user, if any.
    pub user_override: Option<Override>,
    /// The user created the channel (owners hold every permission in it).
    pub is_owner: bool,
}

impl PermissionInputs {
    /// Computes the effective permissions, in this order: owner or administrator → everything;
    /// otherwise base = everyone ∪ roles; apply the everyone override (deny, then allow); apply
    /// the union of the role overrides (deny all, then allow all); apply the user override.
    pub fn effective(&self) -> Permissions {
        let base = self
            .roles
            .iter()
            .fold(self.everyone, |acc, r| acc.union(*r));
        if self.is_owner || base.contains(Permissions::ADMINISTRATOR) {
            return Permissions::ALL;
        }
        let mut p = base.0;
        if let Some(o) = self.everyone_override {
            p = (p & !o.deny.0) | o.allow.0;
        }
        let (allow, deny) = self
            .role_overrides
            .iter()
            .fold((0, 0), |(a, d), o| (a | o.allow.0, d | o.deny.0));
        p = (p & !deny) | allow;
        if let Some(o) = self.user_override {
            p = (p & !o.deny.0) | o.allow.0;
        }
        Permissions(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_in_order() {
        let mut inputs = PermissionInputs {
            everyone: Permissions::DEFAULT_EVERYONE,
            ..Default::default()
        };
        assert!(inputs.effective().contains(Permissions::SEND));
        // A read-only announcements channel: everyone loses SEND...
        inputs.everyone_override = Some(Override {
            allow: Permissions::NONE,
            deny: Permissions::SEND,
        });
        assert!(!inputs.effective().contains(Permissions::SEND));
        // ...a role gets it back...
        inputs.role_overrides.push(Override {
            allow: Permissions::SEND,
            deny: Permissions::NONE,
        });
        assert!(inputs.effective().contains(Permissions::SEND));
        // ...and one user is muted anyway.
        inputs.user_override = Some(Override {
            allow: Permissions::NONE,
            deny: Permissions::SEND,
        });
        assert!(!inputs.effective().contains(Permissions::SEND));
        inputs.roles.push(Permissions::ADMINISTRATOR);
        assert_eq!(inputs.effective(), Permissions::ALL);
    }
}
