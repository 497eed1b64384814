//! Users, registration tokens and prekeys (spec `client/auth.md`, `client/keys.md`).
//!
//! A local user is stored by the canonical text of their public key. Claiming a one-time key
//! deletes the oldest one and returns it in one statement, inside a transaction in which claims
//! of one user take turns, so each key goes to exactly one claimer and the count of what is left
//! is exact. How the turns are taken is the backend's ([`lock_claims`], [`ONE_TIME_TAKE`]):
//! SQLite's `BEGIN IMMEDIATE` holds the database's write lock; PostgreSQL locks the user's row
//! and skips one-time keys a concurrent claim has locked.

use mobium_spec::PublicKey;
use mobium_spec::client::{KeysCount, Prekey, PrekeyKind};

use super::{ONE_TIME_TAKE, Pool, begin_write, lock_claims};
use crate::storage::codec::{self, KindedPrekeyTuple, PrekeyTuple, sql_u64};
use crate::storage::{ClaimedKeys, StoreResult};

/// The count of a user's one-time keys and fallback keys.
const KEYS_COUNT: &str = "SELECT (SELECT count(*) FROM one_time_keys WHERE user_key = $1), \
     (SELECT count(*) FROM prekeys WHERE user_key = $1 AND kind = 'fallback')";

pub(super) async fn user_exists(pool: &Pool, key: &PublicKey) -> StoreResult<bool> {
    let exists = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE key = $1)")
        .bind(key.to_string())
        .fetch_one(pool)
        .await?;
    Ok(exists)
}

pub(super) async fn user_create(pool: &Pool, key: &PublicKey, now: u64) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO users (key, created_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key.to_string())
    .bind(sql_u64(now))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn reg_token_create(
    pool: &Pool,
    token: &str,
    uses: u32,
    expires_at: Option<u64>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO registration_tokens (token, uses_left, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(token)
    .bind(i64::from(uses))
    .bind(expires_at.map(sql_u64))
    .execute(pool)
    .await
    .map_err(codec::conflict("registration token already exists"))?;
    Ok(())
}

pub(super) async fn reg_token_consume(pool: &Pool, token: &str, now: u64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE registration_tokens SET uses_left = uses_left - 1 \
         WHERE token = $1 AND uses_left > 0 AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(token)
    .bind(sql_u64(now))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn key_set(
    pool: &Pool,
    user: &PublicKey,
    kind: PrekeyKind,
    key: &Prekey,
) -> StoreResult<()> {
    let kind = codec::prekey_kind(kind)?;
    sqlx::query(
        "INSERT INTO prekeys (user_key, kind, key_id, key, signature) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_key, kind) DO UPDATE \
         SET key_id = excluded.key_id, key = excluded.key, signature = excluded.signature",
    )
    .bind(user.to_string())
    .bind(kind)
    .bind(&key.key_id)
    .bind(&key.key)
    .bind(key.signature.0.as_slice())
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn keys_add_one_time(
    pool: &Pool,
    user: &PublicKey,
    keys: &[Prekey],
) -> StoreResult<()> {
    let user = user.to_string();
    let mut tx = begin_write(pool).await?;
    for key in keys {
        sqlx::query(
            "INSERT INTO one_time_keys (user_key, key_id, key, signature) VALUES ($1, $2, $3, $4)",
        )
        .bind(&user)
        .bind(&key.key_id)
        .bind(&key.key)
        .bind(key.signature.0.as_slice())
        .execute(&mut *tx)
        .await
        .map_err(codec::conflict("one-time key id already uploaded"))?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn keys_count(pool: &Pool, user: &PublicKey) -> StoreResult<KeysCount> {
    let (one_time, fallback): (i64, i64) = sqlx::query_as(KEYS_COUNT)
        .bind(user.to_string())
        .fetch_one(pool)
        .await?;
    codec::keys_count(one_time, fallback)
}

pub(super) async fn keys_claim(pool: &Pool, user: &PublicKey) -> StoreResult<Option<ClaimedKeys>> {
    let user = user.to_string();
    let mut tx = begin_write(pool).await?;
    lock_claims(&mut tx, &user).await?;
    let rows: Vec<KindedPrekeyTuple> =
        sqlx::query_as("SELECT kind, key_id, key, signature FROM prekeys WHERE user_key = $1")
            .bind(&user)
            .fetch_all(&mut *tx)
            .await?;
    let published = codec::PublishedKeys::from_rows(rows)?;
    let Some(identity) = published.identity else {
        return Ok(None);
    };
    let one_time: Option<PrekeyTuple> = sqlx::query_as(ONE_TIME_TAKE)
        .bind(&user)
        .fetch_optional(&mut *tx)
        .await?;
    let one_time = one_time.map(codec::prekey).transpose()?;
    let (left, fallbacks): (i64, i64) = sqlx::query_as(KEYS_COUNT)
        .bind(&user)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(ClaimedKeys {
        identity,
        signed: published.signed,
        fallback: if one_time.is_none() {
            published.fallback
        } else {
            None
        },
        one_time,
        left: codec::keys_count(left, fallbacks)?,
    }))
}
