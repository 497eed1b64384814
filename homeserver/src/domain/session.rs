//! Authentication and the connection lifecycle (spec `client/auth.md`): the registration policy,
//! registering the connection for live events, draining queued to-device messages, and
//! presence when a session starts and ends (a grace period after the last disconnect).

use mobium_client_api::server::{AuthRequest, Connection};
use mobium_spec::client::{Authed, DirectMessage, Event, PresenceStatus};
use mobium_spec::{ErrorCode, PublicKey, UserId};

use super::DomainError;
use super::{App, Policy, err, now_ms, presence};
use crate::hub::Closed;

/// How many queued messages are read per batch while draining.
const DRAIN_BATCH: u32 = 256;

/// `auth`: the registration policy, then the connection is registered for live events.
pub(crate) async fn authenticate(
    app: &App,
    conn: &Connection,
    auth: AuthRequest,
) -> Result<Authed, DomainError> {
    let mut registered = false;
    if !app.store.user_exists(&auth.user).await? {
        match app.settings.registration {
            Policy::Open => {}
            Policy::Closed => {
                return Err(err(
                    ErrorCode::RegistrationClosed,
                    "this server does not accept new users",
                ));
            }
            Policy::Invite => {
                let Some(invite) = auth.invite.as_deref() else {
                    return Err(err(
                        ErrorCode::RegistrationClosed,
                        "this server needs an invite to register",
                    ));
                };
                if !invite_allows_registration(app, invite).await? {
                    return Err(err(
                        ErrorCode::RegistrationClosed,
                        "the invite is not valid",
                    ));
                }
            }
        }
        registered = app.store.user_create(&auth.user, now_ms()).await?;
        if registered {
            tracing::info!(user = %auth.user, "registered a new user");
        }
    }
    let first = app.hub.register(auth.user, conn.clone());
    app.metrics
        .logins
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let me = app.local_user(&auth.user);
    let queued = app
        .store
        .direct_pending(&me, None, app.settings.max_offline_messages)
        .await?
        .len();
    if first {
        // On a managed server the user may be online on another instance already: then the
        // others see no change, and no one is told.
        let elsewhere = match app.cluster() {
            Some(c) => {
                // Subscribed before `authed`, so no event published after it is missed.
                c.bus().settled().await;
                c.session_started(&auth.user, None).await;
                c.status_elsewhere(&auth.user).await
            }
            None => None,
        };
        if elsewhere.is_none() {
            presence::broadcast(app, &me, app.hub.visible_status(&auth.user)).await;
        }
    }
    Ok(Authed {
        user_id: me,
        registered,
        queued: u32::try_from(queued).unwrap_or(u32::MAX),
    })
}

/// A registration token (consumed) or a usable channel invite of this server (not consumed).
async fn invite_allows_registration(app: &App, invite: &str) -> Result<bool, DomainError> {
    if app.store.reg_token_consume(invite, now_ms()).await? {
        return Ok(true);
    }
    let Some(row) = app.store.invite_get(invite).await? else {
        return Ok(false);
    };
    let usable = !row.revoked
        && row.expires_at.is_none_or(|t| t > now_ms())
        && row.max_uses.is_none_or(|m| row.uses < m);
    Ok(usable)
}

/// Pushes every queued to-device message, oldest first, then every queued failure notice.
/// Both stay queued until acked.
pub(crate) async fn authenticated(app: &App, conn: &Connection, user: &PublicKey) {
    let me = app.local_user(user);
    if drain_direct(app, conn, &me).await {
        drain_failures(app, conn, &me).await;
    }
}

/// Pushes the queued to-device messages; `false` if the connection went away meanwhile.
async fn drain_direct(app: &App, conn: &Connection, me: &UserId) -> bool {
    let mut after = None;
    loop {
        let batch = match app.store.direct_pending(me, after, DRAIN_BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "draining the offline queue failed");
                return false;
            }
        };
        let n = batch.len();
        for row in batch {
            after = Some(row.id);
            let ev = Event::Direct(DirectMessage {
                id: row.id,
                from: row.sender,
                ciphertext: row.ciphertext,
                sent_at: row.sent_at,
            });
            if !conn.push_event(ev) {
                return false;
            }
        }
        if n < DRAIN_BATCH as usize {
            return true;
        }
    }
}

/// Pushes the queued `direct_failed` notices (messages other servers refused for good).
async fn drain_failures(app: &App, conn: &Connection, me: &UserId) {
    let mut after = None;
    loop {
        let batch = match app
            .store
            .direct_failures_pending(me, after, DRAIN_BATCH)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "draining failure notices failed");
                return;
            }
        };
        let n = batch.len();
        for row in batch {
            after = Some(row.id);
            let ev = Event::DirectFailed(crate::outbox::failed_event(&row));
            if !conn.push_event(ev) {
                return;
            }
        }
        if n < DRAIN_BATCH as usize {
            return;
        }
    }
}

/// A connection closed. After the user's last one the session lingers for the grace period
/// (spec `client/presence.md` §Lifecycle) and ends, announcing offline, only if no connection
/// authenticated meanwhile: a reconnect, or the next short-lived CLI command, flaps nothing.
pub(crate) async fn disconnected(app: &App, conn: &Connection, user: &PublicKey) {
    let grace = app.settings.presence_grace;
    match app.hub.unregister(user, conn.id(), !grace.is_zero()) {
        Closed::Open => {}
        Closed::Ended => session_ended(app, user).await,
        Closed::Lingering(token) => {
            let (me, user) = (app.me.clone(), *user);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                // The weak handle ends this task with the server.
                let Some(app) = me.upgrade() else { return };
                if app.hub.end_lingering(&user, token) {
                    session_ended(&app, &user).await;
                }
            });
        }
    }
}

/// The session is over: the rate limiter forgets the user, and the others see them offline
/// (unless, on a managed server, they still have a session on another instance).
async fn session_ended(app: &App, user: &PublicKey) {
    app.rate.forget(user);
    if let Some(c) = app.cluster() {
        c.session_ended(user).await;
        if c.status_elsewhere(user).await.is_some() {
            return;
        }
    }
    let me = app.local_user(user);
    presence::broadcast(app, &me, PresenceStatus::Offline).await;
}
