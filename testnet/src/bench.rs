//! `testnet bench`: the project's benchmark suite, over real `mobium` processes federating
//! through the testnet's DNS and relays.
//!
//! | benchmark | how |
//! |---|---|
//! | cross-server latency | a user on node1 sends DMs to a user on node2 at a steady 200 per second; latency is the time from handing a message to the SDK to its arrival at the recipient's client (both in this process, one clock); p50, p99 and max |
//! | throughput | the same pair, as fast as the servers take it (256 requests in flight): messages delivered per second, first send to last arrival |
//! | memory per idle connection | node1 is restarted, warmed up with 20 connections, then its resident memory (`VmRSS`) is read before and after opening N authenticated, idle client connections; the difference divided by N |
//! | catch-up | node2 is stopped, 10,000 DMs for a user of node2 are queued on node1, node2 restarts; the time from the restart until the user has all 10,000. When the user reconnects it sends one DM back, so node2 dials node1, which sends its backlog at once instead of waiting for its retry timer |
//!
//! The messages are opaque bytes of a typical Olm ciphertext's size (256 bytes): servers only
//! ever see ciphertext, so this measures the servers, federation and the network path, not the
//! clients' encryption. Results are printed as a table and written as JSON to
//! `<dir>/bench-<unix seconds>.json` ([`BenchResults`]) so runs can be compared over time.
//! Run against a release build (`cargo build --release`, `MOBIUM_BIN=target/release/mobium`) for
//! figures worth comparing; the JSON records which binary ran.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use mobium_client_api::sdk::{Client, Events};
use mobium_spec::client::{DirectAck, DirectSend, Event, MAX_ACK_IDS, Request};
use mobium_spec::{Keypair, MessageId, UserId};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Semaphore};

use crate::info::render_table;
use crate::network::Network;
use crate::probe::connect;
use crate::target::Target;

/// Size of every benchmark message, in bytes.
pub const PAYLOAD: usize = 256;

/// How much work each benchmark does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Messages in the latency run.
    pub latency_messages: usize,
    /// Their rate, per second.
    pub latency_rate: u32,
    /// Messages in the throughput run.
    pub throughput_messages: usize,
    /// Requests in flight during the throughput run.
    pub window: usize,
    /// Idle connections opened for the memory measurement.
    pub idle_connections: usize,
    /// Events queued for the catch-up measurement.
    pub catch_up_events: usize,
}

impl BenchConfig {
    /// The full suite (about two minutes).
    pub fn full() -> BenchConfig {
        BenchConfig {
            latency_messages: 4_000,
            latency_rate: 200,
            throughput_messages: 10_000,
            window: 256,
            idle_connections: 500,
            catch_up_events: 10_000,
        }
    }

    /// A quick look (`--quick`, tests): smaller runs, noisier figures.
    pub fn quick() -> BenchConfig {
        BenchConfig {
            latency_messages: 600,
            latency_rate: 200,
            throughput_messages: 2_000,
            window: 128,
            idle_connections: 100,
            catch_up_events: 2_000,
        }
    }
}

/// Latency figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Messages measured.
    pub messages: usize,
    /// Sending rate, per second.
    pub rate: u32,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
}

/// Throughput figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Messages delivered.
    pub messages: usize,
    /// First send to last arrival, seconds.
    pub seconds: f64,
    /// Messages per second.
    pub per_second: f64,
    /// node1's (the sending server's) CPU time, user + system, per message, µs.
    #[serde(default)]
    pub sender_cpu_us: f64,
    /// node2's (the receiving server's) CPU time per message, µs.
    #[serde(default)]
    pub receiver_cpu_us: f64,
}

/// Memory figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Idle connections opened.
    pub connections: usize,
    /// node1's RSS before, bytes.
    pub rss_before: u64,
    /// node1's RSS with the connections open, bytes.
    pub rss_after: u64,
    /// The difference per connection, bytes.
    pub bytes_per_connection: f64,
}

/// Catch-up figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatchUp {
    /// Events queued while the node was down.
    pub events: usize,
    /// From the restart until `/health` answered, milliseconds.
    pub restart_ms: f64,
    /// From the restart until the recipient had every event, milliseconds.
    pub catch_up_ms: f64,
}

