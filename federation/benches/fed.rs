//! Federation transport benchmark: two endpoints on loopback, static discovery, a handler that
//! acknowledges at once (so the figures are the transport's: framing, signing, verification,
//! QUIC).
//!
//! Run with `cargo bench -p mobium-federation --bench fed`. Prints:
//! - request → verified-ack latency (p50/p90/p99/max) of 1-event transactions paced at 200 req/s;
//! - sustained throughput with 64 requests in flight, 1 event per transaction and 100 events per
//!   transaction (transactions/s and events/s).
//!
//! Environment: `FED_BENCH_SECS` (default 5) sets the duration of each phase.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mobium_federation::{
    Ack, DiscoveryConfig, FedConfig, Federation, FederationHandler, Query, QueryResult, StaticPeer,
    Transaction, WellKnownMode,
};
use mobium_spec::client::ErrorBody;
use mobium_spec::federation::{FedDirect, FedEvent};
use mobium_spec::{ErrorCode, Keypair, MessageId, ServerName, UserId};

/// Acknowledges every transaction without looking at it.
struct AckAll {
    events: AtomicU64,
}

#[async_trait::async_trait]
impl FederationHandler for AckAll {
    async fn transaction(
        &self,
        _origin: &ServerName,
        _txn_id: u64,
        txn: Transaction,
    ) -> Result<Ack, ErrorBody> {
        self.events
            .fetch_add(txn.events.len() as u64, Ordering::Relaxed);
        Ok(Ack::default())
    }

    async fn query(&self, _origin: &ServerName, _query: Query) -> Result<QueryResult, ErrorBody> {
        Err(ErrorBody::new(ErrorCode::UnknownOp, "bench"))
    }
}

fn free_port() -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    socket.local_addr().expect("addr")
}

fn transaction(from: &UserId, to: &UserId, events: usize) -> Transaction {
    Transaction {
        events: (0..events)
            .map(|i| {
                FedEvent::Direct(FedDirect {
                    id: MessageId::new(1_000_000 + i as u64).expect("id"),
                    from: from.clone(),
                    to: to.clone(),
                    // About the size of a short Olm message.
                    ciphertext: vec![0x5a; 256],
                    sent_at: 1_767_225_600_000,
                })
            })
            .collect(),
        ephemeral: Vec::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

struct Setup {
    sender: Federation,
    receiver: Federation,
    dest: ServerName,
    from: UserId,
    to: UserId,
}

async fn setup() -> Setup {
    let names: [ServerName; 2] = [
        "alpha.bench".parse().expect("name"),
        "beta.bench".parse().expect("name"),
    ];
    let keys = [Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32])];
    let addrs = [free_port(), free_port()];
    let peers: Vec<StaticPeer> = (0..2)
        .map(|i| StaticPeer {
            name: names[i].clone(),
            addr: addrs[i],
            key: keys[i].public(),
        })
        .collect();
    let mut feds = Vec::new();
    for i in 0..2 {
        let mut config = FedConfig::new(names[i].clone(), keys[i].clone());
        config.bind = addrs[i];
        config.discovery = DiscoveryConfig {
            nameservers: vec![free_port()],
            static_peers: peers.clone(),
            well_known: WellKnownMode::Off,
            ..DiscoveryConfig::default()
        };
        let handler = Arc::new(AckAll {
            events: AtomicU64::new(0),
        });
        feds.push(Federation::start(config, handler).await.expect("start"));
    }
    let receiver = feds.pop().expect("receiver");
    let sender = feds.pop().expect("sender");
    Setup {
        from: UserId::new(keys[0].public(), names[0].clone()),
        to: UserId::new(Keypair::from_seed([9; 32]).public(), names[1].clone()),
        sender,
        receiver,
        dest: names[1].clone(),
    }
}

/// Paced requests, one at a time on schedule: latency per request.
async fn paced_latency(s: &Setup, rate: u32, duration: Duration) -> Vec<Duration> {
    let interval = Duration::from_secs(1) / rate;
    let count = (duration.as_secs_f64() * f64::from(rate)) as usize;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        ticker.tick().await;
        let (fed, dest, txn) = (
            s.sender.clone(),
            s.dest.clone(),
            transaction(&s.from, &s.to, 1),
        );
        tasks.spawn(async move {
            let start = Instant::now();
            fed.send_transaction(&dest, txn).await.expect("ack");
            start.elapsed()
        });
    }
    let mut latencies = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        latencies.push(done.expect("task"));
    }
    latencies.sort();
    latencies
}

/// `in_flight` workers sending back to back: (transactions, elapsed).
async fn throughput(
    s: &Setup,
    in_flight: usize,
    events: usize,
    duration: Duration,
) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (fed, dest, done) = (s.sender.clone(), s.dest.clone(), done.clone());
        let txn = transaction(&s.from, &s.to, events);
        tasks.spawn(async move {
            while Instant::now() < deadline {
                fed.send_transaction(&dest, txn.clone()).await.expect("ack");
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task");
    }
    (done.load(Ordering::Relaxed), start.elapsed())
}

fn main() {
    let secs: u64 = std::env::var("FED_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let phase = Duration::from_secs(secs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let s = setup().await;
        // Warm up: connection set up, caches filled.
        throughput(&s, 8, 1, Duration::from_millis(500)).await;

        let latencies = paced_latency(&s, 200, phase).await;
        let (txns_1, elapsed_1) = throughput(&s, 64, 1, phase).await;
        let (txns_100, elapsed_100) = throughput(&s, 64, 100, phase).await;

        println!();
        println!("mobium-federation transport benchmark (loopback QUIC, 2 endpoints, static discovery)");
        println!();
        println!("| scenario | requests | p50 | p90 | p99 | max |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| 1-event txn paced at 200 req/s, request -> verified ack | {} | {} | {} | {} | {} |",
            latencies.len(),
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.90)),
            ms(percentile(&latencies, 0.99)),
            ms(percentile(&latencies, 1.0)),
        );
        println!();
        println!("| scenario | transactions | seconds | transactions/s | events/s |");
        println!("|---|---|---|---|---|");
        for (label, txns, elapsed, events) in [
            ("64 in flight, 1 event/txn", txns_1, elapsed_1, 1u64),
            ("64 in flight, 100 events/txn", txns_100, elapsed_100, 100u64),
        ] {
            let rate = txns as f64 / elapsed.as_secs_f64();
            println!(
                "| {label} | {txns} | {:.1} | {:.0} | {:.0} |",
                elapsed.as_secs_f64(),
                rate,
                rate * events as f64
            );
        }
        let stats = s.sender.stats();
        println!();
        println!(
            "sender: {} requests, {} failed, {} outgoing connection(s); receiver: {} received, {} rejected",
            stats.requests_sent,
            stats.requests_failed,
            stats.connections_out,
            s.receiver.stats().requests_received,
            s.receiver.stats().rejected.values().sum::<u64>(),
        );
        s.sender.shutdown().await;
        s.receiver.shutdown().await;
    });
}
