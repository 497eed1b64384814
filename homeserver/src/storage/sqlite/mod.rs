//! The SQLite backend: one file, WAL journal, `synchronous = FULL`, for self-hosters.
//!
//! SQLite serializes writers, so every operation that must be atomic under concurrency is one
//! write statement (claiming a one-time key, using an invite, enqueueing under a cap) or one
//! `BEGIN IMMEDIATE` transaction, which takes the write lock up front instead of upgrading a
//! read lock mid-transaction (an upgrade can fail with `SQLITE_BUSY` despite the busy timeout).
//! `synchronous = FULL` makes every commit reach the disk before it is acknowledged, so an
//! accepted message survives `kill -9` and power loss; `NORMAL` would not.
//!
//! The SQL is shared with PostgreSQL (`storage/sql/`, compiled in here against SQLite's types);
//! this module opens the pool and provides what differs: how a write transaction opens, the
//! statements that take a list of ids, and the locks PostgreSQL needs and SQLite does not.

// The same files are compiled into the other backend too, on purpose (`sql/mod.rs` says why).
#[allow(
    clippy::duplicate_mod,
    reason = "the shared SQL is compiled once per backend"
)]
#[path = "../sql/mod.rs"]
mod sql;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection, Transaction};

use super::{DirectRow, OutboxItem, StoreError, StoreResult};

/// The SQLite migrations, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Pool size for a database file. Writers queue on SQLite's lock anyway; a few connections let
/// reads proceed beside a write (WAL) without piling up threads on a small machine.
const MAX_CONNECTIONS: u32 = 4;

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A store in an SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating file and parent directory if missing) the database at `url`, e.g.
    /// `sqlite://./data/mobium.db` or `sqlite::memory:`, and applies pending migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Deleted rows (acknowledged to-device messages, deleted channel messages) are
            // overwritten, not left in free page space: servers keep no copy of what they
            // deleted (spec `client/direct.md` §Retention).
            .pragma("secure_delete", "on")
            .busy_timeout(BUSY_TIMEOUT);
        let in_memory = is_in_memory(url);
        if let Some(dir) = options.get_filename().parent()
            && !in_memory
            && !dir.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        if !in_memory {
            make_private(options.get_filename())
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let pool = if in_memory {
            // An in-memory database lives as long as a connection to it: keep exactly one,
            // forever, so the data does not vanish when the pool recycles an idle connection.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
        }
        .connect_with(options)
        .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

/// Creates the database file readable by its owner only (0600) before SQLite does, and takes
/// group and other access away from an existing one and its `-wal` and `-shm` files: they hold
/// every queued message and key. SQLite gives the files it creates later (`-wal`, `-shm`) the
/// database file's mode.
fn make_private(db: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if !db.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(db)?;
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            let path = std::path::PathBuf::from(name);
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o700))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
    Ok(())
}

/// Whether an SQLite URL names an in-memory database rather than a file.
fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

// ---- what the shared SQL (`storage/sql/`) is compiled against ----

/// The store the shared `Store` impl is for.
type Backend = SqliteStore;
/// [`Store::backend`](super::Store::backend).
const NAME: &str = "sqlite";
type Pool = SqlitePool;
type Connection = SqliteConnection;
use sqlx::SqliteExecutor as Executor;

/// Opens a write transaction with `BEGIN IMMEDIATE`, which takes the write lock up front (see
/// the module docs).
async fn begin_write(pool: &Pool) -> sqlx::Result<Transaction<'static, Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// Queues one message under the cap: a single write statement, so the count inside it cannot
/// go stale before the insert.
async fn direct_enqueue(pool: &Pool, row: &DirectRow, max_queued: u32) -> StoreResult<()> {
    sql::insert_capped(pool, row, max_queued).await
}

/// Claims of one user need no lock of their own: the caller's `BEGIN IMMEDIATE` transaction
/// keeps every other writer out.
async fn lock_claims(_conn: &mut Connection, _user: &str) -> StoreResult<()> {
    Ok(())
}

/// A recipient's queue needs no lock of its own, for the same reason as [`lock_claims`].
async fn lock_queue(_conn: &mut Connection, _recipient: &str) -> StoreResult<()> {
    Ok(())
}

/// Outbox appends need no lock of their own: with one writer at a time, sequence numbers are
/// handed out in commit order.
async fn lock_outbox(_conn: &mut Connection, _items: &[OutboxItem]) -> StoreResult<()> {
    Ok(())
}

/// Takes a user's oldest one-time key (no row locks in SQLite; the write lock suffices).
const ONE_TIME_TAKE: &str = "DELETE FROM one_time_keys WHERE id = \
     (SELECT id FROM one_time_keys WHERE user_key = $1 ORDER BY id LIMIT 1) \
     RETURNING key_id, key, signature";

/// SQLite cannot bind an array: a list of ids travels as one JSON array of integers, read back
/// with `json_each`.
type IdList = String;

/// The JSON array of `ids`.
fn id_list(ids: Vec<i64>) -> IdList {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("[{}]", ids.join(","))
}

/// Deletes a recipient's queued messages by id.
const DIRECT_ACK: &str =
    "DELETE FROM direct_queue WHERE recipient = $1 AND id IN (SELECT value FROM json_each($2))";

/// Deletes a sender's failure notices by id.
const FAILURES_ACK: &str =
    "DELETE FROM direct_failures WHERE sender = $1 AND id IN (SELECT value FROM json_each($2))";

/// Deletes delivered outbox events by sequence number.
const OUTBOX_DELETE: &str =
    "DELETE FROM outbox WHERE destination = $1 AND seq IN (SELECT value FROM json_each($2))";
