//! End-to-end encryption benchmarks (issue 4 figures), run with
//! `cargo bench -p mobium-homeserver --bench e2ee`.
//!
//! Measures, with the SDK's own code paths (signature checks and envelopes included):
//! - Olm session set-up: verify a claimed bundle, `create_outbound_session`, encrypt the first
//!   (pre-key) message, and on the other side create the inbound session from it and check the
//!   sender's signed identity key;
//! - Megolm encrypt and decrypt per message (200-byte plaintexts);
//! - encrypted send→receive latency p50/p99 through one in-process server (SQLite in a
//!   temporary directory): a channel message (members check + Megolm + `message_send` → the
//!   recipient's decrypted event) and a DM (Olm + `direct_send` → decrypted `direct`), with the
//!   client state in memory; and the channel case again with both clients saving their
//!   encrypted profiles to disk (write, `fsync`, `rename` on every change, as the CLI does).
//!
//! Knobs: `BENCH_OLM` (default 300), `BENCH_MEGOLM` (default 20000), `BENCH_LATENCY`
//! (default 500).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mobium_client_api::sdk::ConnectOptions;
use mobium_client_api::sdk::e2ee::payload::{TEXT, ToDevicePayload};
use mobium_client_api::sdk::e2ee::{ClientEvent, Content, CryptoState, Messenger, MessengerEvents};
use mobium_client_api::sdk::profile::{KdfParams, Profile};
use mobium_spec::client::{KeyBundle, KeysCount};
use mobium_spec::{ChannelId, MessageId, UserId};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn user_id(state: &CryptoState) -> UserId {
    UserId::new(state.public_key(), "bench.test".parse().unwrap())
}

/// Olm session set-up, both sides, per session.
fn olm_setup(n: usize) -> Duration {
    let mut alice = CryptoState::generate().unwrap();
    let mut bob = CryptoState::generate().unwrap();
    let (alice_id, bob_id) = (user_id(&alice), user_id(&bob));
    let identity = bob.account.identity_prekey();
    let mut total = Duration::ZERO;
    for _ in 0..n {
        // Bob publishes one one-time key (not timed: that happens ahead, in bulk).
        let upload = bob
            .account
            .prepare_upload(
                KeysCount {
                    one_time: 24,
                    fallback: true,
                },
                false,
                false,
            )
            .unwrap();
        bob.account.mark_published();
        let bundle = KeyBundle {
            user: bob_id.clone(),
            identity_key: identity.clone(),
            signed_prekey: None,
            one_time_key: upload.one_time_keys.into_iter().next(),
            fallback_key: None,
        };
        let mut payload = ToDevicePayload::new(TEXT, alice_id.clone(), bob_id.clone());
        payload.body = Some("x".repeat(200));
        payload.sender_identity = Some(alice.account.identity_prekey());
        // A fresh pair each round: forget earlier sessions.
        alice.olm = Default::default();
        bob.olm = Default::default();

        let t = Instant::now();
        alice
            .olm
            .create_outbound(&alice.account, &bob_id, &bundle, 0)
            .unwrap();
        let ct = alice.olm.encrypt(&bob_id, &payload).unwrap();
        let CryptoState { account, olm, .. } = &mut bob;
        let got = olm.decrypt(account, &bob_id, &alice_id, &ct, 0).unwrap();
        total += t.elapsed();
        assert_eq!(got.payload.body.as_deref().map(str::len), Some(200));
    }
    total / u32::try_from(n).unwrap()
}

/// Megolm encrypt and decrypt per 200-byte message.
fn megolm(n: usize) -> (Duration, Duration) {
    let mut alice = CryptoState::generate().unwrap();
    let mut bob = CryptoState::generate().unwrap();
    let (alice_id, bob_id) = (user_id(&alice), user_id(&bob));
    let channel: ChannelId = "#4194304001@bench.test".parse().unwrap();
    let new = alice
        .groups
        .rotate(&channel, &alice_id, BTreeSet::from([bob_id]), 0);
    bob.groups
        .add_inbound(&channel, &alice_id, &new.session_id, &new.session_key)
        .unwrap();
    let content = Content::text("y".repeat(200));

    let t = Instant::now();
    let cts: Vec<Vec<u8>> = (0..n)
        .map(|_| alice.groups.encrypt(&channel, &content).unwrap())
        .collect();
    let enc = t.elapsed() / u32::try_from(n).unwrap();

    let t = Instant::now();
    for (i, ct) in cts.iter().enumerate() {
        let id = MessageId::new(4_194_304_100 + i as u64).unwrap();
        let c = bob
            .groups
            .decrypt(&channel, &alice_id, id, ct)
            .ok()
            .unwrap();
        debug_assert_eq!(c.body.len(), 200);
    }
    let dec = t.elapsed() / u32::try_from(n).unwrap();
    (enc, dec)
}

