//! Benchmarks of a managed server of 3 instances (issue 11 figures), run with
//! `cargo bench -p mobium-homeserver --bench cluster` (release build of `mobium`). Needs
//! PostgreSQL (`BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, where
//! a scratch database is created and dropped) and NATS (`BENCH_NATS_URL`, default
//! `nats://127.0.0.1:4222`).
//!
//! Measures, against 3 real `mobium serve` processes sharing one database:
//! - send→receive latency p50/p99 at a paced 500 msg/s between two members of a channel, both
//!   on instance 1 and on different instances (the difference is what NATS adds);
//! - sustained acknowledged msg/s and deliveries with 60 clients in 6 channels of 10, every
//!   client keeping 4 sends in flight, first with all clients on instance 1, then spread over the
//!   3 instances; each instance's CPU per acknowledged send (the clients run in this process).
//!
//! Knobs: `BENCH_SECONDS` (default 5), `BENCH_RATE` (the paced rate, default 500 msg/s).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use mobium_spec::Keypair;
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod support;
use support::{latency, throughput};

const BIN: &str = env!("CARGO_BIN_EXE_mobium");

async fn spawn(
    dir: &std::path::Path,
    db: &str,
    nats: &str,
    key: &std::path::Path,
) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("SC_PORT", "0")
        .env("SC_FED_PORT", "0")
        .env("SC_SERVER_NAME", "cluster.bench.test")
        .env("SC_SERVER_TYPE", "managed")
        .env("SC_DATABASE_URL", db)
        .env("SC_NATS_URL", nats)
        .env("SC_SERVER_KEY_FILE", key)
        .env("SC_DATA_DIR", dir)
        .env("SC_LOG", "warn")
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
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rate: u64 = std::env::var("BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let admin = std::env::var("BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let nats = std::env::var("BENCH_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let name = format!(
        "mobium_bench_{}",
        &hex::encode(Keypair::generate().public().as_bytes())[..12]
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL (BENCH_POSTGRES_URL)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let db = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("BENCH_POSTGRES_URL has no database part"),
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server.key");
    std::fs::write(&key, hex::encode(Keypair::generate().secret_bytes())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut children = Vec::new();
    let mut urls = Vec::new();
    for i in 0..3 {
        let (c, u) = spawn(&dir.path().join(format!("i{i}")), &db, &nats, &key).await;
        children.push(c);
        urls.push(u);
    }
    let pids: Vec<u32> = children.iter().map(|c| c.id().unwrap()).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (same50, same99, n1) = latency(&urls[0], &urls[0], rate, seconds).await;
    let (cross50, cross99, n2) = latency(&urls[0], &urls[1], rate, seconds).await;
    let one = throughput(&urls[..1], &pids[..1], 60, seconds).await;
    let spread = throughput(&urls, &pids, 60, seconds).await;
    drop(children);

    println!("mobium managed cluster benchmark (3 instances, PostgreSQL, NATS, release, loopback)");
    println!(
        "  latency at {rate} msg/s, one instance     p50 {:>8.3} ms  p99 {:>8.3} ms  ({n1} messages)",
        ms(same50),
        ms(same99)
    );
    println!(
        "  latency at {rate} msg/s, across instances p50 {:>8.3} ms  p99 {:>8.3} ms  ({n2} messages)",
        ms(cross50),
        ms(cross99)
    );
    println!(
        "  what NATS adds                         p50 {:>8.3} ms",
        ms(cross50) - ms(same50)
    );
    println!(
        "  60 clients on one instance             {:>8.0} msg/s acknowledged, {:>8.0} deliveries/s, CPU {:.1} µs/msg",
        one.acked_per_s, one.delivered_per_s, one.cpu_us[0]
    );
    println!(
        "  60 clients over 3 instances            {:>8.0} msg/s acknowledged, {:>8.0} deliveries/s, CPU µs/msg per instance {:?}",
        spread.acked_per_s,
        spread.delivered_per_s,
        spread
            .cpu_us
            .iter()
            .map(|c| format!("{c:.1}"))
            .collect::<Vec<_>>()
    );
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await;
}
