//! Scenario `outage`: servers killed mid-conversation and restarted lose nothing and duplicate
//! nothing.
//!
//! alice (node1) talks to bob (node2) by DM and in a channel hosted by node1.
//!
//! 1. A first exchange arrives normally.
//! 2. node2, the recipient's server, is killed with SIGKILL. alice goes on writing: node1
//!    accepts every message (they wait in its outbox). node2 is restarted with the same data,
//!    ports and key; bob reconnects; everything sent meanwhile arrives.
//! 3. alice sends a burst and node1, the sender's server, is killed with SIGKILL right after
//!    the last message was acknowledged to her, then restarted. What it acknowledged was in
//!    its database, so it is delivered after the restart.
//!
//! At the end bob must have every DM and every channel message exactly once, in sending order.

use std::time::Duration;

use mobium_spec::{ChannelId, MessageId};

use super::user::User;
use super::{Report, Stop};
use crate::network::Network;

/// How long to wait for the next message, covering the outbox's retry backoff (at most 60 s).
const NEXT: Duration = Duration::from_secs(90);

/// How long the live stream may be quiet before the rest is read from history.
const QUIET_LIVE: Duration = Duration::from_secs(3);

/// How soon after node2's restart everything queued for bob must have arrived: well under the
/// federation request timeout (10 s) that a stale pooled connection used to cost.
const CATCH_UP: Duration = Duration::from_secs(8);

/// Runs the scenario.
pub async fn run(net: &mut Network, r: &mut Report) -> Result<(), Stop> {
    let info = net.info().clone();
    let (n1, n2) = (info.nodes[0].clone(), info.nodes[1].clone());
    let alice = r.quietly(
        "alice registers on node1",
        User::connect(&n1, "alice").await,
    )?;
    let mut bob = r.quietly("bob registers on node2", User::connect(&n2, "bob").await)?;
    let channel = r.quietly(
        "alice creates a channel on node1",
        alice.create_channel().await,
    )?;
    let code = r.quietly("invite", alice.invite(&channel).await)?;
    r.quietly("bob joins from node2", bob.join(&code).await)?;

    let mut sent = Sent::default();
    let bob_id = bob.id().clone();
    sent.send(&alice, &bob_id, &channel, 10, r).await?;
    let early = receive(&mut bob, &channel, 10, 10).await;
    r.require(
        "the conversation is under way (10 DMs, 10 posts arrived)",
        early.is_ok(),
        err_text(&early),
    )?;

    r.step(
        "node2 (bob's server) is killed with SIGKILL",
        net.kill("node2").await,
    )?;
    sent.send(&alice, &bob_id, &channel, 20, r).await?;
    r.check(
        "node1 accepts 20 DMs and 20 posts for bob while node2 is down",
        true,
        "",
    );
    r.step(
        "node2 restarts with the same data, ports and key",
        net.restart("node2").await,
    )?;
    r.step("bob reconnects to node2", bob.reconnect(&n2).await)?;
    // From bob's reconnect, not node2's restart: how soon his client is back is the SDK's
    // reconnect backoff, not federation.
    let reconnected_at = tokio::time::Instant::now();
    sent.send(&alice, &bob_id, &channel, 5, r).await?;
    let (got_dms, got_posts) = match receive(&mut bob, &channel, 25, 25).await {
        Ok(v) => v,
        Err(e) => (e.clone(), Vec::new()),
    };
    // node1's pooled QUIC connection to the killed node2 looks open until it hears back; it
    // must be found dead and replaced in about a second, not after a 10 s request timeout.
    let caught_up = reconnected_at.elapsed();
    r.check(
        format!(
            "bob has everything within {} s of reconnecting to the restarted node2",
            CATCH_UP.as_secs()
        ),
        caught_up <= CATCH_UP,
        format!("{} ms after reconnecting", caught_up.as_millis()),
    );
    let tail_dms = &sent.dms[10..];
    let tail_posts = &sent.posts[10..];
    r.check(
        "every DM sent around node2's outage arrives once, in order",
        got_dms == tail_dms,
        format!("{} of {}", got_dms.len(), tail_dms.len()),
    );
    r.check(
        "every channel post sent around node2's outage arrives once, in order",
        got_posts == tail_posts,
        format!("{} of {}", got_posts.len(), tail_posts.len()),
    );

    let before = sent.dms.len();
    sent.send(&alice, &bob_id, &channel, 20, r).await?;
    r.step(
        "node1 (alice's server) is killed right after acknowledging 20 more",
        net.kill("node1").await,
    )?;
    r.step("node1 restarts", net.restart("node1").await)?;
    let got = receive(&mut bob, &channel, 20, 20).await;
    let (got_dms, got_posts) = got.clone().unwrap_or_default();
    r.check(
        "every DM node1 acknowledged before dying arrives once, in order",
        got_dms == sent.dms[before..],
        format!("{} of 20", got_dms.len()),
    );
    r.check(
        "every post node1 acknowledged before dying arrives once, in order",
        got_posts == sent.posts[before..],
        format!("{} of 20{}", got_posts.len(), err_suffix(&got)),
    );
    let dup_dm = r.quietly("receive", bob.next_dm(Duration::from_secs(2)).await)?;
    let dup_post = r
        .quietly(
            "receive",
            bob.next_message(&channel, Duration::from_millis(500)).await,
        )?
        .filter(|m| m.decrypted);
    r.check(
        "nothing arrives twice",
        dup_dm.is_none() && dup_post.is_none(),
        match (&dup_dm, &dup_post) {
            (Some((_, t)), _) => format!("an extra DM {t:?}"),
            (_, Some(m)) => format!("an extra post {:?}", m.text),
            _ => String::new(),
        },
    );
    alice.close();
    bob.close();
    Ok(())
}

