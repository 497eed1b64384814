//! Cases for federation storage: the outbox, hosted commits, channel replicas, inbound
//! idempotency, and upgrading a database made before any of it existed.
//!
//! What matters to a user here: an event committed without its outbox row is a message other
//! servers never see; an outbox row without its change announces something that did not happen;
//! events delivered out of order or twice show up as missing or doubled messages.

use std::path::Path;
use std::str::FromStr as _;

use sqlx::migrate::Migrator;

use super::*;

fn dest(name: &str) -> ServerName {
    name.parse().expect("server name")
}

pub(super) fn item(destination: &str, event: &str) -> OutboxItem {
    OutboxItem {
        destination: dest(destination),
        event: event.as_bytes().to_vec(),
    }
}

/// The event bytes pending for `destination`, oldest first.
pub(super) async fn pending(s: &dyn Store, destination: &str) -> Vec<String> {
    s.outbox_peek(&dest(destination), 100)
        .await
        .expect("peek")
        .into_iter()
        .map(|(_, event)| String::from_utf8(event).expect("utf-8"))
        .collect()
}

async fn outbox_total(s: &dyn Store) -> u64 {
    let mut total = 0;
    for d in s.outbox_destinations().await.expect("destinations") {
        total += s.outbox_len(&d).await.expect("len");
    }
    total
}

/// The ids in `recipient`'s to-device queue.
async fn queued(s: &dyn Store, recipient: &UserId) -> Vec<u64> {
    let rows = s
        .direct_pending(recipient, None, 10)
        .await
        .expect("pending");
    rows.iter().map(|d| d.id.get()).collect()
}

pub(super) fn relayed(
    channel: &ChannelId,
    id: u64,
    sender: &UserId,
    origin_id: Option<u64>,
) -> MessageRow {
    MessageRow {
        sender: sender.clone(),
        origin_id: origin_id.map(mid),
        ..message(channel, id)
    }
}

pub(super) async fn outbox_keeps_order_per_destination(h: &mut Harness) {
    let s = &*h.store;
    assert!(s.outbox_destinations().await.expect("none yet").is_empty());
    s.outbox_push(&[], 1).await.expect("empty push is a no-op");
    s.outbox_push(
        &[
            item("b.test", "b1"),
            item("a.test", "a1"),
            item("b.test", "b2"),
        ],
        1,
    )
    .await
    .expect("push");
    s.outbox_push(&[item("a.test", "a2"), item("c.test:8448", "c1")], 2)
        .await
        .expect("push");
    s.outbox_push(&[item("b.test", "b3")], 3)
        .await
        .expect("push");

    assert_eq!(pending(s, "a.test").await, ["a1", "a2"]);
    assert_eq!(pending(s, "b.test").await, ["b1", "b2", "b3"]);
    assert_eq!(pending(s, "c.test:8448").await, ["c1"]);
    assert!(pending(s, "d.test").await.is_empty());
    let mut destinations = s.outbox_destinations().await.expect("destinations");
    destinations.sort_by_key(ToString::to_string);
    assert_eq!(
        destinations,
        [dest("a.test"), dest("b.test"), dest("c.test:8448")]
    );
    assert_eq!(s.outbox_len(&dest("b.test")).await.expect("len"), 3);
    assert_eq!(s.outbox_len(&dest("d.test")).await.expect("len"), 0);

    // Peek is bounded, oldest first, and sequence numbers grow in push order.
    let b = s.outbox_peek(&dest("b.test"), 2).await.expect("peek");
    assert_eq!(
        b.iter().map(|(_, e)| e.as_slice()).collect::<Vec<_>>(),
        [&b"b1"[..], b"b2"]
    );
    assert!(b[0].0 < b[1].0);
    let a = s.outbox_peek(&dest("a.test"), 10).await.expect("peek");

    // Removing only touches the named destination.
    let b_seqs: Vec<u64> = b.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        s.outbox_remove(&dest("a.test"), &b_seqs)
            .await
            .expect("remove"),
        0
    );
    assert_eq!(
        s.outbox_remove(&dest("b.test"), &[]).await.expect("remove"),
        0
    );
    assert_eq!(
        s.outbox_remove(&dest("b.test"), &[b_seqs[0], b_seqs[1], a[0].0 + 1_000])
            .await
            .expect("remove"),
        2
    );
    assert_eq!(pending(s, "b.test").await, ["b3"]);
    assert_eq!(pending(s, "a.test").await, ["a1", "a2"]);
    assert_eq!(
        s.outbox_remove(&dest("b.test"), &b_seqs)
            .await
            .expect("remove"),
        0,
        "already delivered"
    );

    // A destination with nothing left is no longer listed; numbers are never handed out again.
    let c = s.outbox_peek(&dest("c.test:8448"), 10).await.expect("peek");
    let last_seq = c[0].0;
    assert_eq!(
        s.outbox_remove(&dest("c.test:8448"), &[last_seq])
            .await
            .expect("remove"),
        1
    );
    assert!(
        !s.outbox_destinations()
            .await
            .expect("destinations")
            .contains(&dest("c.test:8448"))
    );
    s.outbox_push(&[item("c.test:8448", "c2")], 4)
        .await
        .expect("push");
    let c = s.outbox_peek(&dest("c.test:8448"), 10).await.expect("peek");
    assert!(c[0].0 > last_seq, "a delivered event's number was reused");

    // Pending events survive a restart.
    h.reopen().await;
    assert_eq!(pending(&*h.store, "a.test").await, ["a1", "a2"]);
}

