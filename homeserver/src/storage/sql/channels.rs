//! Channels, their members and bans, and invite links (spec `client/channels.md`).
//!
//! Using an invite is one conditional `UPDATE` (not revoked, not expired, under its limit), so
//! concurrent joins can never push an invite past `max_uses` (SQLite runs writes one at a time;
//! PostgreSQL makes a concurrent use wait for the row lock and then re-checks the condition
//! against the committed row); when it touches no row, the invite is read back only to say why.
//!
//! Setting metadata, adding and removing a member are single statements over any executor (the
//! pool, or a transaction's connection) so that `commit_hosted` (`federation.rs`) runs exactly
//! this SQL inside its own transaction.

use mobium_spec::{ChannelId, UserId};

use super::{Executor, Pool, begin_write};
use crate::storage::codec::{self, ChannelTuple, InviteTuple, MemberTuple, sql_u64};
use crate::storage::{ChannelRow, InviteRow, InviteUse, StoreError, StoreResult};

pub(super) async fn channel_create(pool: &Pool, row: &ChannelRow) -> StoreResult<()> {
    let id = row.id.to_string();
    let mut tx = begin_write(pool).await?;
    sqlx::query("INSERT INTO channels (id, owner, metadata, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&id)
        .bind(row.owner.to_string())
        .bind(&row.metadata)
        .bind(sql_u64(row.created_at))
        .execute(&mut *tx)
        .await
        .map_err(codec::conflict("channel already exists"))?;
    sqlx::query("INSERT INTO channel_members (channel, user_id, joined_at) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(row.owner.to_string())
        .bind(sql_u64(row.created_at))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn channel_get(pool: &Pool, id: &ChannelId) -> StoreResult<Option<ChannelRow>> {
    let row: Option<ChannelTuple> =
        sqlx::query_as("SELECT id, owner, metadata, created_at FROM channels WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(pool)
            .await?;
    row.map(codec::channel).transpose()
}

pub(super) async fn channel_set_metadata(
    db: impl Executor<'_>,
    id: &ChannelId,
    metadata: &[u8],
) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE channels SET metadata = $1 WHERE id = $2")
        .bind(metadata)
        .bind(id.to_string())
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Records `seq` as the hosted channel's last issued `seq`; `Conflict` unless it is above the
/// recorded one (or the channel is not stored).
pub(super) async fn record_last_seq(
    db: impl Executor<'_>,
    id: &ChannelId,
    seq: u64,
) -> StoreResult<()> {
    let done = sqlx::query("UPDATE channels SET last_seq = $1 WHERE id = $2 AND last_seq < $1")
        .bind(sql_u64(seq))
        .bind(id.to_string())
        .execute(db)
        .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(
            "a hosted event's seq is not above the channel's last",
        ));
    }
    Ok(())
}

pub(super) async fn channels_of(pool: &Pool, user: &UserId) -> StoreResult<Vec<ChannelRow>> {
    let rows: Vec<ChannelTuple> = sqlx::query_as(
        "SELECT c.id, c.owner, c.metadata, c.created_at \
         FROM channels c JOIN channel_members m ON m.channel = c.id WHERE m.user_id = $1",
    )
    .bind(user.to_string())
    .fetch_all(pool)
    .await?;
    codec::channels_by_id(rows)
}

pub(super) async fn member_add(
    db: impl Executor<'_>,
    channel: &ChannelId,
    user: &UserId,
    now: u64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO channel_members (channel, user_id, joined_at) VALUES ($1, $2, $3) \
         ON CONFLICT (channel, user_id) DO NOTHING",
    )
    .bind(channel.to_string())
    .bind(user.to_string())
    .bind(sql_u64(now))
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn member_remove(
    db: impl Executor<'_>,
    channel: &ChannelId,
    user: &UserId,
) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM channel_members WHERE channel = $1 AND user_id = $2")
        .bind(channel.to_string())
        .bind(user.to_string())
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn member_joined_at(
    pool: &Pool,
    channel: &ChannelId,
    user: &UserId,
) -> StoreResult<Option<u64>> {
    let joined: Option<i64> = sqlx::query_scalar(
        "SELECT joined_at FROM channel_members WHERE channel = $1 AND user_id = $2",
    )
    .bind(channel.to_string())
    .bind(user.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(joined.map(codec::rust_u64))
}

pub(super) async fn members(pool: &Pool, channel: &ChannelId) -> StoreResult<Vec<(UserId, u64)>> {
    let rows: Vec<MemberTuple> = sqlx::query_as(
        "SELECT user_id, joined_at FROM channel_members WHERE channel = $1 \
         ORDER BY joined_at, user_id",
    )
    .bind(channel.to_string())
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(codec::member).collect()
}

pub(super) async fn member_count(pool: &Pool, channel: &ChannelId) -> StoreResult<u32> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM channel_members WHERE channel = $1")
        .bind(channel.to_string())
        .fetch_one(pool)
        .await?;
    codec::rust_u32("member count", count)
}

pub(super) async fn ban_add(
    pool: &Pool,
    channel: &ChannelId,
    user: &UserId,
    by: &UserId,
    now: u64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO channel_bans (channel, user_id, banned_by, banned_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (channel, user_id) DO NOTHING",
    )
    .bind(channel.to_string())
    .bind(user.to_string())
    .bind(by.to_string())
    .bind(sql_u64(now))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn ban_remove(
    pool: &Pool,
    channel: &ChannelId,
    user: &UserId,
) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM channel_bans WHERE channel = $1 AND user_id = $2")
        .bind(channel.to_string())
        .bind(user.to_string())
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn is_banned(
    pool: &Pool,
    channel: &ChannelId,
    user: &UserId,
) -> StoreResult<bool> {
    let exists = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM channel_bans WHERE channel = $1 AND user_id = $2)",
    )
    .bind(channel.to_string())
    .bind(user.to_string())
    .fetch_one(pool)
    .await?;
    Ok(exists)
}

pub(super) async fn invite_create(pool: &Pool, row: &InviteRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO invites (code, channel, created_by, max_uses, uses, expires_at, revoked) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&row.code)
    .bind(row.channel.to_string())
    .bind(row.created_by.to_string())
    .bind(row.max_uses.map(i64::from))
    .bind(i64::from(row.uses))
    .bind(row.expires_at.map(sql_u64))
    .bind(row.revoked)
    .execute(pool)
    .await
    .map_err(codec::conflict("invite code already exists"))?;
    Ok(())
}

