//! To-device messages: live delivery, the offline queue drained in order on connect, deletion
//! only on acknowledgement, the per-recipient cap.

use mobium_spec::client::{DirectAck, DirectSend, Event, Request, Response};
use mobium_spec::{ErrorCode, Keypair, UserId};

use crate::both_backends;
use crate::support::*;

async fn send(
    c: &mobium_client_api::sdk::Client,
    to: &UserId,
    body: &[u8],
) -> Result<Response, mobium_client_api::sdk::SdkError> {
    c.request(Request::DirectSend(DirectSend {
        to: to.clone(),
        ciphertext: body.to_vec(),
        txn: None,
    }))
    .await
}

async fn live_and_queued_delivery_until_acked(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (alice, _ae, _) = client(&server).await;
    let bob_key = Keypair::generate();
    let (bob, mut bob_events) = connect_as(&server, &bob_key).await.unwrap();
    let bob_id = bob.user_id().clone();

    // Live.
    send(&alice, &bob_id, b"live").await.unwrap();
    let m = next_event(&mut bob_events, |e| match e {
        Event::Direct(d) => Some(d),
        _ => None,
    })
    .await;
    assert_eq!(
        (m.from.clone(), m.ciphertext.as_slice()),
        (alice.user_id().clone(), &b"live"[..])
    );
    bob.close();
    drop(bob_events);

    // Offline: queued, then drained in order on connect, the unacked live one first.
    let mut sent = vec![m.id];
    for i in 0..5u8 {
        let Response::DirectSent(s) = send(&alice, &bob_id, &[i]).await.unwrap() else {
            panic!()
        };
        sent.push(s.id);
    }
    let (bob, mut bob_events) = connect_as(&server, &bob_key).await.unwrap();
    assert_eq!(bob.authed().queued, 6);
    let mut got = Vec::new();
    while got.len() < 6 {
        got.push(
            next_event(&mut bob_events, |e| match e {
                Event::Direct(d) => Some(d.id),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(got, sent, "drained in send order");

    // Acknowledge three; the other three come back on the next connection.
    let Response::DirectAcked(a) = bob
        .request(Request::DirectAck(DirectAck {
            ids: got[..3].to_vec(),
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(a.removed, 3);
    bob.close();
    let (bob, mut bob_events) = connect_as(&server, &bob_key).await.unwrap();
    assert_eq!(bob.authed().queued, 3);
    let first = next_event(&mut bob_events, |e| match e {
        Event::Direct(d) => Some(d.id),
        _ => None,
    })
    .await;
    assert_eq!(first, got[3]);
    server.stop().await;
}

async fn queue_cap_and_unknown_recipients(backend: Backend) {
    let Some(server) = start_with(backend, |c| c.max_offline_messages = 3).await else {
        return;
    };
    let (alice, _ae, _) = client(&server).await;
    let (bob, _be, bob_key) = client(&server).await;
    let bob_id = bob.user_id().clone();
    bob.close();
    for i in 0..3u8 {
        send(&alice, &bob_id, &[i]).await.unwrap();
    }
    assert_eq!(
        code(send(&alice, &bob_id, b"x").await),
        ErrorCode::QueueFull
    );
    let stranger = UserId::new(
        Keypair::generate().public(),
        server.running().app.server_name.clone(),
    );
    assert_eq!(
        code(send(&alice, &stranger, b"x").await),
        ErrorCode::NotFound
    );
    // The refused message did not displace the queued ones.
    let (bob, _be) = connect_as(&server, &bob_key).await.unwrap();
    assert_eq!(bob.authed().queued, 3);
    server.stop().await;
}

/// `client/direct.md` §Retention: no copy once acknowledged. SQLite keeps deleted rows in free
/// page space unless `secure_delete` is on; after a clean shutdown (which checkpoints the WAL)
/// the ciphertext must be found in no file of the data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_ciphertext_leaves_no_copy_in_sqlite_files() {
    let Some(mut server) = start(Backend::Sqlite).await else {
        return;
    };
    let (alice, _ae, _) = client(&server).await;
    let bob_key = Keypair::generate();
    let (bob, mut bob_events) = connect_as(&server, &bob_key).await.unwrap();
    let marker: Vec<u8> = b"acked-and-gone-".repeat(20);
    send(&alice, bob.user_id(), &marker).await.unwrap();
    let m = next_event(&mut bob_events, |e| match e {
        Event::Direct(d) => Some(d),
        _ => None,
    })
    .await;
    bob.request(Request::DirectAck(DirectAck { ids: vec![m.id] }))
        .await
        .unwrap();
    alice.close();
    bob.close();
    server.running.take().unwrap().shutdown().await.unwrap();
    for (name, bytes) in files_of(&server.config.data_dir) {
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_slice()),
            "{name} still holds the acknowledged ciphertext"
        );
    }
}

/// With federation disabled, a to-device message for another server is refused at once
/// (`federation_unavailable`), not accepted into a queue nothing would drain.
async fn remote_direct_without_federation_is_refused(backend: Backend) {
    let Some(server) = start_with(backend, |c| c.fed_enabled = false).await else {
        return;
    };
    let (alice, _ae, _) = client(&server).await;
    let far: UserId = format!("{}@elsewhere.test", Keypair::generate().public())
        .parse()
        .unwrap();
    assert_eq!(
        code(send(&alice, &far, b"hello").await),
        ErrorCode::FederationUnavailable
    );
    server.stop().await;
}

both_backends!(
    live_and_queued_delivery_until_acked,
    queue_cap_and_unknown_recipients,
    remote_direct_without_federation_is_refused,
);
