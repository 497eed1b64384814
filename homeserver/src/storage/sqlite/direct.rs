//! SQLite: the to-device queue (spec `client/direct.md`): messages held for a user's devices
//! until they acknowledge them or the messages expire.
//!
//! The per-recipient cap is enforced inside the `INSERT` itself (`INSERT … SELECT … WHERE
//! count < cap`): the count and the insert run as one write statement, so concurrent senders
//! cannot push a queue past its cap. Messages from other servers (`direct_enqueue_remote`) go
//! through the same statement, inside a transaction that also records where they came from.

use mobium_spec::{MessageId, ServerName, UserId};
use sqlx::{SqliteExecutor, SqlitePool};

use crate::storage::codec::{self, DirectTuple, FailureTuple, sql_u64};
use crate::storage::sql;
use crate::storage::{DirectFailureRow, DirectRow, StoreError, StoreResult};

pub(super) async fn direct_enqueue(
    pool: &SqlitePool,
    row: &DirectRow,
    max_queued: u32,
) -> StoreResult<()> {
    insert_capped(pool, row, max_queued).await
}

/// Queues `row` unless the recipient already has `max_queued` messages: the count and the
/// insert are one statement.
async fn insert_capped(
    db: impl SqliteExecutor<'_>,
    row: &DirectRow,
    max_queued: u32,
) -> StoreResult<()> {
    let recipient = row.recipient.to_string();
    let done = sqlx::query(
        "INSERT INTO direct_queue (recipient, id, sender, ciphertext, sent_at, expires_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6 \
         WHERE (SELECT count(*) FROM direct_queue WHERE recipient = ?1) < ?7",
    )
    .bind(&recipient)
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
    pool: &SqlitePool,
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
    pool: &SqlitePool,
    recipient: &UserId,
    after: Option<MessageId>,
    limit: u32,
) -> StoreResult<Vec<DirectRow>> {
    let rows: Vec<DirectTuple> = sqlx::query_as(
        "SELECT id, recipient, sender, ciphertext, sent_at, expires_at FROM direct_queue \
         WHERE recipient = ?1 AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3",
    )
    .bind(recipient.to_string())
    .bind(after.map(|id| sql_u64(id.get())))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(codec::direct).collect()
}

pub(super) async fn direct_ack(
    pool: &SqlitePool,
    recipient: &UserId,
    ids: &[MessageId],
) -> StoreResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    // SQLite cannot bind an array; the ids travel as one JSON array of integers instead.
    let ids = format!(
        "[{}]",
        ids.iter()
            .map(|id| sql_u64(id.get()).to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut tx = pool.begin().await?;
    let queued = sqlx::query(
        "DELETE FROM direct_queue \
         WHERE recipient = ? AND id IN (SELECT value FROM json_each(?))",
    )
    .bind(recipient.to_string())
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    // Failure notices are acknowledged the same way (their ids come from the same generator).
    let notices = sqlx::query(
        "DELETE FROM direct_failures \
         WHERE sender = ? AND id IN (SELECT value FROM json_each(?))",
    )
    .bind(recipient.to_string())
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(queued.rows_affected() + notices.rows_affected())
}

pub(super) async fn direct_failures_pending(
    pool: &SqlitePool,
    sender: &UserId,
    after: Option<MessageId>,
    limit: u32,
) -> StoreResult<Vec<DirectFailureRow>> {
    let rows: Vec<FailureTuple> = sqlx::query_as(sql::FAILURES_PENDING)
        .bind(sender.to_string())
        .bind(after.map_or(0, |id| sql_u64(id.get())))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(codec::failure).collect()
}

/// Queues failure notices inside the caller's transaction (a notice already queued stays once).
pub(super) async fn failures_insert(
    conn: &mut sqlx::SqliteConnection,
    failures: &[DirectFailureRow],
) -> StoreResult<()> {
    for f in failures {
        sqlx::query(sql::FAILURE_INSERT)
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

pub(super) async fn direct_purge_expired(pool: &SqlitePool, now: u64) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM direct_queue WHERE expires_at <= ?")
        .bind(sql_u64(now))
        .execute(pool)
        .await?;
    // Once a remote message would have expired, a resend of it is stale anyway: forget its
    // origin too, so the dedupe table stays bounded.
    sqlx::query("DELETE FROM direct_remote_origins WHERE expires_at <= ?")
        .bind(sql_u64(now))
        .execute(pool)
        .await?;
    sqlx::query(sql::FAILURES_PURGE)
        .bind(sql_u64(now))
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Queues several messages from `origin` in ONE transaction (one commit for a whole federation
/// transaction), each under its own savepoint so a duplicate affects only that message. Each
/// recipient's queue is counted once per batch and the count carried along (the write lock of `BEGIN IMMEDIATE` keeps other writers out), so a
/// long queue does not make every insert count it again. Per item: `Ok(true)` queued,
/// `Ok(false)` queued before, `Err` refused.
pub(super) async fn direct_enqueue_remote_many(
    pool: &SqlitePool,
    origin: &ServerName,
    items: &[(DirectRow, MessageId)],
    max_queued: u32,
) -> StoreResult<Vec<StoreResult<bool>>> {
    use sqlx::Acquire;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut counts: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(items.len());
    for (row, origin_id) in items {
        let recipient = row.recipient.to_string();
        if !counts.contains_key(&recipient) {
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM direct_queue WHERE recipient = ?")
                    .bind(&recipient)
                    .fetch_one(&mut *tx)
                    .await?;
            counts.insert(recipient.clone(), n);
        }
        let mut sp = (&mut *tx).begin().await?;
        let recorded = sqlx::query(
            "INSERT INTO direct_remote_origins (origin, origin_id, expires_at) VALUES (?, ?, ?) \
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
             VALUES (?, ?, ?, ?, ?, ?)",
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
