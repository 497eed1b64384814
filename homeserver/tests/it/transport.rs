//! Transport rules: malformed input, unknown operations, oversized frames, text frames,
//! requests before authentication, rate limits and connection caps — each answered with the
//! spec's error code while the server keeps serving.

use mobium_spec::ErrorCode;
use mobium_spec::client::{ClientFrame, Request, Response, ServerFrame};
use serde::Serialize;

use crate::both_backends;
use crate::support::*;

fn error_code(f: Option<ServerFrame>) -> (Option<u64>, ErrorCode) {
    match f {
        Some(ServerFrame::Error { id, error }) => (id, error.code),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

async fn bad_input_keeps_the_connection(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let key = mobium_spec::Keypair::generate();
    let mut ws = raw(&server).await;

    // Before authentication, other requests are refused but the connection stays.
    let _challenge = raw_next(&mut ws).await;
    raw_send(
        &mut ws,
        &ClientFrame {
            id: 5,
            body: Request::Ping,
        },
    )
    .await;
    assert_eq!(
        error_code(raw_next(&mut ws).await),
        (Some(5), ErrorCode::Unauthenticated)
    );
    drop(ws);

    let mut ws = raw(&server).await;
    raw_auth(&mut ws, &key).await;

    // Not MessagePack at all.
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::Binary(vec![0xc1, 0xff, 0x00].into()))
        .await
        .unwrap();
    assert_eq!(
        error_code(raw_next(&mut ws).await),
        (None, ErrorCode::Malformed)
    );

    // A request whose body does not fit the schema: the id is still echoed.
    #[derive(Serialize)]
    struct BadBody {
        op: &'static str,
        channel: u32,
    }
    #[derive(Serialize)]
    struct Frame<B> {
        id: u64,
        body: B,
    }
    raw_send(
        &mut ws,
        &Frame {
            id: 7,
            body: BadBody {
                op: "message_send",
                channel: 3,
            },
        },
    )
    .await;
    assert_eq!(
        error_code(raw_next(&mut ws).await),
        (Some(7), ErrorCode::Malformed)
    );

    // An operation from the future.
    #[derive(Serialize)]
    struct Future {
        op: &'static str,
    }
    raw_send(
        &mut ws,
        &Frame {
            id: 8,
            body: Future { op: "teleport" },
        },
    )
    .await;
    assert_eq!(
        error_code(raw_next(&mut ws).await),
        (Some(8), ErrorCode::UnknownOp)
    );

    // Text frames are not part of the protocol.
    ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(
        error_code(raw_next(&mut ws).await),
        (None, ErrorCode::Malformed)
    );

    // Authenticating twice.
    let again = mobium_spec::client::AuthProof {
        nonce: vec![0; 32],
        server: "x.test".parse().unwrap(),
        user: key.public(),
    }
    .sign(&key, None);
    raw_send(
        &mut ws,
        &ClientFrame {
            id: 9,
            body: Request::Auth(again),
        },
    )
    .await;
    assert_eq!(
        error_code(raw_next(&mut ws).await),
        (Some(9), ErrorCode::AlreadyAuthenticated)
    );

    // After all that, the connection still works.
    raw_send(
        &mut ws,
        &ClientFrame {
            id: 10,
            body: Request::Ping,
        },
    )
    .await;
    match raw_next(&mut ws).await {
        Some(ServerFrame::Response {
            id: 10,
            body: Response::Pong,
        }) => {}
        other => panic!("expected pong, got {other:?}"),
    }
    let m = &server.running().app.metrics;
    assert!(m.errors_of(ErrorCode::Malformed) >= 3);
    assert_eq!(m.errors_of(ErrorCode::UnknownOp), 1);
    server.stop().await;
}

async fn oversized_frames_are_refused_and_others_keep_working(backend: Backend) {
    let Some(server) = start_with(backend, |c| c.max_message_size = 4096).await else {
        return;
    };
    let key = mobium_spec::Keypair::generate();
    let mut ws = raw(&server).await;
    raw_auth(&mut ws, &key).await;
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let _ = ws.send(Message::Binary(vec![0x90; 10_000].into())).await;
    // The client is told why, then the connection ends (the unread rest of the oversized
    // message makes the kernel reset the socket, so the close frame may not arrive).
    assert_eq!(
        error_code(raw_next(&mut ws).await),
        (None, ErrorCode::TooLarge)
    );
    assert!(matches!(raw_close_code(&mut ws).await, None | Some(1009)));
    // Another client is unaffected.
    let (c, _e, _) = client(&server).await;
    assert_eq!(c.request(Request::Ping).await.unwrap(), Response::Pong);
    assert!(server.running().app.metrics.errors_of(ErrorCode::TooLarge) >= 1);
    server.stop().await;
}

async fn auth_failures_close_the_connection(backend: Backend) {
    let Some(server) = start_with(backend, |c| c.auth_timeout = 1).await else {
        return;
    };
    // A signature over the wrong nonce.
    let key = mobium_spec::Keypair::generate();
    let mut ws = raw(&server).await;
    let Some(ServerFrame::Event {
        body: mobium_spec::client::Event::Challenge(c),
    }) = raw_next(&mut ws).await
    else {
        panic!()
    };
    let forged = mobium_spec::client::AuthProof {
        nonce: vec![0; 32],
        server: c.server,
        user: key.public(),
    }
    .sign(&key, None);
    raw_send(
        &mut ws,
        &ClientFrame {
            id: 1,
            body: Request::Auth(forged),
        },
    )
    .await;
    assert_eq!(
        error_code(raw_next(&mut ws).await),
        (Some(1), ErrorCode::AuthFailed)
    );
    assert_eq!(raw_close_code(&mut ws).await, Some(1008));

    // Silence until the timeout.
    let mut ws = raw(&server).await;
    let _challenge = raw_next(&mut ws).await;
    assert_eq!(
        error_code(raw_next(&mut ws).await),
        (None, ErrorCode::AuthTimeout)
    );
    assert_eq!(raw_close_code(&mut ws).await, Some(1008));
    server.stop().await;
}

async fn rate_limit_answers_with_retry_after(backend: Backend) {
    let Some(server) = start_with(backend, |c| {
        c.rate_limit_per_sec = 1;
        c.rate_limit_burst = 5;
    })
    .await
    else {
        return;
    };
    let (c, _e, _) = client(&server).await;
    for _ in 0..5 {
        c.request(Request::Ping).await.unwrap();
    }
    match c.request(Request::Ping).await {
        Err(mobium_client_api::sdk::SdkError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::RateLimited);
            let wait = e.retry_after_ms.expect("retry hint");
            assert!(wait > 0 && wait <= 1000, "{wait}");
        }
        other => panic!("expected rate_limited, got {other:?}"),
    }
    // Another user has their own bucket.
    let (d, _e2, _) = client(&server).await;
    assert_eq!(d.request(Request::Ping).await.unwrap(), Response::Pong);
    server.stop().await;
}

