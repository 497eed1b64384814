//! Effective permissions of a member in a channel (spec `client/channels.md` §Permissions),
//! with a cache so the message path does not query roles and overrides for every send.
//!
//! The cache is cleared wholesale on any change to memberships, roles, grants or overrides:
//! those are rare next to messages, and wholesale clearing cannot go stale by a missed case.
//! Each clear starts a new generation, and a value computed from the database is cached only
//! if no clear happened while it was being read: a lookup that raced a kick cannot put the
//! kicked member's old permissions back after the kick cleared them.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use mobium_spec::client::EVERYONE_ROLE;
use mobium_spec::permissions::{Override, PermissionInputs, Permissions};
use mobium_spec::{ChannelId, ErrorCode, ServerName, UserId};

use super::DomainError;
use super::{App, err};
use crate::storage::{ChannelRow, OverrideTargetRow};

#[derive(Default)]
struct CacheInner {
    /// Bumped by every clear.
    generation: u64,
    channels: HashMap<ChannelId, Arc<ChannelRow>>,
    perms: HashMap<(ChannelId, UserId), Option<Permissions>>,
    viewers: HashMap<ChannelId, Arc<Vec<UserId>>>,
    /// Other servers with members in a channel (the destinations of its hosted events).
    servers: HashMap<ChannelId, Arc<BTreeSet<ServerName>>>,
}

/// Cached channels, permissions and viewer lists.
#[derive(Default)]
pub(crate) struct PermCache {
    inner: Mutex<CacheInner>,
}

impl PermCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        let generation = inner.generation.wrapping_add(1);
        *inner = CacheInner {
            generation,
            ..CacheInner::default()
        };
    }

    fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Runs `insert` unless the cache was cleared since `generation`.
    fn insert_if_current(&self, generation: u64, insert: impl FnOnce(&mut CacheInner)) {
        let mut inner = self.lock();
        if inner.generation == generation {
            insert(&mut inner);
        }
    }
}

/// A channel hosted here, or `not_found`.
pub(crate) async fn channel(app: &App, id: &ChannelId) -> Result<Arc<ChannelRow>, DomainError> {
    if let Some(c) = app.cache.lock().channels.get(id) {
        return Ok(c.clone());
    }
    let generation = app.cache.generation();
    // Channels hosted elsewhere are found here only as replicas (after a local user joined).
    let row = app
        .store
        .channel_get(id)
        .await?
        .ok_or_else(|| err::<DomainError>(ErrorCode::NotFound, "no such channel"))?;
    let row = Arc::new(row);
    app.cache.insert_if_current(generation, |c| {
        c.channels.insert(id.clone(), row.clone());
    });
    Ok(row)
}

/// The user's effective permissions, or `None` if not a member.
pub(crate) async fn of(
    app: &App,
    ch: &ChannelRow,
    user: &UserId,
) -> Result<Option<Permissions>, DomainError> {
    let key = (ch.id.clone(), user.clone());
    if let Some(p) = app.cache.lock().perms.get(&key) {
        return Ok(*p);
    }
    let generation = app.cache.generation();
    let p = compute(app, ch, user).await?;
    app.cache.insert_if_current(generation, |c| {
        c.perms.insert(key, p);
    });
    Ok(p)
}

async fn compute(
    app: &App,
    ch: &ChannelRow,
    user: &UserId,
) -> Result<Option<Permissions>, DomainError> {
    if app.store.member_joined_at(&ch.id, user).await?.is_none() {
        return Ok(None);
    }
    if !app.hosts(&ch.id) {
        // A replica: the host enforces permissions when it receives the forwarded action; here
        // membership is all that is known.
        return Ok(Some(Permissions::ALL));
    }
    let roles = app.store.roles_of(user).await?;
    let everyone = app
        .store
        .role_get(EVERYONE_ROLE)
        .await?
        .map_or(Permissions::DEFAULT_EVERYONE, |r| {
            Permissions(r.permissions)
        });
    let overrides = app.store.overrides(&ch.id).await?;
    let mut inputs = PermissionInputs {
        everyone,
        roles: roles.iter().map(|r| Permissions(r.permissions)).collect(),
        is_owner: ch.owner == *user,
        ..Default::default()
    };
    for o in overrides {
        let ov = Override {
            allow: Permissions(o.allow),
            deny: Permissions(o.deny),
        };
        match &o.target {
            OverrideTargetRow::Role(EVERYONE_ROLE) => inputs.everyone_override = Some(ov),
            OverrideTargetRow::Role(id) if roles.iter().any(|r| r.id == *id) => {
                inputs.role_overrides.push(ov)
            }
            OverrideTargetRow::User(u) if u == user => inputs.user_override = Some(ov),
            _ => {}
        }
    }
    Ok(Some(inputs.effective()))
}

