//! Scenario `managed`: users spread over the managed peer's instances and the community nodes
//! (`testnet up --managed N`). The cluster must be one server to everyone: one server name for
//! users of every instance; DMs between users of two instances and between a community node
//! and an instance; a channel hosted by the cluster with members on two instances and on a
//! community node, in which everyone receives every message once, decrypted, in one order.

use std::collections::HashSet;
use std::time::Duration;

use mobium_spec::{MessageId, UserId};

use super::channel::{absorb, missing, sender_order_kept};
use super::user::{Received, User};
use super::{Report, Stop};
use crate::network::Network;

/// Messages sent to the channel, taking turns.
pub const MESSAGES: usize = 40;

const NEXT: Duration = Duration::from_secs(30);

/// Runs the scenario.
pub async fn run(net: &mut Network, r: &mut Report) -> Result<(), Stop> {
    let info = net.info().clone();
    let (cloud, community) = (info.managed(), info.community());
    r.require(
        "the network has a managed peer of at least two instances and a community node",
        cloud.len() >= 2 && !community.is_empty(),
        format!(
            "{} instances, {} community nodes (testnet up --managed 2)",
            cloud.len(),
            community.len()
        ),
    )?;
    let owner = r.quietly("register on cloud1", User::connect(cloud[0], "owner").await)?;
    let mut mate = r.quietly("register on cloud2", User::connect(cloud[1], "mate").await)?;
    let mut guest = r.quietly(
        format!("register on {}", community[0].short_name()),
        User::connect(community[0], "guest").await,
    )?;
    r.check(
        "users of two instances belong to one server",
        owner.id().server == mate.id().server,
        format!("{} and {}", owner.id().server, mate.id().server),
    );

    // DMs: instance to instance, community node to an instance, and back.
    for (from, text) in [
        (&owner, "cloud1 to cloud2"),
        (&guest, "community to cloud2"),
    ] {
        let sender = from.id().clone();
        r.quietly("send a DM", from.send_dm(mate.id(), text).await)?;
        let got = r.quietly("receive a DM", mate.next_dm(NEXT).await)?;
        r.check(
            format!("a DM {text} arrives intact"),
            got.as_ref() == Some(&(sender, text.to_owned())),
            format!("{got:?}"),
        );
    }
    r.quietly(
        "send a DM",
        mate.send_dm(guest.id(), "cloud2 to community").await,
    )?;
    let got = r.quietly("receive a DM", guest.next_dm(NEXT).await)?;
    r.check(
        "a DM cloud2 to community arrives intact",
        got.as_ref() == Some(&(mate.id().clone(), "cloud2 to community".to_owned())),
        format!("{got:?}"),
    );

    // One channel hosted by the cluster, members on two instances and a community node.
    let channel = r.step(
        "the owner creates a channel on cloud1",
        owner.create_channel().await,
    )?;
    let code = r.quietly("create an invite", owner.invite(&channel).await)?;
    r.quietly("mate joins", mate.join(&code).await)?;
    r.quietly("guest joins", guest.join(&code).await)?;
    let mut users = vec![owner, mate, guest];
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
    let expected: HashSet<&(UserId, String)> = sent.iter().collect();
    let mut orders: Vec<Vec<MessageId>> = Vec::new();
    for u in &mut users {
        let mut got: Vec<Received> = Vec::new();
        let mut repeats = 0usize;
        while got.iter().filter(|m| m.decrypted).count() < MESSAGES {
            match r.quietly("receive", u.next_message(&channel, NEXT).await)? {
                Some(m) => absorb(&mut got, &mut repeats, m),
                None => break,
            }
        }
        while let Some(m) = r.quietly(
            "receive",
            u.next_message(&channel, Duration::from_millis(300)).await,
        )? {
            absorb(&mut got, &mut repeats, m);
        }
        let pairs: HashSet<(UserId, String)> = got
            .iter()
            .map(|m| (m.sender.clone(), m.text.clone()))
            .collect();
        let complete = got.len() == MESSAGES
            && repeats == 0
            && got.iter().all(|m| m.decrypted)
            && pairs.iter().all(|p| expected.contains(p))
            && pairs.len() == MESSAGES;
        r.check(
            format!(
                "{} receives all {MESSAGES} messages once and decrypts each",
                u.label
            ),
            complete,
            format!(
                "{} received, {repeats} repeats{}",
                got.len(),
                missing(&sent, &pairs)
            ),
        );
        r.check(
            format!("{} sees each sender's messages in sending order", u.label),
            sender_order_kept(&got, &sent),
            "",
        );
        orders.push(got.iter().map(|m| m.id).collect());
    }
    r.check(
        "users on two instances and a community node see one sequence",
        orders.windows(2).all(|w| w[0] == w[1]),
        "",
    );
    for u in &users {
        u.close();
    }
    Ok(())
}
