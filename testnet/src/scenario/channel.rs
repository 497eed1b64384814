//! Scenario `channel`: one channel, two users on each of three servers, 100 messages.
//!
//! The owner (on node1, so node1 hosts the channel) creates it and hands out an invite; the
//! five others join through their own servers. Then the six take turns sending 100 messages.
//! Every user must receive all 100, each exactly once, decrypted to the text that was sent, and
//! all six must see them in the same order, the host's order, which keeps each sender's
//! messages in the order they were sent. Finally, the history as the servers store it must
//! hold only ciphertext: no stored message contains its text.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use mobium_spec::{MessageId, UserId};

use super::user::{Received, User, contains};
use super::{Report, Stop};
use crate::network::Network;

/// Messages sent in the scenario.
pub const MESSAGES: usize = 100;

/// How long a user may wait for the next message.
const NEXT: Duration = Duration::from_secs(30);

/// Runs the scenario.
pub async fn run(net: &mut Network, r: &mut Report) -> Result<(), Stop> {
    let info = net.info().clone();
    r.require(
        "the network has three servers",
        info.nodes.len() >= 3,
        format!("it has {}", info.nodes.len()),
    )?;
    let mut users = Vec::new();
    for n in &info.nodes[..3] {
        for name in ["a", "b"] {
            let u = r.quietly(
                format!("register a user on {}", n.name),
                User::connect(n, name).await,
            )?;
            users.push(u);
        }
    }
    r.check(
        "six users registered, two on each of three servers",
        true,
        "",
    );
    let channel = r.step(
        "the owner creates a channel on node1",
        users[0].create_channel().await,
    )?;
    let code = r.quietly("create an invite", users[0].invite(&channel).await)?;
    for u in &users[1..] {
        r.quietly(format!("{} joins", u.label), u.join(&code).await)?;
    }
    r.check(
        "five users of three servers join through the invite",
        true,
        "",
    );

    let mut sent = Vec::new();
    for i in 0..MESSAGES {
        let u = &users[i % users.len()];
        let text = format!("{i:03} from {}", u.label);
        r.quietly(
            format!("{} sends message {i}", u.label),
            u.send_text(&channel, &text).await,
        )?;
        sent.push((u.id().clone(), text));
    }
    r.check(format!("{MESSAGES} messages sent, taking turns"), true, "");

    let expected: HashSet<&(UserId, String)> = sent.iter().collect();
    let mut orders: Vec<Vec<MessageId>> = Vec::new();
    let mut everyone_complete = true;
    for u in &mut users {
        // In order of first arrival. A message that arrived before its Megolm key is
        // delivered again once the key is there: the decrypted copy replaces the first.
        let mut got: Vec<Received> = Vec::new();
        let mut repeats = 0usize;
        let mut deadline_hit = false;
        while got.iter().filter(|m| m.decrypted).count() < MESSAGES && !deadline_hit {
            match r.quietly("receive", u.next_message(&channel, NEXT).await)? {
                Some(m) => absorb(&mut got, &mut repeats, m),
                None => deadline_hit = true,
            }
        }
        while let Some(m) = r.quietly(
            "receive",
            u.next_message(&channel, Duration::from_millis(300)).await,
        )? {
            absorb(&mut got, &mut repeats, m);
        }
        let extra = (repeats > 0).then_some(());
        let pairs: HashSet<(UserId, String)> = got
            .iter()
            .map(|m| (m.sender.clone(), m.text.clone()))
            .collect();
        let complete = got.len() == MESSAGES
            && extra.is_none()
            && got.iter().all(|m| m.decrypted)
            && pairs.len() == MESSAGES
            && pairs.iter().all(|p| expected.contains(p));
        everyone_complete &= complete;
        r.check(
            format!(
                "{} receives all {MESSAGES} messages once and decrypts each",
                u.label
            ),
            complete,
            format!(
                "{} received, {} distinct and correct{}{}",
                got.len(),
                pairs.iter().filter(|p| expected.contains(p)).count(),
                if extra.is_some() {
                    ", plus extra ones"
                } else {
                    ""
                },
                missing(&sent, &pairs)
            ),
        );
        let descents: Vec<String> = got
            .windows(2)
            .filter(|w| w[0].id >= w[1].id)
            .map(|w| format!("{:?} before {:?}", w[0].text, w[1].text))
            .take(3)
            .collect();
        let kept = sender_order_kept(&got, &sent);
        r.check(
            format!("{} sees them in the host's order", u.label),
            descents.is_empty() && kept,
            match (descents.is_empty(), kept) {
                (true, true) => String::new(),
                (true, false) => "a sender's messages out of sending order".to_owned(),
                _ => format!("ids go down: {}", descents.join(", ")),
            },
        );
        orders.push(got.iter().map(|m| m.id).collect());
    }
    let same = orders.windows(2).all(|w| w[0] == w[1]);
    r.check(
        "all six users see the same sequence",
        same && everyone_complete,
        if same {
            ""
        } else {
            "orders differ between users"
        },
    );
    // What the servers store: Megolm ciphertexts in which no message's text can be found.
    let stored = r.quietly(
        "read the stored channel history",
        users[5].stored_ciphertexts(&channel).await,
    )?;
    let leaks = stored
        .iter()
        .filter(|ct| sent.iter().any(|(_, text)| contains(ct, text.as_bytes())))
        .count();
    r.check(
        "the servers store only ciphertext: no stored message contains its text",
        stored.len() >= MESSAGES && leaks == 0,
        format!(
            "{} stored messages, {leaks} with readable text",
            stored.len()
        ),
    );
    for u in &users {
        u.close();
    }
    Ok(())
}

/// Adds `m` to `got`: new, the decrypted copy of one that was not, or a repeat.
pub(super) fn absorb(got: &mut Vec<Received>, repeats: &mut usize, m: Received) {
    match got.iter_mut().find(|g| g.id == m.id) {
        Some(g) if !g.decrypted && m.decrypted => *g = m,
        Some(_) => *repeats += 1,
        None => got.push(m),
    }
}

/// ", missing: …" naming up to five sent messages absent from `got`, or "".
pub(super) fn missing(sent: &[(UserId, String)], got: &HashSet<(UserId, String)>) -> String {
    let gone: Vec<&str> = sent
        .iter()
        .filter(|p| !got.contains(*p))
        .map(|(_, t)| t.as_str())
        .take(5)
        .collect();
    if gone.is_empty() {
        String::new()
    } else {
        format!(", missing: {}", gone.join("; "))
    }
}

/// Whether, for every sender, the texts received keep the order in which they were sent.
pub(super) fn sender_order_kept(got: &[Received], sent: &[(UserId, String)]) -> bool {
    let position: BTreeMap<(&UserId, &str), usize> = sent
        .iter()
        .enumerate()
        .map(|(i, (u, t))| ((u, t.as_str()), i))
        .collect();
    let mut last: BTreeMap<&UserId, usize> = BTreeMap::new();
    got.iter().all(|m| {
        let Some(&p) = position.get(&(&m.sender, m.text.as_str())) else {
            return false;
        };
        let prev = last.insert(&m.sender, p);
        prev.is_none_or(|q| q < p)
    })
}