pub(super) async fn commit_hosted_writes_change_and_outbox_together(h: &mut Harness) {
    let s = &*h.store;
    let (owner, bob) = (user(1), remote_user(2));
    let ch = make_channel(s, 1, &owner, 0).await;
    let fan_out = |event: &str| [item("a.test", event), item("b.test", event)];

    // Success: the change and every outbox item.
    let first = relayed(&ch, 1, &bob, Some(100));
    let change = HostedChange::Message(first.clone());
    assert!(
        s.commit_hosted(&change, &fan_out("m1"), 5)
            .await
            .expect("commit")
    );
    assert_eq!(s.message_get(&ch, mid(1)).await.expect("get"), Some(first));
    assert_eq!(pending(s, "a.test").await, ["m1"]);
    assert_eq!(pending(s, "b.test").await, ["m1"]);

    // A duplicate message (same id, or same sender and origin id): Conflict, no outbox rows.
    for dup in [
        relayed(&ch, 1, &owner, None),
        relayed(&ch, 2, &bob, Some(100)),
    ] {
        assert!(matches!(
            s.commit_hosted(&HostedChange::Message(dup), &fan_out("dup"), 6)
                .await,
            Err(StoreError::Conflict(_))
        ));
    }
    assert!(s.message_get(&ch, mid(2)).await.expect("get").is_none());
    assert_eq!(
        outbox_total(s).await,
        2,
        "a refused message announced nothing"
    );
    // A message for a channel that does not exist fails, also without outbox rows.
    let nowhere = relayed(&channel_id(99), 3, &owner, None);
    assert!(
        s.commit_hosted(&HostedChange::Message(nowhere), &fan_out("x"), 6)
            .await
            .is_err()
    );
    assert_eq!(outbox_total(s).await, 2);

    // Each change that would do nothing returns false and writes nothing.
    let no_ops = [
        HostedChange::MemberAdd {
            channel: ch.clone(),
            user: owner.clone(),
            now: 7,
        },
        HostedChange::MemberRemove {
            channel: ch.clone(),
            user: bob.clone(),
        },
        HostedChange::Edit {
            channel: ch.clone(),
            id: mid(9),
            ciphertext: b"edited".to_vec(),
            edited_at: 7,
        },
        HostedChange::Delete {
            channel: ch.clone(),
            id: mid(9),
        },
        HostedChange::Metadata {
            channel: channel_id(99),
            metadata: b"meta".to_vec(),
        },
    ];
    for change in &no_ops {
        assert!(
            !s.commit_hosted(change, &fan_out("no-op"), 7)
                .await
                .expect("commit"),
            "{change:?}"
        );
    }
    assert_eq!(outbox_total(s).await, 2, "a no-op announced something");
    assert_eq!(s.members(&ch).await.expect("members"), [(owner.clone(), 0)]);

    // Each change that does something returns true and appends its items after the earlier ones.
    let changes = [
        HostedChange::MemberAdd {
            channel: ch.clone(),
            user: bob.clone(),
            now: 8,
        },
        HostedChange::Edit {
            channel: ch.clone(),
            id: mid(1),
            ciphertext: b"edited".to_vec(),
            edited_at: 8,
        },
        HostedChange::Metadata {
            channel: ch.clone(),
            metadata: b"renamed".to_vec(),
        },
        HostedChange::Delete {
            channel: ch.clone(),
            id: mid(1),
        },
        HostedChange::MemberRemove {
            channel: ch.clone(),
            user: bob.clone(),
        },
        HostedChange::Nothing,
    ];
    for (n, change) in changes.iter().enumerate() {
        let event = format!("e{n}");
        assert!(
            s.commit_hosted(change, &[item("a.test", &event)], 8)
                .await
                .expect("commit"),
            "{change:?}"
        );
        if n == 1 {
            let edited = s.message_get(&ch, mid(1)).await.expect("get");
            assert_eq!(edited.map(|m| m.ciphertext), Some(b"edited".to_vec()));
        }
    }
    assert_eq!(
        pending(s, "a.test").await,
        ["m1", "e0", "e1", "e2", "e3", "e4", "e5"]
    );
    assert_eq!(pending(s, "b.test").await, ["m1"]);
    assert!(s.message_get(&ch, mid(1)).await.expect("get").is_none());
    assert_eq!(s.members(&ch).await.expect("members"), [(owner.clone(), 0)]);
    let row = s.channel_get(&ch).await.expect("get").expect("exists");
    assert_eq!(row.metadata, b"renamed");
    // `Nothing` with no items is fine too.
    assert!(
        s.commit_hosted(&HostedChange::Nothing, &[], 9)
            .await
            .expect("commit")
    );
}

