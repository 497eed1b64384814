//! Channels, invites and membership (spec `client/channels.md`).

use mobium_client_api::server::encode_event;
use mobium_spec::client::{
    ChannelCreate, ChannelCreated, ChannelInfo, ChannelJoin, ChannelRef, ChannelUpdate, Channels,
    EffectivePermissions, ErrorBody, Event, InviteCreate, InviteInfo, InviteRevoke, Invites,
    LeaveReason, MAX_METADATA_BYTES, Member, MemberEvent, MemberLeft, MemberRef, Members, Response,
};
use mobium_spec::permissions::Permissions;
use mobium_spec::{ChannelId, ErrorCode, UserId};

use super::{App, Handled, err, now_ms, perms};
use crate::storage::{ChannelRow, InviteRow, InviteUse};

/// Invite codes: 16 random bytes as 22 characters of unpadded base64url.
fn new_invite_code() -> Result<String, ErrorBody> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| err(ErrorCode::Internal, "internal error"))?;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = String::with_capacity(22);
    for b in bytes {
        bits = (bits << 8) | u32::from(b);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(ALPHABET[((bits >> nbits) & 63) as usize]));
        }
    }
    if nbits > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - nbits)) & 63) as usize]));
    }
    Ok(out)
}

async fn info(app: &App, ch: &ChannelRow) -> Result<ChannelInfo, ErrorBody> {
    Ok(ChannelInfo {
        channel: ch.id.clone(),
        metadata: ch.metadata.clone(),
        owner: ch.owner.clone(),
        created_at: ch.created_at,
        member_count: app.store.member_count(&ch.id).await?,
    })
}

pub(super) async fn create(app: &App, me: &UserId, r: ChannelCreate) -> Handled {
    if r.metadata.len() > MAX_METADATA_BYTES {
        return Err(err(ErrorCode::TooLarge, "metadata is limited to 16 KiB"));
    }
    let id = ChannelId::new(app.next_id().get(), app.server_name.clone())
        .map_err(|_| err(ErrorCode::Internal, "internal error"))?;
    let row = ChannelRow {
        id: id.clone(),
        owner: me.clone(),
        metadata: r.metadata,
        created_at: now_ms(),
    };
    app.store.channel_create(&row).await?;
    app.cache.clear();
    tracing::info!(channel = %id, owner = %me, "channel created");
    Ok(Response::ChannelCreated(ChannelCreated { channel: id }))
}

pub(super) async fn update(app: &App, me: &UserId, r: ChannelUpdate) -> Handled {
    if r.metadata.len() > MAX_METADATA_BYTES {
        return Err(err(ErrorCode::TooLarge, "metadata is limited to 16 KiB"));
    }
    let ch = perms::channel(app, &r.channel).await?;
    perms::require(app, &ch, me, Permissions::MANAGE_CHANNEL).await?;
    app.store.channel_set_metadata(&ch.id, &r.metadata).await?;
    app.cache.clear();
    let frame = encode_event(&Event::ChannelUpdated(r));
    perms::fan_out(app, &ch, &frame).await?;
    Ok(Response::Ok)
}

pub(super) async fn list(app: &App, me: &UserId) -> Handled {
    let mut channels = Vec::new();
    for ch in app.store.channels_of(me).await? {
        channels.push(info(app, &ch).await?);
    }
    Ok(Response::Channels(Channels { channels }))
}

pub(super) async fn invite_create(app: &App, me: &UserId, r: InviteCreate) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require(app, &ch, me, Permissions::CREATE_INVITE).await?;
    if r.max_uses == Some(0) {
        return Err(err(
            ErrorCode::InvalidArgument,
            "max_uses must be at least 1",
        ));
    }
    let expires_at = match r.expires_in_secs {
        Some(0) => {
            return Err(err(
                ErrorCode::InvalidArgument,
                "expires_in_secs must be at least 1",
            ));
        }
        Some(s) => Some(now_ms().saturating_add(s.saturating_mul(1000))),
        None => None,
    };
    let row = InviteRow {
        code: new_invite_code()?,
        channel: ch.id.clone(),
        created_by: me.clone(),
        max_uses: r.max_uses,
        uses: 0,
        expires_at,
        revoked: false,
    };
    app.store.invite_create(&row).await?;
    Ok(Response::Invite(invite_info(row)))
}

fn invite_info(row: InviteRow) -> InviteInfo {
    InviteInfo {
        code: row.code,
        channel: row.channel,
        created_by: row.created_by,
        max_uses: row.max_uses,
        uses: row.uses,
        expires_at: row.expires_at,
    }
}

pub(super) async fn invite_revoke(app: &App, me: &UserId, r: InviteRevoke) -> Handled {
    let row = app
        .store
        .invite_get(&r.code)
        .await?
        .filter(|row| !row.revoked)
        .ok_or_else(|| err(ErrorCode::InviteInvalid, "no such invite"))?;
    if row.created_by != *me {
        let ch = perms::channel(app, &row.channel).await?;
        perms::require(app, &ch, me, Permissions::MANAGE_CHANNEL).await?;
    }
    app.store.invite_revoke(&r.code).await?;
    Ok(Response::Ok)
}

