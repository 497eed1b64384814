//! On a member server: applying the ordered events a channel's host sends (spec
//! `federation.md` §Channels). Each event updates the local replica and reaches the local
//! members' connections; a `seq` at or below the last applied one is a retried delivery.

use mobium_client_api::server::encode_event;
use mobium_spec::client::{
    ChannelUpdate, ErrorBody, Event, LeaveReason, MemberEvent, MemberLeft, MessageDeleted,
    MessageEdited,
};
use mobium_spec::federation::{HostedBody, HostedEvent};
use mobium_spec::{ErrorCode, ServerName};

use super::Outcome;
use crate::domain::{App, DomainError, err, now_ms, perms};
use crate::storage::{MessageRow, StoreError};

/// How long the host should wait before resending events of a channel we have no copy of yet.
pub(super) const UNKNOWN_CHANNEL_RETRY_MS: u64 = 500;

/// A `hosted` event from a channel's host, applied to this server's copy in `seq` order.
pub(super) async fn apply(app: &App, origin: &ServerName, h: HostedEvent) -> Outcome {
    if h.channel.host != *origin {
        return Outcome::Refused(err(
            ErrorCode::Forbidden,
            "only a channel's host orders its events",
        ));
    }
    match app.store.channel_get(&h.channel).await {
        Ok(Some(_)) => {}
        // We have not recorded our join yet (its answer may still be on its way): not now.
        Ok(None) => {
            let mut e: ErrorBody = err(
                ErrorCode::NotFound,
                "unknown channel; send again after the join completes",
            );
            e.retry_after_ms = Some(UNKNOWN_CHANNEL_RETRY_MS);
            return Outcome::Deferred(e);
        }
        Err(e) => return e.into(),
    }
    let last = match app.store.channel_last_seq(&h.channel).await {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    if h.seq <= last {
        return Outcome::Done;
    }
    match apply_body(app, &h).await {
        Ok(()) => {}
        Err(e) => return e.into(),
    }
    match app.store.channel_set_last_seq(&h.channel, h.seq).await {
        Ok(()) => Outcome::Done,
        Err(e) => e.into(),
    }
}

async fn apply_body(app: &App, h: &HostedEvent) -> Result<(), DomainError> {
    let channel = &h.channel;
    let ch = perms::channel(app, channel).await?;
    match &h.body {
        HostedBody::Message(m) => {
            let row = MessageRow {
                channel: channel.clone(),
                id: m.id,
                sender: m.sender.clone(),
                ciphertext: m.ciphertext.clone(),
                sent_at: m.sent_at,
                edited_at: m.edited_at,
                reply_to: m.reply_to,
                origin_id: m.origin_id,
            };
            match app.store.message_insert(&row).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            perms::fan_out(app, &ch, &encode_event(&Event::Message(m.clone()))).await?;
        }
        HostedBody::Edited {
            id,
            editor,
            ciphertext,
            edited_at,
        } => {
            app.store
                .message_edit(channel, *id, ciphertext, *edited_at)
                .await?;
            let ev = Event::MessageEdited(MessageEdited {
                channel: channel.clone(),
                id: *id,
                editor: editor.clone(),
                ciphertext: ciphertext.clone(),
                edited_at: *edited_at,
            });
            perms::fan_out(app, &ch, &encode_event(&ev)).await?;
        }
        HostedBody::Deleted { id, deleted_by } => {
            app.store.message_delete(channel, *id).await?;
            let ev = Event::MessageDeleted(MessageDeleted {
                channel: channel.clone(),
                id: *id,
                deleted_by: deleted_by.clone(),
            });
            perms::fan_out(app, &ch, &encode_event(&ev)).await?;
        }
        HostedBody::MemberJoined { user } => {
            app.store.member_add(channel, user, now_ms()).await?;
            app.invalidate_permissions();
            let ev = Event::MemberJoined(MemberEvent {
                channel: channel.clone(),
                user: user.clone(),
            });
            perms::fan_out(app, &ch, &encode_event(&ev)).await?;
        }
        HostedBody::MemberLeft { user, reason } => {
            let frame = encode_event(&Event::MemberLeft(MemberLeft {
                channel: channel.clone(),
                user: user.clone(),
                reason: *reason,
            }));
            // Remove first, then tell everyone who could see the channel (the departing user
            // included): a client reacting to the event already finds itself outside.
            let viewers_before = perms::viewers(app, &ch).await?;
            app.store.member_remove(channel, user).await?;
            app.invalidate_permissions();
            for u in viewers_before.iter().filter(|u| app.is_local(u)) {
                app.hub.push(&u.key, &frame);
            }
            if *reason == LeaveReason::Banned {
                tracing::info!(%channel, %user, "banned by the channel's host");
            }
        }
        HostedBody::MetadataUpdated { metadata } => {
            app.store.channel_set_metadata(channel, metadata).await?;
            app.invalidate_permissions();
            let ev = Event::ChannelUpdated(ChannelUpdate {
                channel: channel.clone(),
                metadata: metadata.clone(),
            });
            perms::fan_out(app, &ch, &encode_event(&ev)).await?;
        }
        _ => {}
    }
    Ok(())
}
