//! Every refusal of spec `federation.md` §Validation, sent as hand-made envelopes over a real
//! connection; after each one, valid traffic on the same link still flows.

use mobium_federation::{
    FedResponse, FedResponseBody, MAX_FRAME_BYTES, Query, TIMESTAMP_WINDOW_MS,
};
use mobium_spec::federation::FedBody;
use mobium_spec::{Domain, ErrorCode, SignedEnvelope};

use crate::support::*;

/// The error code of an answer, checking that it is addressed as the spec says.
fn refusal(answer: &FedResponse, to: &Node, txn_id: u64) -> ErrorCode {
    assert_eq!(
        answer.destination, to.name,
        "refusal addressed to {}",
        answer.destination
    );
    assert_eq!(answer.txn_id, txn_id);
    match &answer.body {
        FedResponseBody::Error(e) => e.code,
        other => panic!("expected an error answer, got {other:?}"),
    }
}

/// Sends a valid transaction from `from` to `to` and checks that the link stayed the same one.
async fn link_still_works(from: &Node, to: &Node) {
    from.fed
        .send_transaction(&to.name, txn(from, &to.name, 1))
        .await
        .expect("valid traffic after a refusal");
    assert_eq!(
        from.fed.stats().connections_out,
        1,
        "the connection was replaced"
    );
}

fn ping() -> FedBody {
    FedBody::Query(Query::Ping)
}

#[tokio::test]
async fn each_refusal_is_answered_and_the_link_survives() {
    let nodes = static_net(3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    // A first valid request, so that the connection is verified as c's.
    link_still_works(c, a).await;
    let before = a.handler.total_calls();

    // Forged: signed by a key that is not c's.
    let forged = envelope(&c.name, &a.name, 11, now_ms(), ping(), &keypair(42));
    let answer = c.fed.send_envelope(&a.name, forged).await.unwrap();
    assert_eq!(refusal(&answer, c, 11), ErrorCode::FedBadSignature);
    link_still_works(c, a).await;

    // Misaddressed: a valid frame for b, delivered to a.
    let misaddressed = envelope(&c.name, &b.name, 12, now_ms(), ping(), &c.keypair);
    let answer = c.fed.send_envelope(&a.name, misaddressed).await.unwrap();
    assert_eq!(refusal(&answer, c, 12), ErrorCode::FedWrongDestination);
    link_still_works(c, a).await;

    // Stale, in both directions.
    let window = TIMESTAMP_WINDOW_MS;
    for (txn_id, ts) in [
        (13, now_ms() - window - 60_000),
        (14, now_ms() + window + 60_000),
    ] {
        let stale = envelope(&c.name, &a.name, txn_id, ts, ping(), &c.keypair);
        let answer = c.fed.send_envelope(&a.name, stale).await.unwrap();
        assert_eq!(refusal(&answer, c, txn_id), ErrorCode::FedStale);
    }
    link_still_works(c, a).await;

    // Another server's name on c's connection, even with that server's valid signature: the
    // origin's discovered key is not the key of the TLS certificate.
    let impersonation = envelope(&b.name, &a.name, 15, now_ms(), ping(), &b.keypair);
    let answer = c.fed.send_envelope(&a.name, impersonation).await.unwrap();
    assert_eq!(answer.destination, b.name);
    assert!(
        matches!(&answer.body, FedResponseBody::Error(e) if e.code == ErrorCode::FedUnknownKey)
    );
    link_still_works(c, a).await;

    // An origin nobody can discover.
    let ghost = name("ghost.test");
    let undiscoverable = envelope(&ghost, &a.name, 16, now_ms(), ping(), &c.keypair);
    let answer = c.fed.send_envelope(&a.name, undiscoverable).await.unwrap();
    assert_eq!(answer.destination, ghost);
    assert!(
        matches!(&answer.body, FedResponseBody::Error(e) if e.code == ErrorCode::FedUnknownKey)
    );
    link_still_works(c, a).await;

    // Oversized: one byte over the limit. Refused from the length prefix, addressed to the
    // server this connection was last verified for, with txn_id 0.
    let huge = SignedEnvelope {
        payload: vec![0x90; MAX_FRAME_BYTES],
        signature: c.keypair.sign(Domain::FederationFrame, b""),
    };
    let answer = c.fed.send_envelope(&a.name, huge).await.unwrap();
    assert_eq!(refusal(&answer, c, 0), ErrorCode::FedTooLarge);
    link_still_works(c, a).await;

    // Unreadable payload: `malformed`, same addressing.
    let garbage = SignedEnvelope {
        payload: vec![0xc1, 0x00],
        signature: c.keypair.sign(Domain::FederationFrame, &[0xc1, 0x00]),
    };
    let answer = c.fed.send_envelope(&a.name, garbage).await.unwrap();
    assert_eq!(refusal(&answer, c, 0), ErrorCode::Malformed);
    link_still_works(c, a).await;

    // None of them reached the handler; all were counted and reported.
    assert_eq!(a.handler.total_calls(), before + 7);
    let stats = a.fed.stats();
    for (code, count) in [
        (ErrorCode::FedBadSignature, 1),
        (ErrorCode::FedWrongDestination, 1),
        (ErrorCode::FedStale, 2),
        (ErrorCode::FedUnknownKey, 2),
        (ErrorCode::FedTooLarge, 1),
        (ErrorCode::Malformed, 1),
    ] {
        assert_eq!(stats.rejected_with(code), count, "{code}");
        let reported = a
            .handler
            .rejected
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c == code)
            .count();
        assert_eq!(reported as u64, count, "{code}");
    }
    assert_eq!(stats.connections_in, 1);
}