async fn connection_caps_refuse_the_upgrade(backend: Backend) {
    let Some(server) = start_with(backend, |c| c.max_connections_per_ip = 2).await else {
        return;
    };
    let _a = raw(&server).await;
    let _b = raw(&server).await;
    match tokio_tungstenite::connect_async(server.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503);
            let body = resp.body().clone().unwrap_or_default();
            assert_eq!(String::from_utf8_lossy(&body), "too_many_connections");
        }
        other => panic!("expected a refused upgrade, got {:?}", other.map(|_| ())),
    }
    drop(_a);
    // The slot is released when a connection ends.
    eventually(|| async {
        tokio_tungstenite::connect_async(server.ws_url())
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    server.stop().await;
}

/// A frame with trailing bytes, or with its `id` key twice, is `malformed` with `id: nil`: the
/// server cannot know which id the client meant.
async fn ambiguous_frames_are_malformed_without_an_id(backend: Backend) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let Some(server) = start(backend).await else {
        return;
    };
    let key = mobium_spec::Keypair::generate();
    let mut ws = raw(&server).await;
    raw_auth(&mut ws, &key).await;

    let mut trailing = mobium_spec::encoding::encode(&ClientFrame {
        id: 11,
        body: Request::Ping,
    });
    trailing.push(0xc0);
    ws.send(Message::Binary(trailing.into())).await.unwrap();
    assert_eq!(
        error_code(raw_next(&mut ws).await),
        (None, ErrorCode::Malformed)
    );

    // {"id": 12, "id": 13, "body": {"op": "ping"}}
    let mut twice = vec![0x83];
    for id in [12u8, 13] {
        twice.extend_from_slice(&[0xa2, b'i', b'd', id]);
    }
    twice.extend_from_slice(&[0xa4, b'b', b'o', b'd', b'y', 0x81, 0xa2, b'o', b'p']);
    twice.extend_from_slice(&[0xa4, b'p', b'i', b'n', b'g']);
    ws.send(Message::Binary(twice.into())).await.unwrap();
    assert_eq!(
        error_code(raw_next(&mut ws).await),
        (None, ErrorCode::Malformed)
    );
    server.stop().await;
}

both_backends!(
    bad_input_keeps_the_connection,
    oversized_frames_are_refused_and_others_keep_working,
    auth_failures_close_the_connection,
    rate_limit_answers_with_retry_after,
    connection_caps_refuse_the_upgrade,
    ambiguous_frames_are_malformed_without_an_id,
);