/// One run of the suite, as written to `bench-<timestamp>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResults {
    /// Unix seconds when the run started.
    pub timestamp: u64,
    /// The `mobium` binary measured.
    pub mobium_bin: String,
    /// Nodes in the network.
    pub nodes: usize,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// What was run.
    pub config: BenchConfig,
    /// Cross-server latency.
    pub latency: Latency,
    /// Cross-server throughput.
    pub throughput: Throughput,
    /// Memory per idle connection.
    pub memory: Memory,
    /// Catch-up after an outage.
    pub catch_up: CatchUp,
}

impl BenchResults {
    /// The table `testnet bench` prints.
    pub fn table(&self) -> String {
        let row = |a: &str, b: String, c: String| [a.to_owned(), b, c];
        let rows = [
            row("BENCHMARK", "RESULT".into(), "DETAIL".into()),
            row(
                "latency node1 -> node2",
                format!(
                    "p50 {:.1} ms  p99 {:.1} ms",
                    self.latency.p50_ms, self.latency.p99_ms
                ),
                format!(
                    "{} msgs at {}/s, max {:.1} ms",
                    self.latency.messages, self.latency.rate, self.latency.max_ms
                ),
            ),
            row(
                "throughput node1 -> node2",
                format!("{:.0} msgs/s", self.throughput.per_second),
                format!(
                    "{} msgs in {:.2} s",
                    self.throughput.messages, self.throughput.seconds
                ),
            ),
            row(
                "server CPU per message",
                format!(
                    "{:.0} µs / {:.0} µs",
                    self.throughput.sender_cpu_us, self.throughput.receiver_cpu_us
                ),
                "sending node1 / receiving node2, user + system".into(),
            ),
            row(
                "memory per idle connection",
                format!("{:.1} KiB", self.memory.bytes_per_connection / 1024.0),
                format!(
                    "{} connections, RSS {:.1} -> {:.1} MiB",
                    self.memory.connections,
                    mib(self.memory.rss_before),
                    mib(self.memory.rss_after)
                ),
            ),
            row(
                "catch-up after an outage",
                format!("{:.2} s", self.catch_up.catch_up_ms / 1000.0),
                format!(
                    "{} events; node2 healthy after {:.2} s",
                    self.catch_up.events,
                    self.catch_up.restart_ms / 1000.0
                ),
            ),
        ];
        render_table(&rows)
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `testnet bench [--quick]`: runs the suite against the testnet in `dir` (or a temporary one),
/// prints the table and writes the JSON into `dir`.
pub async fn run_cli(dir: &Path, quick: bool) -> anyhow::Result<()> {
    let config = if quick {
        BenchConfig::quick()
    } else {
        BenchConfig::full()
    };
    let mut target = Target::acquire(dir, 2, 2, 0).await?;
    let results = run(&mut target.net, config).await;
    let restored = crate::scenario::restore(&mut target.net).await;
    target.release().await?;
    let results = results?;
    restored?;
    print!("{}", results.table());
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("bench-{}.json", results.timestamp));
    std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("results written to {}", path.display());
    Ok(())
}

/// Runs the whole suite against `net` (at least two nodes).
pub async fn run(net: &mut Network, config: BenchConfig) -> anyhow::Result<BenchResults> {
    let info = net.info().clone();
    if info.nodes.len() < 2 {
        bail!("the benchmarks need two nodes");
    }
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    eprintln!(
        "bench: latency ({} msgs at {}/s)…",
        config.latency_messages, config.latency_rate
    );
    let latency = latency(net, config).await?;
    eprintln!("bench: throughput ({} msgs)…", config.throughput_messages);
    let throughput = throughput(net, config).await?;
    eprintln!(
        "bench: memory ({} idle connections)…",
        config.idle_connections
    );
    let memory = memory(net, config).await?;
    eprintln!("bench: catch-up ({} events)…", config.catch_up_events);
    let catch_up = catch_up(net, config).await?;
    Ok(BenchResults {
        timestamp,
        mobium_bin: info.mobium_bin.display().to_string(),
        nodes: info.nodes.len(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        config,
        latency,
        throughput,
        memory,
        catch_up,
    })
}

/// A message whose first 8 bytes carry its sequence number.
fn payload(seq: u64) -> Vec<u8> {
    let mut p = vec![0x5a; PAYLOAD];
    p[..8].copy_from_slice(&seq.to_be_bytes());
    p
}

fn seq_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// A fresh sender on node1 and recipient on node2.
async fn pair(net: &Network) -> anyhow::Result<((Client, Events), (Client, Events))> {
    let info = net.info();
    let a = connect(&info.nodes[0].ws_url, &Keypair::generate()).await?;
    let b = connect(&info.nodes[1].ws_url, &Keypair::generate()).await?;
    Ok((a, b))
}

/// Sends DM `seq` without waiting for its answer beyond the permit's lifetime.
fn send_dm(
    client: &Client,
    to: &UserId,
    seq: u64,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let (client, to) = (client.clone(), to.clone());
    tokio::spawn(async move {
        let sent = client
            .request(Request::DirectSend(DirectSend {
                to,
                ciphertext: payload(seq),
                txn: None,
            }))
            .await;
        if let Err(e) = sent {
            tracing::warn!(seq, error = %e, "benchmark send failed");
        }
        drop(permit);
    });
}

/// Receives DMs until `count` distinct sequence numbers arrived (acknowledging in batches),
/// calling `arrived` for each; fails after `idle` without progress.
async fn collect(
    client: &Client,
    events: &mut Events,
    count: usize,
    idle: Duration,
    mut arrived: impl FnMut(u64),
) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut acks: Vec<MessageId> = Vec::new();
    while seen.len() < count {
        let event = tokio::time::timeout(idle, events.recv())
            .await
            .with_context(|| {
                format!(
                    "only {} of {count} messages arrived (none for {idle:?})",
                    seen.len()
                )
            })?
            .context("the recipient's connection closed")?;
        if let Event::Direct(d) = event {
            acks.push(d.id);
            if let Some(seq) = seq_of(&d.ciphertext)
                && d.ciphertext.len() == PAYLOAD
                && seen.insert(seq)
            {
                arrived(seq);
            }
            if acks.len() >= MAX_ACK_IDS.min(500) {
                ack(client, std::mem::take(&mut acks));
            }
        }
    }
    ack(client, acks);
    Ok(())
}

fn ack(client: &Client, ids: Vec<MessageId>) {
    if ids.is_empty() {
        return;
    }
    let client = client.clone();
    tokio::spawn(async move {
        let _ = client.request(Request::DirectAck(DirectAck { ids })).await;
    });
}

async fn latency(net: &Network, config: BenchConfig) -> anyhow::Result<Latency> {
    let ((alice, _ae), (bob, mut be)) = pair(net).await?;
    let n = config.latency_messages;
    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let mut latencies: Vec<Duration> = Vec::with_capacity(n);
    let bob_id = bob.user_id().clone();
    let sender = {
        let (alice, sent_at) = (alice.clone(), sent_at.clone());
        let period = Duration::from_secs(1) / config.latency_rate.max(1);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for seq in 0..n as u64 {
                tick.tick().await;
                sent_at.lock().await.insert(seq, Instant::now());
                send_dm(&alice, &bob_id, seq, None);
            }
        })
    };
    let mut arrivals: Vec<(u64, Instant)> = Vec::with_capacity(n);
    collect(&bob, &mut be, n, Duration::from_secs(60), |seq| {
        arrivals.push((seq, Instant::now()))
    })
    .await?;
    sender.await.context("the sender stopped")?;
    let sent_at = sent_at.lock().await;
    for (seq, at) in arrivals {
        if let Some(s) = sent_at.get(&seq) {
            latencies.push(at.saturating_duration_since(*s));
        }
    }
    alice.close();
    bob.close();
    latencies.sort_unstable();
    let ms = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies
            .get(i)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    Ok(Latency {
        messages: latencies.len(),
        rate: config.latency_rate,
        p50_ms: ms(0.50),
        p99_ms: ms(0.99),
        max_ms: ms(1.0),
    })
}

