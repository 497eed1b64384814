//! Presence and typing (spec `client/presence.md`): ephemeral, pushed to the users who share a
//! channel with the subject, never stored.

use std::collections::BTreeSet;

use mobium_client_api::server::encode_event;
use mobium_spec::UserId;
use mobium_spec::client::{
    ChannelRef, Event, PresenceEntry, PresenceSet, PresenceStatus, Presences, Response, TypingEvent,
};
use mobium_spec::permissions::Permissions;

use mobium_spec::ServerName;
use mobium_spec::federation::Ephemeral;

use super::DomainError;
use super::{App, Handled, perms, remote};
use crate::storage::ChannelRow;

/// Users (local and remote) who share at least one channel with `user` (not including `user`).
async fn co_members(app: &App, user: &UserId) -> Result<BTreeSet<UserId>, DomainError> {
    let mut out = BTreeSet::new();
    for ch in app.store.channels_of(user).await? {
        for u in perms::viewers(app, &ch).await?.iter() {
            if u != user {
                out.insert(u.clone());
            }
        }
    }
    Ok(out)
}

/// Tells everyone who shares a channel with `user` that their visible status is `status`.
pub(super) async fn broadcast(app: &App, user: &UserId, status: PresenceStatus) {
    let others = match co_members(app, user).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "presence broadcast skipped");
            return;
        }
    };
    let frame = encode_event(&Event::Presence(PresenceEntry {
        user: user.clone(),
        status,
    }));
    let mut servers = BTreeSet::new();
    for u in others {
        if app.is_local(&u) {
            app.hub.push(&u.key, &frame);
        } else {
            servers.insert(u.server.clone());
        }
    }
    remote::ephemeral(
        app,
        servers,
        Ephemeral::Presence {
            user: user.clone(),
            status,
        },
    );
}

/// `presence_set`: the caller's status, told to everyone who shares a channel with them.
pub(super) async fn set(app: &App, me: &UserId, r: PresenceSet) -> Handled {
    if let Some(visible) = app.hub.set_status(&me.key, r.status) {
        if let Some(c) = app.cluster() {
            c.status_chosen(&me.key, r.status).await;
        }
        broadcast(app, me, visible).await;
    }
    Ok(Response::Ok)
}

/// `presence_list`: the status of everyone the caller shares a channel with.
pub(super) async fn list(app: &App, me: &UserId) -> Handled {
    // Presence of users on other servers arrives as ephemeral events and is not kept.
    let mut entries = Vec::new();
    for u in co_members(app, me)
        .await?
        .into_iter()
        .filter(|u| app.is_local(u))
    {
        entries.push(PresenceEntry {
            status: app.visible_status(&u.key).await,
            user: u,
        });
    }
    Ok(Response::Presences(Presences { entries }))
}

/// `typing`: a typing notice to the channel's other members (never stored).
pub(super) async fn typing(app: &App, me: &UserId, r: ChannelRef) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require(app, &ch, me, Permissions::SEND).await?;
    let frame = encode_event(&Event::Typing(TypingEvent {
        channel: ch.id.clone(),
        user: me.clone(),
    }));
    for u in perms::viewers(app, &ch).await?.iter() {
        if u != me && app.is_local(u) {
            app.hub.push(&u.key, &frame);
        }
    }
    if app.hosts(&ch.id) {
        relay_typing(app, &ch, me, None).await;
    } else {
        remote::ephemeral(
            app,
            [ch.id.host.clone()],
            Ephemeral::Typing {
                channel: ch.id.clone(),
                user: me.clone(),
            },
        );
    }
    Ok(Response::Ok)
}

/// On the host: passes a typing notice to every member server except `skip` (its origin).
pub(crate) async fn relay_typing(
    app: &App,
    ch: &ChannelRow,
    user: &UserId,
    skip: Option<&ServerName>,
) {
    let Ok(servers) = perms::member_servers(app, ch).await else {
        return;
    };
    let dests = servers.iter().filter(|s| Some(*s) != skip).cloned();
    remote::ephemeral(
        app,
        dests,
        Ephemeral::Typing {
            channel: ch.id.clone(),
            user: user.clone(),
        },
    );
}
