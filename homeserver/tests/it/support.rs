//! Test harness: real servers on port 0 over SQLite (a temporary directory) or PostgreSQL (a
//! fresh database per test, when `MOBIUM_TEST_POSTGRES_URL` is set), clients over real
//! WebSockets, and poll-until helpers instead of sleeps.

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mobium_client_api::sdk::{Client, ConnectOptions, Events, SdkError};
use mobium_homeserver::config::{self, Config};
use mobium_homeserver::server::{self, Running};
use mobium_spec::client::{Event, Request, Response, ServerFrame};
use mobium_spec::{Keypair, UserId, encoding};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL URL for tests, or `None` (and a notice) when it is not configured.
pub fn postgres_url() -> Option<String> {
    match std::env::var("MOBIUM_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("SKIPPED: MOBIUM_TEST_POSTGRES_URL is not set; PostgreSQL variant not run");
            None
        }
    }
}

/// A running test server and what keeps its storage alive.
pub struct TestServer {
    pub running: Option<Running>,
    pub _dir: tempfile::TempDir,
    pub config: Config,
    pub pg_db: Option<PgDb>,
}

/// A fresh PostgreSQL database for one test.
pub struct PgDb {
    admin_url: String,
    name: String,
    /// URL of the fresh database.
    pub url: String,
}

impl PgDb {
    /// Creates a database, or returns `None` (with a notice) when PostgreSQL is not configured.
    /// Fails the test if it is configured but unreachable.
    pub async fn create() -> Option<PgDb> {
        let admin_url = postgres_url()?;
        let name = format!(
            "mobium_it_{}",
            &hex::encode(Keypair::generate().public().as_bytes())[..16]
        );
        create_database(&admin_url, &name).await;
        let url = replace_db(&admin_url, &name);
        Some(PgDb {
            admin_url,
            name,
            url,
        })
    }

    /// Drops the database.
    pub async fn drop_db(self) {
        drop_database(&self.admin_url, &self.name).await;
    }
}

impl TestServer {
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("server running")
    }

    pub fn ws_url(&self) -> String {
        self.running().ws_url()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.running().addr
    }

    /// Stops the server and starts it again on the same storage (and port).
    pub async fn restart(&mut self) {
        let addr = self.addr();
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
        let mut config = self.config.clone();
        config.port = addr.port();
        self.running = Some(restart_on(config).await);
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
        if let Some(db) = self.pg_db.take() {
            db.drop_db().await;
        }
    }
}

/// Starts a server on the ports a stopped one used, retrying while the kernel still holds them
/// (in-process restarts only; a restarted process has no such window).
pub async fn restart_on(config: Config) -> Running {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match server::start(config.clone()).await {
            Ok(r) => return r,
            Err(e)
                if tokio::time::Instant::now() < deadline
                    && format!("{e:#}").contains("in use") =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("restart failed: {e:#}"),
        }
    }
}

/// The settings of a test server keeping its data in `data_dir`: any free port, no limits
/// that tests would trip over.
pub fn base_config(data_dir: &Path) -> Config {
    let mut config = config::load(None, Vec::<(String, String)>::new()).expect("defaults");
    config.port = 0;
    config.fed_port = 0;
    config.data_dir = data_dir.to_owned();
    config.log = "warn".into();
    config.rate_limit_per_sec = 10_000;
    config.rate_limit_burst = 10_000;
    config.max_connections_per_ip = 1000;
    config
}

/// Settings for a test server; `tweak` adjusts them before start.
pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<TestServer> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = base_config(&dir.path().join("data"));
    let mut pg_db = None;
    match backend {
        Backend::Sqlite => {}
        Backend::Postgres => {
            let db = PgDb::create().await?;
            config.database_url = Some(db.url.clone());
            pg_db = Some(db);
        }
    }
    tweak(&mut config);
    let running = server::start(config.clone()).await.expect("server starts");
    Some(TestServer {
        running: Some(running),
        _dir: dir,
        config,
        pg_db,
    })
}

pub async fn start(backend: Backend) -> Option<TestServer> {
    start_with(backend, |_| {}).await
}

fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

async fn create_database(url: &str, db: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("MOBIUM_TEST_POSTGRES_URL is set but PostgreSQL is unreachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
}

async fn drop_database(url: &str, db: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// Connects and authenticates a fresh user.
pub async fn client(server: &TestServer) -> (Client, Events, Keypair) {
    let key = Keypair::generate();
    let (c, e) = connect_as(server, &key).await.expect("connect");
    (c, e, key)
}

pub async fn connect_as(
    server: &TestServer,
    key: &(impl mobium_spec::Signer + ?Sized),
) -> Result<(Client, Events), SdkError> {
    Client::connect(&server.ws_url(), key, ConnectOptions::default()).await
}

pub async fn connect_with_invite(
    server: &TestServer,
    key: &(impl mobium_spec::Signer + ?Sized),
    invite: &str,
) -> Result<(Client, Events), SdkError> {
    let opts = ConnectOptions {
        invite: Some(invite.to_owned()),
        ..ConnectOptions::default()
    };
    Client::connect(&server.ws_url(), key, opts).await
}

/// Waits (up to 10 s) for an event matching `pred`, skipping others.
pub async fn next_event<T>(events: &mut Events, mut pred: impl FnMut(Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("timed out waiting for an event")
            .expect("event stream ended");
        if let Some(t) = pred(ev) {
            return t;
        }
    }
}

/// Asserts no event matching `pred` arrives within `wait`.
pub async fn no_event(events: &mut Events, wait: Duration, mut pred: impl FnMut(&Event) -> bool) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        assert!(!pred(&ev), "unexpected event {ev:?}");
    }
}

