//! What happens to an acknowledged to-device message when the recipient's server cannot take
//! it: a full queue is backpressure (kept, resent as the queue drains, nothing lost), a refusal
//! for good is reported to the sender (`direct_failed`), and a database failure on the
//! receiving side is "try again", never "no such user".

use std::time::Duration;

use futures_util::{StreamExt, stream};
use mobium_client_api::sdk::{Client, ConnectOptions, Events};
use mobium_federation::{Ack, FedConfig, Federation, FederationHandler, StaticPeer, WellKnownMode};
use mobium_spec::client::*;
use mobium_spec::federation::{
    ChannelSend, FedDirect, FedEvent, HostedBody, HostedEvent, Query, QueryResult, Transaction,
};
use mobium_spec::{ErrorCode, Keypair, ServerName, UserId};

use crate::both_backends;
use crate::federation::{direct, specs, start_node, start_node_with, user};
use crate::support::*;

/// Sends `n` numbered DMs on one connection, pipelined; the server handles one connection's
/// requests in order, so the numbers are also the order of acceptance.
async fn send_numbered(alice: &Client, to: &UserId, n: u32) {
    let sends = stream::iter(0..n)
        .map(|i| {
            let to = to.clone();
            async move {
                alice
                    .request(Request::DirectSend(DirectSend {
                        to,
                        ciphertext: i.to_be_bytes().to_vec(),
                        txn: None,
                    }))
                    .await
            }
        })
        .buffered(32);
    let answers: Vec<_> = sends.collect().await;
    for (i, a) in answers.into_iter().enumerate() {
        assert!(
            matches!(a, Ok(Response::DirectSent(_))),
            "send {i} was not accepted: {a:?}"
        );
    }
}

/// Receives until `n` messages arrived, acknowledging in small batches with a pause between:
/// a user who drains steadily but slowly.
async fn drain_slowly(client: &Client, events: &mut Events, n: usize) -> Vec<u32> {
    let mut got = Vec::with_capacity(n);
    let mut unacked = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while got.len() < n {
        match tokio::time::timeout(Duration::from_millis(20), events.recv()).await {
            Ok(Some(Event::Direct(d))) => {
                got.push(u32::from_be_bytes(d.ciphertext[..4].try_into().unwrap()));
                unacked.push(d.id);
                continue;
            }
            Ok(Some(_)) => continue,
            Ok(None) => panic!("connection closed after {} messages", got.len()),
            Err(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} messages arrived within 120 s",
            got.len()
        );
        for chunk in unacked.chunks(10) {
            client
                .request(Request::DirectAck(DirectAck {
                    ids: chunk.to_vec(),
                }))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        unacked.clear();
    }
    got
}

async fn full_queue_is_backpressure_not_loss(backend: Backend) {
    const SENT: u32 = 5000;
    const CAP: u32 = 100;
    let all = specs(2);
    let Some(a) = start_node(backend, &all[0], &all).await else {
        return;
    };
    let Some(mut b) =
        start_node_with(backend, &all[1], &all, |c| c.max_offline_messages = CAP).await
    else {
        return;
    };
    let (alice, _ae, _) = user(&a).await;
    let bob_key = Keypair::generate();
    let (bob, _be) = Client::connect(&b.ws_url(), &bob_key, ConnectOptions::default())
        .await
        .unwrap();
    let bob_id = bob.user_id().clone();
    bob.close();

    // Bob's server is down while Alice sends; every send is accepted into her outbox.
    let b_running = b.running.take().unwrap();
    let b_port = b_running.addr.port();
    b_running.shutdown().await.unwrap();
    send_numbered(&alice, &bob_id, SENT).await;

    // It returns with a queue cap far below the backlog; Bob drains and acknowledges slowly.
    let mut config = b.config.clone();
    config.port = b_port;
    b.running = Some(restart_on(config).await);
    let (bob, mut be) = Client::connect(&b.ws_url(), &bob_key, ConnectOptions::default())
        .await
        .unwrap();
    let got = drain_slowly(&bob, &mut be, SENT as usize).await;
    assert_eq!(
        got,
        (0..SENT).collect::<Vec<_>>(),
        "every message once, in order"
    );
    no_event(&mut be, Duration::from_millis(500), |e| {
        matches!(e, Event::Direct(_))
    })
    .await;
    let outbox = &a.running().app.federation().unwrap().outbox;
    eventually(|| async { (outbox.pending(&all[1].name).await == 0).then_some(()) }).await;
    a.stop().await;
    b.stop().await;
}

/// One recipient's deferred backlog — longer than what a delivery worker reads at once — does
/// not hold up a message for another recipient on the same server.
async fn a_deferred_backlog_does_not_starve_other_recipients(backend: Backend) {
    let all = specs(2);
    let Some(a) = start_node(backend, &all[0], &all).await else {
        return;
    };
    let Some(b) = start_node_with(backend, &all[1], &all, |c| c.max_offline_messages = 50).await
    else {
        return;
    };
    let (alice, _ae, _) = user(&a).await;
    let bob_key = Keypair::generate();
    let (bob, _be) = Client::connect(&b.ws_url(), &bob_key, ConnectOptions::default())
        .await
        .unwrap();
    let bob_id = bob.user_id().clone();
    bob.close();
    let (carol, mut ce, _) = user(&b).await;
    // Bob is offline with a queue of 50: all but 50 of these wait in node1's outbox.
    send_numbered(&alice, &bob_id, 4_300).await;
    alice
        .request(Request::DirectSend(DirectSend {
            to: carol.user_id().clone(),
            ciphertext: b"olm:for carol".to_vec(),
            txn: None,
        }))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), direct(&mut ce))
        .await
        .expect("carol's message is not held behind bob's backlog");
    assert_eq!(got.ciphertext, b"olm:for carol");
    a.stop().await;
    b.stop().await;
}

