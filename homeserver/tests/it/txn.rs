//! Client transaction ids (spec `client/transport.md` §Retrying a send): a send repeated with
//! the same `txn` — because its answer was lost — gets the first answer and is stored once, for
//! DMs and channel messages, on one server and across two.

use std::time::Duration;

use mobium_spec::client::*;
use mobium_spec::{ChannelId, ErrorCode, UserId};

use crate::both_backends;
use crate::federation::{direct, specs, start_node, user};
use crate::support::*;

fn dm(to: &UserId, body: &[u8], txn: &str) -> Request {
    Request::DirectSend(DirectSend {
        to: to.clone(),
        ciphertext: body.to_vec(),
        txn: Some(txn.to_owned()),
    })
}

fn post(channel: &ChannelId, body: &[u8], txn: &str) -> Request {
    Request::MessageSend(MessageSend {
        channel: channel.clone(),
        ciphertext: body.to_vec(),
        reply_to: None,
        txn: Some(txn.to_owned()),
    })
}

async fn a_repeated_named_send_is_stored_once(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (alice, _ae, alice_key) = client(&server).await;
    let (bob, mut be, _) = client(&server).await;

    // A DM sent twice under one txn: one answer, one message.
    let first = alice
        .request(dm(bob.user_id(), b"once", "dm-1"))
        .await
        .unwrap();
    let again = alice
        .request(dm(bob.user_id(), b"once", "dm-1"))
        .await
        .unwrap();
    assert_eq!(first, again, "the repeat gets the first answer");
    let got = next_event(&mut be, |e| match e {
        Event::Direct(d) => Some(d),
        _ => None,
    })
    .await;
    assert_eq!(got.ciphertext, b"once");
    // No second message. (The same one may arrive twice: pushed live and again from the queue
    // when it was queued while Bob's connection was draining; clients drop a repeated id.)
    no_event(
        &mut be,
        Duration::from_millis(300),
        |e| matches!(e, Event::Direct(d) if d.id != got.id),
    )
    .await;
    // The same txn on a new connection (the first one broke before its answer) is still the
    // first send; another txn is another message.
    alice.close();
    let (alice, _ae) = connect_as(&server, &alice_key).await.unwrap();
    let after_reconnect = alice
        .request(dm(bob.user_id(), b"once", "dm-1"))
        .await
        .unwrap();
    assert_eq!(after_reconnect, first);
    alice
        .request(dm(bob.user_id(), b"twice", "dm-2"))
        .await
        .unwrap();
    let next = next_event(&mut be, |e| match e {
        Event::Direct(d) if d.id != got.id => Some(d),
        _ => None,
    })
    .await;
    assert_eq!(next.ciphertext, b"twice");

    // A channel message sent twice under one txn: one answer, one message in history.
    let (owner, _oe, _) = client(&server).await;
    let ch = create_channel(&owner).await;
    let first = owner.request(post(&ch, b"hello", "post-1")).await.unwrap();
    let again = owner.request(post(&ch, b"hello", "post-1")).await.unwrap();
    assert_eq!(first, again);
    let Response::Messages(page) = owner
        .request(Request::History(History {
            channel: ch.clone(),
            before: None,
            after: None,
            limit: None,
        }))
        .await
        .unwrap()
    else {
        panic!("history")
    };
    assert_eq!(page.messages.len(), 1, "{:?}", page.messages);

    // Not a txn: empty, too long, or other characters.
    for bad in ["", &"x".repeat(65), "with space"] {
        assert_eq!(
            code(owner.request(post(&ch, b"bad", bad)).await),
            ErrorCode::InvalidArgument,
            "txn {bad:?}"
        );
    }
    server.stop().await;
}

async fn a_repeated_named_send_crosses_federation_once(backend: Backend) {
    let all = specs(2);
    let Some(a) = start_node(backend, &all[0], &all).await else {
        return;
    };
    let Some(b) = start_node(backend, &all[1], &all).await else {
        return;
    };
    let (alice, _ae, _) = user(&a).await;
    let (bob, mut be, _) = user(&b).await;
    let first = alice
        .request(dm(bob.user_id(), b"far", "fed-1"))
        .await
        .unwrap();
    let again = alice
        .request(dm(bob.user_id(), b"far", "fed-1"))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(direct(&mut be).await.ciphertext, b"far");
    no_event(&mut be, Duration::from_millis(500), |e| {
        matches!(e, Event::Direct(_))
    })
    .await;
    a.stop().await;
    b.stop().await;
}

both_backends!(
    a_repeated_named_send_is_stored_once,
    a_repeated_named_send_crosses_federation_once,
);
