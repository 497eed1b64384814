//! What the domain asks of other servers (spec `federation.md`): durable events queued in the
//! outbox (to-device messages, channel operations for a host, a host's ordered events for its
//! member servers), and the direct requests that need an answer now (queries) or none at all
//! (ephemeral presence and typing). Every other domain file reaches other servers through here.

use mobium_spec::federation::{Ephemeral, FedEvent, Query, QueryResult, Transaction};
use mobium_spec::{ErrorCode, ServerName, encoding};

use super::DomainError;
use super::{App, err};
use crate::outbox::Link;
use crate::storage::{ClientTxn, OutboxItem, Write};

/// The federation link, or the error a client gets when federation is off.
pub(super) fn link(app: &App) -> Result<&Link, DomainError> {
    app.federation().ok_or_else(|| {
        err(
            ErrorCode::FederationUnavailable,
            "federation is disabled on this server",
        )
    })
}

/// Encodes one durable event for `destination`.
pub(super) fn item(destination: &ServerName, event: &FedEvent) -> OutboxItem {
    OutboxItem {
        destination: destination.clone(),
        event: encoding::encode(event),
    }
}

/// Queues durable events and wakes their workers.
pub(super) async fn enqueue(app: &App, items: Vec<OutboxItem>) -> Result<(), DomainError> {
    enqueue_named(app, items, None).await.map(|_| ())
}

/// [`enqueue`] for a send named by a client transaction id, recorded in the same database
/// transaction: `false` (nothing queued) when the id was recorded before.
pub(super) async fn enqueue_named(
    app: &App,
    items: Vec<OutboxItem>,
    txn: Option<ClientTxn>,
) -> Result<bool, DomainError> {
    if items.is_empty() && txn.is_none() {
        return Ok(true);
    }
    link(app)?;
    let dests: Vec<ServerName> = items.iter().map(|i| i.destination.clone()).collect();
    let written = app
        .timed(app.writer.write(Write::Outbox { items, txn }))
        .await?;
    wake(app, &dests);
    Ok(written)
}

/// Wakes the outbox workers of `dests` after their events committed.
pub(super) fn wake<'a>(app: &App, dests: impl IntoIterator<Item = &'a ServerName>) {
    if let Some(link) = app.federation() {
        for d in dests {
            link.outbox.wake(d);
        }
    }
}

/// Asks `destination` a question and waits for its verified answer: `federation_unavailable`
/// when federation is off or the server cannot be reached, the peer's own refusal otherwise.
pub(super) async fn query(
    app: &App,
    destination: &ServerName,
    query: Query,
) -> Result<QueryResult, DomainError> {
    link(app)?
        .federation
        .query(destination, query)
        .await
        .map_err(DomainError::from)
}

/// Sends an ephemeral event to each server, best effort, without waiting (never queued).
pub(super) fn ephemeral(app: &App, dests: impl IntoIterator<Item = ServerName>, event: Ephemeral) {
    let Some(link) = app.federation() else {
        return;
    };
    for dest in dests {
        let federation = link.federation.clone();
        let txn = Transaction {
            events: Vec::new(),
            ephemeral: vec![event.clone()],
        };
        tokio::spawn(async move {
            if let Err(e) = federation.send_transaction(&dest, txn).await {
                tracing::debug!(destination = %dest, error = %e, "ephemeral event not delivered");
            }
        });
    }
}
