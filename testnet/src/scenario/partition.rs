//! Scenario `partition`: messages sent while two servers cannot reach each other arrive once
//! the link is restored, and the rest of the network carries on meanwhile.
//!
//! alice (node1), bob (node2) and carol (node3). After a first exchange, the link between
//! node1 and node2 is cut at the relays ([`crate::relay`]). alice writes to bob and bob to
//! alice: both servers accept the messages, none crosses, while alice and carol (node1 and
//! node3) still talk. After the heal every message arrives once, in order, in both directions.

use std::time::Duration;

use super::user::User;
use super::{Report, Stop};
use crate::network::Network;

/// How long one message may take on a healthy link.
const DELIVERY: Duration = Duration::from_secs(30);

/// How long to watch for a message leaking through the partition.
const QUIET: Duration = Duration::from_secs(5);

/// How long delivery may take after the heal: the outbox retries with a backoff of at most a
/// minute, plus the QUIC handshake.
const AFTER_HEAL: Duration = Duration::from_secs(120);

/// How long the link stays cut: long enough for the outboxes' backoff to grow well past the
/// probe interval (8–16 s waits by the end), so a prompt resume shows the probes work.
const CUT_FOR: Duration = Duration::from_secs(20);

/// How soon after the heal the first message must arrive: the outbox probes a peer it is
/// backing off from every 2 s, and retries at once when one is answered.
const RESUME_WITHIN: Duration = Duration::from_secs(5);

/// Runs the scenario.
pub async fn run(net: &mut Network, r: &mut Report) -> Result<(), Stop> {
    let info = net.info().clone();
    r.require(
        "the network has three servers",
        info.nodes.len() >= 3,
        format!("it has {}", info.nodes.len()),
    )?;
    let mut alice = r.quietly(
        "alice registers on node1",
        User::connect(&info.nodes[0], "alice").await,
    )?;
    let mut bob = r.quietly(
        "bob registers on node2",
        User::connect(&info.nodes[1], "bob").await,
    )?;
    let mut carol = r.quietly(
        "carol registers on node3",
        User::connect(&info.nodes[2], "carol").await,
    )?;

    r.quietly(
        "alice writes to bob",
        alice.send_dm(bob.id(), "before").await,
    )?;
    let got = r.quietly("bob waits", bob.next_dm(DELIVERY).await)?;
    r.require(
        "node1 -> node2 works before the partition",
        got.as_ref().is_some_and(|(_, t)| t == "before"),
        "",
    )?;

    let cut = r.step(
        "partition node1 from node2",
        net.partition("node1", "node2").await,
    )?;
    let cut_at = tokio::time::Instant::now();
    r.check(
        "the daemon reports the link cut",
        cut.partitions.contains(&(1, 2)),
        format!("{:?}", cut.partitions),
    );

    let to_bob: Vec<String> = (0..10).map(|i| format!("during {i:02}")).collect();
    let to_alice: Vec<String> = (0..5).map(|i| format!("reply {i:02}")).collect();
    for t in &to_bob {
        r.quietly(
            "alice sends during the partition",
            alice.send_dm(bob.id(), t).await,
        )?;
    }
    for t in &to_alice {
        r.quietly(
            "bob sends during the partition",
            bob.send_dm(alice.id(), t).await,
        )?;
    }
    r.check(
        "both servers accept messages for the other side during the partition",
        true,
        "",
    );

    r.quietly(
        "alice writes to carol",
        alice.send_dm(carol.id(), "still here").await,
    )?;
    let got = r.quietly("carol waits", carol.next_dm(DELIVERY).await)?;
    r.check(
        "node1 -> node3 still works during the partition",
        got.as_ref().is_some_and(|(_, t)| t == "still here"),
        "",
    );
    let leaked = r.quietly("bob watches", bob.next_dm(QUIET).await)?;
    r.check(
        format!(
            "nothing crosses the partition ({} s watched)",
            QUIET.as_secs()
        ),
        leaked.is_none(),
        leaked
            .map(|(_, t)| format!("{t:?} arrived"))
            .unwrap_or_default(),
    );

    tokio::time::sleep(CUT_FOR.saturating_sub(cut_at.elapsed())).await;
    let healed = r.step(
        format!("heal node1 <-> node2 after {} s", CUT_FOR.as_secs()),
        net.heal("node1", "node2").await,
    )?;
    let healed_at = tokio::time::Instant::now();
    let dropped: u64 = healed
        .relays
        .iter()
        .filter(|x| x.node <= 2)
        .map(|x| x.dropped)
        .sum();
    r.check(
        "the relays dropped traffic between node1 and node2 while cut",
        dropped > 0,
        format!("{dropped} datagrams dropped"),
    );

    for (who, user, expected) in [("bob", &mut bob, &to_bob), ("alice", &mut alice, &to_alice)] {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            match r.quietly("receive", user.next_dm(AFTER_HEAL).await)? {
                Some((_, t)) => got.push(t),
                None => break,
            }
            if got.len() == 1 {
                let resumed = healed_at.elapsed();
                r.check(
                    format!(
                        "delivery to {who} resumes within {} s of the heal",
                        RESUME_WITHIN.as_secs()
                    ),
                    resumed <= RESUME_WITHIN,
                    format!("first message after {} ms", resumed.as_millis()),
                );
            }
        }
        let extra = r.quietly("receive", user.next_dm(Duration::from_secs(1)).await)?;
        r.check(
            format!(
                "{who} receives all {} messages after the heal, once each, in order",
                expected.len()
            ),
            got == *expected && extra.is_none(),
            format!(
                "{} of {}{}",
                got.len(),
                expected.len(),
                if extra.is_some() {
                    ", plus a duplicate"
                } else {
                    ""
                }
            ),
        );
    }
    for u in [&alice, &bob, &carol] {
        u.close();
    }
    Ok(())
}
