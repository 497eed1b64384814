//! What the process benchmarks share: reading a process's RSS and CPU time from `/proc`,
//! percentiles, and clients in channels.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
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
