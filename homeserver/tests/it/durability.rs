//! The `mobium` binary as a process: an acknowledged message survives `kill -9`, SIGTERM shuts
//! down cleanly, and a bad setting is one clear line and a non-zero exit.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;

use mobium_client_api::sdk::{Client, ConnectOptions};
use mobium_spec::client::{ChannelCreate, History, MessageSend, Request, Response};
use mobium_spec::{Keypair, MessageId};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::both_backends;
use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_mobium");

/// Starts `mobium serve` and returns the child and its WebSocket URL (read from its banner).
async fn spawn(data: &Path, db: Option<&str>) -> (Child, String) {
    spawn_with(data, db, &[]).await
}

/// [`spawn`] with extra environment variables (which override the defaults here).
pub(crate) async fn spawn_with(
    data: &Path,
    db: Option<&str>,
    extra: &[(&str, String)],
) -> (Child, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env_clear()
        .env("SC_PORT", "0")
        .env("SC_FED_PORT", "0")
        .env("SC_SERVER_NAME", "durable.test")
        .env("SC_DATA_DIR", data)
        .env("SC_LOG", "warn")
        .env("SC_RATE_LIMIT_BURST", "100000")
        .env("SC_RATE_LIMIT_PER_SEC", "100000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(url) = db {
        cmd.env("SC_DATABASE_URL", url);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn mobium");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read banner") {
            if let Some(i) = line.find("ws://") {
                return line[i..].to_owned();
            }
        }
        panic!("mobium exited before printing its address");
    })
    .await
    .expect("mobium did not start in 30 s");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

async fn acknowledged_messages_survive_kill_9(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => match PgDb::create().await {
            Some(db) => Some(db),
            None => return,
        },
    };
    let db = pg.as_ref().map(|d| d.url.as_str());
    let (mut child, url) = spawn(dir.path(), db).await;
    let key = Keypair::generate();
    let (c, _e) = Client::connect(&url, &key, ConnectOptions::default())
        .await
        .unwrap();
    let Response::ChannelCreated(ch) = c
        .request(Request::ChannelCreate(ChannelCreate { metadata: vec![] }))
        .await
        .unwrap()
    else {
        panic!()
    };

    // 400 sends in flight at once; kill -9 as soon as 200 are acknowledged.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..400u32 {
        let c = c.clone();
        let tx = tx.clone();
        let channel = ch.channel.clone();
        tokio::spawn(async move {
            if let Ok(Response::MessageSent(s)) = c
                .request(Request::MessageSend(MessageSend {
                    channel,
                    ciphertext: i.to_be_bytes().to_vec(),
                    reply_to: None,
                    txn: None,
                }))
                .await
            {
                let _ = tx.send(s.id);
            }
        });
    }
    drop(tx);
    let mut acked: HashSet<MessageId> = HashSet::new();
    while acked.len() < 200 {
        acked.insert(rx.recv().await.expect("sends stopped early"));
    }
    child.start_kill().unwrap();
    // Anything acknowledged before the process died counts too.
    while let Ok(Some(id)) =
        tokio::time::timeout(std::time::Duration::from_millis(500), rx.recv()).await
    {
        acked.insert(id);
    }
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed, not exited");

    let (mut child, url) = spawn(dir.path(), db).await;
    let (c, _e) = Client::connect(&url, &key, ConnectOptions::default())
        .await
        .unwrap();
    let mut stored = HashSet::new();
    let mut before = None;
    loop {
        let Response::Messages(page) = c
            .request(Request::History(History {
                channel: ch.channel.clone(),
                before,
                after: None,
                limit: Some(100),
            }))
            .await
            .unwrap()
        else {
            panic!()
        };
        before = page.messages.first().map(|m| m.id);
        stored.extend(page.messages.iter().map(|m| m.id));
        if !page.has_more {
            break;
        }
    }
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost: {missing:?}",
        missing.len()
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
    if let Some(db) = pg {
        db.drop_db().await;
    }
}

async fn sigterm_shuts_down_cleanly(backend: Backend) {
    if backend == Backend::Postgres {
        return; // process lifecycle does not depend on the backend
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn(dir.path(), None).await;
    let (_c, _e) = Client::connect(&url, &Keypair::generate(), ConnectOptions::default())
        .await
        .unwrap();
    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "graceful exit, got {status}");
    // The key file was written once and is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("server.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}

async fn bad_settings_are_one_clear_line(backend: Backend) {
    if backend == Backend::Postgres {
        return;
    }
    let out = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("SC_PORT", "eighty")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("SC_PORT"), "{err}");
}

both_backends!(
    acknowledged_messages_survive_kill_9,
    sigterm_shuts_down_cleanly,
    bad_settings_are_one_clear_line
);
