//! Authentication and the registration policy (`SC_REGISTRATION`).

use mobium_homeserver::config::Registration;
use mobium_spec::client::{ChannelCreate, InviteCreate, Request, Response};
use mobium_spec::{ErrorCode, Keypair};

use crate::both_backends;
use crate::support::*;

async fn open_registration_registers_once(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let key = Keypair::generate();
    let (c, _e) = connect_as(&server, &key).await.unwrap();
    assert!(c.authed().registered);
    assert_eq!(c.user_id().key, key.public());
    assert_eq!(c.user_id().server, server.running().app.server_name);
    let (c2, _e2) = connect_as(&server, &key).await.unwrap();
    assert!(
        !c2.authed().registered,
        "second login is not a registration"
    );
    server.stop().await;
}

async fn closed_registration_refuses_new_keys(backend: Backend) {
    let Some(server) = start_with(backend, |c| c.registration = Registration::Closed).await else {
        return;
    };
    let err = connect_as(&server, &Keypair::generate()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RegistrationClosed));
    server.stop().await;
}

async fn invite_registration_accepts_tokens_and_channel_invites(backend: Backend) {
    let Some(mut server) = start_with(backend, |c| {
        c.registration = Registration::Invite;
        c.admin_token = Some("a-very-secret-admin-token".into());
    })
    .await
    else {
        return;
    };
    // No invite, a made-up invite: refused.
    let newbie = Keypair::generate();
    assert_eq!(
        connect_as(&server, &newbie).await.unwrap_err().code(),
        Some(ErrorCode::RegistrationClosed)
    );
    assert_eq!(
        connect_with_invite(&server, &newbie, "nope")
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::RegistrationClosed)
    );

    // The admin API needs the token.
    let (status, _) = http(&server, "POST", "/v1/admin/registration-tokens", &[], "{}").await;
    assert_eq!(status, 401);
    let (status, body) = http(
        &server,
        "POST",
        "/v1/admin/registration-tokens",
        &[("Authorization", "Bearer a-very-secret-admin-token")],
        r#"{"uses": 1}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let (owner, _e) = connect_with_invite(&server, &newbie, &token).await.unwrap();
    assert!(owner.authed().registered);
    // A one-use token is spent.
    assert_eq!(
        connect_with_invite(&server, &Keypair::generate(), &token)
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::RegistrationClosed)
    );

    // A channel invite of this server lets a friend register.
    let Response::ChannelCreated(ch) = owner
        .request(Request::ChannelCreate(ChannelCreate { metadata: vec![1] }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let Response::Invite(inv) = owner
        .request(Request::InviteCreate(InviteCreate {
            channel: ch.channel,
            max_uses: None,
            expires_in_secs: None,
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let (friend, _e) = connect_with_invite(&server, &Keypair::generate(), &inv.code)
        .await
        .unwrap();
    assert!(friend.authed().registered);

    // Registered users survive a restart and log in without an invite.
    server.restart().await;
    assert!(connect_as(&server, &newbie).await.is_ok());
    server.stop().await;
}

/// Every invalid `auth.user` — not a curve point, small order, uppercase — is `malformed` with the
/// frame's id, and the connection stays usable for a correct `auth` under the same challenge.
async fn invalid_auth_keys_are_malformed_and_keep_the_connection(backend: Backend) {
    use mobium_spec::client::{AuthProof, ClientFrame, Event, ServerFrame};
    let Some(server) = start(backend).await else {
        return;
    };
    let key = Keypair::generate();
    let good_hex = key.public().to_string();
    // 64 valid hex digits that decode to no curve point (the first y = k that is not one; y = 0
    // and y = 1 are small-order points, refused too).
    let not_a_point = (2u8..)
        .map(|k| {
            let mut b = [0u8; 32];
            b[0] = k;
            b
        })
        .find(|b| mobium_spec::PublicKey::from_bytes(*b).is_err())
        .map(hex::encode)
        .unwrap();
    let small_order = format!("01{}", "0".repeat(62));
    let invalid = [not_a_point, small_order, good_hex.to_uppercase()];

    let mut ws = raw(&server).await;
    let Some(ServerFrame::Event {
        body: Event::Challenge(c),
    }) = raw_next(&mut ws).await
    else {
        panic!("expected a challenge");
    };
    let proof = AuthProof {
        nonce: c.nonce,
        server: c.server,
        user: key.public(),
    };
    for (i, bad) in invalid.iter().enumerate() {
        let id = 10 + i as u64;
        let frame = ClientFrame {
            id,
            body: Request::Auth(proof.sign(&key, None)),
        };
        // The same frame with only the key's text replaced (same length, so still well-formed).
        let mut bytes = mobium_spec::encoding::encode(&frame);
        let at = bytes
            .windows(64)
            .position(|w| w == good_hex.as_bytes())
            .unwrap();
        bytes[at..at + 64].copy_from_slice(bad.as_bytes());
        use futures_util::SinkExt;
        ws.send(tokio_tungstenite::tungstenite::Message::Binary(
            bytes.into(),
        ))
        .await
        .unwrap();
        match raw_next(&mut ws).await {
            Some(ServerFrame::Error { id: got, error }) => {
                assert_eq!((got, error.code), (Some(id), ErrorCode::Malformed), "{bad}")
            }
            other => panic!("expected malformed for {bad}, got {other:?}"),
        }
    }
    raw_send(
        &mut ws,
        &ClientFrame {
            id: 20,
            body: Request::Auth(proof.sign(&key, None)),
        },
    )
    .await;
    match raw_next(&mut ws).await {
        Some(ServerFrame::Response {
            id: 20,
            body: Response::Authed(_),
        }) => {}
        other => panic!("expected authed, got {other:?}"),
    }
    server.stop().await;
}

both_backends!(
    open_registration_registers_once,
    closed_registration_refuses_new_keys,
    invite_registration_accepts_tokens_and_channel_invites,
    invalid_auth_keys_are_malformed_and_keep_the_connection,
);
