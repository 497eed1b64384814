//! Transactions and queries between nodes that know each other as static peers.

use mobium_federation::{FedError, Query, QueryResult, StaticPeer};
use mobium_spec::{ErrorCode, PROTOCOL_VERSION};

use crate::support::*;

#[tokio::test]
async fn two_nodes_exchange_transactions_and_queries() {
    let nodes = static_net(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);

    let mut transaction = txn(a, &b.name, 3);
    if let mobium_spec::federation::FedEvent::Direct(d) = &mut transaction.events[1] {
        d.ciphertext.clear();
    }
    let ack = a.fed.send_transaction(&b.name, transaction).await.unwrap();
    // The handler's verdict travels back signed: event 1 was refused, the others applied.
    assert_eq!(ack.rejected.len(), 1);
    assert_eq!(ack.rejected[0].index, 1);
    assert_eq!(ack.rejected[0].error.code, ErrorCode::InvalidArgument);
    assert_eq!(*b.handler.events.lock().unwrap(), 3);
    assert_eq!(b.handler.total_calls(), 1);
    assert!(
        b.handler
            .calls
            .lock()
            .unwrap()
            .keys()
            .all(|(o, _)| *o == a.name)
    );

    let pong = b.fed.query(&a.name, Query::Ping).await.unwrap();
    assert_eq!(
        pong,
        QueryResult::Pong {
            protocol_version: PROTOCOL_VERSION,
            software: "test n0.test".into(),
        }
    );

    // A refusal by the handler comes back as `Rejected` with the handler's code.
    let user = mobium_spec::UserId::new(keypair(50).public(), a.name.clone());
    match b.fed.query(&a.name, Query::Profile { user }).await {
        Err(FedError::Rejected(e)) => assert_eq!(e.code, ErrorCode::NotFound),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Each side learned of the other through `peer_connected`, once.
    assert_eq!(*b.handler.connected.lock().unwrap(), vec![a.name.clone()]);
    assert_eq!(*a.handler.connected.lock().unwrap(), vec![b.name.clone()]);

    let (sa, sb) = (a.fed.stats(), b.fed.stats());
    assert_eq!(sa.requests_sent, 1);
    assert_eq!(sb.requests_sent, 2);
    assert_eq!(sa.requests_received, 2);
    assert_eq!(sb.requests_received, 1);
    assert_eq!(sa.requests_failed + sb.requests_failed, 0);
    assert!(sa.rejected.is_empty() && sb.rejected.is_empty());
}

#[tokio::test]
async fn three_nodes_all_talk_to_each_other() {
    let nodes = static_net(3).await;
    let mut tasks = tokio::task::JoinSet::new();
    for from in &nodes {
        for to in &nodes {
            if from.name == to.name {
                continue;
            }
            for _ in 0..5 {
                let (fed, dest, t) = (from.fed.clone(), to.name.clone(), txn(from, &to.name, 2));
                tasks.spawn(async move {
                    let ack = fed.send_transaction(&dest, t).await.unwrap();
                    assert!(ack.rejected.is_empty());
                });
            }
            let (fed, dest) = (from.fed.clone(), to.name.clone());
            tasks.spawn(async move {
                let pong = fed.query(&dest, Query::Ping).await.unwrap();
                assert!(matches!(pong, QueryResult::Pong { software, .. } if software == format!("test {dest}")));
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    for node in &nodes {
        assert_eq!(node.handler.total_calls(), 10, "{}", node.name);
        assert_eq!(*node.handler.events.lock().unwrap(), 20);
        // One outgoing connection per destination, shared by all its requests.
        let stats = node.fed.stats();
        assert_eq!(stats.connections_out, 2, "{}", node.name);
        assert_eq!(stats.connections_in, 2, "{}", node.name);
        assert_eq!(stats.requests_sent, 12);
    }
}

#[tokio::test]
async fn concurrent_requests_share_one_connection() {
    let nodes = static_net(2).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (fed, dest, t) = (
            nodes[0].fed.clone(),
            nodes[1].name.clone(),
            txn(&nodes[0], &nodes[1].name, 1),
        );
        tasks.spawn(async move { fed.send_transaction(&dest, t).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    assert_eq!(nodes[1].handler.total_calls(), 200);
    assert_eq!(nodes[0].fed.stats().connections_out, 1);
    assert_eq!(nodes[1].fed.stats().connections_in, 1);
}

#[tokio::test]
async fn dialler_refuses_a_peer_presenting_another_key() {
    let mut configs = static_configs(2);
    // n0 believes n1 has the key of seed 77: n1's real certificate must be refused.
    for peer in &mut configs[0].discovery.static_peers {
        if peer.name.as_str() == "n1.test" {
            *peer = StaticPeer {
                key: keypair(77).public(),
                ..peer.clone()
            };
        }
    }
    let mut nodes = Vec::new();
    for config in configs {
        nodes.push(start_node(config).await);
    }
    match nodes[0]
        .fed
        .send_transaction(&nodes[1].name, txn(&nodes[0], &nodes[1].name, 1))
        .await
    {
        Err(FedError::Unreachable(_)) => {}
        other => panic!("expected the handshake to fail, got {other:?}"),
    }
    assert_eq!(nodes[1].handler.total_calls(), 0);
    // The other direction connects (n1 knows n0's real key), but n0 refuses n1's requests: its
    // discovery says n1 uses another key than the one n1's certificate carries.
    match nodes[1]
        .fed
        .send_transaction(&nodes[0].name, txn(&nodes[1], &nodes[0].name, 1))
        .await
    {
        Err(FedError::Rejected(e)) => assert_eq!(e.code, ErrorCode::FedUnknownKey),
        other => panic!("expected fed_unknown_key, got {other:?}"),
    }
    assert_eq!(nodes[0].handler.total_calls(), 0);
}

#[tokio::test]
async fn unknown_destination_is_a_discovery_error() {
    let nodes = static_net(1).await;
    let ghost = name("ghost.test");
    match nodes[0]
        .fed
        .send_transaction(&ghost, txn(&nodes[0], &ghost, 1))
        .await
    {
        Err(FedError::Discovery(_)) => {}
        other => panic!("expected a discovery error, got {other:?}"),
    }
    assert_eq!(nodes[0].fed.stats().requests_failed, 1);
}
