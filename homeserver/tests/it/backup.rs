//! `mobium backup` and `mobium restore` as an operator runs them, against a real server under
//! write load: every message acknowledged before the backup started is in the restored server,
//! what the backup holds is exactly a prefix of what was acknowledged (one consistent commit),
//! the server kept answering during the backup, and a damaged or misdirected restore changes
//! nothing.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mobium_client_api::sdk::{Client, ConnectOptions};
use mobium_homeserver::server;
use mobium_spec::client::{History, MessageSend, Request, Response};
use mobium_spec::{ChannelId, MessageId, ServerName};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_mobium");

/// Runs `mobium ARGS` with only `env`.
async fn mobium(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every message of `ch`, oldest first, paging back from the newest.
async fn all_messages(c: &Client, ch: &ChannelId) -> Vec<(MessageId, Vec<u8>)> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let Response::Messages(page) = c
            .request(Request::History(History {
                channel: ch.clone(),
                before,
                after: None,
                limit: Some(100),
            }))
            .await
            .unwrap()
        else {
            panic!("history")
        };
        let Some(first) = page.messages.first() else {
            break;
        };
        before = Some(first.id);
        let more = page.has_more;
        out.splice(
            0..0,
            page.messages.into_iter().map(|m| (m.id, m.ciphertext)),
        );
        if !more {
            break;
        }
    }
    out
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// What the writer saw: (ciphertext, when it was acknowledged, id).
type Acked = Arc<Mutex<Vec<(Vec<u8>, Instant, MessageId)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_every_acknowledged_message() {
    let name: ServerName = "backup.test".parse().unwrap();
    let server = start_with(Backend::Sqlite, |c| {
        c.server_name = Some(name.clone());
        c.fed_enabled = false;
    })
    .await
    .unwrap();
    let (a, _events, key) = client(&server).await;
    let ch = create_channel(&a).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let writer = tokio::spawn({
        let (stop, acked, ch) = (stop.clone(), acked.clone(), ch.clone());
        async move {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("message {i}").into_bytes();
                let r = a
                    .request(Request::MessageSend(MessageSend {
                        channel: ch.clone(),
                        ciphertext: body.clone(),
                        reply_to: None,
                        txn: None,
                    }))
                    .await;
                let Ok(Response::MessageSent(sent)) = r else {
                    panic!("send {i}: {r:?}")
                };
                acked.lock().unwrap().push((body, Instant::now(), sent.id));
                i += 1;
            }
            a
        }
    });
    eventually(|| async { (acked.lock().unwrap().len() >= 300).then_some(()) }).await;

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("mobium-backup.tar");
    let file_s = file.to_str().unwrap();
    let data = server.config.data_dir.to_str().unwrap().to_owned();
    let started = Instant::now();
    let out = mobium(&["backup", "--to", file_s], &[("SC_DATA_DIR", &data)]).await;
    let finished = Instant::now();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("of backup.test"),
        "{}",
        text(&out)
    );
    // Some more writes after the backup, which it cannot have.
    let total_at_end = acked.lock().unwrap().len();
    eventually(|| async { (acked.lock().unwrap().len() >= total_at_end + 20).then_some(()) }).await;
    stop.store(true, Ordering::Relaxed);
    let _a = writer.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let before = acked.iter().filter(|(_, t, _)| *t < started).count();
    let during = acked
        .iter()
        .filter(|(_, t, _)| *t >= started && *t <= finished)
        .count();
    assert!(
        during > 0,
        "the server kept acknowledging writes while the backup ran"
    );
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600, "the backup holds the secret key");
    let key_before = server.running().app.keypair.public();
    server.stop().await;

    // Restore into a directory that does not exist yet, and start a server on it.
    let restored = tmp.path().join("restored");
    let restored_s = restored.to_str().unwrap();
    let out = mobium(
        &["restore", "--from", file_s, "--data-dir", restored_s],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SC_SERVER_NAME=backup.test"),
        "{}",
        text(&out)
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&restored), 0o700);
        assert_eq!(mode(&restored.join("server.key")), 0o600);
        assert_eq!(mode(&restored.join("mobium.db")), 0o600);
    }
    let mut config = base_config(&restored);
    config.server_name = Some(name.clone());
    config.fed_enabled = false;
    let running = server::start(config)
        .await
        .expect("a server starts on the restore");
    assert_eq!(
        running.app.keypair.public(),
        key_before,
        "the same server key"
    );
    let (c, _e) = Client::connect(&running.ws_url(), &key, ConnectOptions::default())
        .await
        .expect("the user is still known");
    let found = all_messages(&c, &ch).await;
    assert!(
        found.len() >= before,
        "{} acknowledged before the backup, {} restored",
        before,
        found.len()
    );
    // Exactly the first N acknowledged messages, in order: one consistent snapshot.
    let prefix: Vec<(MessageId, Vec<u8>)> = acked[..found.len()]
        .iter()
        .map(|(body, _, id)| (*id, body.clone()))
        .collect();
    assert!(
        found == prefix,
        "the restore holds a prefix of what was acknowledged"
    );
    assert!(
        found.len() < acked.len(),
        "what was written after the backup is not in it"
    );
    eprintln!(
        "{before} messages acknowledged before the backup, {during} while it ran, {} restored, \
         {} in all",
        found.len(),
        acked.len()
    );
    running.shutdown().await.unwrap();

    // A second restore into the now non-empty directory is refused and changes nothing.
    let db_before = std::fs::read(restored.join("mobium.db")).unwrap();
    let out = mobium(
        &["restore", "--from", file_s, "--data-dir", restored_s],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is not empty"), "{}", text(&out));
    assert_eq!(
        std::fs::read(restored.join("mobium.db")).unwrap(),
        db_before
    );

    // A damaged backup is refused and leaves the target empty.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    let damaged = tmp.path().join("damaged.tar");
    std::fs::write(&damaged, &bytes).unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = mobium(
        &[
            "restore",
            "--from",
            damaged.to_str().unwrap(),
            "--data-dir",
            empty.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("checksum") || text(&out).contains("damaged"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing restored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backup_holds_the_key_and_pg_dump_holds_the_messages() {
    let name: ServerName = "pg-backup.test".parse().unwrap();
    let Some(server) = start_with(Backend::Postgres, |c| {
        c.server_name = Some(name.clone());
        c.fed_enabled = false;
    })
    .await
    else {
        return;
    };
    let (a, _events, key) = client(&server).await;
    let ch = create_channel(&a).await;
    for i in 0..20 {
        let r = a
            .request(Request::MessageSend(MessageSend {
                channel: ch.clone(),
                ciphertext: format!("pg {i}").into_bytes(),
                reply_to: None,
                txn: None,
            }))
            .await;
        assert!(matches!(r, Ok(Response::MessageSent(_))), "{r:?}");
    }
    let url = server.pg_db.as_ref().unwrap().url.clone();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("key-backup.tar");
    let data = server.config.data_dir.to_str().unwrap().to_owned();
    let out = mobium(
        &["backup", "--to", file.to_str().unwrap()],
        &[("SC_DATA_DIR", &data), ("SC_DATABASE_URL", &url)],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pg_dump"), "{}", text(&out));

    // The documented database half: pg_dump while it runs, pg_restore into a new database.
    let dump = tmp.path().join("mobium.dump");
    let pg_dump = tokio::process::Command::new("pg_dump")
        .args(["--format=custom", "--file", dump.to_str().unwrap(), &url])
        .output()
        .await
        .unwrap();
    assert!(pg_dump.status.success(), "{}", text(&pg_dump));
    let key_before = server.running().app.keypair.public();
    server.stop().await;

    let target = PgDb::create().await.unwrap();
    let pg_restore = tokio::process::Command::new("pg_restore")
        .args([
            "--no-owner",
            "--dbname",
            &target.url,
            dump.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    assert!(pg_restore.status.success(), "{}", text(&pg_restore));
    let restored = tmp.path().join("restored");
    let out = mobium(
        &[
            "restore",
            "--from",
            file.to_str().unwrap(),
            "--data-dir",
            restored.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pg_restore"), "{}", text(&out));
    let files: Vec<String> = std::fs::read_dir(&restored)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        ["server.key"],
        "only the key is in a PostgreSQL backup"
    );

    let mut config = base_config(&restored);
    config.server_name = Some(name);
    config.fed_enabled = false;
    config.database_url = Some(target.url.clone());
    let running = server::start(config).await.expect("starts on the restore");
    assert_eq!(running.app.keypair.public(), key_before);
    let (c, _e) = Client::connect(&running.ws_url(), &key, ConnectOptions::default())
        .await
        .unwrap();
    let found = all_messages(&c, &ch).await;
    let bodies: Vec<Vec<u8>> = found.into_iter().map(|(_, b)| b).collect();
    let sent: Vec<Vec<u8>> = (0..20).map(|i| format!("pg {i}").into_bytes()).collect();
    assert_eq!(bodies, sent);
    running.shutdown().await.unwrap();
    target.drop_db().await;
}
