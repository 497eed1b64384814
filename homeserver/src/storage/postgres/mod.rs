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
//! The SQL lives in one module per area, mirroring the SQLite backend; this module opens the
//! pool and maps [`Store`] onto it.

mod channels;
mod direct;
mod federation;
mod messages;
mod meta;
mod roles;
mod users;

use std::str::FromStr;
use std::time::Duration;

use mobium_spec::client::{KeysCount, Prekey, PrekeyKind};
use mobium_spec::{ChannelId, MessageId, PublicKey, ServerName, UserId};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

use super::{
    ChannelRow, ClaimedKeys, DirectFailureRow, DirectRow, HistoryQuery, HostedChange, InviteRow,
    InviteUse, MessageRow, OutboxItem, OverrideRow, OverrideTargetRow, RoleRow, Store, StoreError,
    StoreResult,
};

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

/// A store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
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
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgStore { pool })
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

#[async_trait::async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    // ---- server facts ----

    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>> {
        meta::meta_get(&self.pool, key).await
    }

    async fn meta_insert_or_get(&self, key: &str, value: &str) -> StoreResult<String> {
        meta::meta_insert_or_get(&self.pool, key, value).await
    }

    async fn meta_set(&self, key: &str, value: &str) -> StoreResult<()> {
        meta::meta_set(&self.pool, key, value).await
    }

    // ---- users ----

    async fn user_exists(&self, key: &PublicKey) -> StoreResult<bool> {
        users::user_exists(&self.pool, key).await
    }

    async fn user_create(&self, key: &PublicKey, now: u64) -> StoreResult<bool> {
        users::user_create(&self.pool, key, now).await
    }

    async fn reg_token_create(
        &self,
        token: &str,
        uses: u32,
        expires_at: Option<u64>,
    ) -> StoreResult<()> {
        users::reg_token_create(&self.pool, token, uses, expires_at).await
    }

    async fn reg_token_consume(&self, token: &str, now: u64) -> StoreResult<bool> {
        users::reg_token_consume(&self.pool, token, now).await
    }

    // ---- prekeys ----

    async fn key_set(&self, user: &PublicKey, kind: PrekeyKind, key: &Prekey) -> StoreResult<()> {
        users::key_set(&self.pool, user, kind, key).await
    }

    async fn keys_add_one_time(&self, user: &PublicKey, keys: &[Prekey]) -> StoreResult<()> {
        users::keys_add_one_time(&self.pool, user, keys).await
    }

    async fn keys_count(&self, user: &PublicKey) -> StoreResult<KeysCount> {
        users::keys_count(&self.pool, user).await
    }

    async fn keys_claim(&self, user: &PublicKey) -> StoreResult<Option<ClaimedKeys>> {
        users::keys_claim(&self.pool, user).await
    }

    // ---- to-device queue ----

    async fn direct_enqueue(&self, row: &DirectRow, max_queued: u32) -> StoreResult<()> {
        direct::direct_enqueue(&self.pool, row, max_queued).await
    }

    async fn direct_pending(
        &self,
        recipient: &UserId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<DirectRow>> {
        direct::direct_pending(&self.pool, recipient, after, limit).await
    }

    async fn direct_ack(&self, recipient: &UserId, ids: &[MessageId]) -> StoreResult<u64> {
        direct::direct_ack(&self.pool, recipient, ids).await
    }

    async fn direct_failures_pending(
        &self,
        sender: &UserId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<DirectFailureRow>> {
        direct::direct_failures_pending(&self.pool, sender, after, limit).await
    }

    async fn direct_purge_expired(&self, now: u64) -> StoreResult<u64> {
        direct::direct_purge_expired(&self.pool, now).await
    }

    // ---- channels ----

    async fn channel_create(&self, row: &ChannelRow) -> StoreResult<()> {
        channels::channel_create(&self.pool, row).await
    }

    async fn channel_get(&self, id: &ChannelId) -> StoreResult<Option<ChannelRow>> {
        channels::channel_get(&self.pool, id).await
    }

    async fn channel_set_metadata(&self, id: &ChannelId, metadata: &[u8]) -> StoreResult<bool> {
        channels::channel_set_metadata(&self.pool, id, metadata).await
    }

    async fn channels_of(&self, user: &UserId) -> StoreResult<Vec<ChannelRow>> {
        channels::channels_of(&self.pool, user).await
    }

    async fn member_add(&self, channel: &ChannelId, user: &UserId, now: u64) -> StoreResult<bool> {
        channels::member_add(&self.pool, channel, user, now).await
    }

    async fn member_remove(&self, channel: &ChannelId, user: &UserId) -> StoreResult<bool> {
        channels::member_remove(&self.pool, channel, user).await
    }

    async fn member_joined_at(
        &self,
        channel: &ChannelId,
        user: &UserId,
    ) -> StoreResult<Option<u64>> {
        channels::member_joined_at(&self.pool, channel, user).await
    }

    async fn members(&self, channel: &ChannelId) -> StoreResult<Vec<(UserId, u64)>> {
        channels::members(&self.pool, channel).await
    }

    async fn member_count(&self, channel: &ChannelId) -> StoreResult<u32> {
        channels::member_count(&self.pool, channel).await
    }

    async fn ban_add(
        &self,
        channel: &ChannelId,
        user: &UserId,
        by: &UserId,
        now: u64,
    ) -> StoreResult<()> {
        channels::ban_add(&self.pool, channel, user, by, now).await
    }

    async fn ban_remove(&self, channel: &ChannelId, user: &UserId) -> StoreResult<bool> {
        channels::ban_remove(&self.pool, channel, user).await
    }

    async fn is_banned(&self, channel: &ChannelId, user: &UserId) -> StoreResult<bool> {
        channels::is_banned(&self.pool, channel, user).await
    }

    // ---- invites ----

    async fn invite_create(&self, row: &InviteRow) -> StoreResult<()> {
        channels::invite_create(&self.pool, row).await
    }

    async fn invite_get(&self, code: &str) -> StoreResult<Option<InviteRow>> {
        channels::invite_get(&self.pool, code).await
    }

    async fn invites_of(&self, channel: &ChannelId, now: u64) -> StoreResult<Vec<InviteRow>> {
        channels::invites_of(&self.pool, channel, now).await
    }

    async fn invite_revoke(&self, code: &str) -> StoreResult<bool> {
        channels::invite_revoke(&self.pool, code).await
    }

    async fn invite_use(&self, code: &str, now: u64) -> StoreResult<InviteUse> {
        channels::invite_use(&self.pool, code, now).await
    }

    // ---- roles and overrides ----

    async fn role_create(&self, name: &str, permissions: u64) -> StoreResult<u64> {
        roles::role_create(&self.pool, name, permissions).await
    }

    async fn role_update(
        &self,
        id: u64,
        name: Option<&str>,
        permissions: Option<u64>,
    ) -> StoreResult<Option<RoleRow>> {
        roles::role_update(&self.pool, id, name, permissions).await
    }

    async fn role_delete(&self, id: u64) -> StoreResult<bool> {
        roles::role_delete(&self.pool, id).await
    }

    async fn role_get(&self, id: u64) -> StoreResult<Option<RoleRow>> {
        roles::role_get(&self.pool, id).await
    }

    async fn roles(&self) -> StoreResult<Vec<RoleRow>> {
        roles::roles(&self.pool).await
    }

    async fn role_grant(&self, user: &UserId, role: u64) -> StoreResult<()> {
        roles::role_grant(&self.pool, user, role).await
    }

    async fn role_revoke(&self, user: &UserId, role: u64) -> StoreResult<bool> {
        roles::role_revoke(&self.pool, user, role).await
    }

    async fn roles_of(&self, user: &UserId) -> StoreResult<Vec<RoleRow>> {
        roles::roles_of(&self.pool, user).await
    }

    async fn override_set(&self, channel: &ChannelId, row: &OverrideRow) -> StoreResult<()> {
        roles::override_set(&self.pool, channel, row).await
    }

    async fn override_clear(
        &self,
        channel: &ChannelId,
        target: &OverrideTargetRow,
    ) -> StoreResult<bool> {
        roles::override_clear(&self.pool, channel, target).await
    }

    async fn overrides(&self, channel: &ChannelId) -> StoreResult<Vec<OverrideRow>> {
        roles::overrides(&self.pool, channel).await
    }

    // ---- messages ----

    async fn message_insert(&self, row: &MessageRow) -> StoreResult<()> {
        messages::message_insert(&self.pool, row).await
    }

    async fn message_get(
        &self,
        channel: &ChannelId,
        id: MessageId,
    ) -> StoreResult<Option<MessageRow>> {
        messages::message_get(&self.pool, channel, id).await
    }

    async fn message_edit(
        &self,
        channel: &ChannelId,
        id: MessageId,
        ciphertext: &[u8],
        edited_at: u64,
    ) -> StoreResult<bool> {
        messages::message_edit(&self.pool, channel, id, ciphertext, edited_at).await
    }

    async fn message_delete(&self, channel: &ChannelId, id: MessageId) -> StoreResult<bool> {
        messages::message_delete(&self.pool, channel, id).await
    }

    async fn history(
        &self,
        channel: &ChannelId,
        q: HistoryQuery,
    ) -> StoreResult<(Vec<MessageRow>, bool)> {
        messages::history(&self.pool, channel, q).await
    }

    async fn messages_purge_before(&self, cutoff: u64) -> StoreResult<u64> {
        messages::messages_purge_before(&self.pool, cutoff).await
    }

    // ---- federation: channels hosted elsewhere (replicas) ----

    async fn channel_put(&self, row: &ChannelRow) -> StoreResult<()> {
        federation::channel_put(&self.pool, row).await
    }

    async fn channel_last_seq(&self, channel: &ChannelId) -> StoreResult<u64> {
        federation::channel_last_seq(&self.pool, channel).await
    }

    async fn channel_set_last_seq(&self, channel: &ChannelId, seq: u64) -> StoreResult<()> {
        federation::channel_set_last_seq(&self.pool, channel, seq).await
    }

    // ---- federation: outbox ----

    async fn outbox_push(&self, items: &[OutboxItem], now: u64) -> StoreResult<()> {
        federation::outbox_push(&self.pool, items, now).await
    }

    async fn commit_hosted(
        &self,
        change: &HostedChange,
        items: &[OutboxItem],
        now: u64,
    ) -> StoreResult<bool> {
        federation::commit_hosted(&self.pool, change, items, now).await
    }

    async fn outbox_peek(
        &self,
        destination: &ServerName,
        limit: u32,
    ) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        federation::outbox_peek(&self.pool, destination, limit).await
    }

    async fn outbox_settle(
        &self,
        destination: &ServerName,
        seqs: &[u64],
        failures: &[DirectFailureRow],
    ) -> StoreResult<u64> {
        federation::outbox_settle(&self.pool, destination, seqs, failures).await
    }

    async fn outbox_destinations(&self) -> StoreResult<Vec<ServerName>> {
        federation::outbox_destinations(&self.pool).await
    }

    async fn outbox_len(&self, destination: &ServerName) -> StoreResult<u64> {
        federation::outbox_len(&self.pool, destination).await
    }

    // ---- federation: inbound idempotency ----

    async fn txn_seen(&self, origin: &ServerName, txn_id: u64) -> StoreResult<bool> {
        federation::txn_seen(&self.pool, origin, txn_id).await
    }

    async fn txn_record(&self, origin: &ServerName, txn_id: u64, now: u64) -> StoreResult<()> {
        federation::txn_record(&self.pool, origin, txn_id, now).await
    }

    async fn txn_purge_before(&self, cutoff: u64) -> StoreResult<u64> {
        federation::txn_purge_before(&self.pool, cutoff).await
    }

    async fn direct_enqueue_remote_many(
        &self,
        origin: &ServerName,
        items: &[(DirectRow, MessageId)],
        max_queued: u32,
    ) -> StoreResult<Vec<StoreResult<bool>>> {
        direct::direct_enqueue_remote_many(&self.pool, origin, items, max_queued).await
    }

    async fn direct_enqueue_remote(
        &self,
        row: &DirectRow,
        origin: &ServerName,
        origin_id: MessageId,
        max_queued: u32,
    ) -> StoreResult<bool> {
        direct::direct_enqueue_remote(&self.pool, row, origin, origin_id, max_queued).await
    }
}
