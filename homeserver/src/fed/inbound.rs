//! Verified transactions from peers (spec `federation.md` §Events): each event is applied
//! idempotently (a retried delivery changes nothing), refused events are reported in the Ack,
//! and ephemeral events are delivered to connected users and forgotten.

use mobium_client_api::server::Entry;
use mobium_client_api::server::encode_event;
use mobium_federation::FederationHandler;
use mobium_spec::client::{
    DirectMessage, ErrorBody, Event, LeaveReason, PresenceEntry, TypingEvent,
};
use mobium_spec::federation::{
    Ack, ChannelDelete, ChannelEdit, ChannelLeave, ChannelSend, Ephemeral, FedDirect, FedEvent,
    Query, QueryResult, Rejected, Transaction,
};
use mobium_spec::{ErrorCode, ServerName};

use super::{Outcome, hosted, queries};
use crate::domain::{App, DomainError, err, now_ms, perms};
use crate::storage::{DirectRow, StoreError};

/// How long a peer should wait before resending events deferred because the recipient's queue
/// is full: short while the recipient is online (it is draining), longer while it is not.
const QUEUE_FULL_RETRY_ONLINE_MS: u64 = 250;
const QUEUE_FULL_RETRY_OFFLINE_MS: u64 = 2_000;

#[async_trait::async_trait]
impl FederationHandler for App {
    async fn transaction(
        &self,
        origin: &ServerName,
        txn_id: u64,
        txn: Transaction,
    ) -> Result<Ack, ErrorBody> {
        if self.store.txn_seen(origin, txn_id).await? {
            return Ok(Ack::default());
        }
        let mut ack = Ack::default();
        let entry = |index: usize, error: ErrorBody| Rejected {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            error,
        };
        // Once a hosted event of a channel is deferred, its later events must wait too: they are
        // applied in `seq` order or not at all.
        let mut deferred_channels = std::collections::HashSet::new();
        let mut events = txn.events.into_iter().enumerate().peekable();
        while let Some((index, event)) = events.next() {
            let outcomes = match event {
                FedEvent::Hosted(h) if deferred_channels.contains(&h.channel) => {
                    let mut e: ErrorBody = err(
                        ErrorCode::NotFound,
                        "an earlier event of this channel is deferred",
                    );
                    e.retry_after_ms = Some(hosted::UNKNOWN_CHANNEL_RETRY_MS);
                    vec![(index, Outcome::Deferred(e))]
                }
                FedEvent::Hosted(h) => {
                    let channel = h.channel.clone();
                    let outcome = hosted::apply(self, origin, h).await;
                    if matches!(outcome, Outcome::Deferred(_)) {
                        deferred_channels.insert(channel);
                    }
                    vec![(index, outcome)]
                }
                // A run of to-device messages is queued in one database transaction.
                FedEvent::Direct(first) => {
                    let mut run = vec![(index, first)];
                    while let Some((_, FedEvent::Direct(_))) = events.peek() {
                        if let Some((i, FedEvent::Direct(d))) = events.next() {
                            run.push((i, d));
                        }
                    }
                    directs(self, origin, run).await
                }
                other => vec![(index, apply(self, origin, other).await)],
            };
            for (index, outcome) in outcomes {
                match outcome {
                    Outcome::Done => {}
                    Outcome::Refused(error) => {
                        tracing::info!(%origin, index, code = %error.code, message = %error.message, "refused a federated event");
                        ack.rejected.push(entry(index, error));
                    }
                    Outcome::Deferred(error) => {
                        tracing::debug!(%origin, index, code = %error.code, "deferred a federated event");
                        ack.deferred.push(entry(index, error));
                    }
                    // Nothing after this event is applied; the peer retries the whole batch
                    // and the events before it are idempotent.
                    Outcome::Retry(error) => return Err(error),
                }
            }
        }
        for e in txn.ephemeral {
            ephemeral(self, origin, e).await;
        }
        // Deferred events come back in a new transaction (fresh `txn_id`), so recording this
        // one as seen is right even when it deferred some.
        self.store.txn_record(origin, txn_id, now_ms()).await?;
        Ok(ack)
    }

    async fn query(&self, origin: &ServerName, query: Query) -> Result<QueryResult, ErrorBody> {
        queries::answer(self, origin, query)
            .await
            .map_err(DomainError::into_wire)
    }

