//! Membership of channels (spec `client/channels.md`): leave, kick, ban, unban, the member list
//! and effective permissions. On the host, a departure commits together with the events for the
//! member servers; leaving a channel hosted elsewhere is forwarded to its host.

use mobium_spec::client::{
    ChannelRef, EffectivePermissions, LeaveReason, Member, MemberRef, Members, Response,
};
use mobium_spec::federation::{ChannelLeave, FedEvent, HostedBody, Query, QueryResult};
use mobium_spec::permissions::Permissions;
use mobium_spec::{ErrorCode, UserId};

use super::DomainError;
use super::{App, ChannelOrder, Handled, change, err, now_ms, perms, remote};
use crate::storage::ChannelRow;

/// On the host: removes a member and tells the remaining viewers, the removed user and the
/// member servers. `order` is the channel's lock, under which the caller authorized this.
pub(crate) async fn depart(
    app: &App,
    order: &ChannelOrder,
    ch: &ChannelRow,
    user: &UserId,
    reason: LeaveReason,
) -> Result<(), DomainError> {
    let body = HostedBody::MemberLeft {
        user: user.clone(),
        reason,
    };
    change::commit(app, order, ch, body, None, None)
        .await?
        .map(|_| ())
        .ok_or_else(|| err(ErrorCode::NotFound, "not a member"))
}

/// `channel_leave`: the caller leaves (the host orders it).
pub(super) async fn leave(app: &App, me: &UserId, r: ChannelRef) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    if app.store.member_joined_at(&ch.id, me).await?.is_none() {
        return Err(err(ErrorCode::NotFound, "no such channel"));
    }
    if app.hosts(&ch.id) {
        let order = app.channel_lock(&ch.id).await?;
        depart(app, &order, &ch, me, LeaveReason::Left).await?;
    } else {
        // Leave the replica now; the host learns it through the outbox.
        let event = FedEvent::ChannelLeave(ChannelLeave {
            channel: ch.id.clone(),
            user: me.clone(),
        });
        remote::enqueue(app, vec![remote::item(&ch.id.host, &event)]).await?;
        app.store.member_remove(&ch.id, me).await?;
        app.invalidate_permissions();
    }
    Ok(Response::Ok)
}

/// `channel_kick` / `channel_ban`: removes a member (needs `kick` / `ban`).
pub(super) async fn remove(app: &App, me: &UserId, r: MemberRef, ban: bool) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require_hosted(app, &ch)?;
    let needed = if ban {
        Permissions::BAN
    } else {
        Permissions::KICK
    };
    let order = app.channel_lock(&ch.id).await?;
    perms::require(app, &ch, me, needed).await?;
    // Oneself first: an owner naming itself is told how to leave, not that owners stay.
    if r.user == *me {
        return Err(err(
            ErrorCode::InvalidArgument,
            "use channel_leave to leave",
        ));
    }
    if r.user == ch.owner {
        return Err(err(
            ErrorCode::Forbidden,
            "the channel owner cannot be removed",
        ));
    }
    if ban {
        app.store.ban_add(&ch.id, &r.user, me, now_ms()).await?;
        app.invalidate_permissions();
        match depart(app, &order, &ch, &r.user, LeaveReason::Banned).await {
            // Banning someone who already left is fine: the ban stands.
            Ok(()) => {}
            Err(e) if e.code() == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
    } else {
        depart(app, &order, &ch, &r.user, LeaveReason::Kicked).await?;
    }
    tracing::info!(channel = %ch.id, by = %me, user = %r.user, ban, "member removed");
    Ok(Response::Ok)
}

/// `channel_unban`: lifts a ban (needs `ban`).
pub(super) async fn unban(app: &App, me: &UserId, r: MemberRef) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require_hosted(app, &ch)?;
    perms::require(app, &ch, me, Permissions::BAN).await?;
    if !app.store.ban_remove(&ch.id, &r.user).await? {
        return Err(err(ErrorCode::NotFound, "not banned"));
    }
    Ok(Response::Ok)
}

/// `channel_members`: the members, from the host when the channel lives elsewhere.
pub(super) async fn members(app: &App, me: &UserId, r: ChannelRef) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require(app, &ch, me, Permissions::VIEW).await?;
    if let Some(m) = from_host(app, me, &ch).await {
        return Ok(Response::Members(m));
    }
    Ok(Response::Members(member_list(app, &ch).await?))
}

/// For a channel hosted elsewhere, its member list as the host has it (federation query
/// `members`, asked on behalf of `me`); `None` for a channel hosted here, with federation off, or
/// when the host cannot answer — then only this server's copy is left, which knows just the
/// members who joined after this server's first user did.
pub(super) async fn from_host(app: &App, me: &UserId, ch: &ChannelRow) -> Option<Members> {
    if app.hosts(&ch.id) || app.federation().is_none() {
        return None;
    }
    let q = Query::Members {
        channel: ch.id.clone(),
        user: me.clone(),
    };
    match remote::query(app, &ch.id.host, q).await {
        Ok(QueryResult::Members(m)) if m.channel == ch.id => return Some(m),
        Ok(_) => tracing::warn!(host = %ch.id.host, "unexpected answer to a members query"),
        Err(e) => {
            tracing::info!(host = %ch.id.host, error = %e, "members from the host failed; answering from the local copy")
        }
    }
    None
}

/// The channel's members as this server knows them.
pub(crate) async fn member_list(app: &App, ch: &ChannelRow) -> Result<Members, DomainError> {
    let mut members = Vec::new();
    for (user, joined_at) in app.store.members(&ch.id).await? {
        let roles = app
            .store
            .roles_of(&user)
            .await?
            .iter()
            .map(|r| r.id)
            .collect();
        members.push(Member {
            user,
            joined_at,
            roles,
        });
    }
    Ok(Members {
        channel: ch.id.clone(),
        members,
    })
}

/// `channel_permissions`: the caller's effective permissions in a channel.
pub(super) async fn permissions(app: &App, me: &UserId, r: ChannelRef) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    let p = perms::require(app, &ch, me, Permissions::NONE).await?;
    Ok(Response::Permissions(EffectivePermissions {
        channel: ch.id.clone(),
        permissions: p,
    }))
}