pub(super) async fn origin_ids_round_trip_and_deduplicate(h: &mut Harness) {
    let s = &*h.store;
    let (alice, bob) = (user(1), remote_user(2));
    let ch = make_channel(s, 1, &alice, 0).await;
    let other = make_channel(s, 2, &alice, 0).await;
    let relayed_one = relayed(&ch, 1, &bob, Some(500));
    s.message_insert(&relayed_one).await.expect("insert");
    // Local messages carry no origin id, and any number of them coexist.
    s.message_insert(&message(&ch, 2)).await.expect("insert");
    s.message_insert(&relayed(&ch, 3, &bob, None))
        .await
        .expect("NULL origin ids never collide");
    // The same origin id is fine from another sender or in another channel.
    s.message_insert(&relayed(&ch, 4, &remote_user(3), Some(500)))
        .await
        .expect("other sender");
    s.message_insert(&relayed(&other, 1, &bob, Some(500)))
        .await
        .expect("other channel");
    // A retried send: same channel, sender and origin id under a fresh id.
    assert!(matches!(
        s.message_insert(&relayed(&ch, 5, &bob, Some(500))).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.message_get(&ch, mid(5)).await.expect("get").is_none());

    assert_eq!(
        s.message_get(&ch, mid(1)).await.expect("get"),
        Some(relayed_one.clone())
    );
    let q = HistoryQuery {
        before: None,
        after: None,
        limit: 10,
    };
    let (rows, more) = s.history(&ch, q).await.expect("history");
    assert!(!more);
    assert_eq!(
        rows.iter()
            .map(|m| (m.id.get(), m.origin_id.map(MessageId::get)))
            .collect::<Vec<_>>(),
        [(1, Some(500)), (2, None), (3, None), (4, Some(500))]
    );
    assert_eq!(rows[0], relayed_one, "round-trips every field");
}

pub(super) async fn channel_put_upserts_without_membership(h: &mut Harness) {
    let s = &*h.store;
    let remote_host: ServerName = "other.example:8448".parse().expect("server name");
    let id = ChannelId::new(7, remote_host).expect("channel id");
    let owner = remote_user(1);
    let mut row = ChannelRow {
        id: id.clone(),
        owner: owner.clone(),
        metadata: b"v1".to_vec(),
        created_at: 100,
    };
    s.channel_put(&row).await.expect("put");
    assert_eq!(s.channel_get(&id).await.expect("get"), Some(row.clone()));
    assert!(s.members(&id).await.expect("members").is_empty());
    assert!(s.channels_of(&owner).await.expect("of").is_empty());

    // A replica starts at seq 0 and records what was applied.
    assert_eq!(s.channel_last_seq(&id).await.expect("seq"), 0);
    s.channel_set_last_seq(&id, 5).await.expect("set");
    assert_eq!(s.channel_last_seq(&id).await.expect("seq"), 5);
    s.channel_set_last_seq(&id, 9).await.expect("set");
    assert_eq!(s.channel_last_seq(&id).await.expect("seq"), 9);

    // Putting it again replaces the row but keeps members and the applied seq.
    assert!(s.member_add(&id, &user(2), 150).await.expect("add"));
    row.metadata = b"v2".to_vec();
    row.owner = remote_user(3);
    s.channel_put(&row).await.expect("put again");
    assert_eq!(s.channel_get(&id).await.expect("get"), Some(row.clone()));
    assert_eq!(s.members(&id).await.expect("members"), [(user(2), 150)]);
    assert_eq!(s.channel_last_seq(&id).await.expect("seq"), 9);

    // Unknown channels have no seq, and cannot be given one.
    let unknown = channel_id(42);
    assert_eq!(s.channel_last_seq(&unknown).await.expect("seq"), 0);
    assert!(s.channel_set_last_seq(&unknown, 1).await.is_err());
    assert!(s.channel_get(&unknown).await.expect("get").is_none());

    h.reopen().await;
    assert_eq!(h.store.channel_last_seq(&id).await.expect("seq"), 9);
}

pub(super) async fn inbound_transactions_seen_recorded_purged(h: &mut Harness) {
    let s = &*h.store;
    let (a, b) = (dest("a.test"), dest("b.test:8448"));
    assert!(!s.txn_seen(&a, 1).await.expect("seen"));
    s.txn_record(&a, 1, 1_000).await.expect("record");
    s.txn_record(&a, 1, 5_000)
        .await
        .expect("recording twice is fine");
    s.txn_record(&a, u64::MAX, 2_000).await.expect("record");
    s.txn_record(&b, 1, 3_000).await.expect("record");
    assert!(s.txn_seen(&a, 1).await.expect("seen"));
    assert!(s.txn_seen(&a, u64::MAX).await.expect("seen"));
    assert!(!s.txn_seen(&a, 2).await.expect("seen"));
    assert!(s.txn_seen(&b, 1).await.expect("seen"));
    assert!(!s.txn_seen(&dest("c.test"), 1).await.expect("seen"));

    // Strictly before the cutoff goes; a repeated record kept its first time.
    assert_eq!(s.txn_purge_before(1_000).await.expect("purge"), 0);
    assert_eq!(s.txn_purge_before(2_001).await.expect("purge"), 2);
    assert!(!s.txn_seen(&a, 1).await.expect("seen"));
    assert!(!s.txn_seen(&a, u64::MAX).await.expect("seen"));
    assert!(s.txn_seen(&b, 1).await.expect("seen"));
    assert_eq!(s.txn_purge_before(2_001).await.expect("purge"), 0);
}

pub(super) async fn direct_enqueue_remote_dedupes_and_respects_cap(h: &mut Harness) {
    let s = &*h.store;
    let alice = user(1);
    let (origin, elsewhere) = (dest("other.example:8448"), dest("third.test"));
    assert!(
        s.direct_enqueue_remote(&direct(1, &alice, 9_000), &origin, mid(11), 3)
            .await
            .expect("enqueue")
    );
    // The same pair again (a resend, under the id this server gives it): not queued twice.
    assert!(
        !s.direct_enqueue_remote(&direct(2, &alice, 9_000), &origin, mid(11), 3)
            .await
            .expect("enqueue")
    );
    // The same origin id from another server is another message.
    assert!(
        s.direct_enqueue_remote(&direct(3, &alice, 9_500), &elsewhere, mid(11), 3)
            .await
            .expect("enqueue")
    );
    s.direct_enqueue(&direct(4, &alice, 9_000), 3)
        .await
        .expect("local enqueue");
    assert_eq!(queued(s, &alice).await, [1, 3, 4]);

    // At the cap: QueueFull, and the pair is not recorded, so a later retry gets through.
    assert!(matches!(
        s.direct_enqueue_remote(&direct(5, &alice, 9_000), &origin, mid(12), 3)
            .await,
        Err(StoreError::QueueFull)
    ));
    // A duplicate already queued is reported as such even when the queue is full.
    assert!(
        !s.direct_enqueue_remote(&direct(5, &alice, 9_000), &origin, mid(11), 3)
            .await
            .expect("enqueue")
    );
    // A clashing id is a Conflict, and does not record the pair either.
    assert!(matches!(
        s.direct_enqueue_remote(&direct(4, &alice, 9_000), &origin, mid(12), 10)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.direct_ack(&alice, &[mid(1), mid(4)]).await.expect("ack"),
        2
    );
    assert!(
        s.direct_enqueue_remote(&direct(5, &alice, 9_000), &origin, mid(12), 3)
            .await
            .expect("room again")
    );
    // An acknowledged message stays deduplicated.
    assert!(
        !s.direct_enqueue_remote(&direct(6, &alice, 9_000), &origin, mid(11), 3)
            .await
            .expect("enqueue")
    );
    assert_eq!(queued(s, &alice).await, [3, 5]);

    // Expiry forgets the origins of expired messages along with them.
    assert_eq!(s.direct_purge_expired(9_000).await.expect("purge"), 1);
    assert_eq!(queued(s, &alice).await, [3]);
    assert!(
        s.direct_enqueue_remote(&direct(7, &alice, 20_000), &origin, mid(11), 3)
            .await
            .expect("expired origins are forgotten")
    );
    assert!(
        !s.direct_enqueue_remote(&direct(8, &alice, 20_000), &elsewhere, mid(11), 3)
            .await
            .expect("unexpired origins are kept")
    );
    assert_eq!(queued(s, &alice).await, [3, 7]);
}

/// Recreates the harness database with the first migration only, as a server of the version
/// before federation storage left it, with a channel and a message in it.
async fn make_version_1_database(h: &mut Harness) {
    let owner = user(1).to_string();
    let ch = channel_id(1).to_string();
    let dir = tempfile::tempdir().expect("temporary directory");
    let backend = match &h.backend {
        Backend::Sqlite { .. } => "sqlite",
        Backend::Postgres { .. } => "postgres",
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend)
        .join("0001_initial.sql");
    std::fs::copy(&source, dir.path().join("0001_initial.sql")).expect("copy migration 1");
    let v1 = Migrator::new(dir.path()).await.expect("migration 1");
    h.store.close().await;
    match &h.backend {
        Backend::Sqlite { url, .. } => {
            let path = url.trim_start_matches("sqlite://");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .expect("url")
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options)
                .await
                .expect("connect");
            v1.run(&pool).await.expect("apply migration 1");
            sqlx::query("INSERT INTO channels VALUES (?, ?, ?, 0)")
                .bind(&ch)
                .bind(&owner)
                .bind(b"meta".as_slice())
                .execute(&pool)
                .await
                .expect("channel");
            sqlx::query("INSERT INTO messages VALUES (?, 5, ?, ?, 10, NULL, NULL)")
                .bind(&ch)
                .bind(&owner)
                .bind(b"old".as_slice())
                .execute(&pool)
                .await
                .expect("message");
            pool.close().await;
        }
        Backend::Postgres { url, schema } => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            for sql in [
                format!("DROP SCHEMA \"{schema}\" CASCADE"),
                format!("CREATE SCHEMA \"{schema}\""),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .expect("empty the test schema");
            }
            conn.close().await.expect("close");
            let options = sqlx::postgres::PgConnectOptions::from_str(url)
                .expect("url")
                .options([("search_path", schema.as_str())]);
            let pool = sqlx::PgPool::connect_with(options).await.expect("connect");
            v1.run(&pool).await.expect("apply migration 1");
            sqlx::query("INSERT INTO channels VALUES ($1, $2, $3, 0)")
                .bind(&ch)
                .bind(&owner)
                .bind(b"meta".as_slice())
                .execute(&pool)
                .await
                .expect("channel");
            sqlx::query("INSERT INTO messages VALUES ($1, 5, $2, $3, 10, NULL, NULL)")
                .bind(&ch)
                .bind(&owner)
                .bind(b"old".as_slice())
                .execute(&pool)
                .await
                .expect("message");
            pool.close().await;
        }
    }
}

