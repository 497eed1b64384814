//! `mobium serve`'s log as an operator's tools see it: on stderr (stdout carries only the
//! banner), plain text without colour codes when stderr is not a terminal, and with
//! `SC_LOG_FORMAT=json` one JSON object per line, fatal errors included.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mobium");

fn serve(data: &Path, format: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env_clear()
        .env("SC_PORT", "0")
        .env("SC_FED_PORT", "0")
        .env("SC_SERVER_NAME", "logs.test")
        .env("SC_DATA_DIR", data)
        .env("SC_LOG", "info")
        .env("SC_LOG_FORMAT", format)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts a server, waits for its banner, kills it and returns (stdout, stderr).
async fn run_until_banner(data: &Path, format: &str) -> (String, String) {
    let mut child = serve(data, format).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_task = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.unwrap();
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout.push_str(&line);
            stdout.push('\n');
            if line.starts_with("mobium: serving") {
                return;
            }
        }
        panic!("the server exited: {stdout}");
    })
    .await
    .expect("the server announces itself");
    child.kill().await.unwrap();
    let stderr = tokio::time::timeout(Duration::from_secs(10), err_task)
        .await
        .expect("stderr closes once the server is gone")
        .unwrap();
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_go_to_stderr_without_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let (stdout, stderr) = run_until_banner(&tmp.path().join("data"), "text").await;
    assert!(
        stderr.contains("mobium homeserver ready"),
        "the log is on stderr: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes in a log that is not a terminal: {stderr:?}"
    );
    assert!(
        stdout.lines().all(|l| l.starts_with("mobium: ")),
        "stdout has the banner only: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_fatal_errors_included() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (stdout, stderr) = run_until_banner(&data, "json").await;
    assert!(!stdout.contains('{'), "no log on stdout: {stdout}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    assert!(!events.is_empty(), "the server logged something");
    for e in &events {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }
    let ready = events
        .iter()
        .find(|e| e["message"] == "mobium homeserver ready")
        .unwrap_or_else(|| panic!("no ready event in {stderr}"));
    assert_eq!(ready["level"], "INFO");
    assert_eq!(
        ready["server"], "logs.test",
        "fields are top-level: {ready}"
    );
    assert!(
        ready["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );

    // A refused start (the data directory is held by another server) is JSON too.
    let mut first = serve(&data, "json").spawn().unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("mobium: serving") {
                return;
            }
        }
        panic!("the first server exited");
    })
    .await
    .unwrap();
    let second = serve(&data, "json").output().await.unwrap();
    assert!(!second.status.success());
    let text = String::from_utf8_lossy(&second.stderr);
    let last = text
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .expect("an error line");
    let event: serde_json::Value = serde_json::from_str(last).expect("the error is JSON");
    assert_eq!(event["level"], "ERROR");
    assert!(
        event["error"]
            .as_str()
            .is_some_and(|e| e.contains("in use by another mobium server")),
        "{event}"
    );
    first.kill().await.unwrap();
}
