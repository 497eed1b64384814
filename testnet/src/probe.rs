//! The federation check that ends `testnet up`: a to-device message from every node to every
//! other node, each one delivered.
//!
//! `/health` only proves that a homeserver runs. A delivered cross-server message proves the
//! whole federation path: the sender's outbox, discovery through the testnet's DNS (SRV and
//! TXT), the relay, the QUIC handshake with both server keys checked, signature checks, and
//! delivery to the recipient. Each node gets a *probe user* whose key is derived from the node's
//! index (so repeated `up`s reuse the same account), and the probe of node *i* sends one message
//! to the probe of every node *j ≠ i*, carrying a fresh nonce; the check passes when every probe
//! has received one message with that nonce from every other probe. The payload is a plain
//! marker, not an E2EE message: this checks the transport, not the clients.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context, bail};
use mobium_client_api::sdk::{Client, ConnectOptions, Events};
use mobium_spec::client::{DirectAck, DirectSend, Event, Request};
use mobium_spec::{Keypair, UserId};

use crate::info::TestnetInfo;

/// The probe user's key for node `index`: fixed, so re-running `up` reuses the account.
pub fn probe_key(index: usize) -> Keypair {
    let mut seed = [0u8; 32];
    let tag = b"mobium-testnet-probe";
    seed[..tag.len()].copy_from_slice(tag);
    seed[24..].copy_from_slice(&(index as u64).to_be_bytes());
    Keypair::from_seed(seed)
}

/// Connects `key` to `url` with the testnet's client options.
pub async fn connect(url: &str, key: &Keypair) -> anyhow::Result<(Client, Events)> {
    let opts = ConnectOptions {
        request_timeout: Duration::from_secs(30),
        ..ConnectOptions::default()
    };
    Client::connect(url, key, opts)
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// Sends a probe from every node to every other node and waits (up to `timeout`) until all
/// arrived; the error lists the pairs that did not work.
pub async fn check_all(info: &TestnetInfo, timeout: Duration) -> anyhow::Result<()> {
    if info.nodes.len() < 2 {
        return Ok(());
    }
    let nonce: u64 = rand_u64();
    let mut probes = Vec::new();
    for n in &info.nodes {
        let (client, events) = connect(&n.ws_url, &probe_key(n.index)).await?;
        probes.push((n.index, client, events));
    }
    let ids: HashMap<UserId, usize> = probes
        .iter()
        .map(|(i, c, _)| (c.user_id().clone(), *i))
        .collect();
    for (i, sender, _) in &probes {
        for (j, recipient, _) in &probes {
            if i == j {
                continue;
            }
            sender
                .request(Request::DirectSend(DirectSend {
                    to: recipient.user_id().clone(),
                    ciphertext: marker(nonce, *i, *j),
                    txn: None,
                }))
                .await
                .with_context(|| format!("node{i} refused a message for node{j}"))?;
        }
    }
    let waits = probes.into_iter().map(|(j, client, events)| {
        let ids = ids.clone();
        let expected: BTreeSet<usize> = info
            .nodes
            .iter()
            .map(|n| n.index)
            .filter(|&i| i != j)
            .collect();
        async move {
            let got = receive(&client, events, &ids, nonce, j, &expected, timeout).await;
            client.close();
            (j, expected, got)
        }
    });
    let mut missing = Vec::new();
    for (j, expected, got) in futures_util::future::join_all(waits).await {
        for i in expected.difference(&got) {
            missing.push(format!("node{i} -> node{j}"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "federation check failed: no message arrived within {timeout:?} on {} (see the nodes' mobium.log)",
            missing.join(", ")
        );
    }
    Ok(())
}

async fn receive(
    client: &Client,
    mut events: Events,
    ids: &HashMap<UserId, usize>,
    nonce: u64,
    me: usize,
    expected: &BTreeSet<usize>,
    timeout: Duration,
) -> BTreeSet<usize> {
    let mut got = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while got != *expected {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await else {
            break;
        };
        let Event::Direct(d) = event else {
            continue;
        };
        if let Some(&from) = ids.get(&d.from)
            && d.ciphertext == marker(nonce, from, me)
        {
            got.insert(from);
        }
        // Acknowledge everything, including probes of earlier runs, so nothing piles up.
        let _ = client
            .request(Request::DirectAck(DirectAck { ids: vec![d.id] }))
            .await;
    }
    got
}

fn marker(nonce: u64, from: usize, to: usize) -> Vec<u8> {
    format!("testnet-probe {nonce:016x} node{from}->node{to}").into_bytes()
}

/// A random 64-bit number (nonces, not secrets); falls back to the clock if the OS has no
/// randomness to give.
pub fn rand_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    })
}