/// The user's permissions, requiring membership (`not_found` otherwise, so non-members cannot
/// probe which channels exist) and every bit of `needed` (`forbidden`).
pub(crate) async fn require(
    app: &App,
    ch: &ChannelRow,
    user: &UserId,
    needed: Permissions,
) -> Result<Permissions, DomainError> {
    let p = of(app, ch, user)
        .await?
        .ok_or_else(|| err::<DomainError>(ErrorCode::NotFound, "no such channel"))?;
    if !p.contains(Permissions::VIEW) {
        return Err(err(ErrorCode::NotFound, "no such channel"));
    }
    if !p.contains(needed) {
        return Err(err(ErrorCode::Forbidden, "missing permission"));
    }
    Ok(p)
}

/// Members who may see the channel's events.
pub(crate) async fn viewers(app: &App, ch: &ChannelRow) -> Result<Arc<Vec<UserId>>, DomainError> {
    if let Some(v) = app.cache.lock().viewers.get(&ch.id) {
        return Ok(v.clone());
    }
    let generation = app.cache.generation();
    let mut out = Vec::new();
    for (user, _) in app.store.members(&ch.id).await? {
        if of(app, ch, &user)
            .await?
            .is_some_and(|p| p.contains(Permissions::VIEW))
        {
            out.push(user);
        }
    }
    let out = Arc::new(out);
    app.cache.insert_if_current(generation, |c| {
        c.viewers.insert(ch.id.clone(), out.clone());
    });
    Ok(out)
}

/// Servers other than this one with members in the channel, cached like the viewers (cleared
/// with every membership change), so a message costs no member query.
pub(crate) async fn member_servers(
    app: &App,
    ch: &ChannelRow,
) -> Result<Arc<BTreeSet<ServerName>>, DomainError> {
    if let Some(s) = app.cache.lock().servers.get(&ch.id) {
        return Ok(s.clone());
    }
    let generation = app.cache.generation();
    let servers: BTreeSet<ServerName> = app
        .store
        .members(&ch.id)
        .await?
        .into_iter()
        .map(|(u, _)| u.server)
        .filter(|s| *s != app.server_name)
        .collect();
    let servers = Arc::new(servers);
    app.cache.insert_if_current(generation, |c| {
        c.servers.insert(ch.id.clone(), servers.clone());
    });
    Ok(servers)
}

/// Server-wide bits of a user (everyone ∪ roles), for role management.
pub(crate) async fn server_wide(app: &App, user: &UserId) -> Result<Permissions, DomainError> {
    let everyone = app
        .store
        .role_get(EVERYONE_ROLE)
        .await?
        .map_or(Permissions::DEFAULT_EVERYONE, |r| {
            Permissions(r.permissions)
        });
    let roles = app.store.roles_of(user).await?;
    let p = roles
        .iter()
        .fold(everyone, |acc, r| acc.union(Permissions(r.permissions)));
    Ok(if p.contains(Permissions::ADMINISTRATOR) {
        Permissions::ALL
    } else {
        p
    })
}

/// Managing a channel (invites, kicks, bans, overrides, metadata) happens on its host.
pub(crate) fn require_hosted(app: &App, ch: &ChannelRow) -> Result<(), DomainError> {
    if !app.hosts(&ch.id) {
        return Err(err(
            ErrorCode::Forbidden,
            "manage this channel through its host server",
        ));
    }
    Ok(())
}
