//! Channel messages and history paging (spec `client/messages.md`).
//!
//! History pages by id over the `(channel, id)` primary key; see [`HistoryScan`] for how each
//! combination of bounds is read.
//!
//! The writes are single statements over any executor (the pool, or a transaction's connection)
//! so that `commit_hosted` (`federation.rs`) runs exactly this SQL inside its own transaction.

use mobium_spec::{ChannelId, MessageId};

use super::{Executor, Pool};
use crate::storage::codec::{self, HistoryScan, MessageTuple, sql_u64};
use crate::storage::{HistoryQuery, MessageRow, StoreResult};

pub(super) async fn message_insert(db: impl Executor<'_>, row: &MessageRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO messages \
         (channel, id, sender, ciphertext, sent_at, edited_at, reply_to, origin_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(row.channel.to_string())
    .bind(sql_u64(row.id.get()))
    .bind(row.sender.to_string())
    .bind(&row.ciphertext)
    .bind(sql_u64(row.sent_at))
    .bind(row.edited_at.map(sql_u64))
    .bind(row.reply_to.map(|id| sql_u64(id.get())))
    .bind(row.origin_id.map(|id| sql_u64(id.get())))
    .execute(db)
    .await
    .map_err(codec::conflict(
        "message already exists in this channel (same id, or same sender and origin id)",
    ))?;
    Ok(())
}

pub(super) async fn message_get(
    pool: &Pool,
    channel: &ChannelId,
    id: MessageId,
) -> StoreResult<Option<MessageRow>> {
    let row: Option<MessageTuple> = sqlx::query_as(
        "SELECT channel, id, sender, ciphertext, sent_at, edited_at, reply_to, origin_id \
         FROM messages WHERE channel = $1 AND id = $2",
    )
    .bind(channel.to_string())
    .bind(sql_u64(id.get()))
    .fetch_optional(pool)
    .await?;
    row.map(codec::message).transpose()
}

pub(super) async fn message_edit(
    db: impl Executor<'_>,
    channel: &ChannelId,
    id: MessageId,
    ciphertext: &[u8],
    edited_at: u64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE messages SET ciphertext = $1, edited_at = $2 WHERE channel = $3 AND id = $4",
    )
    .bind(ciphertext)
    .bind(sql_u64(edited_at))
    .bind(channel.to_string())
    .bind(sql_u64(id.get()))
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn message_delete(
    db: impl Executor<'_>,
    channel: &ChannelId,
    id: MessageId,
) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM messages WHERE channel = $1 AND id = $2")
        .bind(channel.to_string())
        .bind(sql_u64(id.get()))
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The start of every history query: `$1` is the channel; `$2` the row limit, `$3` and `$4`
/// the bounds, in the order the scan binds them.
macro_rules! select_page {
    () => {
        "SELECT channel, id, sender, ciphertext, sent_at, edited_at, reply_to, origin_id \
         FROM messages WHERE channel = $1"
    };
}

pub(super) async fn history(
    pool: &Pool,
    channel: &ChannelId,
    q: HistoryQuery,
) -> StoreResult<(Vec<MessageRow>, bool)> {
    let scan = HistoryScan::of(&q);
    let sql = match scan {
        HistoryScan::Newest => concat!(select_page!(), " ORDER BY id DESC LIMIT $2"),
        HistoryScan::Before(_) => concat!(select_page!(), " AND id < $3 ORDER BY id DESC LIMIT $2"),
        HistoryScan::After(_) => concat!(select_page!(), " AND id > $3 ORDER BY id ASC LIMIT $2"),
        HistoryScan::Between { .. } => {
            concat!(
                select_page!(),
                " AND id > $3 AND id < $4 ORDER BY id ASC LIMIT $2"
            )
        }
    };
    let mut query = sqlx::query_as::<_, MessageTuple>(sql)
        .bind(channel.to_string())
        .bind(HistoryScan::fetch_limit(&q));
    match scan {
        HistoryScan::Newest => {}
        HistoryScan::Before(bound) | HistoryScan::After(bound) => query = query.bind(bound),
        HistoryScan::Between { after, before } => query = query.bind(after).bind(before),
    }
    scan.finish(query.fetch_all(pool).await?, q.limit)
}

pub(super) async fn messages_purge_before(pool: &Pool, cutoff: u64) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM messages WHERE sent_at < $1")
        .bind(sql_u64(cutoff))
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
