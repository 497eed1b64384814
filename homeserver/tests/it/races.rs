//! Races the host must order: a member's sends racing their kick are ordered either before the
//! kick (and delivered) or after it (and refused), never after it and delivered.

use std::time::Duration;

use mobium_client_api::sdk::{Client, ConnectOptions};
use mobium_spec::Keypair;
use mobium_spec::client::*;

use crate::both_backends;
use crate::support::*;

async fn send_racing_a_kick_is_never_ordered_after_it(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (owner, mut oe, _) = client(&server).await;
    let ch = create_channel(&owner).await;
    let bob_key = Keypair::generate();
    // Several connections, so bob's sends really run concurrently on the server.
    let mut bobs = Vec::new();
    for _ in 0..4 {
        let (c, _e) = Client::connect(&server.ws_url(), &bob_key, ConnectOptions::default())
            .await
            .unwrap();
        bobs.push(c);
    }
    let bob_id = bobs[0].user_id().clone();
    for round in 0..5u8 {
        join_with_new_invite(&owner, &bobs[0], &ch).await;
        let mut sends = Vec::new();
        for (n, b) in bobs.iter().enumerate() {
            for i in 0..15u8 {
                let (b, ch) = (b.clone(), ch.clone());
                sends.push(tokio::spawn(async move {
                    b.request(Request::MessageSend(MessageSend {
                        channel: ch,
                        ciphertext: vec![round, n as u8, i],
                        reply_to: None,
                        txn: None,
                    }))
                    .await
                }));
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        owner
            .request(Request::ChannelKick(MemberRef {
                channel: ch.clone(),
                user: bob_id.clone(),
            }))
            .await
            .unwrap();
        let mut accepted = 0;
        for s in sends {
            if matches!(s.await.unwrap(), Ok(Response::MessageSent(_))) {
                accepted += 1;
            }
        }
        // In the owner's stream (the host's order): bob's messages, then the kick, then none.
        let mut before_kick = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), oe.recv()).await {
                Ok(Some(Event::Message(m))) if m.sender == bob_id => before_kick += 1,
                Ok(Some(Event::MemberLeft(l))) if l.user == bob_id => break,
                Ok(Some(_)) => {}
                other => panic!("round {round}: no kick event ({other:?})"),
            }
        }
        no_event(
            &mut oe,
            Duration::from_millis(300),
            |e| matches!(e, Event::Message(m) if m.sender == bob_id),
        )
        .await;
        assert_eq!(
            before_kick, accepted,
            "round {round}: every accepted send is ordered before the kick, no other"
        );
    }
    server.stop().await;
}

both_backends!(send_racing_a_kick_is_never_ordered_after_it);
