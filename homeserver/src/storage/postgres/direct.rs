//! PostgreSQL: the to-device queue (spec `client/direct.md`): messages held for a user's
//! devices until they acknowledge them or the messages expire.
//!
//! Under `READ COMMITTED` two concurrent `INSERT … WHERE count < cap` statements could both
//! see room for one more row, so an enqueue first takes a transaction-scoped advisory lock on
//! the recipient: enqueues to one recipient run one after the other, to different recipients
//! in parallel.

use mobium_spec::{MessageId, UserId};
use sqlx::PgPool;

use crate::storage::codec::{self, DirectTuple, sql_u64};
use crate::storage::{DirectRow, StoreError, StoreResult};

pub(super) async fn direct_enqueue(
    pool: &PgPool,
    row: &DirectRow,
    max_queued: u32,
) -> StoreResult<()> {
    let recipient = row.recipient.to_string();
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('mobium.direct_queue:' || $1, 0))")
        .bind(&recipient)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query(
        "INSERT INTO direct_queue (recipient, id, sender, ciphertext, sent_at, expires_at) \
         SELECT $1, $2, $3, $4, $5, $6 \
         WHERE (SELECT count(*) FROM direct_queue WHERE recipient = $1) < $7",
    )
    .bind(&recipient)
    .bind(sql_u64(row.id.get()))
    .bind(row.sender.to_string())
    .bind(&row.ciphertext)
    .bind(sql_u64(row.sent_at))
    .bind(sql_u64(row.expires_at))
    .bind(i64::from(max_queued))
    .execute(&mut *tx)
    .await
    .map_err(codec::conflict("to-device message id already queued"))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::QueueFull);
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn direct_pending(
    pool: &PgPool,
    recipient: &UserId,
    after: Option<MessageId>,
    limit: u32,
) -> StoreResult<Vec<DirectRow>> {
    let rows: Vec<DirectTuple> = sqlx::query_as(
        "SELECT id, recipient, sender, ciphertext, sent_at, expires_at FROM direct_queue \
         WHERE recipient = $1 AND ($2::BIGINT IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(recipient.to_string())
    .bind(after.map(|id| sql_u64(id.get())))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(codec::direct).collect()
}

pub(super) async fn direct_ack(
    pool: &PgPool,
    recipient: &UserId,
    ids: &[MessageId],
) -> StoreResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = ids.iter().map(|id| sql_u64(id.get())).collect();
    let done = sqlx::query("DELETE FROM direct_queue WHERE recipient = $1 AND id = ANY($2)")
        .bind(recipient.to_string())
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

pub(super) async fn direct_purge_expired(pool: &PgPool, now: u64) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM direct_queue WHERE expires_at <= $1")
        .bind(sql_u64(now))
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
