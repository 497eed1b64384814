//! Benchmarks of one homeserver process (issue figures), run with
//! `cargo bench -p mobium-homeserver --bench server` (release build of `mobium`).
//!
//! Measures, against the real `mobium` binary on SQLite in a temporary directory:
//! - time from process start to ready (banner printed and `/health` answering);
//! - idle RSS of a fresh server;
//! - send→receive latency p50/p99 at a paced 1,000 msgs/s between two members of a channel;
//! - maximum sustained msgs/s with 100 clients across 10 channels (10 members each), and the
//!   server's CPU time per acknowledged send over that run (the clients run in this process,
//!   the server in its own, so their CPU is not counted);
//! - RSS per idle authenticated connection with 10,000 connections.
//!
//! Prints a table and writes `<target>/tmp/bench-server.json`. Knobs: `BENCH_CONNECTIONS`
//! (default 10000), `BENCH_SECONDS` (default 5).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_mobium");

mod support;
use support::{connect, latency, rss_kib, throughput};

async fn spawn(dir: &std::path::Path) -> (Child, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("SC_PORT", "0")
        .env("SC_FED_PORT", "0")
        .env("SC_SERVER_NAME", "bench.test")
        .env("SC_DATA_DIR", dir)
        .env("SC_LOG", "warn")
        .env("SC_MAX_CONNECTIONS", "20000")
        .env("SC_MAX_CONNECTIONS_PER_IP", "20000")
        .env("SC_RATE_LIMIT_PER_SEC", "1000000")
        .env("SC_RATE_LIMIT_BURST", "1000000")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mobium");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next_line().await.unwrap().expect("banner");
        if let Some(i) = line.find("ws://") {
            break line[i..].to_owned();
        }
    };
    let ready = start.elapsed();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url, ready)
}

/// Opens `n` authenticated idle connections; returns the server's RSS growth per connection.
async fn idle_connections(url: &str, pid: u32, n: usize) -> (f64, u64, u64) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let mut held = Vec::with_capacity(n);
    let url = Arc::new(url.to_owned());
    let mut pending = Vec::new();
    for _ in 0..n {
        let url = url.clone();
        pending.push(tokio::spawn(async move { connect(&url).await }));
        if pending.len() == 200 {
            for p in pending.drain(..) {
                held.push(p.await.unwrap());
            }
        }
    }
    for p in pending {
        held.push(p.await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before) as f64 * 1024.0) / n as f64;
    drop(held);
    (per, before, after)
}

#[tokio::main]
async fn main() {
    let conns: usize = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);

    let dir = tempfile::tempdir().unwrap();
    let (child, url, ready) = spawn(dir.path()).await;
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(pid);
    let (p50, p99, n) = latency(&url, &url, 1000, seconds).await;
    let t = throughput(std::slice::from_ref(&url), &[pid], 100, seconds).await;
    let (acked, delivered) = (t.acked_per_s, t.delivered_per_s);
    drop(child);

    // A fresh server for the connection-memory figure, so earlier load does not skew it.
    let dir2 = tempfile::tempdir().unwrap();
    let (child2, url2, _) = spawn(dir2.path()).await;
    let (per_conn, before, after) = idle_connections(&url2, child2.id().unwrap(), conns).await;
    drop(child2);

    println!("mobium homeserver benchmark (SQLite, release, loopback)");
    println!(
        "  start to ready                      {:>10.1} ms",
        ready.as_secs_f64() * 1000.0
    );
    println!(
        "  idle RSS of a fresh server          {:>10.1} MiB",
        idle_rss as f64 / 1024.0
    );
    println!(
        "  latency at 1000 msg/s  p50          {:>10.3} ms  ({n} messages)",
        p50.as_secs_f64() * 1000.0
    );
    println!(
        "  latency at 1000 msg/s  p99          {:>10.3} ms",
        p99.as_secs_f64() * 1000.0
    );
    println!(
        "  sustained sends (100 clients/10 ch) {:>10.0} msg/s acknowledged",
        acked
    );
    println!(
        "  deliveries (10 members per channel) {:>10.0} events/s",
        delivered
    );
    println!(
        "  server CPU per acknowledged send    {:>10.1} µs  ({:.2} cores busy)",
        t.cpu_us[0], t.cores_busy[0]
    );
    println!(
        "  RSS per idle connection ({conns})   {:>10.0} bytes  ({before} KiB -> {after} KiB)",
        per_conn
    );
    let json = format!(
        "{{\"start_to_ready_ms\":{:.1},\"idle_rss_kib\":{idle_rss},\"latency_p50_ms\":{:.3},\"latency_p99_ms\":{:.3},\"sustained_msgs_per_s\":{:.0},\"deliveries_per_s\":{:.0},\"server_cpu_us_per_msg\":{:.1},\"server_cores_busy\":{:.2},\"rss_per_idle_connection_bytes\":{:.0},\"connections\":{conns}}}\n",
        ready.as_secs_f64() * 1000.0,
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        acked,
        delivered,
        t.cpu_us[0],
        t.cores_busy[0],
        per_conn
    );
    // Cargo gives benches a scratch directory inside the target directory.
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-server.json");
    match std::fs::write(&out, json) {
        Ok(()) => println!("  (written to {})", out.display()),
        Err(e) => eprintln!("cannot write {}: {e}", out.display()),
    }
}
