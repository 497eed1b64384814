//! The PostgreSQL backend, for the managed service and larger servers.
//!
//! Statements run at PostgreSQL's default `READ COMMITTED` isolation, so each operation that
//! must be atomic under concurrency says how it is: claiming a one-time key locks the row it
//! takes (`FOR UPDATE SKIP LOCKED`, so concurrent claimers take different keys instead of
//! queueing), using an invite or a registration token is one conditional `UPDATE` (PostgreSQL
//! re-checks the condition on the latest row version after waiting for a concurrent writer),
//! enqueueing under a cap holds a per-recipient advisory lock for its transaction, and appending
//! to the federation outbox holds a per-destination one (so sequence numbers commit in order).
//!
//! The SQL is shared with SQLite (`storage/sql/`, compiled in here against PostgreSQL's types);
//! this module opens the pool and provides what differs: the locks above, and the statements
//! that take a list of ids (bound as an array).

// The same files are compiled into the other backend too, on purpose (`sql/mod.rs` says why).
#[allow(
    clippy::duplicate_mod,
    reason = "the shared SQL is compiled once per backend"
)]
#[path = "../sql/mod.rs"]
mod sql;

mod cluster;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, Postgres, Transaction};

use super::{DirectRow, OutboxItem, StoreError, StoreResult};

/// The PostgreSQL migrations, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Pool size. Small on purpose: the server is one process, and PostgreSQL does better with a
/// few busy connections than with many idle ones.
const MAX_CONNECTIONS: u32 = 8;

/// How long start-up waits for PostgreSQL to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for a pooled connection before failing (sqlx's default is 30 s,
/// during which a client or `/health` hears nothing).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most connections holding channel order locks at once (a managed server's instances hold one
/// per channel being changed, until the change committed). A pool of their own, opened lazily:
/// a community server never uses it.
const MAX_LOCK_CONNECTIONS: u32 = 16;

/// A store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Transactions holding channel order locks ([`ClusterStore::channel_lock`](super::ClusterStore::channel_lock)).
    locks: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) and applies pending migrations to the
    /// schema first in the server's `search_path` (normally `public`).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::open(PgConnectOptions::from_str(url)?).await
    }

    /// Like [`PgStore::connect`], but keeps every table in `schema` (created if missing) by
    /// setting `search_path` on each pooled connection. Lets several stores, such as parallel
    /// test runs, share one database without seeing each other. `schema` must be a plain
    /// lowercase identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes).
    pub async fn connect_in_schema(url: &str, schema: &str) -> StoreResult<Self> {
        if !is_plain_identifier(schema) {
            return Err(StoreError::Database(sqlx::Error::Configuration(
                format!("invalid PostgreSQL schema name {schema:?}").into(),
            )));
        }
        let options = PgConnectOptions::from_str(url)?;
        let mut conn = connect_once(&options).await?;
        // The name was checked above, so it is safe to splice in (identifiers cannot be bound).
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Self::open(options.options([("search_path", schema)])).await
    }

    async fn open(options: PgConnectOptions) -> StoreResult<Self> {
        // One plain connection first: the pool would retry a refused connection until its
        // acquire timeout and then report only that it timed out.
        connect_once(&options).await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        let locks = PgPoolOptions::new()
            .max_connections(MAX_LOCK_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(PgStore { pool, locks })
    }
}

/// Connects once, within [`CONNECT_TIMEOUT`]; a failure is [`StoreError::Connect`] with a
/// sentence an operator can act on.
async fn connect_once(options: &PgConnectOptions) -> StoreResult<PgConnection> {
    let host = options.get_host();
    let port = options.get_port();
    let db = options.get_database().unwrap_or(options.get_username());
    let user = options.get_username();
    let at = format!("{host}:{port}/{db}");
    let createdb = format!("createdb -h {host} -p {port} -U {user} {db}");
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Err(_) => Err(StoreError::Connect(format!(
            "cannot connect to PostgreSQL at {at}: no answer within {} s — is the address \
             right, and is a firewall dropping the connection?",
            CONNECT_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) => {
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned());
            Err(StoreError::Connect(match code.as_deref() {
                // invalid_catalog_name
                Some("3D000") => format!(
                    "PostgreSQL at {host}:{port} has no database {db:?} — create it with \
                     `{createdb}`"
                ),
                // invalid_authorization_specification, invalid_password
                Some("28000" | "28P01") => format!(
                    "PostgreSQL at {at} refused user {user:?}: {} — check the user and password \
                     in SC_DATABASE_URL",
                    e.as_database_error()
                        .map(|d| d.message())
                        .unwrap_or_default()
                ),
                _ => format!(
                    "cannot connect to PostgreSQL at {at}: {} — is it running? If the database \
                     does not exist yet, create it with `{createdb}`",
                    one_line(&e)
                ),
            }))
        }
    }
}

