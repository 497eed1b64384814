//! The storage test suite, written once against [`Store`] and run against both backends.
//!
//! Every case runs against SQLite (a real database file in a temporary directory, so WAL,
//! `synchronous` and reopening are exercised as in production) and against PostgreSQL when
//! `MOBIUM_TEST_POSTGRES_URL` names a database (e.g. `postgres://postgres@127.0.0.1:5432/test`).
//! Each PostgreSQL case gets a fresh schema, dropped afterwards, so parallel runs do not collide.
//! Without the variable the PostgreSQL cases say so on stderr and pass; with it, an unreachable
//! server fails them, so a misconfigured CI cannot go green by skipping.
//!
//! The cases check what a user would notice: a one-time key handed out twice breaks an Olm
//! session, an invite over its limit lets in one person too many, a lost queue message is a lost
//! message.

use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Once};

use futures_util::FutureExt as _;
use mobium_spec::client::{KeysCount, Prekey, PrekeyKind};
use mobium_spec::permissions::Permissions;
use mobium_spec::{ChannelId, Keypair, MessageId, PublicKey, ServerName, Signature, UserId};
use sqlx::Connection as _;

use super::postgres::PgStore;
use super::*;

mod accounts;
mod channels;
mod federation;
mod messages;
mod writes;

use accounts::*;
use channels::*;
use federation::*;
use messages::*;
use writes::*;

/// The variable naming the PostgreSQL database to test against.
const POSTGRES_URL_VAR: &str = "MOBIUM_TEST_POSTGRES_URL";

/// Where a test store lives, so it can be reopened and cleaned up.
enum Backend {
    Sqlite {
        /// Deleted (with the database) when the harness is dropped.
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        url: String,
        schema: String,
    },
}

/// One test's store.
struct Harness {
    store: SharedStore,
    backend: Backend,
}

impl Harness {
    /// A fresh SQLite database file, in a directory that does not exist yet (so `connect`
    /// must create it).
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("data").join("mobium.db");
        let url = format!("sqlite://{}", path.display());
        let store = open(&url).await.expect("open the SQLite store");
        assert_eq!(store.backend(), "sqlite");
        Harness {
            store,
            backend: Backend::Sqlite { _dir: dir, url },
        }
    }

    /// A fresh schema in the PostgreSQL database named by [`POSTGRES_URL_VAR`], or `None`
    /// (after saying so) when the variable is unset.
    async fn postgres(case: &str) -> Option<Harness> {
        let url = match std::env::var(POSTGRES_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                announce_postgres_skip();
                eprintln!(
                    "storage::tests::postgres::{case} SKIPPED: {POSTGRES_URL_VAR} is not set"
                );
                return None;
            }
        };
        let schema = format!(
            "mobium_test_{:016x}",
            getrandom::u64().expect("random schema name")
        );
        let store = PgStore::connect_in_schema(&url, &schema)
            .await
            .unwrap_or_else(|e| {
                panic!("{POSTGRES_URL_VAR} is set but PostgreSQL at {url} is not usable: {e}")
            });
        assert_eq!(store.backend(), "postgres");
        Some(Harness {
            store: Arc::new(store),
            backend: Backend::Postgres { url, schema },
        })
    }

    /// Closes the store (again, if the case already did) and opens the same database, as a
    /// restarted server would.
    async fn reopen(&mut self) {
        self.store.close().await;
        self.store = match &self.backend {
            Backend::Sqlite { url, .. } => open(url).await.expect("reopen the SQLite store"),
            Backend::Postgres { url, schema } => Arc::new(
                PgStore::connect_in_schema(url, schema)
                    .await
                    .expect("reopen the PostgreSQL store"),
            ),
        };
    }

    /// Runs one case, then closes the store and drops the PostgreSQL schema, even if the case
    /// panicked.
    async fn run(mut self, case: impl AsyncFnOnce(&mut Harness)) {
        let outcome = AssertUnwindSafe(case(&mut self)).catch_unwind().await;
        self.store.close().await;
        if let Backend::Postgres { url, schema } = &self.backend {
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .expect("connect to drop the test schema");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .execute(&mut conn)
            .await
            .expect("drop the test schema");
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Says once per test process, on the real stderr (which the test harness does not capture),
/// that the PostgreSQL half of the suite did not run.
fn announce_postgres_skip() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\nNOTE: storage::tests::postgres::* SKIPPED: {POSTGRES_URL_VAR} is unset or empty. \
             Set it (e.g. {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test) \
             to run the storage suite against PostgreSQL.\n"
        );
    });
}

/// Generates `sqlite::<case>` and `postgres::<case>` tests for each case function.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::Harness::sqlite().await.run(super::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(harness) = super::Harness::postgres(stringify!($case)).await {
                        harness.run(super::$case).await;
                    }
                }
            )*
        }
    };
}