pub(super) async fn migrations_upgrade_a_version_1_database(h: &mut Harness) {
    make_version_1_database(h).await;
    let ch = channel_id(1);
    let old = MessageRow {
        channel: ch.clone(),
        id: mid(5),
        sender: user(1),
        ciphertext: b"old".to_vec(),
        sent_at: 10,
        edited_at: None,
        reply_to: None,
        origin_id: None,
    };
    // Opening applies the second migration; opening again applies nothing.
    for round in 0..2 {
        h.reopen().await;
        let s = &*h.store;
        assert_eq!(
            s.message_get(&ch, mid(5)).await.expect("get"),
            Some(old.clone()),
            "round {round}"
        );
        assert_eq!(s.channel_last_seq(&ch).await.expect("seq"), 0);
        if round == 0 {
            s.message_insert(&relayed(&ch, 6, &remote_user(2), Some(60)))
                .await
                .expect("insert with an origin id");
            s.outbox_push(&[item("a.test", "first")], 1)
                .await
                .expect("push");
            s.txn_record(&dest("a.test"), 1, 1).await.expect("record");
        }
    }
    let s = &*h.store;
    assert_eq!(
        s.message_get(&ch, mid(6))
            .await
            .expect("get")
            .and_then(|m| m.origin_id),
        Some(mid(60))
    );
    assert_eq!(pending(s, "a.test").await, ["first"]);
    assert!(s.txn_seen(&dest("a.test"), 1).await.expect("seen"));
    assert_eq!(s.roles().await.expect("roles").len(), 1);
}