#[tokio::test]
async fn refusals_before_any_verified_request_close_the_stream_unanswered() {
    let nodes = static_net(2).await;
    let (a, c) = (&nodes[0], &nodes[1]);
    let garbage = SignedEnvelope {
        payload: vec![0xc1],
        signature: c.keypair.sign(Domain::FederationFrame, &[0xc1]),
    };
    // Nobody to address the answer to yet: the stream is closed without one.
    assert!(c.fed.send_envelope(&a.name, garbage).await.is_err());
    assert_eq!(a.fed.stats().rejected_with(ErrorCode::Malformed), 1);
    link_still_works(c, a).await;
}

#[tokio::test]
async fn a_replay_gets_the_same_answer_without_a_second_application() {
    let nodes = static_net(2).await;
    let (a, c) = (&nodes[0], &nodes[1]);
    let body = FedBody::Transaction(txn(c, &a.name, 3));
    let frame = envelope(&c.name, &a.name, 77, now_ms(), body, &c.keypair);

    let first = c.fed.send_envelope(&a.name, frame.clone()).await.unwrap();
    let second = c.fed.send_envelope(&a.name, frame.clone()).await.unwrap();
    assert!(matches!(first.body, FedResponseBody::Ack(_)));
    assert_eq!(first.body, second.body);
    assert_eq!(second.txn_id, 77);
    assert_eq!(a.handler.calls_for(&c.name, 77), 1);
    assert_eq!(*a.handler.events.lock().unwrap(), 3);

    // Concurrent copies: still one application.
    let copies = envelope(
        &c.name,
        &a.name,
        78,
        now_ms(),
        FedBody::Transaction(txn(c, &a.name, 1)),
        &c.keypair,
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (fed, dest, env) = (c.fed.clone(), a.name.clone(), copies.clone());
        tasks.spawn(async move { fed.send_envelope(&dest, env).await.unwrap() });
    }
    while let Some(answer) = tasks.join_next().await {
        assert!(matches!(answer.unwrap().body, FedResponseBody::Ack(_)));
    }
    assert_eq!(a.handler.calls_for(&c.name, 78), 1);
    assert_eq!(a.fed.stats().replays, 8);

    // A frame whose replay would come too late is refused as stale, not answered from cache.
    let old = envelope(
        &c.name,
        &a.name,
        77,
        now_ms() - TIMESTAMP_WINDOW_MS - 1_000,
        FedBody::Transaction(txn(c, &a.name, 3)),
        &c.keypair,
    );
    let answer = c.fed.send_envelope(&a.name, old).await.unwrap();
    assert_eq!(refusal(&answer, c, 77), ErrorCode::FedStale);
    assert_eq!(a.handler.calls_for(&c.name, 77), 1);
}

#[tokio::test]
async fn unknown_request_types_are_unknown_op() {
    let nodes = static_net(2).await;
    let (a, c) = (&nodes[0], &nodes[1]);
    let frame = envelope(&c.name, &a.name, 5, now_ms(), FedBody::Unknown, &c.keypair);
    // `Unknown` serializes as a unit variant; the receiver decodes it as an unknown type.
    let answer = c.fed.send_envelope(&a.name, frame).await.unwrap();
    let code = refusal(&answer, c, 5);
    assert!(
        code == ErrorCode::UnknownOp || code == ErrorCode::Malformed,
        "{code}"
    );
}
