//! Presence and typing (spec `client/presence.md`): ephemeral, pushed to the users who share a
//! channel with the subject, never stored.

use std::collections::BTreeSet;

use mobium_client_api::server::encode_event;
use mobium_spec::UserId;
use mobium_spec::client::{
    ChannelRef, ErrorBody, Event, PresenceEntry, PresenceSet, PresenceStatus, Presences, Response,
    TypingEvent,
};
use mobium_spec::permissions::Permissions;

use super::{App, Handled, perms};

/// Local users who share at least one channel with `user` (not including `user`).
async fn co_members(app: &App, user: &UserId) -> Result<BTreeSet<UserId>, ErrorBody> {
    let mut out = BTreeSet::new();
    for ch in app.store.channels_of(user).await? {
        for u in perms::viewers(app, &ch).await?.iter() {
            if u != user && app.is_local(u) {
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
            tracing::warn!(code = %e.code, "presence broadcast skipped");
            return;
        }
    };
    let frame = encode_event(&Event::Presence(PresenceEntry {
        user: user.clone(),
        status,
    }));
    for u in others {
        app.hub.push(&u.key, &frame);
    }
}

pub(super) async fn set(app: &App, me: &UserId, r: PresenceSet) -> Handled {
    if let Some(visible) = app.hub.set_status(&me.key, r.status) {
        broadcast(app, me, visible).await;
    }
    Ok(Response::Ok)
}

pub(super) async fn list(app: &App, me: &UserId) -> Handled {
    let entries = co_members(app, me)
        .await?
        .into_iter()
        .map(|u| PresenceEntry {
            status: app.hub.visible_status(&u.key),
            user: u,
        })
        .collect();
    Ok(Response::Presences(Presences { entries }))
}

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
    Ok(Response::Ok)
}