pub(super) async fn outbox_order_holds_under_concurrent_appends(h: &mut Harness) {
    const WRITERS: u64 = 8;
    const EACH: u64 = 12;
    warm_up(&h.store).await;
    for round in 0..ROUNDS {
        // A delivery worker, running beside the writers: what it has taken must never be
        // followed by an event numbered lower (it would never go back for that one).
        let reader = {
            let store = Arc::clone(&h.store);
            tokio::spawn(async move {
                let mut delivered: Vec<(u64, String)> = Vec::new();
                while delivered.len() < (WRITERS * EACH) as usize {
                    let batch = store.outbox_peek(&dest("a.test"), 7).await.expect("peek");
                    if let (Some((first, _)), Some((last, _))) = (batch.first(), delivered.last()) {
                        assert!(first > last, "event {first} showed up after {last}");
                    }
                    let seqs: Vec<u64> = batch.iter().map(|(seq, _)| *seq).collect();
                    let removed = store
                        .outbox_remove(&dest("a.test"), &seqs)
                        .await
                        .expect("remove");
                    assert_eq!(removed, seqs.len() as u64);
                    delivered.extend(
                        batch
                            .into_iter()
                            .map(|(seq, e)| (seq, String::from_utf8(e).expect("utf-8"))),
                    );
                    tokio::task::yield_now().await;
                }
                delivered
            })
        };
        at_once(&h.store, WRITERS, |store, w| async move {
            for k in 0..EACH {
                store
                    .outbox_push(&[item("a.test", &format!("{w}:{k}"))], 1)
                    .await
                    .expect("push");
            }
        })
        .await;
        let delivered = reader.await.expect("reader");
        // Each writer's events arrive in the order it pushed them, each exactly once.
        for w in 0..WRITERS {
            let mine: Vec<String> = delivered
                .iter()
                .map(|(_, e)| e.clone())
                .filter(|e| e.starts_with(&format!("{w}:")))
                .collect();
            let expected: Vec<String> = (0..EACH).map(|k| format!("{w}:{k}")).collect();
            assert_eq!(mine, expected, "round {round}, writer {w}");
        }
        assert_eq!(h.store.outbox_len(&dest("a.test")).await.expect("len"), 0);
    }
}

