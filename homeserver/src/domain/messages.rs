//! Channel messages (spec `client/messages.md`): send (committed before the answer), history
//! pages, edit and delete, and the events they cause. On the host the change and the events
//! for member servers commit together; for a channel hosted elsewhere the action is queued
//! durably for the host, which orders it and sends it back as a hosted event.

use std::sync::atomic::Ordering;

use mobium_spec::client::{
    ChannelMessage, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT, History, MessageEdit, MessageRef,
    MessageSend, MessageSent, Messages, Response,
};
use mobium_spec::federation::{
    ChannelDelete, ChannelEdit, ChannelSend, FedEvent, HostedBody, Query, QueryResult,
};
use mobium_spec::permissions::Permissions;
use mobium_spec::{ErrorCode, MessageId, UserId};

use mobium_client_api::server::Entry;

use super::DomainError;
use super::{App, Handled, err, now_ms, perms};
use super::{change, remote, txn};
use crate::storage::{ChannelRow, HistoryQuery, StoreError};

/// `message_send`: ordered and committed by the channel's host (here, or queued for it).
pub(super) async fn send(app: &App, me: &UserId, r: MessageSend, entry: &Entry) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    app.check_message(&r.ciphertext)?;
    txn::check(r.txn.as_deref())?;
    // A repeat of a named send: its first answer, and nothing stored again.
    if let Some(answer) = txn::remembered(app, me, r.txn.as_deref()).await? {
        return Ok(answer);
    }
    if !app.hosts(&ch.id) {
        // The host checks again when it orders the message; this spares it the obvious cases.
        perms::require(app, &ch, me, Permissions::SEND).await?;
        // Queue it for the host; the id is provisional and comes back as `origin_id`.
        let origin_id = app.next_id();
        let event = FedEvent::ChannelSend(ChannelSend {
            channel: ch.id.clone(),
            sender: me.clone(),
            origin_id,
            ciphertext: r.ciphertext,
            reply_to: r.reply_to,
        });
        let answer = Response::MessageSent(MessageSent {
            channel: ch.id.clone(),
            id: origin_id,
            sent_at: now_ms(),
        });
        let rec = txn::record(me, r.txn.as_deref(), &answer);
        if !remote::enqueue_named(app, vec![remote::item(&ch.id.host, &event)], rec).await? {
            // A concurrent repeat of this send was queued first.
            return txn::replay(app, me, r.txn.as_deref()).await;
        }
        app.metrics.channel_messages.fetch_add(1, Ordering::Relaxed);
        return Ok(answer);
    }
    let new = NewMessage {
        sender: me.clone(),
        ciphertext: r.ciphertext,
        reply_to: r.reply_to,
        origin_id: None,
    };
    match send_hosted(app, &ch, new, r.txn.as_deref(), entry).await {
        Ok(Some(sent)) => Ok(Response::MessageSent(sent)),
        // A local send has no `origin_id`, so it is never a stored duplicate (`None`).
        Ok(None) => Err(err(ErrorCode::Internal, "internal error")),
        // A concurrent repeat of this send was stored first.
        Err(DomainError::Storage(StoreError::TxnSeen)) => {
            txn::replay(app, me, r.txn.as_deref()).await
        }
        Err(e) => Err(e),
    }
}

/// A message to order on the host.
pub(crate) struct NewMessage {
    /// A user of this server, or of `origin_id`'s server for a member server's `channel_send`.
    pub(crate) sender: UserId,
    /// The Megolm ciphertext.
    pub(crate) ciphertext: Vec<u8>,
    /// The message it answers.
    pub(crate) reply_to: Option<MessageId>,
    /// The member server's provisional id (its retries are recognised by it).
    pub(crate) origin_id: Option<MessageId>,
}

/// On the host: orders a message by `sender` (a user of this server, or of `origin_id`'s server
/// for a `channel_send` from a member server), commits it with its outbox rows, and fans it out.
/// `Ok(None)`: a member server's retried `channel_send` that was stored before.
///
/// Authorized under the channel's lock: a send that raced a kick is ordered either before the
/// kick (and allowed) or after it (and refused), never after it and allowed. The lock and
/// `entry` are let go once the message is in the write path; the answer waits for its commit.
pub(crate) async fn send_hosted(
    app: &App,
    ch: &ChannelRow,
    new: NewMessage,
    txn: Option<&str>,
    entry: &Entry,
) -> Result<Option<MessageSent>, DomainError> {
    app.check_message(&new.ciphertext)?;
    let order = app.channel_lock(&ch.id).await?;
    perms::require(app, ch, &new.sender, Permissions::SEND).await?;
    let origin_id = new.origin_id;
    let message = ChannelMessage {
        channel: ch.id.clone(),
        id: order.next_message_id(app),
        sender: new.sender,
        ciphertext: new.ciphertext,
        sent_at: now_ms(),
        edited_at: None,
        reply_to: new.reply_to,
        origin_id,
    };
    let sent = MessageSent {
        channel: ch.id.clone(),
        id: message.id,
        sent_at: message.sent_at,
    };
    let rec = txn::record(&message.sender, txn, &Response::MessageSent(sent.clone()));
    match change::commit_message(app, order, ch, message, rec, entry).await {
        Ok(_) => {}
        // A member server's retried delivery of a send stored before.
        Err(e) if e.code() == ErrorCode::Conflict && origin_id.is_some() => return Ok(None),
        Err(e) => return Err(e),
    }
    app.metrics.channel_messages.fetch_add(1, Ordering::Relaxed);
    Ok(Some(sent))
}