async fn throughput(net: &Network, config: BenchConfig) -> anyhow::Result<Throughput> {
    let ((alice, _ae), (bob, mut be)) = pair(net).await?;
    let n = config.throughput_messages;
    let window = Arc::new(Semaphore::new(config.window.max(1)));
    let bob_id = bob.user_id().clone();
    let pids = {
        let info = net.info();
        let pid = |i: usize| info.nodes[i].pid.context("a node is not running");
        [pid(0)?, pid(1)?]
    };
    let cpu_before = [cpu_time(pids[0])?, cpu_time(pids[1])?];
    let started = Instant::now();
    let sender = {
        let alice = alice.clone();
        tokio::spawn(async move {
            for seq in 0..n as u64 {
                let Ok(permit) = window.clone().acquire_owned().await else {
                    return;
                };
                send_dm(&alice, &bob_id, seq, Some(permit));
            }
        })
    };
    collect(&bob, &mut be, n, Duration::from_secs(60), |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    let per_message = |i: usize| -> anyhow::Result<f64> {
        let used = cpu_time(pids[i])?.saturating_sub(cpu_before[i]);
        Ok(used.as_secs_f64() * 1e6 / (n.max(1) as f64))
    };
    let (sender_cpu_us, receiver_cpu_us) = (per_message(0)?, per_message(1)?);
    sender.await.context("the sender stopped")?;
    alice.close();
    bob.close();
    Ok(Throughput {
        messages: n,
        seconds,
        per_second: n as f64 / seconds.max(f64::EPSILON),
        sender_cpu_us,
        receiver_cpu_us,
    })
}

/// CPU time (user + system) process `pid` has used, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    crate::node::cpu_time(pid)
}