pub(super) async fn invite_get(pool: &Pool, code: &str) -> StoreResult<Option<InviteRow>> {
    let row: Option<InviteTuple> = sqlx::query_as(
        "SELECT code, channel, created_by, max_uses, uses, expires_at, revoked FROM invites \
         WHERE code = $1",
    )
    .bind(code)
    .fetch_optional(pool)
    .await?;
    row.map(codec::invite).transpose()
}

pub(super) async fn invites_of(
    pool: &Pool,
    channel: &ChannelId,
    now: u64,
) -> StoreResult<Vec<InviteRow>> {
    let rows: Vec<InviteTuple> = sqlx::query_as(
        "SELECT code, channel, created_by, max_uses, uses, expires_at, revoked FROM invites \
         WHERE channel = $1 AND NOT revoked AND (expires_at IS NULL OR expires_at > $2) \
           AND (max_uses IS NULL OR uses < max_uses) \
         ORDER BY code",
    )
    .bind(channel.to_string())
    .bind(sql_u64(now))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(codec::invite).collect()
}

pub(super) async fn invite_revoke(pool: &Pool, code: &str) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE invites SET revoked = TRUE WHERE code = $1")
        .bind(code)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn invite_use(pool: &Pool, code: &str, now: u64) -> StoreResult<InviteUse> {
    let done = sqlx::query(
        "UPDATE invites SET uses = uses + 1 \
         WHERE code = $1 AND NOT revoked AND (expires_at IS NULL OR expires_at > $2) \
           AND (max_uses IS NULL OR uses < max_uses)",
    )
    .bind(code)
    .bind(sql_u64(now))
    .execute(pool)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(InviteUse::Used);
    }
    Ok(codec::invite_refusal(invite_get(pool, code).await?, now))
}