/// `history`: a page of a channel's messages, from the host when it lives elsewhere.
pub(super) async fn history(app: &App, me: &UserId, r: History) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require(app, &ch, me, Permissions::VIEW).await?;
    let limit = r.limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
    if limit == 0 || limit > HISTORY_MAX_LIMIT {
        return Err(err(ErrorCode::InvalidArgument, "limit must be 1-100"));
    }
    if !app.hosts(&ch.id) && app.federation().is_some() {
        // The host has everything, including what was sent before this server's users joined.
        let q = Query::History {
            channel: ch.id.clone(),
            user: me.clone(),
            before: r.before,
            after: r.after,
            limit: Some(limit),
        };
        match remote::query(app, &ch.id.host, q).await {
            Ok(QueryResult::Messages(m)) => return Ok(Response::Messages(m)),
            Ok(_) => tracing::warn!(host = %ch.id.host, "unexpected answer to a history query"),
            Err(e) => {
                tracing::info!(host = %ch.id.host, error = %e, "history from the host failed; answering from the local copy")
            }
        }
    }
    let (rows, has_more) = app
        .store
        .history(
            &ch.id,
            HistoryQuery {
                before: r.before,
                after: r.after,
                limit,
            },
        )
        .await?;
    Ok(Response::Messages(Messages {
        channel: ch.id.clone(),
        messages: rows.into_iter().map(change::message_to_wire).collect(),
        has_more,
    }))
}

/// Whether `who` may change message `id`: its sender, or a holder of `manage_messages`.
async fn may_change(
    app: &App,
    ch: &ChannelRow,
    who: &UserId,
    id: MessageId,
) -> Result<(), DomainError> {
    let p = perms::require(app, ch, who, Permissions::VIEW).await?;
    let msg = app
        .store
        .message_get(&ch.id, id)
        .await?
        .ok_or_else(|| err::<DomainError>(ErrorCode::NotFound, "no such message"))?;
    if msg.sender != *who && !p.contains(Permissions::MANAGE_MESSAGES) {
        return Err(err(
            ErrorCode::Forbidden,
            "only the sender or a holder of manage_messages",
        ));
    }
    Ok(())
}

/// On the host: checks and applies an edit by `editor` (local or remote).
pub(crate) async fn edit_hosted(
    app: &App,
    ch: &ChannelRow,
    editor: &UserId,
    id: MessageId,
    ciphertext: Vec<u8>,
) -> Result<(), DomainError> {
    app.check_message(&ciphertext)?;
    let order = app.channel_lock(&ch.id).await?;
    may_change(app, ch, editor, id).await?;
    let body = HostedBody::Edited {
        id,
        editor: editor.clone(),
        ciphertext,
        edited_at: now_ms(),
    };
    change::commit(app, &order, ch, body, None, None)
        .await?
        .map(|_| ())
        .ok_or_else(|| err(ErrorCode::NotFound, "no such message"))
}

/// On the host: checks and applies a deletion by `deleter` (local or remote).
pub(crate) async fn delete_hosted(
    app: &App,
    ch: &ChannelRow,
    deleter: &UserId,
    id: MessageId,
) -> Result<(), DomainError> {
    let order = app.channel_lock(&ch.id).await?;
    may_change(app, ch, deleter, id).await?;
    let body = HostedBody::Deleted {
        id,
        deleted_by: deleter.clone(),
    };
    change::commit(app, &order, ch, body, None, None)
        .await?
        .map(|_| ())
        .ok_or_else(|| err(ErrorCode::NotFound, "no such message"))
}

/// `message_edit`: replaces a message's ciphertext (its sender, or `manage_messages`).
pub(super) async fn edit(app: &App, me: &UserId, r: MessageEdit) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    if app.hosts(&ch.id) {
        edit_hosted(app, &ch, me, r.id, r.ciphertext).await?;
    } else {
        perms::require(app, &ch, me, Permissions::VIEW).await?;
        app.check_message(&r.ciphertext)?;
        let event = FedEvent::ChannelEdit(ChannelEdit {
            channel: ch.id.clone(),
            editor: me.clone(),
            id: r.id,
            ciphertext: r.ciphertext,
        });
        remote::enqueue(app, vec![remote::item(&ch.id.host, &event)]).await?;
    }
    Ok(Response::Ok)
}

/// `message_delete`: deletes a message (its sender, or `manage_messages`).
pub(super) async fn delete(app: &App, me: &UserId, r: MessageRef) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    if app.hosts(&ch.id) {
        delete_hosted(app, &ch, me, r.id).await?;
    } else {
        perms::require(app, &ch, me, Permissions::VIEW).await?;
        let event = FedEvent::ChannelDelete(ChannelDelete {
            channel: ch.id.clone(),
            deleter: me.clone(),
            id: r.id,
        });
        remote::enqueue(app, vec![remote::item(&ch.id.host, &event)]).await?;
    }
    Ok(Response::Ok)
}
