//! Federation, the homeserver side (spec `federation.md`): what this server sends to others and
//! what it does with what they send. The transport (QUIC, discovery, signed frames) is the
//! `mobium-federation` crate; this module is the domain logic on top of it.
//!
//! - [`outbox`]: durable delivery of events to each peer.
//! - [`inbound`]: verified transactions from peers (to-device messages, channel traffic).
//! - [`queries`]: verified questions from peers (key claims, joins, history, members).
//! - [`hosted`]: applying a host's ordered channel events on a member server.
//!
//! Channels live on their host server, which orders every event and fans it out once per
//! member server; member servers keep a replica (channel row, members, messages) for their own
//! users and forward their users' actions to the host.

mod hosted;
mod inbound;
pub mod outbox;
mod queries;
mod writer;

use std::collections::BTreeSet;
use std::sync::Arc;

use mobium_federation::Federation;
use mobium_spec::client::ErrorBody;
use mobium_spec::federation::{FedEvent, HostedBody, HostedEvent};
use mobium_spec::{ErrorCode, ServerName, encoding};

use crate::domain::{App, err, now_ms};
use crate::storage::{ChannelRow, HostedChange, OutboxItem};

pub use outbox::Outbox;
pub use writer::OutboxWriter;

/// The running federation: the transport endpoint and the outbox.
pub struct Link {
    /// The QUIC endpoint.
    pub federation: Federation,
    /// Delivery workers.
    pub outbox: Arc<Outbox>,
    /// Group-committing appender for the outbox.
    pub writer: OutboxWriter,
}

/// The federation link, or the error a client gets when federation is off.
pub(crate) fn link(app: &App) -> Result<&Link, ErrorBody> {
    app.federation().ok_or_else(|| {
        err(
            ErrorCode::FederationUnavailable,
            "federation is disabled on this server",
        )
    })
}

/// Encodes one durable event for `destination`.
pub(crate) fn item(destination: &ServerName, event: &FedEvent) -> OutboxItem {
    OutboxItem {
        destination: destination.clone(),
        event: encoding::encode(event),
    }
}

/// Queues durable events and wakes their workers.
pub(crate) async fn enqueue(app: &App, items: Vec<OutboxItem>) -> Result<(), ErrorBody> {
    if items.is_empty() {
        return Ok(());
    }
    let link = link(app)?;
    let dests: Vec<ServerName> = items.iter().map(|i| i.destination.clone()).collect();
    let start = std::time::Instant::now();
    link.writer.push(items).await?;
    app.metrics.db_latency(start.elapsed());
    for d in &dests {
        link.outbox.wake(d);
    }
    Ok(())
}

/// Servers other than this one with members in the channel.
pub(crate) async fn member_servers(
    app: &App,
    ch: &ChannelRow,
) -> Result<BTreeSet<ServerName>, ErrorBody> {
    Ok(app
        .store
        .members(&ch.id)
        .await?
        .into_iter()
        .map(|(u, _)| u.server)
        .filter(|s| *s != app.server_name)
        .collect())
}

/// On the host: applies `change` and, in the same transaction, queues `body` as a hosted event
/// for every member server (plus `also`, e.g. a joining user's server). Returns the hosted
/// event's `seq`, or `None` when the change did nothing (and nothing was queued).
pub(crate) async fn host_commit(
    app: &App,
    ch: &ChannelRow,
    change: HostedChange,
    body: HostedBody,
    also: Option<&ServerName>,
) -> Result<Option<u64>, ErrorBody> {
    let mut dests = member_servers(app, ch).await?;
    if let Some(s) = also
        && *s != app.server_name
    {
        dests.insert(s.clone());
    }
    if !dests.is_empty() && app.federation().is_none() {
        tracing::warn!(channel = %ch.id, "channel has remote members but federation is disabled");
    }
    let seq = app.next_id().get();
    let items: Vec<OutboxItem> = if app.federation().is_some() {
        let event = FedEvent::Hosted(HostedEvent {
            channel: ch.id.clone(),
            seq,
            body,
        });
        dests.iter().map(|d| item(d, &event)).collect()
    } else {
        Vec::new()
    };
    let done = app
        .timed(app.store.commit_hosted(&change, &items, now_ms()))
        .await?;
    if !done {
        return Ok(None);
    }
    if let Some(link) = app.federation() {
        for d in &dests {
            link.outbox.wake(d);
        }
    }
    Ok(Some(seq))
}
