//! Cases for users, registration tokens, prekeys and the to-device queue.

use super::*;

pub(super) async fn users_and_registration_tokens(h: &mut Harness) {
    let s = &*h.store;
    s.ping().await.expect("ping");
    assert!(!s.user_exists(&key(1)).await.expect("exists"));
    assert!(s.user_create(&key(1), 5).await.expect("create"));
    assert!(
        !s.user_create(&key(1), 6).await.expect("create again"),
        "already registered"
    );
    assert!(s.user_exists(&key(1)).await.expect("exists"));
    assert!(!s.user_exists(&key(2)).await.expect("exists"));

    s.reg_token_create("two-uses", 2, None)
        .await
        .expect("token");
    s.reg_token_create("expiring", 5, Some(100))
        .await
        .expect("token");
    assert!(matches!(
        s.reg_token_create("two-uses", 1, None).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.reg_token_consume("two-uses", 1).await.expect("consume"));
    assert!(s.reg_token_consume("two-uses", 1).await.expect("consume"));
    assert!(
        !s.reg_token_consume("two-uses", 1).await.expect("consume"),
        "used up"
    );
    assert!(!s.reg_token_consume("unknown", 1).await.expect("consume"));
    assert!(s.reg_token_consume("expiring", 99).await.expect("consume"));
    assert!(
        !s.reg_token_consume("expiring", 100).await.expect("consume"),
        "expired"
    );
}

pub(super) async fn prekeys_replace_and_count(h: &mut Harness) {
    let s = &*h.store;
    let alice = key(1);
    assert_eq!(
        s.keys_count(&alice).await.expect("count"),
        KeysCount {
            one_time: 0,
            fallback: false
        }
    );
    assert!(
        s.keys_claim(&alice).await.expect("claim").is_none(),
        "no identity key yet"
    );

    s.key_set(&alice, PrekeyKind::Identity, &prekey("id", 1))
        .await
        .expect("identity");
    s.key_set(&alice, PrekeyKind::Signed, &prekey("signed-1", 2))
        .await
        .expect("signed");
    s.key_set(&alice, PrekeyKind::Signed, &prekey("signed-2", 3))
        .await
        .expect("replace");
    s.key_set(&alice, PrekeyKind::Fallback, &prekey("fb", 4))
        .await
        .expect("fallback");
    assert!(matches!(
        s.key_set(&alice, PrekeyKind::OneTime, &prekey("otk", 5))
            .await,
        Err(StoreError::Conflict(_))
    ));
    s.keys_add_one_time(&alice, &[prekey("a", 6), prekey("b", 7)])
        .await
        .expect("add");
    assert_eq!(
        s.keys_count(&alice).await.expect("count"),
        KeysCount {
            one_time: 2,
            fallback: true
        }
    );

    let claimed = s.keys_claim(&alice).await.expect("claim").expect("bundle");
    assert_eq!(claimed.identity, prekey("id", 1));
    assert_eq!(
        claimed.signed,
        Some(prekey("signed-2", 3)),
        "the replacement is served"
    );
    // Another user's keys are separate.
    assert_eq!(s.keys_count(&key(2)).await.expect("count").one_time, 0);
    s.keys_add_one_time(&key(2), &[prekey("a", 8)])
        .await
        .expect("same id, other user");
}

pub(super) async fn claims_oldest_one_time_key_first_then_fallback(h: &mut Harness) {
    let s = &*h.store;
    let bob = key(2);
    // One-time keys uploaded before the identity key are kept but not handed out.
    s.keys_add_one_time(&bob, &[prekey("k1", 1), prekey("k2", 2)])
        .await
        .expect("add");
    assert!(s.keys_claim(&bob).await.expect("claim").is_none());
    assert_eq!(
        s.keys_count(&bob).await.expect("count").one_time,
        2,
        "nothing taken"
    );

    s.key_set(&bob, PrekeyKind::Identity, &prekey("id", 9))
        .await
        .expect("identity");
    s.keys_add_one_time(&bob, &[prekey("k3", 3)])
        .await
        .expect("add");
    for expected in ["k1", "k2", "k3"] {
        let claimed = s.keys_claim(&bob).await.expect("claim").expect("bundle");
        assert_eq!(
            claimed.one_time.map(|k| k.key_id).as_deref(),
            Some(expected)
        );
        assert_eq!(
            claimed.fallback, None,
            "no fallback while one-time keys remain"
        );
        assert_eq!(claimed.signed, None);
    }
    assert_eq!(s.keys_count(&bob).await.expect("count").one_time, 0);

    let claimed = s.keys_claim(&bob).await.expect("claim").expect("bundle");
    assert_eq!(claimed.one_time, None);
    assert_eq!(claimed.fallback, None, "no fallback published");

    s.key_set(&bob, PrekeyKind::Fallback, &prekey("fb", 4))
        .await
        .expect("fallback");
    for _ in 0..2 {
        let claimed = s.keys_claim(&bob).await.expect("claim").expect("bundle");
        assert_eq!(claimed.one_time, None);
        assert_eq!(
            claimed.fallback,
            Some(prekey("fb", 4)),
            "fallback is reusable"
        );
    }
    assert!(
        s.keys_count(&bob).await.expect("count").fallback,
        "fallback is not removed"
    );
}

pub(super) async fn duplicate_one_time_key_id_is_a_conflict_and_adds_nothing(h: &mut Harness) {
    let s = &*h.store;
    let carol = key(3);
    s.keys_add_one_time(&carol, &[prekey("a", 1), prekey("b", 2)])
        .await
        .expect("add");
    assert!(matches!(
        s.keys_add_one_time(&carol, &[prekey("c", 3), prekey("a", 4)])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.keys_add_one_time(&carol, &[prekey("d", 5), prekey("d", 6)])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.keys_count(&carol).await.expect("count").one_time,
        2,
        "c and d not added"
    );

    s.key_set(&carol, PrekeyKind::Identity, &prekey("id", 7))
        .await
        .expect("identity");
    let first = s.keys_claim(&carol).await.expect("claim").expect("bundle");
    assert_eq!(
        first.one_time,
        Some(prekey("a", 1)),
        "the original key a is intact"
    );
}

pub(super) async fn concurrent_claims_hand_out_each_one_time_key_once(h: &mut Harness) {
    let dave = key(4);
    let s = &h.store;
    s.key_set(&dave, PrekeyKind::Identity, &prekey("id", 1))
        .await
        .expect("identity");
    s.key_set(&dave, PrekeyKind::Fallback, &prekey("fb", 2))
        .await
        .expect("fallback");
    warm_up(s).await;
    for round in 0..ROUNDS {
        let keys: Vec<Prekey> = (0..10u8)
            .map(|i| prekey(&format!("otk-{round}-{i}"), i))
            .collect();
        s.keys_add_one_time(&dave, &keys).await.expect("add");
        let claims = at_once(s, 20, move |store, _| async move {
            store.keys_claim(&dave).await
        });
        let mut one_time = Vec::new();
        let mut fallbacks = 0;
        for claim in claims.await {
            let bundle = claim.expect("claim").expect("bundle");
            match (bundle.one_time, bundle.fallback) {
                (Some(k), None) => one_time.push(k.key_id),
                (None, Some(fb)) => {
                    assert_eq!(fb.key_id, "fb");
                    fallbacks += 1;
                }
                other => panic!("a claim gets one of one-time or fallback, got {other:?}"),
            }
        }
        one_time.sort();
        let mut expected: Vec<String> = keys.into_iter().map(|k| k.key_id).collect();
        expected.sort();
        assert_eq!(
            one_time, expected,
            "each one-time key handed out exactly once"
        );
        assert_eq!(
            fallbacks, 10,
            "the fallback only once every one-time key is gone"
        );
        assert_eq!(s.keys_count(&dave).await.expect("count").one_time, 0);
    }
}

pub(super) async fn direct_queue_order_ack_and_cap(h: &mut Harness) {
    let s = &*h.store;
    let (alice, bob) = (user(1), remote_user(2));
    for id in [30, 10, 20] {
        s.direct_enqueue(&direct(id, &alice, 9_999), 3)
            .await
            .expect("enqueue");
    }
    assert!(matches!(
        s.direct_enqueue(&direct(40, &alice, 9_999), 3).await,
        Err(StoreError::QueueFull)
    ));
    s.direct_enqueue(&direct(40, &bob, 9_999), 3)
        .await
        .expect("caps are per recipient");
    assert!(matches!(
        s.direct_enqueue(&direct(40, &bob, 9_999), 3).await,
        Err(StoreError::Conflict(_))
    ));

    let pending = s.direct_pending(&alice, None, 10).await.expect("pending");
    assert_eq!(
        pending.iter().map(|d| d.id.get()).collect::<Vec<_>>(),
        [10, 20, 30]
    );
    assert_eq!(
        pending[0],
        direct(10, &alice, 9_999),
        "round-trips every field"
    );
    let page = s
        .direct_pending(&alice, Some(mid(10)), 1)
        .await
        .expect("pending");
    assert_eq!(page.iter().map(|d| d.id.get()).collect::<Vec<_>>(), [20]);

    // Acks only touch the caller's own queue.
    assert_eq!(
        s.direct_ack(&bob, &[mid(10), mid(20)]).await.expect("ack"),
        0
    );
    assert_eq!(s.direct_ack(&alice, &[]).await.expect("ack"), 0);
    assert_eq!(
        s.direct_ack(&alice, &[mid(10), mid(20), mid(99)])
            .await
            .expect("ack"),
        2
    );
    let left = s.direct_pending(&alice, None, 10).await.expect("pending");
    assert_eq!(left.iter().map(|d| d.id.get()).collect::<Vec<_>>(), [30]);
    s.direct_enqueue(&direct(50, &alice, 9_999), 3)
        .await
        .expect("room again after ack");
    assert_eq!(
        s.direct_pending(&bob, None, 10)
            .await
            .expect("pending")
            .len(),
        1
    );
}

pub(super) async fn direct_queue_cap_holds_under_concurrency(h: &mut Harness) {
    warm_up(&h.store).await;
    for round in 0..ROUNDS {
        let recipient = user(10 + round);
        let target = recipient.clone();
        let sends = at_once(&h.store, 20, move |store, i| {
            let row = direct(i + 1, &target, 9_999);
            async move { store.direct_enqueue(&row, 5).await }
        });
        let mut accepted = 0;
        for send in sends.await {
            match send {
                Ok(()) => accepted += 1,
                Err(StoreError::QueueFull) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(accepted, 5);
        let queued = h.store.direct_pending(&recipient, None, 100).await;
        assert_eq!(queued.expect("pending").len(), 5);
    }
}

pub(super) async fn direct_queue_purges_expired(h: &mut Harness) {
    let s = &*h.store;
    let (alice, bob) = (user(1), user(2));
    s.direct_enqueue(&direct(1, &alice, 100), 10)
        .await
        .expect("enqueue");
    s.direct_enqueue(&direct(2, &alice, 200), 10)
        .await
        .expect("enqueue");
    s.direct_enqueue(&direct(3, &bob, 150), 10)
        .await
        .expect("enqueue");
    assert_eq!(s.direct_purge_expired(99).await.expect("purge"), 0);
    assert_eq!(
        s.direct_purge_expired(150).await.expect("purge"),
        2,
        "expires_at <= now"
    );
    let left = s.direct_pending(&alice, None, 10).await.expect("pending");
    assert_eq!(left.iter().map(|d| d.id.get()).collect::<Vec<_>>(), [2]);
    assert!(
        s.direct_pending(&bob, None, 10)
            .await
            .expect("pending")
            .is_empty()
    );
}

pub(super) async fn server_meta_pins_the_first_value_and_survives_reopen(h: &mut Harness) {
    let s = &*h.store;
    assert_eq!(s.meta_get(META_SERVER_NAME).await.expect("get"), None);
    assert_eq!(
        s.meta_insert_or_get(META_SERVER_NAME, "chat.example.org")
            .await
            .expect("pin"),
        "chat.example.org"
    );
    assert_eq!(
        s.meta_insert_or_get(META_SERVER_NAME, "other.example.org")
            .await
            .expect("pin again"),
        "chat.example.org",
        "the first name stays"
    );
    s.meta_set(META_HEALTH_PROBE, "1").await.expect("set");
    s.meta_set(META_HEALTH_PROBE, "2").await.expect("replace");
    h.reopen().await;
    let s = &*h.store;
    assert_eq!(
        s.meta_get(META_SERVER_NAME).await.expect("get").as_deref(),
        Some("chat.example.org")
    );
    assert_eq!(
        s.meta_get(META_HEALTH_PROBE).await.expect("get").as_deref(),
        Some("2")
    );
}
