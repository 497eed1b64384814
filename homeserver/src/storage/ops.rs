//! SQL for the operator's tools rather than the server: an online snapshot of an SQLite
//! database (`mobium backup`), the name a database was pinned to, and a write probe that
//! leaves nothing behind (`mobium doctor`).
//!
//! These open their own short-lived connection and never run migrations: they must work
//! beside a running server (SQLite's WAL lets a reader copy the database while the server
//! writes) and must not change a database that belongs to another version of the server.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use super::{META_SERVER_NAME, StoreResult};

/// How long a statement waits for the server's write lock (SQLite) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `url` names a PostgreSQL database (otherwise SQLite).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Which database: a configured URL (either backend), or an SQLite file by its path (a
/// snapshot being made or restored).
#[derive(Debug, Clone, Copy)]
pub enum Db<'a> {
    /// `sqlite:...`, `postgres://...` or `postgresql://...`.
    Url(&'a str),
    /// An SQLite database file.
    SqliteFile(&'a Path),
}

impl Db<'_> {
    fn is_postgres(&self) -> bool {
        matches!(self, Db::Url(url) if is_postgres(url))
    }

    fn url(&self) -> &str {
        match self {
            Db::Url(url) => url,
            Db::SqliteFile(_) => "",
        }
    }
}

/// A connection to an existing SQLite database (never created here).
async fn sqlite(db: Db<'_>) -> StoreResult<SqliteConnection> {
    let options = match db {
        Db::Url(url) => SqliteConnectOptions::from_str(url)?,
        Db::SqliteFile(path) => SqliteConnectOptions::new().filename(path),
    }
    .create_if_missing(false)
    .busy_timeout(BUSY_TIMEOUT);
    Ok(SqliteConnection::connect_with(&options).await?)
}

/// Copies the SQLite database at `url` into `dest` with `VACUUM INTO`: one read transaction,
/// so the copy is the database as of one commit, whatever the server writes meanwhile, and it
/// holds no free pages (nothing deleted survives into the copy). `dest` must not exist or be
/// empty (create it empty first to choose its mode).
pub async fn sqlite_snapshot(source: Db<'_>, dest: &Path) -> StoreResult<()> {
    let mut conn = sqlite(source).await?;
    sqlx::query("VACUUM INTO ?1")
        .bind(dest.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Runs SQLite's `PRAGMA integrity_check` on the database at `url`: `Ok(())` when it says `ok`,
/// otherwise its first complaint.
pub async fn sqlite_integrity(db: Db<'_>) -> StoreResult<Result<(), String>> {
    let mut conn = sqlite(db).await?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(if verdict == "ok" {
        Ok(())
    } else {
        Err(verdict)
    })
}

/// The server name the database at `url` was pinned to, if a server ever started on it (no
/// `server_meta` table, or no row, is `None`).
pub async fn pinned_server_name(db: Db<'_>) -> StoreResult<Option<String>> {
    const SQL: &str = "SELECT value FROM server_meta WHERE key = $1";
    if db.is_postgres() {
        let mut conn = PgConnection::connect(db.url()).await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('server_meta')::text")
            .fetch_one(&mut conn)
            .await?;
        let name = match exists {
            Some(_) => {
                sqlx::query_scalar(SQL)
                    .bind(META_SERVER_NAME)
                    .fetch_optional(&mut conn)
                    .await?
            }
            None => None,
        };
        conn.close().await?;
        Ok(name)
    } else {
        let mut conn = sqlite(db).await?;
        let exists: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'server_meta'",
        )
        .fetch_optional(&mut conn)
        .await?;
        let name = match exists {
            Some(_) => {
                sqlx::query_scalar(SQL)
                    .bind(META_SERVER_NAME)
                    .fetch_optional(&mut conn)
                    .await?
            }
            None => None,
        };
        conn.close().await?;
        Ok(name)
    }
}

/// Proves that the database at `url` accepts writes without changing it: creates a table and
/// writes a row in a transaction that is rolled back (both backends roll DDL back). Fails as
/// a real write would: a read-only file, directory or mount, a read-only PostgreSQL
/// transaction mode or role, a full disk, a lock held past the busy timeout.
pub async fn probe_writable(db: Db<'_>) -> StoreResult<()> {
    const CREATE: &str = "CREATE TABLE mobium_doctor_probe (x INTEGER)";
    const INSERT: &str = "INSERT INTO mobium_doctor_probe (x) VALUES (1)";
    if db.is_postgres() {
        let mut conn = PgConnection::connect(db.url()).await?;
        let mut tx = conn.begin().await?;
        sqlx::query(CREATE).execute(&mut *tx).await?;
        sqlx::query(INSERT).execute(&mut *tx).await?;
        tx.rollback().await?;
        conn.close().await?;
    } else {
        let mut conn = sqlite(db).await?;
        let mut tx = conn.begin().await?;
        sqlx::query(CREATE).execute(&mut *tx).await?;
        sqlx::query(INSERT).execute(&mut *tx).await?;
        tx.rollback().await?;
        conn.close().await?;
    }
    Ok(())
}