/// Polls `f` until it returns `Some`, for up to 10 s.
pub async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The error code of a failed request.
pub fn code(r: Result<Response, SdkError>) -> mobium_spec::ErrorCode {
    match r {
        Err(SdkError::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// A raw WebSocket, for sending what the SDK never would.
pub type Raw = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn raw(server: &TestServer) -> Raw {
    let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("raw connect");
    ws
}

/// Reads the next server frame (skipping pings), or `None` when the socket closes.
pub async fn raw_next(ws: &mut Raw) -> Option<ServerFrame> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out reading")?;
        match msg {
            Ok(Message::Binary(b)) => {
                return Some(encoding::decode(&b).expect("server frame decodes"));
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Reads the close frame's code, skipping data frames.
pub async fn raw_close_code(ws: &mut Raw) -> Option<u16> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out reading")?;
        match msg {
            Ok(Message::Close(Some(f))) => return Some(f.code.into()),
            Ok(Message::Close(None)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Authenticates a raw socket (after reading its challenge).
pub async fn raw_auth(ws: &mut Raw, key: &Keypair) {
    let Some(ServerFrame::Event {
        body: Event::Challenge(c),
    }) = raw_next(ws).await
    else {
        panic!("expected a challenge");
    };
    let proof = mobium_spec::client::AuthProof {
        nonce: c.nonce,
        server: c.server,
        user: key.public(),
    };
    raw_send(
        ws,
        &mobium_spec::client::ClientFrame {
            id: 1,
            body: Request::Auth(proof.sign(key, None)),
        },
    )
    .await;
    match raw_next(ws).await {
        Some(ServerFrame::Response {
            body: Response::Authed(_),
            ..
        }) => {}
        other => panic!("expected authed, got {other:?}"),
    }
}

pub async fn raw_send<T: serde::Serialize>(ws: &mut Raw, value: &T) {
    ws.send(Message::Binary(encoding::encode(value).into()))
        .await
        .expect("send");
}

/// A minimal HTTP/1.1 request (status, body), enough for the plain routes.
pub async fn http(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    http_to(server.addr(), method, path, headers, body).await
}

/// [`http`] to any address (e.g. the admin listener).
pub async fn http_to(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("tcp");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Generates a `sqlite` and a `postgres` variant of an async test `fn name(backend: Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Everything the server stored, as (where, bytes): for SQLite every file of the data
/// directory (database, `-wal`, `-shm`, key); for PostgreSQL every row of every table as text
/// (bytea columns show as `\\x<hex>`).
pub async fn stored_bytes(server: &TestServer) -> Vec<(String, Vec<u8>)> {
    match &server.pg_db {
        None => {
            let files = files_of(&server.config.data_dir);
            let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
            assert!(
                names.iter().any(|n| n.ends_with("mobium.db")),
                "files: {names:?}"
            );
            assert!(
                names.iter().any(|n| n.ends_with("mobium.db-wal")),
                "the WAL is there to be searched: {names:?}"
            );
            files
        }
        Some(db) => {
            use sqlx::{Connection, Row};
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let tables: Vec<String> = sqlx::query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
            assert!(
                tables.iter().any(|t| t.contains("message")),
                "tables: {tables:?}"
            );
            let mut out = Vec::new();
            for table in &tables {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT t::text FROM \"{table}\" t"
                )))
                .fetch_all(&mut conn)
                .await
                .unwrap();
                for row in rows {
                    out.push((table.clone(), row.get::<String, _>(0).into_bytes()));
                }
            }
            out
        }
    }
}

pub fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

/// Where `needle` occurs in `stored`, as raw bytes or (for PostgreSQL's bytea text) as hex.
fn occurrences(stored: &[(String, Vec<u8>)], needle: &str) -> Vec<String> {
    let hexed = hex::encode(needle);
    stored
        .iter()
        .filter(|(_, b)| contains(b, needle.as_bytes()) || contains(b, hexed.as_bytes()))
        .map(|(w, _)| w.clone())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// No plaintext is stored; the search itself works (the sender's id, which the server must
/// know, is found).
pub fn assert_clean(stored: &[(String, Vec<u8>)], plaintexts: &[String], control: &UserId) {
    assert!(
        !occurrences(stored, &control.key.to_string()).is_empty(),
        "the search finds what the server does store"
    );
    for p in plaintexts {
        let found = occurrences(stored, p);
        assert!(found.is_empty(), "{p} found in {found:?}");
    }
}

/// Creates a channel (opaque metadata) and returns its id.
pub async fn create_channel(c: &Client) -> mobium_spec::ChannelId {
    let Response::ChannelCreated(ch) = c
        .request(Request::ChannelCreate(mobium_spec::client::ChannelCreate {
            metadata: b"sealed".to_vec(),
        }))
        .await
        .unwrap()
    else {
        panic!("create")
    };
    ch.channel
}

/// `member` joins `ch` with a fresh single-use invite of `owner`'s.
pub async fn join_with_new_invite(owner: &Client, member: &Client, ch: &mobium_spec::ChannelId) {
    let Response::Invite(i) = owner
        .request(Request::InviteCreate(mobium_spec::client::InviteCreate {
            channel: ch.clone(),
            max_uses: Some(1),
            expires_in_secs: None,
        }))
        .await
        .unwrap()
    else {
        panic!("invite")
    };
    member
        .request(Request::ChannelJoin(mobium_spec::client::ChannelJoin {
            code: i.code,
        }))
        .await
        .unwrap();
}