async fn refusal_for_good_is_reported_to_the_sender(backend: Backend) {
    let all = specs(2);
    let Some(a) = start_node(backend, &all[0], &all).await else {
        return;
    };
    let Some(b) = start_node(backend, &all[1], &all).await else {
        return;
    };
    let alice_key = Keypair::generate();
    let (alice, mut ae) = Client::connect(&a.ws_url(), &alice_key, ConnectOptions::default())
        .await
        .unwrap();
    // Nobody with this key ever registered on node2.
    let nobody = UserId::new(Keypair::generate().public(), all[1].name.clone());
    let Response::DirectSent(sent) = alice
        .request(Request::DirectSend(DirectSend {
            to: nobody.clone(),
            ciphertext: b"olm:anyone there?".to_vec(),
            txn: None,
        }))
        .await
        .unwrap()
    else {
        panic!("not accepted");
    };
    let failed = |e: Event| match e {
        Event::DirectFailed(f) => Some(f),
        _ => None,
    };
    let f = next_event(&mut ae, failed).await;
    assert_eq!(
        (f.id, &f.to, f.error.code),
        (sent.id, &nobody, ErrorCode::NotFound)
    );

    // The notice is queued until acknowledged: a new connection gets it again.
    alice.close();
    let (alice, mut ae) = Client::connect(&a.ws_url(), &alice_key, ConnectOptions::default())
        .await
        .unwrap();
    let again = next_event(&mut ae, failed).await;
    assert_eq!(again.id, sent.id);
    let Response::DirectAcked(acked) = alice
        .request(Request::DirectAck(DirectAck { ids: vec![sent.id] }))
        .await
        .unwrap()
    else {
        panic!("ack");
    };
    assert_eq!(acked.removed, 1);
    alice.close();
    let (_alice, mut ae) = Client::connect(&a.ws_url(), &alice_key, ConnectOptions::default())
        .await
        .unwrap();
    no_event(&mut ae, Duration::from_millis(500), |e| {
        matches!(e, Event::DirectFailed(_))
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// Runs one statement on a server's database from outside the server.
async fn poke_database(server: &TestServer, statement: &str) {
    use sqlx::Connection;
    let statement = sqlx::AssertSqlSafe(statement.to_owned());
    match &server.config.database_url {
        Some(url) if url.starts_with("postgres") => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(statement).execute(&mut c).await.unwrap();
        }
        _ => {
            let path = server.config.data_dir.join("mobium.db");
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query(statement).execute(&mut c).await.unwrap();
        }
    }
}

async fn receiver_database_failure_is_retried_not_refused(backend: Backend) {
    let all = specs(2);
    let Some(a) = start_node(backend, &all[0], &all).await else {
        return;
    };
    let Some(b) = start_node(backend, &all[1], &all).await else {
        return;
    };
    let (alice, mut ae, _) = user(&a).await;
    let (bob, mut be, _) = user(&b).await;

    // The receiver's user lookup fails (its table is gone for a moment).
    poke_database(&b, "ALTER TABLE users RENAME TO users_away").await;
    alice
        .request(Request::DirectSend(DirectSend {
            to: bob.user_id().clone(),
            ciphertext: b"olm:through a hiccup".to_vec(),
            txn: None,
        }))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    poke_database(&b, "ALTER TABLE users_away RENAME TO users").await;

    let got = tokio::time::timeout(Duration::from_secs(20), direct(&mut be))
        .await
        .expect("the message arrives once the database answers again");
    assert_eq!(got.ciphertext, b"olm:through a hiccup");
    no_event(&mut ae, Duration::from_millis(300), |e| {
        matches!(e, Event::DirectFailed(_))
    })
    .await;
    a.stop().await;
    b.stop().await;
}

async fn oversized_federated_direct_is_refused_not_queued(backend: Backend) {
    let all = specs(2);
    let Some(a) = start_node_with(backend, &all[0], &all, |c| c.max_message_size = 64 * 1024).await
    else {
        return;
    };
    let Some(b) = start_node_with(backend, &all[1], &all, |c| c.max_message_size = 4096).await
    else {
        return;
    };
    let (alice, mut ae, _) = user(&a).await;
    let (bob, mut be, _) = user(&b).await;
    // Within node1's limit, beyond what node2's clients could ever receive.
    let Response::DirectSent(big) = alice
        .request(Request::DirectSend(DirectSend {
            to: bob.user_id().clone(),
            ciphertext: vec![7; 10_000],
            txn: None,
        }))
        .await
        .unwrap()
    else {
        panic!("not accepted");
    };
    let f = next_event(&mut ae, |e| match e {
        Event::DirectFailed(f) => Some(f),
        _ => None,
    })
    .await;
    assert_eq!((f.id, f.error.code), (big.id, ErrorCode::TooLarge));
    alice
        .request(Request::DirectSend(DirectSend {
            to: bob.user_id().clone(),
            ciphertext: b"olm:small".to_vec(),
            txn: None,
        }))
        .await
        .unwrap();
    assert_eq!(direct(&mut be).await.ciphertext, b"olm:small");
    a.stop().await;
    b.stop().await;
}

/// The SDK reports a refusal to the user who sent the message, once, and acknowledges it.
async fn sdk_reports_a_refused_dm(backend: Backend) {
    use mobium_client_api::sdk::e2ee::{ClientEvent, CryptoState, Messenger};
    let all = specs(2);
    let Some(a) =
        start_node_with(backend, &all[0], &all, |c| c.max_message_size = 256 * 1024).await
    else {
        return;
    };
    let Some(b) = start_node_with(backend, &all[1], &all, |c| c.max_message_size = 64 * 1024).await
    else {
        return;
    };
    let start = |url: String| async move {
        let state = CryptoState::generate().unwrap();
        Messenger::start(state, None, &url, ConnectOptions::default())
            .await
            .unwrap()
    };
    let (alice, mut inbox) = start(a.ws_url()).await;
    let (bob, _bob_inbox) = start(b.ws_url()).await;
    // Bob's messenger publishes its keys just after it connects.
    let text = "x".repeat(100_000);
    let sent = eventually(|| async { alice.send_dm(bob.user_id(), &text).await.ok() }).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let refused = loop {
        match tokio::time::timeout_at(deadline, inbox.recv()).await {
            Ok(Some(ClientEvent::DirectFailed { id, to, error })) => break (id, to, error.code),
            Ok(Some(_)) => {}
            other => panic!("no refusal reported: {other:?}"),
        }
    };
    assert_eq!(
        refused,
        (sent.id, bob.user_id().clone(), ErrorCode::TooLarge)
    );
    // Acknowledged by the SDK: the server no longer holds the notice for alice.
    let store = a.running().app.store.clone();
    let me = alice.user_id().clone();
    eventually(|| async {
        store
            .direct_failures_pending(&me, None, 10)
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    alice.close();
    a.stop().await;
    b.stop().await;
}

/// A bare federation peer (no homeserver behind it) that node2 knows as a static peer.
async fn bare_peer(
    spec: &crate::federation::NodeSpec,
    all: &[crate::federation::NodeSpec],
) -> Federation {
    struct Nothing;
    #[async_trait::async_trait]
    impl FederationHandler for Nothing {
        async fn transaction(
            &self,
            _: &ServerName,
            _: u64,
            _: Transaction,
        ) -> Result<Ack, ErrorBody> {
            Ok(Ack::default())
        }
        async fn query(&self, _: &ServerName, _: Query) -> Result<QueryResult, ErrorBody> {
            Err(ErrorBody::new(ErrorCode::UnknownOp, "nothing here"))
        }
    }
    let mut config = FedConfig::new(spec.name.clone(), spec.key.clone());
    config.bind = format!("127.0.0.1:{}", spec.fed_port).parse().unwrap();
    config.discovery.well_known = WellKnownMode::Off;
    config.discovery.static_peers = all
        .iter()
        .map(|p| StaticPeer {
            name: p.name.clone(),
            addr: format!("127.0.0.1:{}", p.fed_port).parse().unwrap(),
            key: p.key.public(),
        })
        .collect();
    Federation::start(config, std::sync::Arc::new(Nothing))
        .await
        .unwrap()
}

async fn federated_input_is_checked_like_client_input(backend: Backend) {
    let all = specs(2);
    let Some(host) = start_node_with(backend, &all[1], &all, |c| c.max_message_size = 4096).await
    else {
        return;
    };
    let peer = bare_peer(&all[0], &all).await;
    let (owner, mut oe, _) = user(&host).await;
    let Response::ChannelCreated(created) = owner
        .request(Request::ChannelCreate(ChannelCreate {
            metadata: b"enc:garden".to_vec(),
        }))
        .await
        .unwrap()
    else {
        panic!("create");
    };
    let sender = UserId::new(Keypair::generate().public(), all[0].name.clone());
    let send = |ciphertext: Vec<u8>| {
        FedEvent::ChannelSend(ChannelSend {
            channel: created.channel.clone(),
            sender: sender.clone(),
            origin_id: mobium_spec::MessageId::new(1).unwrap(),
            ciphertext,
            reply_to: None,
        })
    };
    let direct_to = |ciphertext: Vec<u8>| {
        FedEvent::Direct(FedDirect {
            id: mobium_spec::MessageId::new(2).unwrap(),
            from: sender.clone(),
            to: owner.user_id().clone(),
            ciphertext,
            sent_at: 1,
        })
    };
    let ack = peer
        .send_transaction(
            &all[1].name,
            Transaction {
                events: vec![
                    send(Vec::new()),
                    send(vec![1; 8000]),
                    direct_to(vec![1; 8000]),
                ],
                ephemeral: Vec::new(),
            },
        )
        .await
        .unwrap();
    let codes: Vec<_> = ack
        .rejected
        .iter()
        .map(|r| (r.index, r.error.code))
        .collect();
    assert_eq!(
        codes,
        vec![
            (0, ErrorCode::InvalidArgument),
            (1, ErrorCode::TooLarge),
            (2, ErrorCode::TooLarge)
        ]
    );
    assert!(ack.deferred.is_empty());

    // One rule for a transaction: an event that cannot be applied now is deferred on its own,
    // and the events beside it are applied (not "an error, but the direct was delivered").
    let unknown: mobium_spec::ChannelId = format!("#12345@{}", all[0].name).parse().unwrap();
    let hosted = FedEvent::Hosted(HostedEvent {
        channel: unknown,
        seq: 7,
        body: HostedBody::MemberJoined {
            user: sender.clone(),
        },
    });
    let mut small = direct_to(b"olm:hi".to_vec());
    if let FedEvent::Direct(d) = &mut small {
        d.id = mobium_spec::MessageId::new(3).unwrap();
    }
    let ack = peer
        .send_transaction(
            &all[1].name,
            Transaction {
                events: vec![small, hosted],
                ephemeral: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert!(ack.rejected.is_empty(), "{:?}", ack.rejected);
    let deferred: Vec<_> = ack
        .deferred
        .iter()
        .map(|d| (d.index, d.error.code))
        .collect();
    assert_eq!(deferred, vec![(1, ErrorCode::NotFound)]);
    assert!(ack.deferred[0].error.retry_after_ms.is_some());
    assert_eq!(direct(&mut oe).await.ciphertext, b"olm:hi");
    peer.shutdown().await;
    host.stop().await;
}

both_backends!(
    a_deferred_backlog_does_not_starve_other_recipients,
    full_queue_is_backpressure_not_loss,
    refusal_for_good_is_reported_to_the_sender,
    receiver_database_failure_is_retried_not_refused,
    oversized_federated_direct_is_refused_not_queued,
    federated_input_is_checked_like_client_input,
    sdk_reports_a_refused_dm,
);
