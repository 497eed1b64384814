//! `mobium serve` under a service manager (the `Type=notify` unit in `deploy/`): the test plays
//! systemd's part, binding the `NOTIFY_SOCKET` datagram socket itself, and checks that
//! `READY=1` comes only once the client port answers, that `WATCHDOG=1` pings come when
//! `WATCHDOG_USEC` asks for them (and not otherwise), and that SIGTERM says `STOPPING=1`.
//! Without `NOTIFY_SOCKET` the same binary is what every other process test runs.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

use crate::support::http_to;

const BIN: &str = env!("CARGO_BIN_EXE_mobium");

/// `mobium serve` on free ports, notifying `socket`, with `extra` variables.
fn spawn(data: &Path, socket: &Path, extra: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env_clear()
        .env("SC_PORT", "0")
        .env("SC_FED_PORT", "0")
        .env("SC_SERVER_NAME", "notify.test")
        .env("SC_DATA_DIR", data)
        .env("SC_LOG", "warn")
        .env("NOTIFY_SOCKET", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn mobium")
}

/// The next notification, as text (one datagram may carry several `KEY=value` lines).
async fn next(socket: &UnixDatagram, within: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(within, socket.recv(&mut buf))
        .await
        .ok()?
        .expect("recv");
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Every notification that arrives within `window`.
async fn collect(socket: &UnixDatagram, window: Duration) -> Vec<String> {
    let end = tokio::time::Instant::now() + window;
    let mut out = Vec::new();
    while let Some(left) = end.checked_duration_since(tokio::time::Instant::now()) {
        match next(socket, left).await {
            Some(m) => out.push(m),
            None => break,
        }
    }
    out
}

/// Waits for `READY=1` (which must be the first notification) and returns the client address
/// named in the status line that comes with it.
async fn ready_addr(socket: &UnixDatagram) -> SocketAddr {
    let first = next(socket, Duration::from_secs(30))
        .await
        .expect("READY=1 within 30 s");
    assert!(
        first.lines().any(|l| l == "READY=1"),
        "the first notification is READY=1: {first:?}"
    );
    let status = first
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .expect("a status line");
    let url = status
        .split_once("ws://")
        .map(|(_, rest)| rest)
        .expect("the status names the ws:// address");
    url.trim_end_matches("/v1/ws").parse().expect("ip:port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_comes_once_the_port_answers_then_watchdog_pings_then_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&sock_path).unwrap();
    // 400 ms watchdog: a ping every 200 ms.
    let mut child = spawn(
        &tmp.path().join("data"),
        &sock_path,
        &[("WATCHDOG_USEC", "400000")],
    );

    let addr = ready_addr(&socket).await;
    // No retry: at READY=1 the port must already answer, and the database with it.
    let (status, body) = http_to(addr, "GET", "/health", &[], "").await;
    assert_eq!(status, 200, "/health right after READY=1: {body}");

    let pings = collect(&socket, Duration::from_millis(1500)).await;
    let watchdog = pings.iter().filter(|m| m.trim() == "WATCHDOG=1").count();
    assert!(
        watchdog >= 3,
        "a ping every 200 ms for 1.5 s, got {watchdog}: {pings:?}"
    );

    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let stopping = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = next(&socket, Duration::from_secs(10))
                .await
                .expect("STOPPING=1 after SIGTERM");
            if m.lines().any(|l| l == "STOPPING=1") {
                return m;
            }
        }
    })
    .await
    .expect("STOPPING=1 within 10 s");
    assert!(stopping.contains("STATUS="), "{stopping:?}");
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "graceful exit, got {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_watchdog_pings_unless_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&sock_path).unwrap();
    // WATCHDOG_PID names another process: the watchdog is not ours (sd_watchdog_enabled(3)).
    let mut child = spawn(
        &tmp.path().join("data"),
        &sock_path,
        &[("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")],
    );
    let addr = ready_addr(&socket).await;
    let (status, _) = http_to(addr, "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    let after = collect(&socket, Duration::from_millis(800)).await;
    assert!(
        after.iter().all(|m| !m.contains("WATCHDOG=1")),
        "no pings for another process's watchdog: {after:?}"
    );
    child.kill().await.unwrap();
}
