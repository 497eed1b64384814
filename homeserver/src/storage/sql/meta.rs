//! The `server_meta` key/value table (the pinned server name, the health write probe).

use super::Pool;
use crate::storage::StoreResult;

pub(super) async fn meta_get(pool: &Pool, key: &str) -> StoreResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM server_meta WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await?,
    )
}

pub(super) async fn meta_insert_or_get(pool: &Pool, key: &str, value: &str) -> StoreResult<String> {
    // One statement: `DO UPDATE` with an unchanged value makes `RETURNING` yield the stored row.
    Ok(sqlx::query_scalar(
        "INSERT INTO server_meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = server_meta.value RETURNING value",
    )
    .bind(key)
    .bind(value)
    .fetch_one(pool)
    .await?)
}

pub(super) async fn meta_set(pool: &Pool, key: &str, value: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO server_meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(pool)
    .await?;
    Ok(())
}
