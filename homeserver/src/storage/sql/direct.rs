//! The to-device queue (spec `client/direct.md`): messages held for a user's devices until they
//! acknowledge them or the messages expire, and the failure notices of messages another server
//! refused.
//!
//! The per-recipient cap is enforced inside the `INSERT` itself (`INSERT … SELECT … WHERE
//! count < cap`). On SQLite, which runs write statements one at a time, that alone keeps
//! concurrent senders from pushing a queue past its cap; under PostgreSQL's `READ COMMITTED` two
//! such statements could both see room for one more row, so there an enqueue first takes a
//! transaction-scoped advisory lock on the recipient ([`lock_queue`]; the backend's
//! `direct_enqueue` says how a single enqueue runs). Messages from other servers
//! ([`direct_enqueue_remote_many`]) go through the same lock, inside a transaction that also
//! records where they came from.

use mobium_spec::{MessageId, ServerName, UserId};

use super::{
    Connection, DIRECT_ACK, Executor, FAILURES_ACK, Pool, begin_write, id_list, lock_queue,
};
use crate::storage::codec::{self, DirectTuple, FailureTuple, sql_u64};
use crate::storage::{ClientTxn, DirectFailureRow, DirectRow, StoreError, StoreResult};

/// Queues `row` unless the recipient already has `max_queued` messages: the count and the
/// insert are one statement (`QueueFull` when it inserted nothing).
pub(crate) async fn insert_capped(
    db: impl Executor<'_>,
    row: &DirectRow,
    max_queued: u32,
) -> StoreResult<()> {
    let done = sqlx::query(
        "INSERT INTO direct_queue (recipient, id, sender, ciphertext, sent_at, expires_at) \
         SELECT $1, $2, $3, $4, $5, $6 \
         WHERE (SELECT count(*) FROM direct_queue WHERE recipient = $1) < $7",
    )
    .bind(row.recipient.to_string())
    .bind(sql_u64(row.id.get()))
    .bind(row.sender.to_string())
    .bind(&row.ciphertext)
    .bind(sql_u64(row.sent_at))
    .bind(sql_u64(row.expires_at))
    .bind(i64::from(max_queued))
    .execute(db)
    .await
    .map_err(codec::conflict("to-device message id already queued"))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::QueueFull);
    }
    Ok(())
}

pub(super) async fn direct_enqueue_remote(
    pool: &Pool,
    row: &DirectRow,
    origin: &ServerName,
    origin_id: MessageId,
    max_queued: u32,
) -> StoreResult<bool> {
    let items = [(row.clone(), origin_id)];
    direct_enqueue_remote_many(pool, origin, &items, max_queued)
        .await?
        .pop()
        .unwrap_or(Ok(false))
}

pub(super) async fn direct_pending(
    pool: &Pool,
    recipient: &UserId,
    after: Option<MessageId>,
    limit: u32,
) -> StoreResult<Vec<DirectRow>> {
    // The cast gives PostgreSQL the type of a parameter that may be bound as NULL.
    let rows: Vec<DirectTuple> = sqlx::query_as(
        "SELECT id, recipient, sender, ciphertext, sent_at, expires_at FROM direct_queue \
         WHERE recipient = $1 AND (CAST($2 AS BIGINT) IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(recipient.to_string())
    .bind(after.map(|id| sql_u64(id.get())))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(codec::direct).collect()
}

pub(super) async fn direct_ack(
    pool: &Pool,
    recipient: &UserId,
    ids: &[MessageId],
) -> StoreResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let ids = id_list(ids.iter().map(|id| sql_u64(id.get())).collect());
    let mut tx = pool.begin().await?;
    let queued = sqlx::query(DIRECT_ACK)
        .bind(recipient.to_string())
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    // Failure notices are acknowledged the same way (their ids come from the same generator).
    let notices = sqlx::query(FAILURES_ACK)
        .bind(recipient.to_string())
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(queued.rows_affected() + notices.rows_affected())
}