    fn peer_connected(&self, peer: &ServerName) {
        if let Some(link) = self.federation() {
            link.outbox.kick(peer);
        }
    }

    fn rejected(&self, code: ErrorCode) {
        self.metrics.error(code);
    }
}

async fn apply(app: &App, origin: &ServerName, event: FedEvent) -> Outcome {
    let r = match event {
        FedEvent::Direct(d) => {
            return directs(app, origin, vec![(0, d)])
                .await
                .pop()
                .map_or(Outcome::Done, |(_, o)| o);
        }
        FedEvent::ChannelSend(s) => channel_send(app, origin, s).await,
        FedEvent::ChannelEdit(e) => channel_edit(app, origin, e).await,
        FedEvent::ChannelDelete(d) => channel_delete(app, origin, d).await,
        FedEvent::ChannelLeave(l) => channel_leave(app, origin, l).await,
        FedEvent::Hosted(h) => return hosted::apply(app, origin, h).await,
        _ => Ok(()),
    };
    match r {
        Ok(()) => Outcome::Done,
        Err(e) => e.into(),
    }
}

/// The sender must belong to the origin server.
fn from_origin(origin: &ServerName, user: &mobium_spec::UserId) -> Result<(), DomainError> {
    if user.server != *origin {
        return Err(err(
            ErrorCode::Forbidden,
            "the sender is not a user of the sending server",
        ));
    }
    Ok(())
}