/// What alice sent, in order.
#[derive(Default)]
struct Sent {
    dms: Vec<String>,
    posts: Vec<String>,
}

impl Sent {
    /// alice sends `count` DMs to bob and as many posts to the channel, alternating.
    async fn send(
        &mut self,
        alice: &User,
        bob: &mobium_spec::UserId,
        channel: &ChannelId,
        count: usize,
        r: &mut Report,
    ) -> Result<(), Stop> {
        for _ in 0..count {
            let n = self.dms.len();
            let dm = format!("dm {n:03}");
            let post = format!("post {n:03}");
            r.quietly("alice sends a DM", alice.send_dm(bob, &dm).await)?;
            r.quietly("alice posts", alice.send_text(channel, &post).await)?;
            self.dms.push(dm);
            self.posts.push(post);
        }
        Ok(())
    }
}

/// Receives `dms` DMs and `posts` channel messages (in any interleaving); on a timeout, the
/// error carries what had arrived (DMs).
async fn receive(
    bob: &mut User,
    channel: &ChannelId,
    dms: usize,
    posts: usize,
) -> Result<(Vec<String>, Vec<String>), Vec<String>> {
    let mut got_dms = Vec::new();
    while got_dms.len() < dms {
        match bob.next_dm(NEXT).await {
            Ok(Some((_, t))) => got_dms.push(t),
            _ => return Err(got_dms),
        }
    }
    // In order of first arrival; a post that arrived before its Megolm key comes again
    // decrypted, and that copy takes its place. Posts ordered while bob's connection was down
    // are not pushed to him: once the live stream is quiet, he reads them from history, as a
    // client does after a reconnect.
    let mut got_posts: Vec<(MessageId, Option<String>)> = Vec::new();
    while got_posts.iter().filter(|(_, t)| t.is_some()).count() < posts {
        match bob.next_message(channel, QUIET_LIVE).await {
            Ok(Some(m)) => {
                let text = m.decrypted.then_some(m.text);
                match got_posts.iter_mut().find(|(id, _)| *id == m.id) {
                    Some(slot) if slot.1.is_none() => slot.1 = text,
                    Some(_) => got_posts.push((m.id, text.map(|t| format!("again: {t}")))),
                    None => got_posts.push((m.id, text)),
                }
            }
            _ => break,
        }
    }
    if got_posts.iter().filter(|(_, t)| t.is_some()).count() < posts {
        let deadline = tokio::time::Instant::now() + NEXT;
        loop {
            let recent = bob
                .recent_messages(channel, posts)
                .await
                .unwrap_or_default();
            let all_decrypted = recent.len() == posts && recent.iter().all(|m| m.decrypted);
            if all_decrypted || tokio::time::Instant::now() >= deadline {
                got_posts = recent
                    .into_iter()
                    .map(|m| (m.id, m.decrypted.then_some(m.text)))
                    .collect();
                break;
            }
            // Keys for what history holds are requested from their senders; wait for them.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let got_posts = got_posts
        .into_iter()
        .map(|(_, t)| t.unwrap_or_else(|| "<undecryptable>".to_owned()))
        .collect();
    Ok((got_dms, got_posts))
}

fn err_text(r: &Result<(Vec<String>, Vec<String>), Vec<String>>) -> String {
    match r {
        Ok(_) => String::new(),
        Err(got) => format!("only {} DMs arrived", got.len()),
    }
}

fn err_suffix(r: &Result<(Vec<String>, Vec<String>), Vec<String>>) -> String {
    match r {
        Ok(_) => String::new(),
        Err(got) => format!("; DMs stopped after {}", got.len()),
    }
}
