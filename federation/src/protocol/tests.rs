//! The validation steps with a fake clock and no sockets: every refusal of spec `federation.md`
//! §Validation that needs no discovery, and the requester's checks of an answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mobium_spec::federation::{FedBody, FedResponseBody, Query, QueryResult};
use mobium_spec::{ErrorCode, Keypair, ServerName, SignedEnvelope, encoding};

use super::*;

const WINDOW: u64 = 300_000;
const NOW: u64 = 1_800_000_000_000;

fn name(s: &str) -> ServerName {
    s.parse().unwrap()
}

fn ping(key: &Keypair, ts: u64) -> Vec<u8> {
    let env = seal_request(
        key,
        &name("a.test"),
        &name("b.test"),
        42,
        ts,
        FedBody::Query(Query::Ping),
    );
    encoding::encode(&env)
}

#[test]
fn a_sealed_request_opens_and_passes_within_the_window_only() {
    let a = Keypair::generate();
    for (ts, ok) in [
        (NOW, true),
        (NOW - WINDOW, true),
        (NOW + WINDOW, true),
        (NOW - WINDOW - 1, false),
        (NOW + WINDOW + 1, false),
    ] {
        let (env, req) = open_request(&ping(&a, ts)).unwrap();
        assert_eq!((req.txn_id, &req.origin), (42, &name("a.test")));
        check_destination(&name("b.test"), &req).unwrap();
        let r = check_signed(&env, &req, &a.public(), NOW, WINDOW);
        match ok {
            true => assert_eq!(r, Ok(())),
            false => assert_eq!(r.unwrap_err().code, ErrorCode::FedStale, "ts {ts}"),
        }
    }
}

#[test]
fn misaddressed_forged_and_tampered_requests_are_refused_with_their_codes() {
    let a = Keypair::generate();
    let (env, req) = open_request(&ping(&a, NOW)).unwrap();
    assert_eq!(
        check_destination(&name("c.test"), &req).unwrap_err().code,
        ErrorCode::FedWrongDestination
    );
    // Signed by someone else than the key discovery gives for the origin.
    let other = Keypair::generate();
    assert_eq!(
        check_signed(&env, &req, &other.public(), NOW, WINDOW)
            .unwrap_err()
            .code,
        ErrorCode::FedBadSignature
    );
    // A payload changed after signing (here: the txn_id re-encoded) no longer verifies.
    let mut forged = req.clone();
    forged.txn_id = 43;
    let tampered = SignedEnvelope {
        payload: encoding::encode(&forged),
        signature: env.signature,
    };
    assert_eq!(
        check_signed(&tampered, &forged, &a.public(), NOW, WINDOW)
            .unwrap_err()
            .code,
        ErrorCode::FedBadSignature
    );
}

#[test]
fn unreadable_requests_are_answered_with_the_best_txn_id_known() {
    assert_eq!(open_request(b"\xc1 not msgpack").unwrap_err().0, 0);
    // An envelope whose payload is a map with a txn_id but no valid request.
    #[derive(serde::Serialize)]
    struct Partial {
        txn_id: u64,
    }
    let a = Keypair::generate();
    let env = SignedEnvelope::sign(
        mobium_spec::Domain::FederationFrame,
        &Partial { txn_id: 7 },
        &a,
    );
    assert_eq!(open_request(&encoding::encode(&env)).unwrap_err().0, 7);
}

fn answer(
    key: &Keypair,
    from: &str,
    to: &str,
    txn_id: u64,
    body: FedResponseBody,
) -> SignedEnvelope {
    seal_response(key, &name(from), name(to), txn_id, NOW, body)
}

#[test]
fn answers_are_checked_for_signer_origin_addressee_and_txn_id() {
    let b = Keypair::generate();
    let pong = || {
        FedResponseBody::Result(QueryResult::Pong {
            protocol_version: 1,
            software: "test".into(),
        })
    };
    let (me, dest) = (name("a.test"), name("b.test"));
    let ok = answer(&b, "b.test", "a.test", 9, pong());
    assert!(matches!(
        open_response(&ok, &b.public(), &dest, &me, 9),
        Ok(FedResponseBody::Result(_))
    ));
    let refused = |env: &SignedEnvelope, key: &Keypair, txn: u64| {
        matches!(
            open_response(env, &key.public(), &dest, &me, txn),
            Err(FedError::Protocol(_))
        )
    };
    assert!(refused(&ok, &Keypair::generate(), 9), "another signer");
    assert!(
        refused(&answer(&b, "c.test", "a.test", 9, pong()), &b, 9),
        "another origin"
    );
    assert!(
        refused(&answer(&b, "b.test", "z.test", 9, pong()), &b, 9),
        "another addressee"
    );
    assert!(refused(&ok, &b, 10), "another txn_id");
    assert!(
        refused(&answer(&b, "b.test", "a.test", 0, pong()), &b, 9),
        "txn 0, not an error"
    );
    // An error answer to a frame the responder could not read carries txn_id 0.
    let unreadable = answer(
        &b,
        "b.test",
        "a.test",
        0,
        refusal_body(Refusal::new(ErrorCode::Malformed, "envelope: bad")),
    );
    assert!(matches!(
        open_response(&unreadable, &b.public(), &dest, &me, 9),
        Err(FedError::Rejected(e)) if e.code == ErrorCode::Malformed
    ));
}
