//! One path for every change to a channel (spec `federation.md` §Channels): a change is the
//! body of the hosted event that announces it ([`HostedBody`]: message, edit, delete, join,
//! leave, metadata). On the host, [`commit`] applies it under the channel's order lock together
//! with the hosted events for the member servers; on a member server, [`apply_replica`] applies
//! the host's event to the local copy. Both then drop what the change made stale and [`deliver`]
//! the same client event to the local viewers.
//!
//! Handlers authorize *under* the lock ([`ChannelOrder`] proves they hold it), so a change that
//! races another (a send racing a kick) is ordered wholly before or wholly after it.

use std::collections::BTreeSet;
use std::sync::Arc;

use mobium_client_api::server::Entry;
use mobium_client_api::server::{Outbound, encode_event};
use mobium_spec::client::{
    ChannelMessage, ChannelUpdate, Event, LeaveReason, MemberEvent, MemberLeft, MessageDeleted,
    MessageEdited,
};
use mobium_spec::federation::{FedEvent, HostedBody, HostedEvent};
use mobium_spec::{ChannelId, MessageId, ServerName, UserId};

use super::{App, DomainError, now_ms, perms, remote};
use crate::storage::{
    ChannelLock, ChannelRow, ClientTxn, HostedChange, MessageRow, OutboxItem, StoreError, Write,
};
use crate::writer::After;

/// Proof that the holder has the order lock of one hosted channel ([`App::channel_lock`]):
/// changes to that channel are committed, and their events delivered, one at a time.
pub(crate) struct ChannelOrder {
    channel: ChannelId,
    _guard: tokio::sync::OwnedMutexGuard<()>,
    /// On a managed server, the lock across instances, with the channel's last `seq`.
    shared: Option<ChannelLock>,
}

impl ChannelOrder {
    pub(super) fn new(
        channel: ChannelId,
        guard: tokio::sync::OwnedMutexGuard<()>,
        shared: Option<ChannelLock>,
    ) -> Self {
        ChannelOrder {
            channel,
            _guard: guard,
            shared,
        }
    }

    /// The `seq` for the next hosted event: a fresh time-ordered id, and on a managed server
    /// above the last one any instance committed (clocks of instances may differ).
    fn next_seq(&self, app: &App) -> u64 {
        let fresh = app.next_id().get();
        match &self.shared {
            Some(l) => fresh.max(l.last_seq.saturating_add(1)),
            None => fresh,
        }
    }

    /// A new message's id: like [`next_seq`](Self::next_seq), so a hosted channel's message ids
    /// increase in commit order on every instance (a client catching up by id misses nothing).
    pub(crate) fn next_message_id(&self, app: &App) -> MessageId {
        // Never zero: a fresh id is not.
        MessageId::new(self.next_seq(app)).unwrap_or_else(|_| app.next_id())
    }

    /// What the hosted write records as the channel's last `seq` (managed servers only).
    fn record(&self, seq: u64) -> Option<(ChannelId, u64)> {
        self.shared.as_ref().map(|_| (self.channel.clone(), seq))
    }
}