pub(super) async fn direct_failures_pending(
    pool: &Pool,
    sender: &UserId,
    after: Option<MessageId>,
    limit: u32,
) -> StoreResult<Vec<DirectFailureRow>> {
    let rows: Vec<FailureTuple> = sqlx::query_as(
        "SELECT id, sender, recipient, code, message, expires_at FROM direct_failures \
         WHERE sender = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(sender.to_string())
    .bind(after.map_or(0, |id| sql_u64(id.get())))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(codec::failure).collect()
}

/// Queues failure notices inside the caller's transaction (a notice already queued, same sender
/// and id, stays once).
pub(super) async fn failures_insert(
    conn: &mut Connection,
    failures: &[DirectFailureRow],
) -> StoreResult<()> {
    for f in failures {
        sqlx::query(
            "INSERT INTO direct_failures (sender, id, recipient, code, message, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sender, id) DO NOTHING",
        )
        .bind(f.sender.to_string())
        .bind(sql_u64(f.id.get()))
        .bind(f.recipient.to_string())
        .bind(f.code.as_str())
        .bind(&f.message)
        .bind(sql_u64(f.expires_at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn direct_purge_expired(pool: &Pool, now: u64) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM direct_queue WHERE expires_at <= $1")
        .bind(sql_u64(now))
        .execute(pool)
        .await?;
    // Once a remote message would have expired, a resend of it is stale anyway: forget its
    // origin too, so the dedupe table stays bounded.
    sqlx::query("DELETE FROM direct_remote_origins WHERE expires_at <= $1")
        .bind(sql_u64(now))
        .execute(pool)
        .await?;
    // Failure notices nobody acknowledged before they expired.
    sqlx::query("DELETE FROM direct_failures WHERE expires_at <= $1")
        .bind(sql_u64(now))
        .execute(pool)
        .await?;
    super::txns::purge(pool, now).await?;
    Ok(done.rows_affected())
}

/// A local enqueue named by a client transaction id: the id is recorded in the enqueue's own
/// transaction (`TxnSeen`, and nothing written, if it was recorded before).
pub(super) async fn direct_enqueue_with_txn(
    pool: &Pool,
    row: &DirectRow,
    max_queued: u32,
    txn: &ClientTxn,
) -> StoreResult<()> {
    let mut tx = begin_write(pool).await?;
    lock_queue(&mut tx, &row.recipient.to_string()).await?;
    if !super::txns::record(&mut tx, txn).await? {
        return Err(StoreError::TxnSeen);
    }
    insert_capped(&mut *tx, row, max_queued).await?;
    tx.commit().await?;
    Ok(())
}

/// Queues several messages from `origin` in ONE transaction (one commit for a whole federation
/// transaction), each under its own savepoint so a duplicate affects only that message. Each
/// recipient's queue is counted once per batch and the count carried along (SQLite's `BEGIN
/// IMMEDIATE` write lock, or the recipient's PostgreSQL advisory lock taken before counting and
/// held to the end, keeps other enqueues out), so a long queue does not make every insert count
/// it again. Per item: `Ok(true)` queued, `Ok(false)` queued before, `Err` refused.
pub(super) async fn direct_enqueue_remote_many(
    pool: &Pool,
    origin: &ServerName,
    items: &[(DirectRow, MessageId)],
    max_queued: u32,
) -> StoreResult<Vec<StoreResult<bool>>> {
    use sqlx::Acquire;
    let mut tx = begin_write(pool).await?;
    let mut counts: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(items.len());
    for (row, origin_id) in items {
        let recipient = row.recipient.to_string();
        if !counts.contains_key(&recipient) {
            lock_queue(&mut tx, &recipient).await?;
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM direct_queue WHERE recipient = $1")
                    .bind(&recipient)
                    .fetch_one(&mut *tx)
                    .await?;
            counts.insert(recipient.clone(), n);
        }
        let mut sp = (&mut *tx).begin().await?;
        let recorded = sqlx::query(
            "INSERT INTO direct_remote_origins (origin, origin_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (origin, origin_id) DO NOTHING",
        )
        .bind(origin.to_string())
        .bind(sql_u64(origin_id.get()))
        .bind(sql_u64(row.expires_at))
        .execute(&mut *sp)
        .await?;
        if recorded.rows_affected() == 0 {
            sp.rollback().await?;
            out.push(Ok(false));
            continue;
        }
        let count = counts.get(&recipient).copied().unwrap_or(0);
        if count >= i64::from(max_queued) {
            sp.rollback().await?;
            out.push(Err(StoreError::QueueFull));
            continue;
        }
        let inserted = sqlx::query(
            "INSERT INTO direct_queue (recipient, id, sender, ciphertext, sent_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&recipient)
        .bind(sql_u64(row.id.get()))
        .bind(row.sender.to_string())
        .bind(&row.ciphertext)
        .bind(sql_u64(row.sent_at))
        .bind(sql_u64(row.expires_at))
        .execute(&mut *sp)
        .await
        .map_err(codec::conflict("to-device message id already queued"));
        match inserted {
            Ok(_) => {
                sp.commit().await?;
                counts.insert(recipient, count + 1);
                out.push(Ok(true));
            }
            Err(e @ StoreError::Conflict(_)) => {
                sp.rollback().await?;
                out.push(Err(e));
            }
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(out)
}
