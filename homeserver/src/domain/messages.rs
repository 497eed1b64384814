//! Channel messages (spec `client/messages.md`): send (committed before the answer), history
//! pages, edit and delete, and the events they cause.

use std::sync::atomic::Ordering;

use mobium_client_api::server::encode_event;
use mobium_spec::client::{
    ChannelMessage, Event, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT, History, MessageDeleted,
    MessageEdit, MessageEdited, MessageRef, MessageSend, MessageSent, Messages, Response,
};
use mobium_spec::permissions::Permissions;
use mobium_spec::{ErrorCode, UserId};

use super::{App, Handled, err, now_ms, perms};
use crate::storage::{HistoryQuery, MessageRow};

fn to_wire(row: MessageRow) -> ChannelMessage {
    ChannelMessage {
        channel: row.channel,
        id: row.id,
        sender: row.sender,
        ciphertext: row.ciphertext,
        sent_at: row.sent_at,
        edited_at: row.edited_at,
        reply_to: row.reply_to,
        origin_id: row.origin_id,
    }
}

pub(super) async fn send(app: &App, me: &UserId, r: MessageSend) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require(app, &ch, me, Permissions::SEND).await?;
    if r.ciphertext.is_empty() {
        return Err(err(ErrorCode::InvalidArgument, "empty ciphertext"));
    }
    let row = MessageRow {
        channel: ch.id.clone(),
        id: app.next_id(),
        sender: me.clone(),
        ciphertext: r.ciphertext,
        sent_at: now_ms(),
        edited_at: None,
        reply_to: r.reply_to,
        origin_id: None,
    };
    app.timed(app.store.message_insert(&row)).await?;
    app.metrics.channel_messages.fetch_add(1, Ordering::Relaxed);
    let sent = MessageSent {
        channel: ch.id.clone(),
        id: row.id,
        sent_at: row.sent_at,
    };
    let frame = encode_event(&Event::Message(to_wire(row)));
    perms::fan_out(app, &ch, &frame).await?;
    Ok(Response::MessageSent(sent))
}

pub(super) async fn history(app: &App, me: &UserId, r: History) -> Handled {
    let ch = perms::channel(app, &r.channel).await?;
    perms::require(app, &ch, me, Permissions::VIEW).await?;
    let limit = r.limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
    if limit == 0 || limit > HISTORY_MAX_LIMIT {
        return Err(err(ErrorCode::InvalidArgument, "limit must be 1-100"));
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
        messages: rows.into_iter().map(to_wire).collect(),
        has_more,
    }))
}

/// The message, if the caller is its sender or holds `manage_messages`.
async fn editable(
    app: &App,
    me: &UserId,
    r: &MessageRef,
) -> Result<std::sync::Arc<crate::storage::ChannelRow>, mobium_spec::client::ErrorBody> {
    let ch = perms::channel(app, &r.channel).await?;
    let p = perms::require(app, &ch, me, Permissions::VIEW).await?;
    let msg = app
        .store
        .message_get(&ch.id, r.id)
        .await?
        .ok_or_else(|| err(ErrorCode::NotFound, "no such message"))?;
    if msg.sender != *me && !p.contains(Permissions::MANAGE_MESSAGES) {
        return Err(err(
            ErrorCode::Forbidden,
            "only the sender or a holder of manage_messages",
        ));
    }
    Ok(ch)
}

pub(super) async fn edit(app: &App, me: &UserId, r: MessageEdit) -> Handled {
    if r.ciphertext.is_empty() {
        return Err(err(ErrorCode::InvalidArgument, "empty ciphertext"));
    }
    let mref = MessageRef {
        channel: r.channel.clone(),
        id: r.id,
    };
    let ch = editable(app, me, &mref).await?;
    let edited_at = now_ms();
    if !app
        .store
        .message_edit(&ch.id, r.id, &r.ciphertext, edited_at)
        .await?
    {
        return Err(err(ErrorCode::NotFound, "no such message"));
    }
    let frame = encode_event(&Event::MessageEdited(MessageEdited {
        channel: ch.id.clone(),
        id: r.id,
        editor: me.clone(),
        ciphertext: r.ciphertext,
        edited_at,
    }));
    perms::fan_out(app, &ch, &frame).await?;
    Ok(Response::Ok)
}

pub(super) async fn delete(app: &App, me: &UserId, r: MessageRef) -> Handled {
    let ch = editable(app, me, &r).await?;
    if !app.store.message_delete(&ch.id, r.id).await? {
        return Err(err(ErrorCode::NotFound, "no such message"));
    }
    let frame = encode_event(&Event::MessageDeleted(MessageDeleted {
        channel: ch.id.clone(),
        id: r.id,
        deleted_by: me.clone(),
    }));
    perms::fan_out(app, &ch, &frame).await?;
    Ok(Response::Ok)
}
