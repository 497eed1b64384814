//! Start-up checks a self-hoster meets on the first day: the server name pinned in the
//! database, the data directory's permissions and lock, and a database that cannot be written.

use mobium_homeserver::server;

use crate::both_backends;
use crate::support::*;

/// Stops the server but keeps its storage (the PostgreSQL database too) for another start.
async fn stop_keeping_data(server: &mut TestServer) {
    server.running.take().unwrap().shutdown().await.unwrap();
}

async fn a_renamed_server_refuses_to_start(backend: Backend) {
    let Some(mut server) = start_with(backend, |c| {
        c.server_name = Some("first.test".parse().unwrap());
    })
    .await
    else {
        return;
    };
    stop_keeping_data(&mut server).await;

    let mut renamed = server.config.clone();
    renamed.server_name = Some("second.test".parse().unwrap());
    let err = format!("{:#}", server::start(renamed).await.err().expect("refused"));
    assert!(
        err.contains("belongs to the server named first.test"),
        "{err}"
    );
    assert!(err.contains("SC_SERVER_NAME=first.test"), "{err}");

    // Under its own name it starts again.
    server.running = Some(restart_on(server.config.clone()).await);
    server.stop().await;
}

async fn a_changed_port_under_the_default_name_refuses_to_start(backend: Backend) {
    let Some(mut server) = start(backend).await else {
        return;
    };
    let name = server.running().app.server_name.clone();
    stop_keeping_data(&mut server).await;

    // Port 0 picks another port, so the default name `localhost:<port>` changes.
    let err = format!(
        "{:#}",
        server::start(server.config.clone())
            .await
            .err()
            .expect("refused")
    );
    assert!(err.contains(&format!("SC_SERVER_NAME={name}")), "{err}");
    assert!(err.contains("follows the port"), "{err}");

    // Pinning the name lets it listen anywhere.
    let mut pinned = server.config.clone();
    pinned.server_name = Some(name.clone());
    server.running = Some(restart_on(pinned).await);
    assert_eq!(server.running().app.server_name, name);
    server.stop().await;
}

both_backends!(
    a_renamed_server_refuses_to_start,
    a_changed_port_under_the_default_name_refuses_to_start,
);

const BIN: &str = env!("CARGO_BIN_EXE_mobium");

/// `mobium serve` as a process, with only the given settings.
fn serve(data_dir: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("serve")
        .env_clear()
        .env("SC_PORT", "0")
        .env("SC_FED_ENABLED", "false")
        .env("SC_LOG", "info")
        .env("SC_DATA_DIR", data_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn serve_help_lists_every_setting_with_its_default() {
    let out = tokio::process::Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for s in mobium_homeserver::config::settings::SETTINGS {
        assert!(
            help.contains(&format!("{}  [default: {}]", s.var(), s.default)),
            "{} missing from:\n{help}",
            s.var()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_its_files_private_and_its_data_dir_to_itself() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut first = serve(&data).spawn().unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let mut output = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            output.push_str(&line);
            output.push('\n');
            if line.starts_with("mobium: serving") {
                return;
            }
        }
        panic!("the server exited:\n{output}");
    })
    .await
    .expect("the server announces itself");
    // What the log looks like (and that it goes to stderr) is `logging::`'s business.

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700, "data directory");
        for name in ["mobium.db", "mobium.db-wal", "mobium.db-shm", "server.key"] {
            assert_eq!(mode(&data.join(name)), 0o600, "{name}");
        }
    }

    // A second server on the same directory stops at once, naming the first.
    let second = tokio::time::timeout(std::time::Duration::from_secs(30), serve(&data).output())
        .await
        .expect("the second server gives up")
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    let pid = first.id().unwrap();
    assert!(
        err.contains(&format!("in use by another mobium server (pid {pid})")),
        "{err}"
    );
    first.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_stops_start_up_naming_it() {
    let mut server = start(Backend::Sqlite).await.unwrap();
    let name = server.running().app.server_name.clone();
    stop_keeping_data(&mut server).await;
    let db = server.config.data_dir.join("mobium.db");
    let mut config = server.config.clone();
    config.server_name = Some(name);
    config.database_url = Some(format!("sqlite://{}?mode=ro", db.display()));
    let err = format!("{:#}", server::start(config).await.err().expect("refused"));
    assert!(err.contains("is not writable"), "{err}");
    assert!(err.contains(&db.display().to_string()), "{err}");
}

