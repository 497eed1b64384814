//! A connection's requests are pipelined (spec `client/transport.md` §Requests): a client that
//! sends many `message_send`s without waiting gets every answer, the messages are applied in
//! the order the frames arrived, and the channel's other members receive them in that order.

use std::collections::HashMap;

use mobium_spec::MessageId;
use mobium_spec::client::*;

use crate::both_backends;
use crate::support::*;

const SENDS: u32 = 300;

async fn pipelined_sends_are_applied_and_delivered_in_order(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (alice, _ae, alice_key) = client(&server).await;
    let (bob, mut be, _) = client(&server).await;
    let ch = create_channel(&alice).await;
    join_with_new_invite(&alice, &bob, &ch).await;

    // Every frame is written before any answer is read.
    let mut ws = raw(&server).await;
    raw_auth(&mut ws, &alice_key).await;
    for n in 0..SENDS {
        raw_send(
            &mut ws,
            &ClientFrame {
                id: u64::from(n) + 10,
                body: Request::MessageSend(MessageSend {
                    channel: ch.clone(),
                    ciphertext: n.to_be_bytes().to_vec(),
                    reply_to: None,
                    txn: None,
                }),
            },
        )
        .await;
    }
    let mut answered: HashMap<u64, MessageId> = HashMap::new();
    while answered.len() < SENDS as usize {
        match raw_next(&mut ws).await.expect("connection open") {
            ServerFrame::Response {
                id,
                body: Response::MessageSent(s),
            } => {
                assert!(answered.insert(id, s.id).is_none(), "answered twice: {id}");
            }
            ServerFrame::Response { .. } | ServerFrame::Error { .. } => {
                panic!("unexpected answer to a send")
            }
            ServerFrame::Event { .. } => {}
            _ => {}
        }
    }
    // Applied in the order received: the host's ids rise with the frames' order.
    let ids: Vec<MessageId> = (0..SENDS).map(|n| answered[&(u64::from(n) + 10)]).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids out of frame order"
    );

    // Bob receives them all, in that order.
    let mut seen = Vec::new();
    while seen.len() < SENDS as usize {
        let n = next_event(&mut be, |e| match e {
            Event::Message(m) if m.channel == ch => {
                Some(u32::from_be_bytes(m.ciphertext[..4].try_into().unwrap()))
            }
            _ => None,
        })
        .await;
        seen.push(n);
    }
    assert_eq!(seen, (0..SENDS).collect::<Vec<_>>());
    server.stop().await;
}

both_backends!(pipelined_sends_are_applied_and_delivered_in_order);
