//! `mobium client …` as a user or a script drives it: every command with `--json` against a
//! real server — identity, registration, DMs, channels, invites, history paging, presence,
//! `listen`, and the errors for a wrong passphrase and a corrupt profile.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::both_backends;
use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_mobium");

/// How a profile is unlocked.
#[derive(Clone, Copy)]
enum Pass<'a> {
    Env(&'a str),
    File(&'a Path),
}

fn command(profile: &Path, pass: Pass<'_>, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("client")
        .arg("--profile")
        .arg(profile)
        .arg("--json")
        .args(args)
        .env_clear()
        .env("MOBIUM_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match pass {
        Pass::Env(p) => {
            cmd.env("MOBIUM_PASSPHRASE", p);
        }
        Pass::File(f) => {
            cmd.arg("--passphrase-file").arg(f);
        }
    }
    cmd
}

/// Runs one command; returns whether it succeeded and its JSON output.
async fn run(profile: &Path, pass: Pass<'_>, args: &[&str]) -> (bool, Value) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        command(profile, pass, args).output(),
    )
    .await
    .expect("command finished")
    .expect("command ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{args:?}: output is not one JSON document ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), value)
}

/// Runs a command that must succeed.
async fn ok(profile: &Path, pass: Pass<'_>, args: &[&str]) -> Value {
    let (success, v) = run(profile, pass, args).await;
    assert!(success, "{args:?} failed: {v}");
    v
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

fn texts(history: &Value) -> Vec<String> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["decryption"]["status"], "ok", "{m}");
            s(&m["decryption"]["content"]["body"])
        })
        .collect()
}

async fn command_line_client_end_to_end(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let url = server.ws_url();
    let tmp = tempfile::tempdir().unwrap();
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    let bob_pass_file = tmp.path().join("bob.pass");
    std::fs::write(&bob_pass_file, "bob's secret\n").unwrap();
    let a = Pass::Env("alice's secret");
    let b = Pass::File(&bob_pass_file);

    // Identities and registration.
    let created = ok(&alice, a, &["identity", "create"]).await;
    assert_eq!(created["encrypted"], true);
    let alice_key = s(&created["public_key"]);
    ok(&bob, b, &["identity", "create"]).await;
    let reg = ok(&alice, a, &["register", "--server", &url]).await;
    assert_eq!(reg["registered"], true);
    let alice_id = s(&reg["user_id"]);
    assert!(alice_id.starts_with(&format!("{alice_key}@")), "{alice_id}");
    let bob_id = s(&ok(&bob, b, &["register", "--server", &url]).await["user_id"]);
    let shown = ok(&alice, a, &["identity", "show"]).await;
    assert_eq!(s(&shown["user_id"]), alice_id);

    // A DM there and back.
    ok(
        &alice,
        a,
        &["dm", "send", &bob_id, "hello Bob, from the command line"],
    )
    .await;
    let got = ok(&bob, b, &["dm", "receive"]).await;
    let msgs = got["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{got}");
    assert_eq!(s(&msgs[0]["from"]), alice_id);
    assert_eq!(
        s(&msgs[0]["decryption"]["content"]["body"]),
        "hello Bob, from the command line"
    );
    ok(&bob, b, &["dm", "send", &alice_id, "-- hi Alice"]).await;
    let got = ok(&alice, a, &["dm", "receive", "--wait", "5"]).await;
    assert_eq!(
        s(&got["messages"][0]["decryption"]["content"]["body"]),
        "-- hi Alice"
    );
    // Received once: the queue was acknowledged.
    let again = ok(&bob, b, &["dm", "receive"]).await;
    assert_eq!(again["messages"].as_array().unwrap().len(), 0);

    // A channel, an invite, messages both ways, history in pages.
    let channel =
        s(&ok(&alice, a, &["channel", "create", "--name", "The Garden"]).await["channel"]);
    let invite = ok(
        &alice,
        a,
        &["invite", "create", &channel, "--max-uses", "1"],
    )
    .await;
    let code = s(&invite["invite"]);
    let joined = ok(&bob, b, &["invite", "redeem", &code]).await;
    assert_eq!(s(&joined["channel"]), channel);
    assert_eq!(joined["member_count"], 2);
    ok(
        &alice,
        a,
        &["channel", "send", &channel, "first from Alice"],
    )
    .await;
    ok(&bob, b, &["channel", "send", &channel, "then Bob"]).await;
    let history = ok(&bob, b, &["channel", "history", &channel]).await;
    assert_eq!(texts(&history), ["first from Alice", "then Bob"]);
    let page = ok(&alice, a, &["channel", "history", &channel, "--limit", "1"]).await;
    assert_eq!(texts(&page), ["then Bob"]);
    assert_eq!(page["has_more"], true);
    let first_id = page["messages"][0]["id"].as_u64().unwrap().to_string();
    let older = ok(
        &alice,
        a,
        &[
            "channel", "history", &channel, "--limit", "1", "--before", &first_id,
        ],
    )
    .await;
    assert_eq!(texts(&older), ["first from Alice"]);
    // Alice's first message after Bob joined also gave him the (encrypted) name.
    let list = ok(&bob, b, &["channel", "list"]).await;
    assert_eq!(s(&list["channels"][0]["channel"]), channel);
    assert_eq!(
        s(&list["channels"][0]["metadata"]["meta"]["name"]),
        "The Garden",
        "{list}"
    );
    let members = ok(&alice, a, &["channel", "members", &channel]).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 2);

    // Presence.
    let p = ok(&alice, a, &["presence", "set", "dnd"]).await;
    assert_eq!(p["status"], "dnd");

    // `listen` streams decrypted events, one JSON object per line.
    let mut listener = command(&bob, b, &["listen", "--count", "1", "--timeout", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(listener.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(first["event"], "connected", "{first}");
    ok(
        &alice,
        a,
        &["channel", "send", &channel, "live, while Bob listens"],
    )
    .await;
    let mut heard = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "message" {
            heard = Some(v);
        }
    }
    let heard = heard.expect("listen printed the message");
    assert_eq!(
        s(&heard["decryption"]["content"]["body"]),
        "live, while Bob listens"
    );
    assert_eq!(s(&heard["sender"]), alice_id);
    assert!(listener.wait().await.unwrap().success());

    // Errors a script can act on.
    let (success, v) = run(
        &alice,
        Pass::Env("not alice's secret"),
        &["identity", "show"],
    )
    .await;
    assert!(!success);
    assert_eq!(v["error"]["kind"], "locked", "{v}");
    let carol = tmp.path().join("carol");
    ok(&carol, a, &["identity", "create"]).await;
    std::fs::write(carol.join("profile.json"), b"{ not a profile").unwrap();
    let (success, v) = run(&carol, a, &["identity", "show"]).await;
    assert!(!success);
    assert_eq!(v["error"]["kind"], "corrupt", "{v}");
    let (success, v) = run(&bob, b, &["dm", "send", "nobody", "x"]).await;
    assert!(!success);
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    server.stop().await;
}

both_backends!(command_line_client_end_to_end);

/// A server that moves to a new port keeps its name (pinned with `SC_SERVER_NAME`); the
/// profile follows it with `server move`, and keeps its identity there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_move_repoints_the_profile() {
    let mut server = start(Backend::Sqlite).await.unwrap();
    let old_url = server.ws_url();
    let name = server.running().app.server_name.clone();
    let tmp = tempfile::tempdir().unwrap();
    let alice = tmp.path().join("alice");
    let a = Pass::Env("alice's secret");
    ok(&alice, a, &["identity", "create"]).await;
    let alice_id = s(&ok(&alice, a, &["register", "--server", &old_url]).await["user_id"]);

    // The server moves to another port under the same name.
    server.running.take().unwrap().shutdown().await.unwrap();
    let mut config = server.config.clone();
    config.port = 0;
    config.server_name = Some(name.clone());
    server.running = Some(restart_on(config).await);
    let new_url = server.ws_url();
    assert_ne!(old_url, new_url);
    let (moved, _) = run(&alice, a, &["channel", "list"]).await;
    assert!(!moved, "the old address is gone");

    let (refused, err) = run(
        &alice,
        a,
        &["server", "move", "ws://nowhere/v1/ws", &new_url],
    )
    .await;
    assert!(!refused);
    assert_eq!(err["error"]["kind"], "usage");

    let out = ok(&alice, a, &["server", "move", &old_url, &new_url]).await;
    assert_eq!(s(&out["server"]), name.to_string());
    let listed = ok(&alice, a, &["server", "list"]).await;
    assert_eq!(s(&listed["servers"][0]["url"]), new_url);
    ok(&alice, a, &["channel", "list"]).await;
    assert_eq!(
        s(&ok(&alice, a, &["identity", "show"]).await["user_id"]),
        alice_id
    );
    server.stop().await;
}

