//! Scenario `dm`: an end-to-end encrypted direct conversation between users of two servers.
//!
//! alice on node1 and bob on node2 each register; alice writes to bob, bob answers, and they
//! exchange ten more messages alternately. Every message must arrive once, from the right
//! sender, with the text that was sent, in the order it was sent; and what the servers relay
//! must be ciphertext in which the text cannot be found.

use std::time::Duration;

use super::user::{User, contains};
use super::{Report, Stop};
use crate::network::Network;

/// How long one message may take to cross servers.
const DELIVERY: Duration = Duration::from_secs(30);

/// Runs the scenario.
pub async fn run(net: &mut Network, r: &mut Report) -> Result<(), Stop> {
    let info = net.info().clone();
    let (n1, n2) = (&info.nodes[0], &info.nodes[1]);
    let mut alice = r.step("alice registers on node1", User::connect(n1, "alice").await)?;
    let mut bob = r.step("bob registers on node2", User::connect(n2, "bob").await)?;

    let hello = format!("hello {}, this is {}", bob.id(), alice.id());
    r.quietly(
        "alice sends a DM to bob",
        alice.send_dm(bob.id(), &hello).await,
    )?;
    let got = r.quietly("bob waits", bob.next_dm(DELIVERY).await)?;
    r.require(
        "bob receives alice's DM across servers, intact",
        got.as_ref() == Some(&(alice.id().clone(), hello.clone())),
        describe(&got, &(alice.id().clone(), hello.clone())),
    )?;

    let reply = "hi alice, bob here".to_owned();
    r.quietly("bob replies", bob.send_dm(alice.id(), &reply).await)?;
    let got = r.quietly("alice waits", alice.next_dm(DELIVERY).await)?;
    r.require(
        "alice receives bob's reply",
        got.as_ref() == Some(&(bob.id().clone(), reply.clone())),
        describe(&got, &(bob.id().clone(), reply)),
    )?;

    let mut to_bob = Vec::new();
    let mut to_alice = Vec::new();
    for i in 0..10 {
        let text = format!("message {i:02}");
        if i % 2 == 0 {
            r.quietly("alice sends", alice.send_dm(bob.id(), &text).await)?;
            to_bob.push(text);
        } else {
            r.quietly("bob sends", bob.send_dm(alice.id(), &text).await)?;
            to_alice.push(text);
        }
    }
    let (alice_id, bob_id) = (alice.id().clone(), bob.id().clone());
    for (who, user, sender, expected) in [
        ("bob", &mut bob, alice_id, to_bob),
        ("alice", &mut alice, bob_id, to_alice),
    ] {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            match r.quietly("receive", user.next_dm(DELIVERY).await)? {
                Some((from, text)) if from == sender => got.push(text),
                Some((from, text)) => got.push(format!("<from {from}: {text}>")),
                None => break,
            }
        }
        let extra = r.quietly("receive", user.next_dm(Duration::from_millis(500)).await)?;
        r.check(
            format!(
                "{who} receives the next {} messages once each, in order",
                expected.len()
            ),
            got == expected && extra.is_none(),
            format!(
                "got {} of {}{}",
                got.len(),
                expected.len(),
                if extra.is_some() {
                    ", then a duplicate"
                } else {
                    ""
                }
            ),
        );
    }
    // What the servers relay: an Olm ciphertext in which the text cannot be found.
    let secret = "the eagle lands at dawn";
    let ct = r.quietly("encrypt a DM", alice.dm_ciphertext(bob.id(), secret).await)?;
    r.check(
        "what the servers relay is Olm ciphertext, not the text",
        !contains(&ct, secret.as_bytes()) && ct != secret.as_bytes(),
        format!("{} bytes for a {}-byte text", ct.len(), secret.len()),
    );
    alice.close();
    bob.close();
    Ok(())
}

/// Evidence for a failed delivery check ("" when `got` is what was expected).
fn describe(
    got: &Option<(mobium_spec::UserId, String)>,
    expected: &(mobium_spec::UserId, String),
) -> String {
    match got {
        Some(g) if g == expected => String::new(),
        Some((from, text)) => format!("got {text:?} from {from}"),
        None => format!("nothing within {DELIVERY:?}"),
    }
}