async fn memory(net: &mut Network, config: BenchConfig) -> anyhow::Result<Memory> {
    // A fresh process: one that already served the other benchmarks holds freed memory that
    // new connections would reuse, hiding their cost.
    net.restart("node1").await?;
    let node = net.info().nodes[0].clone();
    let pid = node.pid.context("node1 is not running")?;
    // Warm up: let the server reach its steady state (allocator arenas, database cache).
    let mut warm = Vec::new();
    for _ in 0..20 {
        warm.push(connect(&node.ws_url, &Keypair::generate()).await?);
    }
    for (c, _) in &warm {
        c.close();
    }
    drop(warm);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = crate::node::rss_bytes(pid)?;
    let mut open = Vec::with_capacity(config.idle_connections);
    for _ in 0..config.idle_connections {
        open.push(connect(&node.ws_url, &Keypair::generate()).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = crate::node::rss_bytes(pid)?;
    for (c, _) in &open {
        c.close();
    }
    let connections = open.len();
    Ok(Memory {
        connections,
        rss_before,
        rss_after,
        bytes_per_connection: rss_after.saturating_sub(rss_before) as f64
            / connections.max(1) as f64,
    })
}

async fn catch_up(net: &mut Network, config: BenchConfig) -> anyhow::Result<CatchUp> {
    let info = net.info().clone();
    let bob_key = Keypair::generate();
    let (alice, mut alice_events) = connect(&info.nodes[0].ws_url, &Keypair::generate()).await?;
    let (bob, _) = connect(&info.nodes[1].ws_url, &bob_key).await?;
    let bob_id = bob.user_id().clone();
    bob.close();
    net.stop("node2").await?;
    let n = config.catch_up_events;
    let window = Arc::new(Semaphore::new(config.window.max(1)));
    for seq in 0..n as u64 {
        let permit = window.clone().acquire_owned().await?;
        send_dm(&alice, &bob_id, seq, Some(permit));
    }
    // Every send answered: all of them are in node1's outbox.
    let _ = window.acquire_many(config.window.max(1) as u32).await?;
    let started = Instant::now();
    net.restart("node2").await?;
    let restart_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (bob, mut be) = connect(&info.nodes[1].ws_url, &bob_key).await?;
    bob.request(Request::DirectSend(DirectSend {
        to: alice.user_id().clone(),
        ciphertext: b"back".to_vec(),
        txn: None,
    }))
    .await
    .context("bob could not say he is back")?;
    collect(&bob, &mut be, n, Duration::from_secs(120), |_| {}).await?;
    let catch_up_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Drain alice's side so nothing is left queued for her.
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(100), alice_events.recv()).await
    {}
    alice.close();
    bob.close();
    Ok(CatchUp {
        events: n,
        restart_ms,
        catch_up_ms,
    })
}