/// `--ca-cert` is remembered for the server it was given for: later commands need not repeat it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_cert_is_remembered_per_server() {
    let fixture = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/it/fixtures")
            .join(name)
    };
    let server = start_with(Backend::Sqlite, |c| {
        c.tls_cert = Some(fixture("selfsigned.pem"));
        c.tls_key = Some(fixture("selfsigned.key"));
    })
    .await
    .unwrap();
    let url = server.ws_url();
    let tmp = tempfile::tempdir().unwrap();
    let alice = tmp.path().join("alice");
    let a = Pass::Env("alice's secret");
    ok(&alice, a, &["identity", "create"]).await;
    let (registered, err) = run(&alice, a, &["register", "--server", &url]).await;
    assert!(!registered);
    let message = s(&err["error"]["message"]);
    assert!(message.contains("--ca-cert"), "{message}");
    let cert = fixture("selfsigned.pem").display().to_string();
    ok(
        &alice,
        a,
        &["--ca-cert", &cert, "register", "--server", &url],
    )
    .await;
    ok(&alice, a, &["channel", "list"]).await;
    server.stop().await;
}

/// A CA in the system's trust store (here via `SSL_CERT_FILE`) is trusted without `--ca-cert`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_trust_store_is_used() {
    let fixture = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/it/fixtures")
            .join(name)
    };
    let server = start_with(Backend::Sqlite, |c| {
        c.tls_cert = Some(fixture("server.pem"));
        c.tls_key = Some(fixture("server.key"));
    })
    .await
    .unwrap();
    let url = server.ws_url();
    let tmp = tempfile::tempdir().unwrap();
    let alice = tmp.path().join("alice");
    let a = Pass::Env("alice's secret");
    ok(&alice, a, &["identity", "create"]).await;
    let out = command(&alice, a, &["register", "--server", &url])
        .env("SSL_CERT_FILE", fixture("ca.pem"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
}