suite!(
    users_and_registration_tokens,
    server_meta_pins_the_first_value_and_survives_reopen,
    prekeys_replace_and_count,
    claims_oldest_one_time_key_first_then_fallback,
    duplicate_one_time_key_id_is_a_conflict_and_adds_nothing,
    concurrent_claims_hand_out_each_one_time_key_once,
    direct_queue_order_ack_and_cap,
    direct_queue_cap_holds_under_concurrency,
    direct_queue_purges_expired,
    channels_and_members,
    bans,
    invites_use_and_refusals,
    invite_max_uses_holds_under_concurrency,
    roles_and_grants,
    channel_overrides,
    messages_crud_and_retention,
    history_pages_in_all_four_modes,
    data_survives_close_and_reopen,
    outbox_keeps_order_per_destination,
    outbox_order_holds_under_concurrent_appends,
    commit_hosted_writes_change_and_outbox_together,
    group_commit_applies_each_write_alone_in_order,
    origin_ids_round_trip_and_deduplicate,
    channel_put_upserts_without_membership,
    inbound_transactions_seen_recorded_purged,
    direct_enqueue_remote_dedupes_and_respects_cap,
    direct_enqueue_remote_many_commits_together_item_by_item,
    remote_dedupe_holds_under_concurrency,
    migrations_upgrade_a_version_1_database,
);

// ---- fixtures ----

fn server() -> ServerName {
    "example.org".parse().expect("server name")
}

fn key(n: u8) -> PublicKey {
    Keypair::from_seed([n; 32]).public()
}

fn user(n: u8) -> UserId {
    UserId::new(key(n), server())
}

fn remote_user(n: u8) -> UserId {
    UserId::new(key(n), "other.example:8448".parse().expect("server name"))
}

fn channel_id(local: u64) -> ChannelId {
    ChannelId::new(local, server()).expect("channel id")
}

fn mid(raw: u64) -> MessageId {
    MessageId::new(raw).expect("message id")
}

fn prekey(key_id: &str, fill: u8) -> Prekey {
    Prekey {
        key_id: key_id.to_owned(),
        key: vec![fill; 32],
        signature: Signature([fill; 64]),
    }
}

async fn make_channel(store: &dyn Store, local: u64, owner: &UserId, created_at: u64) -> ChannelId {
    let id = channel_id(local);
    store
        .channel_create(&ChannelRow {
            id: id.clone(),
            owner: owner.clone(),
            metadata: vec![local as u8],
            created_at,
        })
        .await
        .expect("create channel");
    id
}

fn direct(id: u64, recipient: &UserId, expires_at: u64) -> DirectRow {
    DirectRow {
        id: mid(id),
        recipient: recipient.clone(),
        sender: remote_user(9),
        ciphertext: format!("to-device {id}").into_bytes(),
        sent_at: 1_000 + id,
        expires_at,
    }
}

fn message(channel: &ChannelId, id: u64) -> MessageRow {
    MessageRow {
        channel: channel.clone(),
        id: mid(id),
        sender: user(1),
        ciphertext: format!("megolm {id}").into_bytes(),
        sent_at: 10_000 + id,
        edited_at: None,
        reply_to: None,
        origin_id: None,
    }
}

fn invite(
    code: &str,
    channel: &ChannelId,
    max_uses: Option<u32>,
    expires_at: Option<u64>,
) -> InviteRow {
    InviteRow {
        code: code.to_owned(),
        channel: channel.clone(),
        created_by: user(1),
        max_uses,
        uses: 0,
        expires_at,
        revoked: false,
    }
}

fn ids(rows: &[MessageRow]) -> Vec<u64> {
    rows.iter().map(|m| m.id.get()).collect()
}

/// How many times each concurrency case repeats its race.
const ROUNDS: u8 = 3;

/// Opens the pool's connections before a race, so the racing calls really run side by side
/// instead of queueing behind the first connection while the others are still being opened.
async fn warm_up(store: &SharedStore) {
    let pings = (0..16).map(|_| {
        let store = Arc::clone(store);
        tokio::spawn(async move { store.ping().await })
    });
    for ping in futures_util::future::join_all(pings).await {
        ping.expect("task").expect("ping");
    }
}

/// Runs `n` calls of `call(store, i)` as parallel tasks released together by a barrier, and
/// returns their results in task order.
async fn at_once<T, F, Fut>(store: &SharedStore, n: u64, call: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(SharedStore, u64) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n as usize));
    let tasks = (0..n).map(|i| {
        let work = call(Arc::clone(store), i);
        let barrier = Arc::clone(&barrier);
        tokio::spawn(async move {
            barrier.wait().await;
            work.await
        })
    });
    futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(|task| task.expect("task"))
        .collect()
}

// ---- backend-specific ----

/// `sqlite::memory:` keeps its data from one call to the next (its single connection is never
/// recycled), which is what the domain layer's unit tests rely on.
#[tokio::test]
async fn sqlite_in_memory_keeps_data_between_calls() {
    let store = open("sqlite::memory:").await.expect("open in-memory store");
    assert!(store.user_create(&key(1), 0).await.expect("create"));
    let ch = make_channel(&*store, 1, &user(1), 0).await;
    assert!(store.user_exists(&key(1)).await.expect("exists"));
    assert_eq!(store.member_count(&ch).await.expect("count"), 1);
    store.close().await;
}

/// A schema name is spliced into SQL, so anything but a plain identifier is refused before
/// any connection is made.
#[tokio::test]
async fn postgres_schema_name_must_be_a_plain_identifier() {
    for bad in [
        "",
        "Public",
        "1abc",
        "a-b",
        "x\"; DROP TABLE users; --",
        &"a".repeat(64),
    ] {
        let refused = PgStore::connect_in_schema("postgres://127.0.0.1:1/none", bad).await;
        assert!(
            matches!(
                refused,
                Err(StoreError::Database(sqlx::Error::Configuration(_)))
            ),
            "{bad:?} accepted"
        );
    }
}