pub(super) async fn remote_dedupe_holds_under_concurrency(h: &mut Harness) {
    const TASKS: u64 = 12;
    warm_up(&h.store).await;
    let ch = make_channel(&*h.store, 1, &user(1), 0).await;
    for round in 0..u64::from(ROUNDS) {
        let alice = user(10 + round as u8);
        // One to-device resend racing itself: queued once.
        let outcomes = at_once(&h.store, TASKS, |store, i| {
            let row = direct(100 + i, &alice, 9_999);
            async move {
                store
                    .direct_enqueue_remote(&row, &dest("o.test"), mid(round + 1), 100)
                    .await
            }
        })
        .await;
        let queued_now = outcomes.iter().filter(|o| matches!(o, Ok(true))).count();
        assert_eq!(queued_now, 1, "round {round}: {outcomes:?}");
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(queued(&*h.store, &alice).await.len(), 1);

        // Distinct messages racing for the last places in a queue: the cap holds.
        let bob = remote_user(10 + round as u8);
        let outcomes = at_once(&h.store, TASKS, |store, i| {
            let row = direct(200 + i, &bob, 9_999);
            let origin_id = mid(1_000 * (round + 1) + i);
            async move {
                store
                    .direct_enqueue_remote(&row, &dest("o.test"), origin_id, 5)
                    .await
            }
        })
        .await;
        let full = outcomes
            .iter()
            .filter(|o| matches!(o, Err(StoreError::QueueFull)))
            .count();
        assert_eq!(
            (TASKS as usize - full, full),
            (5, TASKS as usize - 5),
            "{outcomes:?}"
        );
        assert_eq!(queued(&*h.store, &bob).await.len(), 5);

        // A channel send retried by a member server, racing itself: stored and announced once.
        let outcomes = at_once(&h.store, TASKS, |store, i| {
            let row = relayed(
                &ch,
                1_000 * (round + 1) + i,
                &remote_user(2),
                Some(round + 1),
            );
            async move {
                store
                    .commit_hosted(&HostedChange::Message(row), &[item("m.test", "sent")], 1)
                    .await
            }
        })
        .await;
        let stored = outcomes.iter().filter(|o| matches!(o, Ok(true))).count();
        let conflicts = outcomes
            .iter()
            .filter(|o| matches!(o, Err(StoreError::Conflict(_))))
            .count();
        assert_eq!((stored, conflicts), (1, TASKS as usize - 1), "{outcomes:?}");
        assert_eq!(
            h.store.outbox_len(&dest("m.test")).await.expect("len"),
            round + 1
        );
    }
}