/// Runs `chattr` (root ignores permission bits, so an immutable directory is the way to make
/// one read-only for everybody); `false` if this machine cannot.
fn chattr(flag: &str, path: &std::path::Path) -> bool {
    std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_directory_stops_start_up_naming_it() {
    let mut server = start(Backend::Sqlite).await.unwrap();
    let name = server.running().app.server_name.clone();
    stop_keeping_data(&mut server).await;
    let dir = server.config.data_dir.clone();
    let mut config = server.config.clone();
    config.server_name = Some(name);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    }
    let immutable = chattr("+i", &dir);
    let result = server::start(config).await;
    if immutable {
        chattr("-i", &dir);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    match result {
        Err(e) => {
            let err = format!("{e:#}");
            assert!(
                err.contains(&format!("data directory {} is not writable", dir.display())),
                "{err}"
            );
        }
        // Root writes into a 0500 directory; without chattr there is no way to stop it.
        Ok(running) if !immutable => {
            eprintln!("SKIPPED: cannot make a directory read-only for this user (no chattr)");
            running.shutdown().await.unwrap();
        }
        Ok(_) => panic!("started on a read-only data directory"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_down_fails_fast_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = base_config(&tmp.path().join("data"));
    // Port 1: nothing listens there.
    config.database_url = Some("postgres://mobium@127.0.0.1:1/chat".into());
    let started = std::time::Instant::now();
    let err = format!("{:#}", server::start(config).await.err().expect("refused"));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        err.starts_with("cannot connect to PostgreSQL at 127.0.0.1:1/chat: "),
        "{err}"
    );
    assert!(err.contains("is it running?"), "{err}");
    assert!(
        err.contains("createdb -h 127.0.0.1 -p 1 -U mobium chat"),
        "{err}"
    );
    assert!(!err.contains("timed out"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_postgresql_database_says_how_to_create_it() {
    let Some(admin) = postgres_url() else {
        return;
    };
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/mobium_no_such_database"),
        None => return,
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut config = base_config(&tmp.path().join("data"));
    config.database_url = Some(url);
    let err = format!("{:#}", server::start(config).await.err().expect("refused"));
    assert!(
        err.contains("has no database \"mobium_no_such_database\""),
        "{err}"
    );
    assert!(err.contains("createdb"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_database_that_stops_taking_writes_and_never_hangs() {
    use sqlx::Connection;
    let Some(server) = start(Backend::Postgres).await else {
        return;
    };
    let db = server.pg_db.as_ref().unwrap();
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let (status, _) = http(&server, "GET", "/health", &[], "").await;
    assert_eq!(status, 200);

    // The database turns read-only (as a standby would); reads still work.
    let mut admin = sqlx::PgConnection::connect(&postgres_url().unwrap())
        .await
        .unwrap();
    for sql in [
        format!("ALTER DATABASE {name} SET default_transaction_read_only = on"),
        format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let body = eventually(|| async {
        let (status, body) = http(&server, "GET", "/health", &[], "").await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("not_writable"), "{body}");

    // The database disappears: /health answers within its bound, still 503.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    for _ in 0..3 {
        let asked = std::time::Instant::now();
        let (status, _) = http(&server, "GET", "/health", &[], "").await;
        assert_eq!(status, 503);
        assert!(asked.elapsed() < std::time::Duration::from_secs(4));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_shows_wss_when_tls_is_on() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures");
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = serve(&tmp.path().join("data"));
    cmd.env("SC_TLS_CERT", fixtures.join("server.pem"))
        .env("SC_TLS_KEY", fixtures.join("server.key"));
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("mobium: serving") {
                return line;
            }
        }
        panic!("the server exited");
    })
    .await
    .unwrap();
    assert!(banner.contains(" on wss://127.0.0.1:"), "{banner}");
    child.kill().await.unwrap();
}
