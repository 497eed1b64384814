//! Client transaction ids (spec `client/transport.md` §Retrying a send): the answer a named send
//! got, recorded inside the write transaction of the send itself, so that a repeat of the send
//! finds it and changes nothing.

use mobium_spec::UserId;

use super::{Connection, Pool};
use crate::storage::codec::sql_u64;
use crate::storage::{ClientTxn, StoreResult};

/// Records `txn` in the caller's transaction; `false` if the user's id was recorded before
/// (then the caller writes nothing of its send).
pub(super) async fn record(conn: &mut Connection, txn: &ClientTxn) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO client_txns (user_id, txn, answer, expires_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, txn) DO NOTHING",
    )
    .bind(txn.user.to_string())
    .bind(&txn.txn)
    .bind(&txn.answer)
    .bind(sql_u64(txn.expires_at))
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn client_txn_get(
    pool: &Pool,
    user: &UserId,
    txn: &str,
) -> StoreResult<Option<Vec<u8>>> {
    Ok(
        sqlx::query_scalar("SELECT answer FROM client_txns WHERE user_id = $1 AND txn = $2")
            .bind(user.to_string())
            .bind(txn)
            .fetch_optional(pool)
            .await?,
    )
}

/// Forgets transaction ids past their time.
pub(super) async fn purge(pool: &Pool, now: u64) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM client_txns WHERE expires_at <= $1")
        .bind(sql_u64(now))
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
