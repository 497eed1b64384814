//! Channels and invites (spec `client/channels.md`): create, update, list, invite links, and
//! joining — on this server, or on another server through a federation query to the host,
//! after which this server keeps a replica of the channel for its users.

use mobium_spec::client::{
    ChannelCreate, ChannelCreated, ChannelInfo, ChannelJoin, ChannelRef, ChannelUpdate, Channels,
    InviteCreate, InviteInfo, InviteRevoke, Invites, MAX_METADATA_BYTES, Response,
};
use mobium_spec::federation::{HostedBody, Query, QueryResult};
use mobium_spec::permissions::Permissions;
use mobium_spec::{ChannelId, ErrorCode, ServerName, UserId};

use super::DomainError;
use super::{App, Handled, change, err, now_ms, perms, remote};
use crate::storage::{ChannelRow, InviteRow, InviteUse};

/// Invite codes: 16 random bytes as 22 characters of unpadded base64url.
fn new_invite_code() -> Result<String, DomainError> {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|_| err::<DomainError>(ErrorCode::Internal, "internal error"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

async fn info(app: &App, ch: &ChannelRow) -> Result<ChannelInfo, DomainError> {
    Ok(ChannelInfo {
        channel: ch.id.clone(),
        metadata: ch.metadata.clone(),
        owner: ch.owner.clone(),
        created_at: ch.created_at,
        member_count: app.store.member_count(&ch.id).await?,
    })
}

/// `channel_create`: a new channel hosted here, its creator the owner and first member.
pub(super) async fn create(app: &App, me: &UserId, r: ChannelCreate) -> Handled {
    if r.metadata.len() > MAX_METADATA_BYTES {
        return Err(err(ErrorCode::TooLarge, "metadata is limited to 16 KiB"));
    }
    let id = ChannelId::new(app.next_id().get(), app.server_name.clone())
        .map_err(|_| err::<DomainError>(ErrorCode::Internal, "internal error"))?;
    let row = ChannelRow {
        id: id.clone(),
        owner: me.clone(),
        metadata: r.metadata,
        created_at: now_ms(),
    };
    app.store.channel_create(&row).await?;
    app.invalidate_permissions();
    tracing::info!(channel = %id, owner = %me, "channel created");
    Ok(Response::ChannelCreated(ChannelCreated { channel: id }))
}

/// `channel_update`: replaces the encrypted metadata (needs `manage_channel`).
pub(super) async fn update(app: &App, me: &UserId, r: ChannelUpdate) -> Handled {
    if r.metadata.len() > MAX_METADATA_BYTES {
        return Err(err(ErrorCode::TooLarge, "metadata is limited to 16 KiB"));
    }
    let ch = perms::channel(app, &r.channel).await?;
    perms::require_hosted(app, &ch)?;
    let order = app.channel_lock(&ch.id).await?;
    perms::require(app, &ch, me, Permissions::MANAGE_CHANNEL).await?;
    let body = HostedBody::MetadataUpdated {
        metadata: r.metadata,
    };
    change::commit(app, &order, &ch, body, None, None).await?;
    Ok(Response::Ok)
}

/// `channel_list`: every channel the caller is a member of. `member_count` is the one
/// `channel_members` would list: for a channel hosted elsewhere the host's count (the hosts are
/// asked concurrently), this server's copy only when a host cannot answer.
pub(super) async fn list(app: &App, me: &UserId) -> Handled {
    let rows = app.store.channels_of(me).await?;
    let answers = futures_util::future::join_all(rows.iter().map(|ch| listed(app, me, ch))).await;
    let channels = answers.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(Response::Channels(Channels { channels }))
}

/// One `channel_list` entry.
async fn listed(app: &App, me: &UserId, ch: &ChannelRow) -> Result<ChannelInfo, DomainError> {
    let mut entry = info(app, ch).await?;
    if let Some(m) = super::membership::from_host(app, me, ch).await {
        entry.member_count = u32::try_from(m.members.len()).unwrap_or(u32::MAX);
    }
    Ok(entry)
}

/// `invite_create`: an invite link, with optional use limit and expiry (needs `create_invite`).
pub(super) async fn invite_create(app: &App, me: &UserId, r: InviteCreate) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require_hosted(app, &ch)?;
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

/// `invite_revoke`: the invite can no longer be used.
pub(super) async fn invite_revoke(app: &App, me: &UserId, r: InviteRevoke) -> Handled {
    let row = app
        .store
        .invite_get(&r.code)
        .await?
        .filter(|row| !row.revoked)
        .ok_or_else(|| err::<DomainError>(ErrorCode::InviteInvalid, "no such invite"))?;
    if row.created_by != *me {
        let ch = perms::channel(app, &row.channel).await?;
        perms::require(app, &ch, me, Permissions::MANAGE_CHANNEL).await?;
    }
    app.store.invite_revoke(&r.code).await?;
    Ok(Response::Ok)
}

/// `invite_list`: a channel's invites that can still be used.
pub(super) async fn invite_list(app: &App, me: &UserId, r: ChannelRef) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require_hosted(app, &ch)?;
    perms::require(app, &ch, me, Permissions::MANAGE_CHANNEL).await?;
    let invites = app.store.invites_of(&ch.id, now_ms()).await?;
    Ok(Response::Invites(Invites {
        invites: invites.into_iter().map(invite_info).collect(),
    }))
}

/// `channel_join`: joins with an invite code, here or through the host's server.
pub(super) async fn join(app: &App, me: &UserId, r: ChannelJoin) -> Handled {
    let (code, host) = match r.code.split_once('@') {
        None => (r.code.as_str(), None),
        Some((code, host)) if host == app.server_name.as_str() => (code, None),
        Some((code, host)) => match host.parse::<ServerName>() {
            Ok(h) => (code, Some(h)),
            Err(_) => {
                return Err(err(
                    ErrorCode::InviteInvalid,
                    "the invite's server name is not valid",
                ));
            }
        },
    };
    let Some(host) = host else {
        let (info, _) = join_hosted(app, me, code).await?;
        return Ok(Response::Joined(info));
    };
    // A channel on another server: the host decides; this server keeps a replica.
    let q = Query::JoinChannel {
        code: code.to_owned(),
        user: me.clone(),
    };
    let (info, seq) = match remote::query(app, &host, q).await? {
        QueryResult::Joined { channel, seq } => (channel, seq),
        _ => {
            return Err(err(
                ErrorCode::FederationUnavailable,
                "unexpected answer from the host",
            ));
        }
    };
    if info.channel.host != host {
        return Err(err(
            ErrorCode::FederationUnavailable,
            "the host answered for another server's channel",
        ));
    }
    let row = ChannelRow {
        id: info.channel.clone(),
        owner: info.owner.clone(),
        metadata: info.metadata.clone(),
        created_at: info.created_at,
    };
    app.store.channel_put(&row).await?;
    app.store.member_add(&row.id, me, now_ms()).await?;
    if app.store.channel_last_seq(&row.id).await? < seq {
        app.store.channel_set_last_seq(&row.id, seq).await?;
    }
    app.invalidate_permissions();
    tracing::info!(channel = %row.id, user = %me, "joined a channel on another server");
    Ok(Response::Joined(info))
}

/// On the host: `user` (local or remote) joins with invite `code`. Returns the channel and the
/// `seq` of the `member_joined` event.
pub(crate) async fn join_hosted(
    app: &App,
    user: &UserId,
    code: &str,
) -> Result<(ChannelInfo, u64), DomainError> {
    let invite = app
        .store
        .invite_get(code)
        .await?
        .ok_or_else(|| err::<DomainError>(ErrorCode::InviteInvalid, "no such invite"))?;
    let ch = perms::channel(app, &invite.channel).await?;
    let order = app.channel_lock(&ch.id).await?;
    if app.store.is_banned(&ch.id, user).await? {
        return Err(err(ErrorCode::Banned, "you are banned from this channel"));
    }
    if app.store.member_joined_at(&ch.id, user).await?.is_some() {
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
    let body = HostedBody::MemberJoined { user: user.clone() };
    let seq = change::commit(app, &order, &ch, body, Some(&user.server), None)
        .await?
        .ok_or_else(|| err::<DomainError>(ErrorCode::Conflict, "already a member"))?;
    Ok((info(app, &ch).await?, seq))
}
