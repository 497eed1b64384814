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

both_backends!(
    open_registration_registers_once,
    closed_registration_refuses_new_keys,
    invite_registration_accepts_tokens_and_channel_invites,
);