/// An sqlx error as one line, without sqlx's variant prefixes where they add nothing.
fn one_line(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
    .replace('\n', " ")
}

/// Whether `name` is an identifier PostgreSQL takes as is: lowercase ASCII letters, digits and
/// underscores, not starting with a digit, at most 63 bytes.
fn is_plain_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && name.len() <= 63
}

// ---- what the shared SQL (`storage/sql/`) is compiled against ----

/// The store the shared `Store` impl is for.
type Backend = PgStore;
/// [`Store::backend`](super::Store::backend).
const NAME: &str = "postgres";
type Pool = PgPool;
type Connection = PgConnection;
use sqlx::PgExecutor as Executor;

/// Opens a write transaction (`READ COMMITTED`; the statements say how they stay atomic).
async fn begin_write(pool: &Pool) -> sqlx::Result<Transaction<'static, Postgres>> {
    pool.begin().await
}

/// Queues one message under the cap, holding the recipient's advisory lock for the
/// transaction: enqueues to one recipient run one after the other, to different recipients in
/// parallel.
async fn direct_enqueue(pool: &Pool, row: &DirectRow, max_queued: u32) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    lock_queue(&mut tx, &row.recipient.to_string()).await?;
    sql::insert_capped(&mut *tx, row, max_queued).await?;
    tx.commit().await?;
    Ok(())
}

/// Makes claims of one user take turns (a row lock on the user), so the count each claim
/// returns is exact.
async fn lock_claims(conn: &mut Connection, user: &str) -> StoreResult<()> {
    sqlx::query("SELECT 1 FROM users WHERE key = $1 FOR UPDATE")
        .bind(user)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(())
}

/// Takes the recipient's advisory lock until the transaction ends, before its queue is counted.
async fn lock_queue(conn: &mut Connection, recipient: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('mobium.direct_queue:' || $1, 0))")
        .bind(recipient)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Takes the advisory lock of every destination in `items` until the transaction ends, in one
/// fixed order (sorted by name) so two appends do not deadlock: appends to one destination
/// commit in sequence order, appends to different destinations still run in parallel.
async fn lock_outbox(conn: &mut Connection, items: &[OutboxItem]) -> StoreResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    let mut destinations: Vec<String> = items.iter().map(|i| i.destination.to_string()).collect();
    destinations.sort_unstable();
    destinations.dedup();
    // The function scan yields the (sorted) array in order, so the locks are taken in order.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('mobium.outbox:' || d, 0)) \
         FROM unnest($1::TEXT[]) AS d",
    )
    .bind(destinations)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Takes a user's oldest one-time key that no concurrent claim has locked, so parallel claims
/// take different keys instead of queueing.
const ONE_TIME_TAKE: &str = "DELETE FROM one_time_keys WHERE id = \
     (SELECT id FROM one_time_keys WHERE user_key = $1 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
     RETURNING key_id, key, signature";

/// A list of ids, bound as a `BIGINT[]`.
type IdList = Vec<i64>;

/// `ids` as they are bound.
fn id_list(ids: Vec<i64>) -> IdList {
    ids
}

/// Deletes a recipient's queued messages by id.
const DIRECT_ACK: &str = "DELETE FROM direct_queue WHERE recipient = $1 AND id = ANY($2)";

/// Deletes a sender's failure notices by id.
const FAILURES_ACK: &str = "DELETE FROM direct_failures WHERE sender = $1 AND id = ANY($2)";

/// Deletes delivered outbox events by sequence number.
const OUTBOX_DELETE: &str = "DELETE FROM outbox WHERE destination = $1 AND seq = ANY($2)";
