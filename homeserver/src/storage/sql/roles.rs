//! Server-wide roles, who holds them, and per-channel overrides (spec `client/channels.md`
//! §Permissions). Role 0 (`everyone`) is created by the first migration and cannot be deleted;
//! everyone holds it implicitly, so it is never listed among a user's roles.

use mobium_spec::{ChannelId, UserId};

use super::{Pool, begin_write};
use crate::storage::codec::{self, OverrideTuple, RoleTuple, sql_u64};
use crate::storage::{OverrideRow, OverrideTargetRow, RoleRow, StoreError, StoreResult};

pub(super) async fn role_create(pool: &Pool, name: &str, permissions: u64) -> StoreResult<u64> {
    let id: i64 =
        sqlx::query_scalar("INSERT INTO roles (name, permissions) VALUES ($1, $2) RETURNING id")
            .bind(name)
            .bind(sql_u64(permissions))
            .fetch_one(pool)
            .await?;
    Ok(codec::rust_u64(id))
}

pub(super) async fn role_update(
    pool: &Pool,
    id: u64,
    name: Option<&str>,
    permissions: Option<u64>,
) -> StoreResult<Option<RoleRow>> {
    let row: Option<RoleTuple> = sqlx::query_as(
        "UPDATE roles SET name = coalesce($1, name), permissions = coalesce($2, permissions) \
         WHERE id = $3 RETURNING id, name, permissions",
    )
    .bind(name)
    .bind(permissions.map(sql_u64))
    .bind(sql_u64(id))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(codec::role))
}

pub(super) async fn role_delete(pool: &Pool, id: u64) -> StoreResult<bool> {
    if id == 0 {
        return Err(StoreError::Conflict("role 0 (everyone) cannot be deleted"));
    }
    let mut tx = begin_write(pool).await?;
    // Grants go with the role (`ON DELETE CASCADE`); overrides name it in a text column.
    sqlx::query("DELETE FROM channel_overrides WHERE target_kind = 'role' AND target = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM roles WHERE id = $1")
        .bind(sql_u64(id))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn role_get(pool: &Pool, id: u64) -> StoreResult<Option<RoleRow>> {
    let row: Option<RoleTuple> =
        sqlx::query_as("SELECT id, name, permissions FROM roles WHERE id = $1")
            .bind(sql_u64(id))
            .fetch_optional(pool)
            .await?;
    Ok(row.map(codec::role))
}

pub(super) async fn roles(pool: &Pool) -> StoreResult<Vec<RoleRow>> {
    let rows: Vec<RoleTuple> =
        sqlx::query_as("SELECT id, name, permissions FROM roles ORDER BY id")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(codec::role).collect())
}

pub(super) async fn role_grant(pool: &Pool, user: &UserId, role: u64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO role_grants (user_id, role_id) VALUES ($1, $2) \
         ON CONFLICT (user_id, role_id) DO NOTHING",
    )
    .bind(user.to_string())
    .bind(sql_u64(role))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn role_revoke(pool: &Pool, user: &UserId, role: u64) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM role_grants WHERE user_id = $1 AND role_id = $2")
        .bind(user.to_string())
        .bind(sql_u64(role))
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn roles_of(pool: &Pool, user: &UserId) -> StoreResult<Vec<RoleRow>> {
    let rows: Vec<RoleTuple> = sqlx::query_as(
        "SELECT r.id, r.name, r.permissions FROM roles r JOIN role_grants g ON g.role_id = r.id \
         WHERE g.user_id = $1 AND r.id <> 0 ORDER BY r.id",
    )
    .bind(user.to_string())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(codec::role).collect())
}

pub(super) async fn override_set(
    pool: &Pool,
    channel: &ChannelId,
    row: &OverrideRow,
) -> StoreResult<()> {
    let (kind, target) = codec::override_target(&row.target);
    sqlx::query(
        "INSERT INTO channel_overrides (channel, target_kind, target, allow_bits, deny_bits) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (channel, target_kind, target) DO UPDATE \
         SET allow_bits = excluded.allow_bits, deny_bits = excluded.deny_bits",
    )
    .bind(channel.to_string())
    .bind(kind)
    .bind(target)
    .bind(sql_u64(row.allow))
    .bind(sql_u64(row.deny))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn override_clear(
    pool: &Pool,
    channel: &ChannelId,
    target: &OverrideTargetRow,
) -> StoreResult<bool> {
    let (kind, target) = codec::override_target(target);
    let done = sqlx::query(
        "DELETE FROM channel_overrides WHERE channel = $1 AND target_kind = $2 AND target = $3",
    )
    .bind(channel.to_string())
    .bind(kind)
    .bind(target)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn overrides(pool: &Pool, channel: &ChannelId) -> StoreResult<Vec<OverrideRow>> {
    let rows: Vec<OverrideTuple> = sqlx::query_as(
        "SELECT target_kind, target, allow_bits, deny_bits FROM channel_overrides \
         WHERE channel = $1 ORDER BY target_kind, target",
    )
    .bind(channel.to_string())
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(codec::override_row).collect()
}
