//! Prekeys: upload with signature checks, count, claims (each one-time key once, also under
//! concurrency), fallback, and `keys_low`.

use std::collections::HashSet;
use std::time::Duration;

use mobium_spec::client::{
    Event, KeysClaim, KeysCount, KeysUpload, Prekey, PrekeyKind, Request, Response,
};
use mobium_spec::{ErrorCode, Keypair};

use crate::both_backends;
use crate::support::*;

fn otk(owner: &Keypair, i: u32) -> Prekey {
    Prekey::sign(
        owner,
        PrekeyKind::OneTime,
        &format!("otk{i}"),
        &[i as u8; 32],
    )
}

pub(crate) async fn upload(
    c: &mobium_client_api::sdk::Client,
    key: &Keypair,
    otks: u32,
) -> KeysCount {
    let r = c
        .request(Request::KeysUpload(KeysUpload {
            identity_key: Some(Prekey::sign(key, PrekeyKind::Identity, "id", &[200; 32])),
            signed_prekey: Some(Prekey::sign(key, PrekeyKind::Signed, "spk", &[201; 32])),
            one_time_keys: (0..otks).map(|i| otk(key, i)).collect(),
            fallback_key: Some(Prekey::sign(key, PrekeyKind::Fallback, "fb", &[202; 32])),
        }))
        .await
        .unwrap();
    let Response::KeysCount(n) = r else {
        panic!("{r:?}")
    };
    n
}

async fn prekeys_are_claimed_once_then_fallback(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (alice, mut alice_events, akey) = client(&server).await;
    assert_eq!(
        upload(&alice, &akey, 12).await,
        KeysCount {
            one_time: 12,
            fallback: true
        }
    );

    // Twenty claimers at once: the twelve one-time keys go to twelve of them, once each.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (c, _e, _) = client(&server).await;
        let who = alice.user_id().clone();
        tasks.push(tokio::spawn(async move {
            let r = c
                .request(Request::KeysClaim(KeysClaim { user: who }))
                .await
                .unwrap();
            let Response::KeyBundle(b) = r else {
                panic!("{r:?}")
            };
            b
        }));
    }
    let mut one_time = HashSet::new();
    let mut fallbacks = 0;
    for t in tasks {
        let b = t.await.unwrap();
        assert!(b.identity_key.verify(&akey.public(), PrekeyKind::Identity));
        match (b.one_time_key, b.fallback_key) {
            (Some(k), None) => {
                assert!(k.verify(&akey.public(), PrekeyKind::OneTime));
                assert!(
                    one_time.insert(k.key_id),
                    "a one-time key was handed out twice"
                );
            }
            (None, Some(f)) => {
                assert!(f.verify(&akey.public(), PrekeyKind::Fallback));
                fallbacks += 1;
            }
            other => panic!("exactly one of one-time or fallback expected, got {other:?}"),
        }
    }
    assert_eq!((one_time.len(), fallbacks), (12, 8));
    let Response::KeysCount(left) = alice.request(Request::KeysCount).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        left,
        KeysCount {
            one_time: 0,
            fallback: true
        }
    );
    // Alice was told her keys ran low.
    let low = next_event(&mut alice_events, |e| match e {
        Event::KeysLow(k) => Some(k),
        _ => None,
    })
    .await;
    assert!(low.one_time < 10);
    server.stop().await;
}

async fn forged_and_malformed_prekeys_are_rejected(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (alice, _e, akey) = client(&server).await;
    let mallory = Keypair::generate();
    let forged = KeysUpload {
        one_time_keys: vec![otk(&mallory, 1)],
        ..Default::default()
    };
    assert_eq!(
        code(alice.request(Request::KeysUpload(forged)).await),
        ErrorCode::BadSignature
    );
    let mut short = otk(&akey, 1);
    short.key.truncate(31);
    let bad = KeysUpload {
        one_time_keys: vec![short],
        ..Default::default()
    };
    assert_eq!(
        code(alice.request(Request::KeysUpload(bad)).await),
        ErrorCode::InvalidArgument
    );
    // A duplicate key id adds nothing.
    upload(&alice, &akey, 2).await;
    let dup = KeysUpload {
        one_time_keys: vec![otk(&akey, 5), otk(&akey, 1)],
        ..Default::default()
    };
    assert_eq!(
        code(alice.request(Request::KeysUpload(dup)).await),
        ErrorCode::Conflict
    );
    let Response::KeysCount(n) = alice.request(Request::KeysCount).await.unwrap() else {
        panic!()
    };
    assert_eq!(n.one_time, 2);
    // Nothing was stored for a user who never uploaded.
    let (bob, _e2, _) = client(&server).await;
    assert_eq!(
        code(
            alice
                .request(Request::KeysClaim(KeysClaim {
                    user: bob.user_id().clone()
                }))
                .await
        ),
        ErrorCode::NotFound
    );
    server.stop().await;
}

/// 100 claims at once against 50 one-time keys: the owner hears `keys_low` once per claim that
/// left it below the threshold, each with the true count at that claim (9, 8, …, 0).
async fn keys_low_counts_each_concurrent_claim_once(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (owner, mut oe, owner_key) = client(&server).await;
    upload(&owner, &owner_key, 50).await;
    let (mut claimers, mut _inboxes) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let (c, e, _) = client(&server).await;
        claimers.push(c);
        _inboxes.push(e);
    }
    let mut claims = Vec::new();
    for i in 0..100 {
        let (c, user) = (claimers[i % 4].clone(), owner.user_id().clone());
        claims.push(tokio::spawn(async move {
            c.request(Request::KeysClaim(KeysClaim { user })).await
        }));
    }
    let mut one_time = 0;
    for c in claims {
        if let Ok(Response::KeyBundle(b)) = c.await.unwrap() {
            one_time += usize::from(b.one_time_key.is_some());
        }
    }
    assert_eq!(one_time, 50, "each one-time key handed out once");
    let mut counts = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), oe.recv()).await {
        if let Event::KeysLow(k) = e {
            counts.push(k.one_time);
        }
    }
    counts.sort_unstable();
    assert_eq!(counts, (0..10).collect::<Vec<u32>>());
    server.stop().await;
}

both_backends!(
    keys_low_counts_each_concurrent_claim_once,
    prekeys_are_claimed_once_then_fallback,
    forged_and_malformed_prekeys_are_rejected
);