pub(super) async fn direct_enqueue_remote_many_commits_together_item_by_item(h: &mut Harness) {
    let s = &*h.store;
    let alice = user(1);
    let origin = dest("other.example:8448");
    s.direct_enqueue_remote(&direct(1, &alice, 9_000), &origin, mid(11), 3)
        .await
        .expect("enqueue");
    // One batch: a fresh message, a resend of one already queued, a fresh one, and one past the
    // cap. Each gets its own answer; the refusal does not undo the others.
    let items = [
        (direct(2, &alice, 9_000), mid(12)),
        (direct(3, &alice, 9_000), mid(11)),
        (direct(4, &alice, 9_000), mid(13)),
        (direct(5, &alice, 9_000), mid(14)),
    ];
    let results = s
        .direct_enqueue_remote_many(&origin, &items, 3)
        .await
        .expect("batch");
    assert!(matches!(results[0], Ok(true)), "{results:?}");
    assert!(matches!(results[1], Ok(false)), "{results:?}");
    assert!(matches!(results[2], Ok(true)), "{results:?}");
    assert!(
        matches!(results[3], Err(StoreError::QueueFull)),
        "{results:?}"
    );
    assert_eq!(queued(s, &alice).await, [1, 2, 4]);
    // The refused one was not recorded: it goes through once there is room.
    s.direct_ack(&alice, &[mid(1)]).await.expect("ack");
    let again = s
        .direct_enqueue_remote_many(&origin, &items[3..], 3)
        .await
        .expect("batch");
    assert!(matches!(again[0], Ok(true)), "{again:?}");
}