/// A stored message as the wire shows it.
pub(crate) fn message_to_wire(row: MessageRow) -> ChannelMessage {
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

fn message_row(m: &ChannelMessage) -> MessageRow {
    MessageRow {
        channel: m.channel.clone(),
        id: m.id,
        sender: m.sender.clone(),
        ciphertext: m.ciphertext.clone(),
        sent_at: m.sent_at,
        edited_at: m.edited_at,
        reply_to: m.reply_to,
        origin_id: m.origin_id,
    }
}

/// The storage statement a change runs (the same on the host and on its replicas); `None` for
/// a body this build does not know.
fn stored(channel: &ChannelId, body: &HostedBody) -> Option<HostedChange> {
    let channel = channel.clone();
    Some(match body {
        HostedBody::Message(m) => HostedChange::Message(message_row(m)),
        HostedBody::Edited {
            id,
            ciphertext,
            edited_at,
            ..
        } => HostedChange::Edit {
            channel,
            id: *id,
            ciphertext: ciphertext.clone(),
            edited_at: *edited_at,
        },
        HostedBody::Deleted { id, .. } => HostedChange::Delete { channel, id: *id },
        HostedBody::MemberJoined { user } => HostedChange::MemberAdd {
            channel,
            user: user.clone(),
            now: now_ms(),
        },
        HostedBody::MemberLeft { user, .. } => HostedChange::MemberRemove {
            channel,
            user: user.clone(),
        },
        HostedBody::MetadataUpdated { metadata } => HostedChange::Metadata {
            channel,
            metadata: metadata.clone(),
        },
        _ => return None,
    })
}

/// The event a change shows clients (the same on the host and on its replicas).
fn client_event(channel: &ChannelId, body: &HostedBody) -> Option<Event> {
    let channel = channel.clone();
    Some(match body {
        HostedBody::Message(m) => Event::Message(m.clone()),
        HostedBody::Edited {
            id,
            editor,
            ciphertext,
            edited_at,
        } => Event::MessageEdited(MessageEdited {
            channel,
            id: *id,
            editor: editor.clone(),
            ciphertext: ciphertext.clone(),
            edited_at: *edited_at,
        }),
        HostedBody::Deleted { id, deleted_by } => Event::MessageDeleted(MessageDeleted {
            channel,
            id: *id,
            deleted_by: deleted_by.clone(),
        }),
        HostedBody::MemberJoined { user } => Event::MemberJoined(MemberEvent {
            channel,
            user: user.clone(),
        }),
        HostedBody::MemberLeft { user, reason } => Event::MemberLeft(MemberLeft {
            channel,
            user: user.clone(),
            reason: *reason,
        }),
        HostedBody::MetadataUpdated { metadata } => Event::ChannelUpdated(ChannelUpdate {
            channel,
            metadata: metadata.clone(),
        }),
        _ => return None,
    })
}

/// Whether a change alters who may see the channel or what the cache holds of it.
fn changes_membership(body: &HostedBody) -> bool {
    matches!(
        body,
        HostedBody::MemberJoined { .. }
            | HostedBody::MemberLeft { .. }
            | HostedBody::MetadataUpdated { .. }
    )
}

/// Who must hear of a departure: whoever could see the channel before it (the departing user
/// included, who no longer can afterwards).
async fn audience_before(
    app: &App,
    ch: &ChannelRow,
    body: &HostedBody,
) -> Result<Vec<UserId>, DomainError> {
    match body {
        HostedBody::MemberLeft { user, .. } => {
            let mut v = perms::viewers(app, ch).await?.as_ref().clone();
            if !v.contains(user) {
                v.push(user.clone());
            }
            Ok(v)
        }
        _ => Ok(Vec::new()),
    }
}

/// On the host: applies `body` and, in the same transaction, queues it as a hosted event for
/// every member server (plus `also`, a joining user's server) and records the client's `txn`;
/// then delivers it to the local viewers. Returns the event's `seq`, or `None` when the change
/// did nothing (no such message, not a member, already a member): then nothing was queued.
pub(crate) async fn commit(
    app: &App,
    order: &ChannelOrder,
    ch: &ChannelRow,
    body: HostedBody,
    also: Option<&ServerName>,
    txn: Option<&ClientTxn>,
) -> Result<Option<u64>, DomainError> {
    debug_assert_eq!(
        order.channel, ch.id,
        "committed under another channel's lock"
    );
    let Some(change) = stored(&ch.id, &body) else {
        return Ok(None);
    };
    let before = audience_before(app, ch, &body).await?;
    let (dests, seq, items) = announce(app, order, ch, &body, also).await?;
    let write = Write::Hosted {
        change,
        items,
        txn: txn.cloned(),
        order: order.record(seq),
    };
    let done = app.timed(app.writer.write(write)).await?;
    if !done {
        return Ok(None);
    }
    remote::wake(app, &dests);
    settle(app, ch, &body, before).await?;
    Ok(Some(seq))
}

/// On the host: a new message, [`commit`]ted without holding up the channel. Once the message
/// is in the write path (ordered after every change before it), the channel's lock and the
/// connection's `entry` are let go, so the next message is authorized and handed in while this
/// one waits for its commit. The writer delivers its event right after the commit, in order. A
/// message changes nothing a later authorization reads, which is why only messages do this:
/// every other change holds the lock until it committed. On a managed server the lock is held
/// until the commit too: the next change may be another instance's, which must see this `seq`.
pub(crate) async fn commit_message(
    app: &App,
    order: ChannelOrder,
    ch: &ChannelRow,
    message: ChannelMessage,
    txn: Option<ClientTxn>,
    entry: &Entry,
) -> Result<Option<u64>, DomainError> {
    debug_assert_eq!(
        order.channel, ch.id,
        "committed under another channel's lock"
    );
    let frame = encode_event(&Event::Message(message.clone()));
    let body = HostedBody::Message(message);
    let Some(change) = stored(&ch.id, &body) else {
        return Ok(None);
    };
    let (dests, seq, items) = announce(app, &order, ch, &body, None).await?;
    let local: Vec<_> = perms::viewers(app, ch)
        .await?
        .iter()
        .filter(|u| app.is_local(u))
        .map(|u| u.key)
        .collect();
    let hub = app.hub.clone();
    let deliver: After = Box::new(move || {
        for key in &local {
            hub.push(key, &frame);
        }
    });
    let start = std::time::Instant::now();
    let write = Write::Hosted {
        change,
        items,
        txn,
        order: order.record(seq),
    };
    let pending = app.writer.submit(write, Some(deliver)).await?;
    let order = match order.shared {
        None => {
            drop(order);
            None
        }
        Some(_) => Some(order),
    };
    entry.entered();
    let done = pending.outcome().await;
    drop(order);
    app.metrics.db_latency(start.elapsed());
    if !done? {
        return Ok(None);
    }
    remote::wake(app, &dests);
    Ok(Some(seq))
}

/// The hosted event announcing `body` to every member server (plus `also`): the servers, the
/// event's `seq` and its outbox items (none when federation is off).
async fn announce(
    app: &App,
    order: &ChannelOrder,
    ch: &ChannelRow,
    body: &HostedBody,
    also: Option<&ServerName>,
) -> Result<(BTreeSet<ServerName>, u64, Vec<OutboxItem>), DomainError> {
    let mut dests = perms::member_servers(app, ch).await?.as_ref().clone();
    if let Some(s) = also
        && *s != app.server_name
    {
        dests.insert(s.clone());
    }
    if !dests.is_empty() && app.federation().is_none() {
        tracing::warn!(channel = %ch.id, "channel has remote members but federation is disabled");
    }
    let seq = order.next_seq(app);
    let items = if app.federation().is_some() {
        let event = FedEvent::Hosted(HostedEvent {
            channel: ch.id.clone(),
            seq,
            body: body.clone(),
        });
        dests.iter().map(|d| remote::item(d, &event)).collect()
    } else {
        Vec::new()
    };
    Ok((dests, seq, items))
}

/// On a member server: applies the host's `body` to the local copy of `channel` and delivers it
/// to the local viewers. A message stored before (a retried delivery) is not delivered again.
pub(crate) async fn apply_replica(
    app: &App,
    channel: &ChannelId,
    body: &HostedBody,
) -> Result<(), DomainError> {
    let ch = perms::channel(app, channel).await?;
    let Some(change) = stored(channel, body) else {
        return Ok(());
    };
    let before = audience_before(app, &ch, body).await?;
    // An edit or deletion of a message from before this server's users joined changes no row
    // here, but those users may hold the message from the host's history: they still hear of it.
    match app.store.commit_hosted(&change, &[], now_ms()).await {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) if matches!(body, HostedBody::Message(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if let HostedBody::MemberLeft {
        user,
        reason: LeaveReason::Banned,
    } = body
    {
        tracing::info!(%channel, %user, "banned by the channel's host");
    }
    settle(app, &ch, body, before).await
}

/// After a change committed: drops the cached permissions it made stale and delivers its event.
async fn settle(
    app: &App,
    ch: &ChannelRow,
    body: &HostedBody,
    before: Vec<UserId>,
) -> Result<(), DomainError> {
    if changes_membership(body) {
        app.invalidate_permissions();
    }
    let Some(event) = client_event(&ch.id, body) else {
        return Ok(());
    };
    let frame = encode_event(&event);
    if matches!(body, HostedBody::MemberLeft { .. }) {
        push_local(app, &before, &frame);
        return Ok(());
    }
    fan_out(app, ch, &frame).await
}

/// Pushes an encoded event to every local viewer of a channel.
pub(crate) async fn fan_out(
    app: &App,
    ch: &ChannelRow,
    frame: &Outbound,
) -> Result<(), DomainError> {
    let viewers: Arc<Vec<UserId>> = perms::viewers(app, ch).await?;
    push_local(app, &viewers, frame);
    Ok(())
}

fn push_local(app: &App, users: &[UserId], frame: &Outbound) {
    for user in users.iter().filter(|u| app.is_local(u)) {
        app.hub.push(&user.key, frame);
    }
}
