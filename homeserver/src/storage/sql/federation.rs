//! Federation bookkeeping (spec `federation.md`): local copies of channels hosted on other
//! servers, the outbox of events waiting for delivery, and inbound idempotency. Remote to-device
//! messages are queued in `direct.rs`.
//!
//! `commit_hosted` applies a change to a channel hosted here and appends the events that tell the
//! member servers about it in one write transaction, running the very statements of the single
//! operations (`messages.rs`, `channels.rs`). When the change does nothing or fails, the
//! transaction is dropped, which rolls it back: no event ever goes out for a change that was not
//! made, and no change is made without its events.
//!
//! A delivery worker must never see a later event for a destination before an earlier one, so
//! outbox sequence numbers must commit in order. SQLite serializes writers, so they do. On
//! PostgreSQL they come from an identity, handed out at insert time, not at commit: two
//! concurrent appends for one destination could commit in the other order, so an append first
//! takes a transaction-scoped advisory lock per destination ([`lock_outbox`]).

use mobium_spec::{ChannelId, ServerName};

use super::{
    Connection, OUTBOX_DELETE, Pool, begin_write, channels, direct, id_list, lock_outbox, messages,
    txns,
};
use crate::storage::codec::{self, OutboxTuple, sql_u64};
use crate::storage::{
    ChannelRow, DirectFailureRow, HostedChange, OutboxItem, StoreError, StoreResult, Write,
};

pub(super) async fn channel_put(pool: &Pool, row: &ChannelRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO channels (id, owner, metadata, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET \
           owner = excluded.owner, metadata = excluded.metadata, created_at = excluded.created_at",
    )
    .bind(row.id.to_string())
    .bind(row.owner.to_string())
    .bind(&row.metadata)
    .bind(sql_u64(row.created_at))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn channel_last_seq(pool: &Pool, channel: &ChannelId) -> StoreResult<u64> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM channel_replicas WHERE channel = $1")
            .bind(channel.to_string())
            .fetch_optional(pool)
            .await?;
    Ok(seq.map_or(0, codec::rust_u64))
}

/// The channel must exist (`channel_put` first): a replica row refers to it.
pub(super) async fn channel_set_last_seq(
    pool: &Pool,
    channel: &ChannelId,
    seq: u64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO channel_replicas (channel, last_seq) VALUES ($1, $2) \
         ON CONFLICT (channel) DO UPDATE SET last_seq = excluded.last_seq \
         WHERE excluded.last_seq > channel_replicas.last_seq",
    )
    .bind(channel.to_string())
    .bind(sql_u64(seq))
    .execute(pool)
    .await?;
    Ok(())
}

