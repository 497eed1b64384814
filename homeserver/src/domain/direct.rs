//! To-device messages (spec `client/direct.md`): stored durably first, pushed live to every
//! connection of the recipient, deleted only when the recipient acknowledges them.

use std::sync::atomic::Ordering;

use mobium_spec::client::{
    DirectAck, DirectAcked, DirectMessage, DirectSend, DirectSent, Event, MAX_ACK_IDS, Response,
};
use mobium_spec::{ErrorCode, UserId};

use super::{App, Handled, err, now_ms, remote, txn};
use mobium_spec::federation::{FedDirect, FedEvent};

use crate::storage::{DirectRow, StoreError};

/// `direct_send`: stored durably (here, or in the outbox for another server), then answered.
pub(super) async fn send(app: &App, me: &UserId, r: DirectSend) -> Handled {
    app.check_size(&r.ciphertext)?;
    txn::check(r.txn.as_deref())?;
    // A repeat of a named send: its first answer, and nothing stored again.
    if let Some(answer) = txn::remembered(app, me, r.txn.as_deref()).await? {
        return Ok(answer);
    }
    if !app.is_local(&r.to) {
        return send_remote(app, me, r).await;
    }
    if !app.store.user_exists(&r.to.key).await? {
        return Err(err(ErrorCode::NotFound, "no such user on this server"));
    }
    let now = now_ms();
    let ttl = u64::try_from(app.settings.message_ttl.as_millis()).unwrap_or(u64::MAX);
    let row = DirectRow {
        id: app.next_id(),
        recipient: r.to.clone(),
        sender: me.clone(),
        ciphertext: r.ciphertext,
        sent_at: now,
        expires_at: now.saturating_add(ttl),
    };
    let sent = DirectSent {
        id: row.id,
        sent_at: row.sent_at,
    };
    let cap = app.settings.max_offline_messages;
    match txn::record(me, r.txn.as_deref(), &Response::DirectSent(sent)) {
        None => app.timed(app.store.direct_enqueue(&row, cap)).await?,
        Some(rec) => match app
            .timed(app.store.direct_enqueue_with_txn(&row, cap, &rec))
            .await
        {
            // A concurrent repeat of this send was stored first.
            Err(StoreError::TxnSeen) => return txn::replay(app, me, r.txn.as_deref()).await,
            other => other?,
        },
    }
    app.metrics.direct_messages.fetch_add(1, Ordering::Relaxed);
    let frame = mobium_client_api::server::encode_event(&Event::Direct(DirectMessage {
        id: row.id,
        from: row.sender,
        ciphertext: row.ciphertext,
        sent_at: row.sent_at,
    }));
    app.hub.push(&r.to.key, &frame);
    Ok(Response::DirectSent(sent))
}

/// To a user on another server: queued durably in the outbox; their server delivers it.
async fn send_remote(app: &App, me: &UserId, r: DirectSend) -> Handled {
    // Without federation nothing would ever deliver it: refused now, not queued.
    remote::link(app)?;
    let sent = DirectSent {
        id: app.next_id(),
        sent_at: now_ms(),
    };
    let event = FedEvent::Direct(FedDirect {
        id: sent.id,
        from: me.clone(),
        to: r.to.clone(),
        ciphertext: r.ciphertext,
        sent_at: sent.sent_at,
    });
    let answer = Response::DirectSent(sent);
    let rec = txn::record(me, r.txn.as_deref(), &answer);
    if !remote::enqueue_named(app, vec![remote::item(&r.to.server, &event)], rec).await? {
        // A concurrent repeat of this send was queued first.
        return txn::replay(app, me, r.txn.as_deref()).await;
    }
    app.metrics.direct_messages.fetch_add(1, Ordering::Relaxed);
    Ok(answer)
}

/// `direct_ack`: deletes the caller's delivered to-device messages and failure notices.
pub(super) async fn ack(app: &App, me: &UserId, r: DirectAck) -> Handled {
    if r.ids.len() > MAX_ACK_IDS {
        return Err(err(
            ErrorCode::TooLarge,
            "at most 1000 ids per acknowledgement",
        ));
    }
    let removed = app.store.direct_ack(me, &r.ids).await?;
    Ok(Response::DirectAcked(DirectAcked {
        removed: u32::try_from(removed).unwrap_or(u32::MAX),
    }))
}