pub(super) async fn invite_list(app: &App, me: &UserId, r: ChannelRef) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require(app, &ch, me, Permissions::MANAGE_CHANNEL).await?;
    let invites = app.store.invites_of(&ch.id, now_ms()).await?;
    Ok(Response::Invites(Invites {
        invites: invites.into_iter().map(invite_info).collect(),
    }))
}

pub(super) async fn join(app: &App, me: &UserId, r: ChannelJoin) -> Handled {
    let code = match r.code.split_once('@') {
        None => r.code.as_str(),
        Some((code, host)) if host == app.server_name.as_str() => code,
        Some((_, host)) if host.parse::<mobium_spec::ServerName>().is_err() => {
            return Err(err(
                ErrorCode::InviteInvalid,
                "the invite's server name is not valid",
            ));
        }
        Some(_) => {
            return Err(err(
                ErrorCode::FederationUnavailable,
                "joining channels on other servers needs federation, not yet enabled",
            ));
        }
    };
    let invite = app
        .store
        .invite_get(code)
        .await?
        .ok_or_else(|| err(ErrorCode::InviteInvalid, "no such invite"))?;
    let ch = perms::channel(app, &invite.channel).await?;
    if app.store.is_banned(&ch.id, me).await? {
        return Err(err(ErrorCode::Banned, "you are banned from this channel"));
    }
    if app.store.member_joined_at(&ch.id, me).await?.is_some() {
        return Err(err(ErrorCode::Conflict, "already a member"));
    }
    match app.store.invite_use(code, now_ms()).await? {
        InviteUse::Used => {}
        InviteUse::Invalid => return Err(err(ErrorCode::InviteInvalid, "the invite was revoked")),
        InviteUse::Expired => return Err(err(ErrorCode::InviteExpired, "the invite has expired")),
        InviteUse::Exhausted => {
            return Err(err(
                ErrorCode::InviteExhausted,
                "the invite has been used up",
            ));
        }
    }
    if !app.store.member_add(&ch.id, me, now_ms()).await? {
        return Err(err(ErrorCode::Conflict, "already a member"));
    }
    app.cache.clear();
    let frame = encode_event(&Event::MemberJoined(MemberEvent {
        channel: ch.id.clone(),
        user: me.clone(),
    }));
    perms::fan_out(app, &ch, &frame).await?;
    Ok(Response::Joined(info(app, &ch).await?))
}

/// Removes a member and tells the remaining viewers and the removed user.
async fn depart(
    app: &App,
    ch: &ChannelRow,
    user: &UserId,
    reason: LeaveReason,
) -> Result<(), ErrorBody> {
    let viewers_before = perms::viewers(app, ch).await?;
    if !app.store.member_remove(&ch.id, user).await? {
        return Err(err(ErrorCode::NotFound, "not a member"));
    }
    app.cache.clear();
    let frame = encode_event(&Event::MemberLeft(MemberLeft {
        channel: ch.id.clone(),
        user: user.clone(),
        reason,
    }));
    for u in viewers_before.iter() {
        if app.is_local(u) {
            app.hub.push(&u.key, &frame);
        }
    }
    if app.is_local(user) && !viewers_before.contains(user) {
        app.hub.push(&user.key, &frame);
    }
    Ok(())
}

pub(super) async fn leave(app: &App, me: &UserId, r: ChannelRef) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    if app.store.member_joined_at(&ch.id, me).await?.is_none() {
        return Err(err(ErrorCode::NotFound, "no such channel"));
    }
    depart(app, &ch, me, LeaveReason::Left).await?;
    Ok(Response::Ok)
}

pub(super) async fn remove(app: &App, me: &UserId, r: MemberRef, ban: bool) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    let needed = if ban {
        Permissions::BAN
    } else {
        Permissions::KICK
    };
    perms::require(app, &ch, me, needed).await?;
    if r.user == ch.owner {
        return Err(err(
            ErrorCode::Forbidden,
            "the channel owner cannot be removed",
        ));
    }
    if r.user == *me {
        return Err(err(
            ErrorCode::InvalidArgument,
            "use channel_leave to leave",
        ));
    }
    if ban {
        app.store.ban_add(&ch.id, &r.user, me, now_ms()).await?;
        app.cache.clear();
        match depart(app, &ch, &r.user, LeaveReason::Banned).await {
            // Banning someone who already left is fine: the ban stands.
            Ok(()) => {}
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
    } else {
        depart(app, &ch, &r.user, LeaveReason::Kicked).await?;
    }
    tracing::info!(channel = %ch.id, by = %me, user = %r.user, ban, "member removed");
    Ok(Response::Ok)
}

pub(super) async fn unban(app: &App, me: &UserId, r: MemberRef) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require(app, &ch, me, Permissions::BAN).await?;
    if !app.store.ban_remove(&ch.id, &r.user).await? {
        return Err(err(ErrorCode::NotFound, "not banned"));
    }
    Ok(Response::Ok)
}

pub(super) async fn members(app: &App, me: &UserId, r: ChannelRef) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require(app, &ch, me, Permissions::VIEW).await?;
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
    Ok(Response::Members(Members {
        channel: ch.id.clone(),
        members,
    }))
}

pub(super) async fn permissions(app: &App, me: &UserId, r: ChannelRef) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    let p = perms::require(app, &ch, me, Permissions::NONE).await?;
    Ok(Response::Permissions(EffectivePermissions {
        channel: ch.id.clone(),
        permissions: p,
    }))
}