/// Applies `writes` in one transaction and returns each write's outcome; `Err` as a whole,
/// with nothing written, only when the database fails.
///
/// Optimistic: the group runs without savepoints (a statement each, where most writes need
/// one). If any write fails or must be undone (a conflict, a no-op after its client
/// transaction id was recorded), the group is rolled back and every write runs again in a
/// transaction of its own, so each still succeeds or fails alone with the same outcome.
pub(super) async fn commit_writes(
    pool: &Pool,
    writes: &[Write],
    now: u64,
) -> StoreResult<Vec<StoreResult<bool>>> {
    let mut outcomes = Vec::with_capacity(writes.len());
    if writes.iter().all(Write::is_empty) {
        outcomes.resize_with(writes.len(), || Ok(true));
        return Ok(outcomes);
    }
    let mut tx = begin_write(pool).await?;
    let mut clean = true;
    for write in writes {
        match one(&mut tx, write, now).await {
            Ok((outcome, Undo::No)) => outcomes.push(outcome),
            // On PostgreSQL a failed statement has aborted the transaction: start over.
            Ok((_, Undo::Yes)) | Err(_) => {
                clean = false;
                break;
            }
        }
    }
    if clean {
        tx.commit().await?;
        return Ok(outcomes);
    }
    tx.rollback().await?;
    outcomes.clear();
    for write in writes {
        let mut tx = begin_write(pool).await?;
        let outcome = match one(&mut tx, write, now).await {
            Ok((outcome, Undo::No)) => {
                tx.commit().await?;
                outcome
            }
            Ok((outcome, Undo::Yes)) => {
                tx.rollback().await?;
                outcome
            }
            Err(e) => {
                tx.rollback().await?;
                Err(e)
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Whether a write left something that must be rolled back.
enum Undo {
    No,
    Yes,
}

/// One write inside the caller's transaction: its outcome, and whether what it wrote must be
/// undone (it did nothing after recording its client transaction id). `Err`: a statement
/// failed (a conflict included), and the transaction must be rolled back.
async fn one(
    conn: &mut Connection,
    write: &Write,
    now: u64,
) -> StoreResult<(StoreResult<bool>, Undo)> {
    match write {
        // A seen id writes nothing (the insert does nothing), and nothing else is refused.
        Write::Outbox { items, txn } => {
            let fresh = match txn {
                Some(t) => txns::record(conn, t).await?,
                None => true,
            };
            if fresh {
                append(conn, items, now).await?;
            }
            Ok((Ok(fresh), Undo::No))
        }
        Write::Hosted {
            change,
            items,
            txn,
            order,
        } => {
            if let Some(t) = txn
                && !txns::record(conn, t).await?
            {
                return Ok((Err(StoreError::TxnSeen), Undo::No));
            }
            if !apply(conn, change).await? {
                let undo = if txn.is_some() { Undo::Yes } else { Undo::No };
                return Ok((Ok(false), undo));
            }
            if let Some((channel, seq)) = order {
                channels::record_last_seq(&mut *conn, channel, *seq).await?;
            }
            append(conn, items, now).await?;
            Ok((Ok(true), Undo::No))
        }
    }
}

/// Applies `change` with the statement of the matching single operation; returns what it would.
async fn apply(conn: &mut Connection, change: &HostedChange) -> StoreResult<bool> {
    match change {
        HostedChange::Nothing => Ok(true),
        HostedChange::Message(row) => messages::message_insert(conn, row).await.map(|()| true),
        HostedChange::Edit {
            channel,
            id,
            ciphertext,
            edited_at,
        } => messages::message_edit(conn, channel, *id, ciphertext, *edited_at).await,
        HostedChange::Delete { channel, id } => messages::message_delete(conn, channel, *id).await,
        HostedChange::MemberAdd { channel, user, now } => {
            channels::member_add(conn, channel, user, *now).await
        }
        HostedChange::MemberRemove { channel, user } => {
            channels::member_remove(conn, channel, user).await
        }
        HostedChange::Metadata { channel, metadata } => {
            channels::channel_set_metadata(conn, channel, metadata).await
        }
    }
}

/// Appends `items` in order (each gets the next sequence number) inside the caller's
/// transaction (on PostgreSQL holding each destination's advisory lock until it ends).
async fn append(conn: &mut Connection, items: &[OutboxItem], now: u64) -> StoreResult<()> {
    lock_outbox(conn, items).await?;
    for item in items {
        sqlx::query("INSERT INTO outbox (destination, event, created_at) VALUES ($1, $2, $3)")
            .bind(item.destination.to_string())
            .bind(&item.event)
            .bind(sql_u64(now))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn outbox_peek(
    pool: &Pool,
    destination: &ServerName,
    after: u64,
    limit: u32,
) -> StoreResult<Vec<(u64, Vec<u8>)>> {
    let rows: Vec<OutboxTuple> = sqlx::query_as(
        "SELECT seq, event FROM outbox WHERE destination = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(destination.to_string())
    .bind(sql_u64(after))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(codec::outbox_event).collect())
}

pub(super) async fn outbox_settle(
    pool: &Pool,
    destination: &ServerName,
    seqs: &[u64],
    failures: &[DirectFailureRow],
) -> StoreResult<u64> {
    if seqs.is_empty() && failures.is_empty() {
        return Ok(0);
    }
    let seqs = id_list(seqs.iter().map(|&seq| sql_u64(seq)).collect());
    let mut tx = begin_write(pool).await?;
    direct::failures_insert(&mut tx, failures).await?;
    let done = sqlx::query(OUTBOX_DELETE)
        .bind(destination.to_string())
        .bind(seqs)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

pub(super) async fn outbox_destinations(pool: &Pool) -> StoreResult<Vec<ServerName>> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT destination FROM outbox ORDER BY destination")
            .fetch_all(pool)
            .await?;
    codec::destinations(rows)
}

pub(super) async fn outbox_len(pool: &Pool, destination: &ServerName) -> StoreResult<u64> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE destination = $1")
        .bind(destination.to_string())
        .fetch_one(pool)
        .await?;
    Ok(codec::rust_u64(count))
}

pub(super) async fn txn_seen(pool: &Pool, origin: &ServerName, txn_id: u64) -> StoreResult<bool> {
    let seen = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM federation_txns WHERE origin = $1 AND txn_id = $2)",
    )
    .bind(origin.to_string())
    .bind(sql_u64(txn_id))
    .fetch_one(pool)
    .await?;
    Ok(seen)
}

/// Recording again keeps the first `received_at`.
pub(super) async fn txn_record(
    pool: &Pool,
    origin: &ServerName,
    txn_id: u64,
    now: u64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO federation_txns (origin, txn_id, received_at) VALUES ($1, $2, $3) \
         ON CONFLICT (origin, txn_id) DO NOTHING",
    )
    .bind(origin.to_string())
    .bind(sql_u64(txn_id))
    .bind(sql_u64(now))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn txn_purge_before(pool: &Pool, cutoff: u64) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM federation_txns WHERE received_at < $1")
        .bind(sql_u64(cutoff))
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