/// Queues a run of to-device messages for local users, in one database transaction.
async fn directs(
    app: &App,
    origin: &ServerName,
    run: Vec<(usize, FedDirect)>,
) -> Vec<(usize, Outcome)> {
    let now = now_ms();
    let ttl = u64::try_from(app.settings.message_ttl.as_millis()).unwrap_or(u64::MAX);
    let mut out = Vec::with_capacity(run.len());
    let mut accepted = Vec::with_capacity(run.len());
    let mut exists = std::collections::HashMap::new();
    for (index, d) in run {
        // Never queue what no client of ours could receive (it would stay queued and be
        // pushed, too large, at every reconnect).
        if let Err(e) = from_origin(origin, &d.from).and_then(|()| app.check_size(&d.ciphertext)) {
            out.push((index, e.into()));
            continue;
        }
        // Runs usually carry many messages for the same few users: ask the store once each.
        // A storage failure is never "no such user": the whole transaction is retried later.
        let known = if !app.is_local(&d.to) {
            false
        } else if let Some(k) = exists.get(&d.to.key) {
            *k
        } else {
            match app.store.user_exists(&d.to.key).await {
                Ok(k) => {
                    exists.insert(d.to.key, k);
                    k
                }
                Err(e) => {
                    out.push((index, e.into()));
                    return out;
                }
            }
        };
        if !known {
            out.push((
                index,
                Outcome::Refused(err(ErrorCode::NotFound, "no such user on this server")),
            ));
            continue;
        }
        let row = DirectRow {
            id: app.next_id(),
            recipient: d.to.clone(),
            sender: d.from.clone(),
            ciphertext: d.ciphertext,
            sent_at: d.sent_at,
            expires_at: now.saturating_add(ttl),
        };
        accepted.push((index, (row, d.id)));
    }
    if accepted.is_empty() {
        return out;
    }
    let items: Vec<(DirectRow, mobium_spec::MessageId)> =
        accepted.iter().map(|(_, x)| x.clone()).collect();
    let results = match app
        .timed(app.store.direct_enqueue_remote_many(
            origin,
            &items,
            app.settings.max_offline_messages,
        ))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            out.push((accepted[0].0, e.into()));
            return out;
        }
    };
    for ((index, (row, _)), result) in accepted.into_iter().zip(results) {
        match result {
            Ok(true) => {
                let frame = encode_event(&Event::Direct(DirectMessage {
                    id: row.id,
                    from: row.sender,
                    ciphertext: row.ciphertext,
                    sent_at: row.sent_at,
                }));
                app.hub.push(&row.recipient.key, &frame);
                out.push((index, Outcome::Done));
            }
            Ok(false) => out.push((index, Outcome::Done)),
            Err(StoreError::QueueFull) => {
                let mut e: ErrorBody = err(
                    ErrorCode::QueueFull,
                    "the recipient's offline queue is full; send again later",
                );
                e.retry_after_ms = Some(if app.hub.is_online(&row.recipient.key) {
                    QUEUE_FULL_RETRY_ONLINE_MS
                } else {
                    QUEUE_FULL_RETRY_OFFLINE_MS
                });
                out.push((index, Outcome::Deferred(e)));
            }
            Err(e) => out.push((index, e.into())),
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out
}

/// A channel hosted here, named by a peer.
async fn hosted_channel(
    app: &App,
    channel: &mobium_spec::ChannelId,
) -> Result<std::sync::Arc<crate::storage::ChannelRow>, DomainError> {
    if !app.hosts(channel) {
        return Err(err(
            ErrorCode::NotFound,
            "this server does not host that channel",
        ));
    }
    perms::channel(app, channel).await
}

async fn channel_send(app: &App, origin: &ServerName, s: ChannelSend) -> Result<(), DomainError> {
    from_origin(origin, &s.sender)?;
    let ch = hosted_channel(app, &s.channel).await?;
    let new = crate::domain::NewMessage {
        sender: s.sender,
        ciphertext: s.ciphertext,
        reply_to: s.reply_to,
        origin_id: Some(s.origin_id),
    };
    crate::domain::send_hosted(app, &ch, new, None, &Entry::detached())
        .await
        .map(|_| ())
}

async fn channel_edit(app: &App, origin: &ServerName, e: ChannelEdit) -> Result<(), DomainError> {
    from_origin(origin, &e.editor)?;
    let ch = hosted_channel(app, &e.channel).await?;
    crate::domain::edit_hosted(app, &ch, &e.editor, e.id, e.ciphertext).await
}

async fn channel_delete(
    app: &App,
    origin: &ServerName,
    d: ChannelDelete,
) -> Result<(), DomainError> {
    from_origin(origin, &d.deleter)?;
    let ch = hosted_channel(app, &d.channel).await?;
    crate::domain::delete_hosted(app, &ch, &d.deleter, d.id).await
}

async fn channel_leave(app: &App, origin: &ServerName, l: ChannelLeave) -> Result<(), DomainError> {
    from_origin(origin, &l.user)?;
    let ch = hosted_channel(app, &l.channel).await?;
    let order = app.channel_lock(&ch.id).await?;
    match crate::domain::depart(app, &order, &ch, &l.user, LeaveReason::Left).await {
        Ok(()) => Ok(()),
        // Already gone: a retried delivery.
        Err(e) if e.code() == ErrorCode::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

async fn ephemeral(app: &App, origin: &ServerName, e: Ephemeral) {
    match e {
        Ephemeral::Presence { user, status } if user.server == *origin => {
            let frame = encode_event(&Event::Presence(PresenceEntry {
                user: user.clone(),
                status,
            }));
            // Local users who share a channel with this remote user.
            if let Ok(channels) = app.store.channels_of(&user).await {
                let mut told = std::collections::BTreeSet::new();
                for ch in channels {
                    if let Ok(v) = perms::viewers(app, &ch).await {
                        for u in v.iter().filter(|u| app.is_local(u)) {
                            if told.insert(u.clone()) {
                                app.hub.push(&u.key, &frame);
                            }
                        }
                    }
                }
            }
        }
        Ephemeral::Typing { channel, user } if user.server == *origin => {
            let Ok(ch) = perms::channel(app, &channel).await else {
                return;
            };
            if app
                .store
                .member_joined_at(&ch.id, &user)
                .await
                .ok()
                .flatten()
                .is_none()
            {
                return;
            }
            let frame = encode_event(&Event::Typing(TypingEvent {
                channel: ch.id.clone(),
                user: user.clone(),
            }));
            if let Ok(v) = perms::viewers(app, &ch).await {
                for u in v.iter().filter(|u| app.is_local(u) && **u != user) {
                    app.hub.push(&u.key, &frame);
                }
            }
            // The host relays typing to the other member servers.
            if app.hosts(&ch.id) {
                crate::domain::relay_typing(app, &ch, &user, Some(origin)).await;
            }
        }
        _ => {}
    }
}
