//! Cross-server benchmarks (issue figures), run with
//! `cargo bench -p mobium-homeserver --bench federation`.
//!
//! Two homeservers in this process (release build), SQLite in temporary directories, real QUIC
//! on loopback, static peers. Measures:
//! - send→receive latency p50/p99 of to-device messages at a paced 200 msgs/s, a client on A to
//!   a client on B;
//! - sustained cross-server msgs/s (many senders on A, one receiver on B);
//! - catch-up: B stopped, 10,000 events queued on A, B restarted; time until B's user has all.
//!
//! Knobs: `BENCH_SECONDS` (default 5), `BENCH_CATCHUP` (default 10000).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mobium_client_api::sdk::{Client, ConnectOptions, Events};
use mobium_homeserver::config::{self, Config, PeerSetting, WellKnown};
use mobium_homeserver::server::{self, Running};
use mobium_spec::client::{DirectAck, DirectSend, Event, Request};
use mobium_spec::{Keypair, ServerName, UserId};

struct Node {
    name: ServerName,
    key: Keypair,
    fed_port: u16,
    dir: tempfile::TempDir,
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config_for(node: &Node, all: &[Node], port: u16) -> Config {
    let mut c = config::load(None, Vec::<(String, String)>::new()).unwrap();
    c.port = port;
    c.data_dir = node.dir.path().join("data");
    c.server_name = Some(node.name.clone());
    c.fed_port = node.fed_port;
    c.fed_well_known = WellKnown::Off;
    c.fed_peers = all
        .iter()
        .map(|n| PeerSetting {
            name: n.name.clone(),
            addr: format!("127.0.0.1:{}", n.fed_port).parse().unwrap(),
            key: n.key.public(),
        })
        .collect();
    c.log = "error".into();
    c.rate_limit_per_sec = 1_000_000;
    c.rate_limit_burst = 1_000_000;
    c.max_offline_messages = 100_000;
    c.max_connections_per_ip = 10_000;
    c
}

fn write_key(dir: &Path, key: &Keypair) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let path = data.join("server.key");
    std::fs::write(&path, hex::encode(key.secret_bytes())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

async fn connect(r: &Running) -> (Client, Events) {
    Client::connect(&r.ws_url(), &Keypair::generate(), ConnectOptions::default())
        .await
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn send(c: &Client, to: &UserId, n: u32) {
    let mut body = n.to_be_bytes().to_vec();
    body.resize(200, 0xab);
    c.request(Request::DirectSend(DirectSend {
        to: to.clone(),
        ciphertext: body,
        txn: None,
    }))
    .await
    .unwrap();
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let catchup: u32 = std::env::var("BENCH_CATCHUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let nodes: Vec<Node> = (1..=2)
        .map(|i| Node {
            name: format!("bench{i}.fed.test").parse().unwrap(),
            key: Keypair::generate(),
            fed_port: free_udp_port(),
            dir: tempfile::tempdir().unwrap(),
        })
        .collect();
    for n in &nodes {
        write_key(n.dir.path(), &n.key);
    }
    let a = server::start(config_for(&nodes[0], &nodes, 0))
        .await
        .unwrap();
    let b = server::start(config_for(&nodes[1], &nodes, 0))
        .await
        .unwrap();
    let b_port = b.addr.port();

    // 1. Latency at 200 msgs/s.
    let (alice, _ae) = connect(&a).await;
    let bob_key = Keypair::generate();
    let (bob, mut be) = Client::connect(&b.ws_url(), &bob_key, ConnectOptions::default())
        .await
        .unwrap();
    let bob_id = bob.user_id().clone();
    send(&alice, &bob_id, u32::MAX).await; // warm the QUIC connection
    let _ = be.recv().await;
    let total = 200 * seconds as u32;
    let sent_at: Arc<std::sync::Mutex<HashMap<u32, Instant>>> = Default::default();
    let sa = sent_at.clone();
    let bob2 = bob.clone();
    let recv = tokio::spawn(async move {
        let mut lat = Vec::new();
        while lat.len() < total as usize {
            match tokio::time::timeout(Duration::from_secs(20), be.recv()).await {
                Ok(Some(Event::Direct(d))) => {
                    let n = u32::from_be_bytes(d.ciphertext[..4].try_into().unwrap());
                    if let Some(t) = sa.lock().unwrap().remove(&n) {
                        lat.push(t.elapsed());
                    }
                    let b = bob2.clone();
                    tokio::spawn(async move {
                        let _ = b
                            .request(Request::DirectAck(DirectAck { ids: vec![d.id] }))
                            .await;
                    });
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        (lat, be)
    });
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for n in 0..total {
        tick.tick().await;
        sent_at.lock().unwrap().insert(n, Instant::now());
        let (c, to) = (alice.clone(), bob_id.clone());
        tokio::spawn(async move { send(&c, &to, n).await });
    }
    let (mut lat, mut be) = recv.await.unwrap();
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));

    // 2. Sustained throughput: 64 senders on A, one receiver on B.
    let delivered = Arc::new(AtomicU64::new(0));
    let d2 = delivered.clone();
    let counter = tokio::spawn(async move {
        while let Some(ev) = be.recv().await {
            if matches!(ev, Event::Direct(_)) {
                d2.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, _e) = connect(&a).await;
        for _ in 0..8 {
            let (c, to) = (c.clone(), bob_id.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u32;
                while Instant::now() < deadline {
                    send(&c, &to, n).await;
                    n += 1;
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let send_secs = start.elapsed().as_secs_f64();
    let sent_total = {
        // Everything accepted by A must reach B: wait for the backlog to drain.
        let outbox = &a.app.federation().unwrap().outbox;
        let t = Instant::now();
        while outbox.pending(&nodes[1].name).await > 0 && t.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        a.app.metrics.direct_messages.load(Ordering::Relaxed)
    };
    let drain_secs = start.elapsed().as_secs_f64();
    counter.abort();
    bob.close();

    // 3. Catch-up: B down, `catchup` events queued on A, B back.
    b.shutdown().await.unwrap();
    for n in 0..catchup {
        send(&alice, &bob_id, n).await;
    }
    let mut cfg = config_for(&nodes[1], &nodes, b_port);
    cfg.port = b_port;
    let restart = Instant::now();
    let b = loop {
        match server::start(cfg.clone()).await {
            Ok(r) => break r,
            Err(_) if restart.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e:#}"),
        }
    };
    let backlog_start = Instant::now();
    let outbox = &a.app.federation().unwrap().outbox;
    while outbox.pending(&nodes[1].name).await > 0
        && backlog_start.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let catchup_time = backlog_start.elapsed();

    println!("mobium federation benchmark (two homeservers, SQLite, release, loopback QUIC)");
    println!(
        "  DM latency at 200 msg/s  p50          {:>9.3} ms  ({} messages)",
        p50.as_secs_f64() * 1e3,
        lat.len()
    );
    println!(
        "  DM latency at 200 msg/s  p99          {:>9.3} ms",
        p99.as_secs_f64() * 1e3
    );
    println!(
        "  sustained cross-server (64 senders)   {:>9.0} msg/s accepted on A over {send_secs:.1} s",
        sent_total as f64 / send_secs
    );
    println!(
        "  ... delivered to B's server           {:>9.0} msg/s including the backlog drain ({drain_secs:.1} s)",
        sent_total as f64 / drain_secs
    );
    println!(
        "  catch-up of {catchup} queued events     {:>9.2} s after the peer returned",
        catchup_time.as_secs_f64()
    );
    // Cargo gives benches a scratch directory inside the target directory.
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-federation.json");
    let json = format!(
        "{{\"latency_p50_ms\":{:.3},\"latency_p99_ms\":{:.3},\"sustained_msgs_per_s\":{:.0},\"delivered_msgs_per_s\":{:.0},\"catchup_events\":{catchup},\"catchup_s\":{:.3}}}\n",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        sent_total as f64 / send_secs,
        sent_total as f64 / drain_secs,
        catchup_time.as_secs_f64()
    );
    match std::fs::write(&out, json) {
        Ok(()) => println!("  (written to {})", out.display()),
        Err(e) => eprintln!("cannot write {}: {e}", out.display()),
    }
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}
