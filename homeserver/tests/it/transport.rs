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

/// Appends a `str` (fixstr or str 8).
fn put_str(out: &mut Vec<u8>, text: &str) {
    match u8::try_from(text.len()) {
        Ok(n) if n < 32 => out.push(0xa0 | n),
        Ok(n) => out.extend([0xd9, n]),
        Err(_) => panic!("test strings are short"),
    }
    out.extend_from_slice(text.as_bytes());
}

/// `{"id": id, "body": body}` with `body` already encoded.
fn frame_bytes(id: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82];
    put_str(&mut out, "id");
    out.push(id);
    put_str(&mut out, "body");
    out.extend_from_slice(body);
    out
}

/// A map body: the `op` tag, then fields already encoded as key/value pairs.
fn body_bytes(op: &str, fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0x80 | u8::try_from(fields.len() + 1).expect("few fields")];
    put_str(&mut out, "op");
    put_str(&mut out, op);
    for (k, v) in fields {
        put_str(&mut out, k);
        out.extend_from_slice(v);
    }
    out
}

/// Spec `encoding.md` §Value types and §MessagePack with named fields: what serde alone would
/// accept (a `str` or an integer array for `bin`, positional arrays, repeated keys, deep nesting)
/// is answered `malformed`, and the connection keeps serving.
async fn strict_decoding_refuses_what_serde_would_accept(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let key = mobium_spec::Keypair::generate();
    let mut ws = raw(&server).await;
    raw_auth(&mut ws, &key).await;
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let mut channel = Vec::new();
    put_str(&mut channel, "#4194304001@example.org");
    let mut user = Vec::new();
    put_str(&mut user, &format!("{}@example.org", key.public()));
    let text = [0xa1, b'x'];
    let ints = [0x93, 1, 2, 3];
    let mut prekey = vec![0x83];
    put_str(&mut prekey, "key_id");
    put_str(&mut prekey, "AAAAAQ");
    put_str(&mut prekey, "key");
    put_str(&mut prekey, "kkkk");
    put_str(&mut prekey, "signature");
    prekey.extend([0xc4, 64]);
    prekey.extend([0u8; 64]);
    // [105, {"op": "ping"}]
    let mut positional_frame = vec![0x92, 105];
    positional_frame.extend(body_bytes("ping", &[]));
    // {"op": "ping", "x": 1, "x": 1, ...}: as many copies as fit the 1 MiB frame limit.
    let copies: u32 = 300_000;
    let mut repeated = vec![0xdf];
    repeated.extend((copies + 1).to_be_bytes());
    put_str(&mut repeated, "op");
    put_str(&mut repeated, "ping");
    for _ in 0..copies {
        repeated.extend([0xa1, b'x', 0x01]);
    }
    // 33 levels in all: frame, body, then 31 arrays.
    let mut deep = vec![0x91; 30];
    deep.push(0x90);

    let cases: Vec<(&str, Vec<u8>, Option<u64>)> = vec![
        (
            "message_send.ciphertext as str",
            frame_bytes(
                20,
                &body_bytes(
                    "message_send",
                    &[
                        ("channel", &channel),
                        ("ciphertext", &text),
                        ("reply_to", &[0xc0]),
                    ],
                ),
            ),
            Some(20),
        ),
        (
            "message_send.ciphertext as integers",
            frame_bytes(
                21,
                &body_bytes(
                    "message_send",
                    &[
                        ("channel", &channel),
                        ("ciphertext", &ints),
                        ("reply_to", &[0xc0]),
                    ],
                ),
            ),
            Some(21),
        ),
        (
            "channel_create.metadata as str",
            frame_bytes(22, &body_bytes("channel_create", &[("metadata", &text)])),
            Some(22),
        ),
        (
            "direct_send.ciphertext as str",
            frame_bytes(
                23,
                &body_bytes("direct_send", &[("to", &user), ("ciphertext", &text)]),
            ),
            Some(23),
        ),
        (
            "prekey key as str",
            frame_bytes(
                24,
                &body_bytes("keys_upload", &[("signed_prekey", &prekey)]),
            ),
            Some(24),
        ),
        ("positional frame", positional_frame, None),
        (
            "positional body",
            frame_bytes(106, &[0x91, 0xa4, b'p', b'i', b'n', b'g']),
            Some(106),
        ),
        (
            "repeated key",
            frame_bytes(107, &body_bytes("ping", &[("x", &[0x01]), ("x", &[0x02])])),
            None,
        ),
        ("300,000 repeated keys", frame_bytes(108, &repeated), None),
        (
            "33 levels deep",
            frame_bytes(109, &body_bytes("ping", &[("x", &deep)])),
            None,
        ),
    ];
    for (what, bytes, id) in cases {
        ws.send(Message::Binary(bytes.into())).await.unwrap();
        assert_eq!(
            error_code(raw_next(&mut ws).await),
            (id, ErrorCode::Malformed),
            "{what}"
        );
    }

    raw_send(
        &mut ws,
        &ClientFrame {
            id: 110,
            body: Request::Ping,
        },
    )
    .await;
    match raw_next(&mut ws).await {
        Some(ServerFrame::Response {
            id: 110,
            body: Response::Pong,
        }) => {}
        other => panic!("expected pong, got {other:?}"),
    }
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
    strict_decoding_refuses_what_serde_would_accept,
    ambiguous_frames_are_malformed_without_an_id,
);
