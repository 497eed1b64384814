//! Cases for the group commit (`Store::commit_writes`): several callers' writes in one
//! transaction, each succeeding or failing alone, in the order given. What matters to a user:
//! one caller's conflict must not lose another caller's acknowledged message.

use super::federation::{item, pending, relayed};
use super::*;

/// A group commit: each write succeeds or fails alone, in one transaction, in the order given.
pub(super) async fn group_commit_applies_each_write_alone_in_order(h: &mut Harness) {
    let s = &*h.store;
    let (owner, bob) = (user(1), remote_user(2));
    let ch = make_channel(s, 1, &owner, 0).await;
    let txn = |t: &str| ClientTxn {
        user: owner.clone(),
        txn: t.to_owned(),
        answer: t.as_bytes().to_vec(),
        expires_at: u64::MAX / 2,
    };
    let hosted = |id: u64, origin: Option<u64>, event: &str, t: Option<&str>| Write::Hosted {
        change: HostedChange::Message(relayed(&ch, id, &bob, origin)),
        items: vec![item("a.test", event)],
        txn: t.map(txn),
        order: None,
    };
    let writes = [
        hosted(1, Some(100), "m1", Some("t1")),
        // The same origin id again: a conflict, undone alone.
        hosted(2, Some(100), "dup", None),
        // A no-op: nothing of it is written.
        Write::Hosted {
            change: HostedChange::Delete {
                channel: ch.clone(),
                id: mid(9),
            },
            items: vec![item("a.test", "no-op")],
            txn: Some(txn("t-no-op")),
            order: None,
        },
        Write::Outbox {
            items: vec![item("a.test", "d1")],
            txn: Some(txn("t2")),
        },
        // A transaction id seen before, in the same group: nothing written.
        hosted(3, Some(101), "again", Some("t1")),
        Write::Outbox {
            items: vec![item("a.test", "d-again")],
            txn: Some(txn("t2")),
        },
        hosted(4, Some(102), "m4", None),
    ];
    let outcomes = s.commit_writes(&writes, 5).await.expect("group commits");
    let shape: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Ok(b) => b.to_string(),
            Err(StoreError::Conflict(_)) => "conflict".into(),
            Err(StoreError::TxnSeen) => "seen".into(),
            Err(e) => format!("{e}"),
        })
        .collect();
    assert_eq!(
        shape,
        ["true", "conflict", "false", "true", "seen", "false", "true"]
    );
    assert_eq!(pending(s, "a.test").await, ["m1", "d1", "m4"]);
    for (id, stored) in [(1, true), (2, false), (3, false), (4, true)] {
        assert_eq!(
            s.message_get(&ch, mid(id)).await.expect("get").is_some(),
            stored,
            "message {id}"
        );
    }
    // The no-op's transaction id was not kept: the same id can be used for a real send.
    assert!(
        s.commit_one(hosted(5, Some(103), "m5", Some("t-no-op")), 6)
            .await
            .expect("commit")
    );
}