async fn messenger(url: &str, dir: Option<&std::path::Path>) -> (Messenger, MessengerEvents) {
    let state = CryptoState::generate().unwrap();
    let profile = dir.map(|d| {
        let bytes = state.to_bytes().unwrap();
        Profile::create(d, Some("bench"), KdfParams::default(), &bytes).unwrap()
    });
    Messenger::start(state, profile, url, ConnectOptions::default())
        .await
        .unwrap()
}

async fn wait_for(inbox: &mut MessengerEvents, mut pred: impl FnMut(&ClientEvent) -> bool) {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await
            .expect("event in time")
            .expect("stream open");
        if pred(&e) {
            return;
        }
    }
}

/// Send→receive latencies (channel, DM, channel with profiles on disk), sorted.
async fn latency(n: usize) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = mobium_homeserver::config::load(None, Vec::<(String, String)>::new()).unwrap();
    config.port = 0;
    config.data_dir = dir.path().join("data");
    config.log = "warn".into();
    config.rate_limit_per_sec = 1_000_000;
    config.rate_limit_burst = 1_000_000;
    let running = mobium_homeserver::server::start(config).await.unwrap();
    let url = running.ws_url();

    let (alice, mut alice_in) = messenger(&url, None).await;
    let (bob, mut bob_in) = messenger(&url, None).await;
    let chan = channel_latency(&alice, &mut alice_in, &bob, &mut bob_in, n).await;
    let mut dm = Vec::with_capacity(n);
    for i in 0..n {
        let text = format!("{i:0>200}");
        let t = Instant::now();
        alice.send_dm(bob.user_id(), &text).await.unwrap();
        wait_for(
            &mut bob_in,
            |e| matches!(e, ClientEvent::Direct(d) if d.decryption.text() == Some(text.as_str())),
        )
        .await;
        dm.push(t.elapsed());
    }
    dm.sort();
    alice.close();
    bob.close();

    let (carol, mut carol_in) = messenger(&url, Some(&dir.path().join("carol"))).await;
    let (dave, mut dave_in) = messenger(&url, Some(&dir.path().join("dave"))).await;
    let on_disk = channel_latency(&carol, &mut carol_in, &dave, &mut dave_in, n).await;
    carol.close();
    dave.close();
    running.shutdown().await.unwrap();
    (chan, dm, on_disk)
}

/// `from` creates a channel and `to` joins it; then `n` messages, each timed from before
/// `send_text` until `to` reports it decrypted. Sorted.
async fn channel_latency(
    from: &Messenger,
    from_in: &mut MessengerEvents,
    to: &Messenger,
    to_in: &mut MessengerEvents,
    n: usize,
) -> Vec<Duration> {
    let channel = from.create_channel().await.unwrap();
    let invite = from
        .client()
        .invite_create(&channel, None, None)
        .await
        .unwrap();
    to.join(&invite.code).await.unwrap();
    wait_for(from_in, |e| matches!(e, ClientEvent::MemberJoined { .. })).await;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let text = format!("{i:0>200}");
        let t = Instant::now();
        from.send_text(&channel, &text, None).await.unwrap();
        wait_for(
            to_in,
            |e| matches!(e, ClientEvent::Message(m) if m.decryption.text() == Some(text.as_str())),
        )
        .await;
        out.push(t.elapsed());
    }
    out.sort();
    out
}

fn main() {
    let n_olm = knob("BENCH_OLM", 300);
    let n_megolm = knob("BENCH_MEGOLM", 20_000);
    let n_lat = knob("BENCH_LATENCY", 500);
    let olm = olm_setup(n_olm);
    let (enc, dec) = megolm(n_megolm);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (chan, dm, on_disk) = runtime.block_on(latency(n_lat));

    println!();
    println!("| measurement | n | result |");
    println!("|---|---|---|");
    println!(
        "| Olm session set-up (both sides, first pre-key message) | {n_olm} | {olm:.2?} per session |"
    );
    println!("| Megolm encrypt, 200-byte plaintext | {n_megolm} | {enc:.2?} per message |");
    println!("| Megolm decrypt, 200-byte plaintext | {n_megolm} | {dec:.2?} per message |");
    println!(
        "| channel send→receive, encrypted, one server | {n_lat} | p50 {:.2?}, p99 {:.2?} |",
        percentile(&chan, 0.50),
        percentile(&chan, 0.99)
    );
    println!(
        "| DM send→receive, encrypted, one server | {n_lat} | p50 {:.2?}, p99 {:.2?} |",
        percentile(&dm, 0.50),
        percentile(&dm, 0.99)
    );
    println!(
        "| channel send→receive, encrypted profiles saved on both sides | {n_lat} | p50 {:.2?}, p99 {:.2?} |",
        percentile(&on_disk, 0.50),
        percentile(&on_disk, 0.99)
    );
}
