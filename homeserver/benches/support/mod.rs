//! What the process benchmarks share: reading a process's RSS and CPU time from `/proc`,
//! percentiles, and clients in channels.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mobium_client_api::sdk::{Client, ConnectOptions};
use mobium_spec::client::*;
use mobium_spec::{ChannelId, Keypair};

/// The resident set of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) the process `pid` has used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of stat(5), i.e. 11 and 12 after the state field.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let hz: u64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100);
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// The `p` quantile of `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// A fresh user connected to `url`.
pub async fn connect(url: &str) -> (Client, mobium_client_api::sdk::Events) {
    Client::connect(url, &Keypair::generate(), ConnectOptions::default())
        .await
        .unwrap()
}

/// A channel of `owner`'s that `members` joined.
pub async fn channel_with(owner: &Client, members: &[Client]) -> ChannelId {
    let Response::ChannelCreated(ch) = owner
        .request(Request::ChannelCreate(ChannelCreate { metadata: vec![] }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let Response::Invite(inv) = owner
        .request(Request::InviteCreate(InviteCreate {
            channel: ch.channel.clone(),
            max_uses: None,
            expires_in_secs: None,
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    for m in members {
        m.request(Request::ChannelJoin(ChannelJoin {
            code: inv.code.clone(),
        }))
        .await
        .unwrap();
    }
    ch.channel
}

/// Paced sends from a member on `from`; latency at a member on `to`.
pub async fn latency(from: &str, to: &str, rate: u64, seconds: u64) -> (Duration, Duration, usize) {
    let (sender, _se) = connect(from).await;
    let (receiver, mut re) = connect(to).await;
    let ch = channel_with(&sender, std::slice::from_ref(&receiver)).await;
    let total = rate * seconds;
    let sent_at: Arc<std::sync::Mutex<HashMap<u32, Instant>>> = Default::default();
    let sa = sent_at.clone();
    let recv = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(total as usize);
        while lat.len() < total as usize {
            match tokio::time::timeout(Duration::from_secs(10), re.recv()).await {
                Ok(Some(Event::Message(m))) => {
                    let n = u32::from_be_bytes(m.ciphertext[..4].try_into().unwrap());
                    if let Some(t) = sa.lock().unwrap().remove(&n) {
                        lat.push(t.elapsed());
                    }
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        lat
    });
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total as u32 {
        tick.tick().await;
        let mut body = n.to_be_bytes().to_vec();
        body.resize(200, 0xab);
        sent_at.lock().unwrap().insert(n, Instant::now());
        let (s, channel) = (sender.clone(), ch.clone());
        tokio::spawn(async move {
            let _ = s
                .request(Request::MessageSend(MessageSend {
                    channel,
                    ciphertext: body,
                    reply_to: None,
                    txn: None,
                }))
                .await;
        });
    }
    let mut lat = recv.await.unwrap();
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99), lat.len())
}

/// What a throughput run measured.
pub struct Throughput {
    /// Acknowledged sends per second.
    pub acked_per_s: f64,
    /// Message events received per second, all clients together.
    pub delivered_per_s: f64,
    /// Server CPU µs per acknowledged send, per server in `pids` order.
    pub cpu_us: Vec<f64>,
    /// Server CPU over the run as a share of one core, per server.
    pub cores_busy: Vec<f64>,
}

/// `n` clients in channels of 10, client `i` on `urls[i % urls.len()]`, each keeping 4
/// sends in flight, for `seconds`; `pids` are the servers whose CPU time over the run is
/// charged to the acknowledged sends (the clients run in this process).
pub async fn throughput(urls: &[String], pids: &[u32], n: usize, seconds: u64) -> Throughput {
    let mut clients = Vec::new();
    for i in 0..n {
        clients.push(connect(&urls[i % urls.len()]).await);
    }
    let mut channels = Vec::new();
    for g in 0..n / 10 {
        let group: Vec<Client> = clients[g * 10..g * 10 + 10]
            .iter()
            .map(|(c, _)| c.clone())
            .collect();
        channels.push(channel_with(&group[0], &group[1..]).await);
    }
    let acked = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (i, (c, mut events)) in clients.into_iter().enumerate() {
        let d = delivered.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if matches!(e, Event::Message(_)) {
                    d.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let ch = channels[i / 10].clone();
        for _ in 0..4 {
            let (c, ch, acked) = (c.clone(), ch.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    if c.request(Request::MessageSend(MessageSend {
                        channel: ch.clone(),
                        ciphertext: vec![0xcd; 200],
                        reply_to: None,
                        txn: None,
                    }))
                    .await
                    .is_ok()
                    {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    let start = Instant::now();
    let cpu_start: Vec<Duration> = pids.iter().map(|p| cpu_time(*p)).collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu: Vec<f64> = pids
        .iter()
        .zip(cpu_start)
        .map(|(p, s)| (cpu_time(*p) - s).as_secs_f64())
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = acked.load(Ordering::Relaxed) as f64;
    Throughput {
        acked_per_s: acked / secs,
        delivered_per_s: delivered.load(Ordering::Relaxed) as f64 / secs,
        cpu_us: cpu.iter().map(|c| c * 1e6 / acked.max(1.0)).collect(),
        cores_busy: cpu.iter().map(|c| c / secs).collect(),
    }
}
