//! Cases for channel messages, history paging and durability across a restart.

use super::*;

pub(super) async fn messages_crud_and_retention(h: &mut Harness) {
    let s = &*h.store;
    let ch = make_channel(s, 1, &user(1), 0).await;
    let other = make_channel(s, 2, &user(1), 0).await;
    let mut first = message(&ch, 1);
    first.reply_to = Some(mid(77));
    s.message_insert(&first).await.expect("insert");
    s.message_insert(&message(&ch, 2)).await.expect("insert");
    s.message_insert(&message(&other, 1))
        .await
        .expect("same id, other channel");
    assert!(matches!(
        s.message_insert(&message(&ch, 2)).await,
        Err(StoreError::Conflict(_))
    ));

    assert_eq!(
        s.message_get(&ch, mid(1)).await.expect("get"),
        Some(first.clone())
    );
    assert!(s.message_get(&ch, mid(3)).await.expect("get").is_none());

    assert!(
        s.message_edit(&ch, mid(1), b"edited", 20_000)
            .await
            .expect("edit")
    );
    assert!(
        !s.message_edit(&ch, mid(3), b"edited", 20_000)
            .await
            .expect("edit")
    );
    let edited = s
        .message_get(&ch, mid(1))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (edited.ciphertext.as_slice(), edited.edited_at),
        (&b"edited"[..], Some(20_000))
    );
    assert_eq!(edited.sent_at, first.sent_at);

    assert!(s.message_delete(&ch, mid(2)).await.expect("delete"));
    assert!(!s.message_delete(&ch, mid(2)).await.expect("delete"));
    assert!(s.message_get(&other, mid(1)).await.expect("get").is_some());

    // Retention: sent_at strictly before the cutoff goes (message(_, 1) was sent at 10_001).
    assert_eq!(s.messages_purge_before(10_001).await.expect("purge"), 0);
    assert_eq!(s.messages_purge_before(10_002).await.expect("purge"), 2);
    assert!(s.message_get(&ch, mid(1)).await.expect("get").is_none());
}

pub(super) async fn history_pages_in_all_four_modes(h: &mut Harness) {
    let s = &*h.store;
    let ch = make_channel(s, 1, &user(1), 0).await;
    let other = make_channel(s, 2, &user(1), 0).await;
    // Inserted out of order: pages follow ids, not insertion.
    for id in [5, 1, 9, 3, 7, 2, 10, 4, 8, 6] {
        s.message_insert(&message(&ch, id)).await.expect("insert");
    }
    s.message_insert(&message(&other, 11))
        .await
        .expect("insert");
    let page = |before: Option<u64>, after: Option<u64>, limit: u32| {
        let q = HistoryQuery {
            before: before.map(mid),
            after: after.map(mid),
            limit,
        };
        let ch = ch.clone();
        async move {
            let (rows, more) = s.history(&ch, q).await.expect("history");
            (ids(&rows), more)
        }
    };

    // Newest first page, then paging back.
    assert_eq!(page(None, None, 3).await, (vec![8, 9, 10], true));
    assert_eq!(page(Some(8), None, 3).await, (vec![5, 6, 7], true));
    assert_eq!(page(Some(5), None, 3).await, (vec![2, 3, 4], true));
    assert_eq!(page(Some(2), None, 3).await, (vec![1], false));
    assert_eq!(
        page(Some(4), None, 3).await,
        (vec![1, 2, 3], false),
        "exactly full"
    );
    assert_eq!(page(None, None, 50).await, ((1..=10).collect(), false));
    // Paging forward.
    assert_eq!(page(None, Some(2), 3).await, (vec![3, 4, 5], true));
    assert_eq!(
        page(None, Some(7), 3).await,
        (vec![8, 9, 10], false),
        "exactly full"
    );
    assert_eq!(page(None, Some(10), 3).await, (vec![], false));
    // Between two bounds: oldest first.
    assert_eq!(page(Some(9), Some(2), 3).await, (vec![3, 4, 5], true));
    assert_eq!(page(Some(6), Some(2), 3).await, (vec![3, 4, 5], false));
    assert_eq!(page(Some(4), Some(3), 3).await, (vec![], false));
    // An empty channel.
    let empty = make_channel(s, 3, &user(1), 0).await;
    let q = HistoryQuery {
        before: None,
        after: None,
        limit: 10,
    };
    assert_eq!(
        s.history(&empty, q).await.expect("history"),
        (vec![], false)
    );
}

pub(super) async fn data_survives_close_and_reopen(h: &mut Harness) {
    let alice = user(1);
    let ch = make_channel(&*h.store, 1, &alice, 0).await;
    h.store.user_create(&key(1), 1).await.expect("user");
    h.store
        .key_set(&key(1), PrekeyKind::Identity, &prekey("id", 1))
        .await
        .expect("key");
    h.store
        .keys_add_one_time(&key(1), &[prekey("a", 2)])
        .await
        .expect("keys");
    h.store
        .message_insert(&message(&ch, 42))
        .await
        .expect("message");
    h.store
        .direct_enqueue(&direct(7, &alice, 9_999), 10)
        .await
        .expect("enqueue");

    h.store.close().await;
    if let Backend::Sqlite { url, .. } = &h.backend {
        // Closing checkpointed the WAL into the main file (and removed it).
        let wal = format!("{}-wal", url.trim_start_matches("sqlite://"));
        let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert_eq!(wal_len, 0, "{wal} still holds data after close");
    }
    h.reopen().await;

    let s = &*h.store;
    assert!(s.user_exists(&key(1)).await.expect("user"));
    assert_eq!(
        s.message_get(&ch, mid(42)).await.expect("get"),
        Some(message(&ch, 42))
    );
    assert_eq!(s.members(&ch).await.expect("members"), [(alice.clone(), 0)]);
    assert_eq!(
        s.direct_pending(&alice, None, 10).await.expect("pending"),
        [direct(7, &alice, 9_999)]
    );
    let claimed = s.keys_claim(&key(1)).await.expect("claim").expect("bundle");
    assert_eq!(claimed.one_time, Some(prekey("a", 2)));
    assert_eq!(
        s.roles().await.expect("roles").len(),
        1,
        "migrations are not re-applied"
    );
}
