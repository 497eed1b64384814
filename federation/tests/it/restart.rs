//! Reconnection: a peer that restarts (new endpoint, same key, same address) is reached again
//! without the caller noticing.

use crate::support::*;

#[tokio::test]
async fn restarted_peer_is_reconnected_transparently() {
    let configs = static_configs(2);
    let a = start_node(configs[0].clone()).await;
    let b = start_node(configs[1].clone()).await;
    a.fed
        .send_transaction(&b.name, txn(&a, &b.name, 1))
        .await
        .unwrap();
    assert_eq!(a.fed.stats().connections_out, 1);

    b.fed.shutdown().await;
    drop(b);
    let b = start_node(configs[1].clone()).await;

    // The pooled connection to the old b is dead; the next request dials the new one.
    a.fed
        .send_transaction(&b.name, txn(&a, &b.name, 1))
        .await
        .unwrap();
    assert_eq!(b.handler.total_calls(), 1);
    assert_eq!(*b.handler.connected.lock().unwrap(), vec![a.name.clone()]);
    eventually("old connection counted as closed", || {
        a.fed.stats().connections_out == 1
    })
    .await;
    assert_eq!(a.fed.stats().requests_failed, 0);
}

#[tokio::test]
async fn requests_to_a_shutting_down_peer_fail_cleanly() {
    let nodes = static_net(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    a.fed
        .send_transaction(&b.name, txn(a, &b.name, 1))
        .await
        .unwrap();
    b.fed.shutdown().await;
    let err = a
        .fed
        .send_transaction(&b.name, txn(a, &b.name, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            mobium_federation::FedError::Unreachable(_) | mobium_federation::FedError::Timeout
        ),
        "{err:?}"
    );
}

/// A crash, not a shutdown: b's runtime is dropped with everything on it, so nothing tells a
/// that the connection is gone. The restarted b (same key, same address) answers a's next packet
/// on the dead connection with a stateless reset (its reset key derives from the server key), and
/// a reconnects within the same request instead of timing out.
#[tokio::test]
async fn crashed_peer_is_reconnected_without_waiting_for_a_timeout() {
    let configs = static_configs(2);
    let a = start_node(configs[0].clone()).await;

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (crash_tx, crash_rx) = std::sync::mpsc::channel::<()>();
    let (gone_tx, gone_rx) = tokio::sync::oneshot::channel();
    let b_config = configs[1].clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let b = runtime.block_on(start_node(b_config));
        ready_tx.send(b.name.clone()).unwrap();
        crash_rx.recv().unwrap();
        drop(runtime); // every task of b dies here; no CONNECTION_CLOSE is sent
        drop(b); // releases the socket
        gone_tx.send(()).unwrap();
    });
    let b_name = ready_rx.await.unwrap();
    a.fed
        .send_transaction(&b_name, txn(&a, &b_name, 1))
        .await
        .unwrap();
    crash_tx.send(()).unwrap();
    gone_rx.await.unwrap();

    let b = start_node(configs[1].clone()).await;
    let started = std::time::Instant::now();
    a.fed
        .send_transaction(&b.name, txn(&a, &b.name, 1))
        .await
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "reconnection took {:?}",
        started.elapsed()
    );
    assert_eq!(b.handler.total_calls(), 1);
    assert_eq!(a.fed.stats().requests_failed, 0);
}
