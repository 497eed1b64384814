//! SQLite: federation bookkeeping (spec `federation.md`): local copies of channels hosted on other
//! servers, the outbox of events waiting for delivery, and inbound idempotency. Remote to-device
//! messages are queued in `direct.rs`.
//!
//! `commit_hosted` applies a change to a channel hosted here and appends the events that tell the
//! member servers about it in one `BEGIN IMMEDIATE` transaction, running the very statements of
//! the single operations (`messages.rs`, `channels.rs`). When the change does nothing or fails,
//! the transaction is dropped, which rolls it back: no event ever goes out for a change that was
//! not made, and no change is made without its events. SQLite serializes writers, so outbox
//! sequence numbers are handed out in commit order and a delivery worker never sees a later event
//! for a destination before an earlier one.

use mobium_spec::{ChannelId, ServerName};
use sqlx::{SqliteConnection, SqlitePool};

use super::{channels, direct, messages};
use crate::storage::codec::{self, OutboxTuple, sql_u64};
use crate::storage::{ChannelRow, DirectFailureRow, HostedChange, OutboxItem, StoreResult};

pub(super) async fn channel_put(pool: &SqlitePool, row: &ChannelRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO channels (id, owner, metadata, created_at) VALUES (?, ?, ?, ?) \
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

pub(super) async fn channel_last_seq(pool: &SqlitePool, channel: &ChannelId) -> StoreResult<u64> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM channel_replicas WHERE channel = ?")
            .bind(channel.to_string())
            .fetch_optional(pool)
            .await?;
    Ok(seq.map_or(0, codec::rust_u64))
}

/// The channel must exist (`channel_put` first): a replica row refers to it.
pub(super) async fn channel_set_last_seq(
    pool: &SqlitePool,
    channel: &ChannelId,
    seq: u64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO channel_replicas (channel, last_seq) VALUES (?, ?) \
         ON CONFLICT (channel) DO UPDATE SET last_seq = excluded.last_seq",
    )
    .bind(channel.to_string())
    .bind(sql_u64(seq))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn outbox_push(
    pool: &SqlitePool,
    items: &[OutboxItem],
    now: u64,
) -> StoreResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    append(&mut tx, items, now).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn commit_hosted(
    pool: &SqlitePool,
    change: &HostedChange,
    items: &[OutboxItem],
    now: u64,
) -> StoreResult<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    if !apply(&mut tx, change).await? {
        // Nothing to announce: dropping the transaction rolls it back.
        return Ok(false);
    }
    append(&mut tx, items, now).await?;
    tx.commit().await?;
    Ok(true)
}

/// Applies `change` with the statement of the matching single operation; returns what it would.
async fn apply(conn: &mut SqliteConnection, change: &HostedChange) -> StoreResult<bool> {
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
/// transaction.
async fn append(conn: &mut SqliteConnection, items: &[OutboxItem], now: u64) -> StoreResult<()> {
    for item in items {
        sqlx::query("INSERT INTO outbox (destination, event, created_at) VALUES (?, ?, ?)")
            .bind(item.destination.to_string())
            .bind(&item.event)
            .bind(sql_u64(now))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn outbox_peek(
    pool: &SqlitePool,
    destination: &ServerName,
    limit: u32,
) -> StoreResult<Vec<(u64, Vec<u8>)>> {
    let rows: Vec<OutboxTuple> =
        sqlx::query_as("SELECT seq, event FROM outbox WHERE destination = ? ORDER BY seq LIMIT ?")
            .bind(destination.to_string())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(codec::outbox_event).collect())
}

pub(super) async fn outbox_settle(
    pool: &SqlitePool,
    destination: &ServerName,
    seqs: &[u64],
    failures: &[DirectFailureRow],
) -> StoreResult<u64> {
    if seqs.is_empty() && failures.is_empty() {
        return Ok(0);
    }
    // SQLite cannot bind an array; the numbers travel as one JSON array of integers instead.
    let seqs = seqs
        .iter()
        .map(|&seq| sql_u64(seq).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    direct::failures_insert(&mut tx, failures).await?;
    let done = sqlx::query(
        "DELETE FROM outbox WHERE destination = ? AND seq IN (SELECT value FROM json_each(?))",
    )
    .bind(destination.to_string())
    .bind(format!("[{seqs}]"))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

pub(super) async fn outbox_destinations(pool: &SqlitePool) -> StoreResult<Vec<ServerName>> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT destination FROM outbox ORDER BY destination")
            .fetch_all(pool)
            .await?;
    codec::destinations(rows)
}

pub(super) async fn outbox_len(pool: &SqlitePool, destination: &ServerName) -> StoreResult<u64> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE destination = ?")
        .bind(destination.to_string())
        .fetch_one(pool)
        .await?;
    Ok(codec::rust_u64(count))
}

pub(super) async fn txn_seen(
    pool: &SqlitePool,
    origin: &ServerName,
    txn_id: u64,
) -> StoreResult<bool> {
    let seen = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM federation_txns WHERE origin = ? AND txn_id = ?)",
    )
    .bind(origin.to_string())
    .bind(sql_u64(txn_id))
    .fetch_one(pool)
    .await?;
    Ok(seen)
}

/// Recording again keeps the first `received_at`.
pub(super) async fn txn_record(
    pool: &SqlitePool,
    origin: &ServerName,
    txn_id: u64,
    now: u64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO federation_txns (origin, txn_id, received_at) VALUES (?, ?, ?) \
         ON CONFLICT (origin, txn_id) DO NOTHING",
    )
    .bind(origin.to_string())
    .bind(sql_u64(txn_id))
    .bind(sql_u64(now))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn txn_purge_before(pool: &SqlitePool, cutoff: u64) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM federation_txns WHERE received_at < ?")
        .bind(sql_u64(cutoff))
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
