//! Presence and typing reach exactly the users who share a channel.

use std::time::Duration;

use mobium_spec::client::*;

use crate::both_backends;
use crate::support::*;

async fn presence_and_typing_reach_co_members(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (alice, mut ae, _) = client(&server).await;
    let (stranger, mut se, _) = client(&server).await;
    let Response::ChannelCreated(ch) = alice
        .request(Request::ChannelCreate(ChannelCreate { metadata: vec![] }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let Response::Invite(inv) = alice
        .request(Request::InviteCreate(InviteCreate {
            channel: ch.channel.clone(),
            max_uses: None,
            expires_in_secs: None,
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let bob_key = mobium_spec::Keypair::generate();
    let (bob, mut be) = connect_as(&server, &bob_key).await.unwrap();
    bob.request(Request::ChannelJoin(ChannelJoin { code: inv.code }))
        .await
        .unwrap();

    let status_of = |who: mobium_spec::UserId| {
        move |e: Event| match e {
            Event::Presence(p) if p.user == who => Some(p.status),
            _ => None,
        }
    };
    bob.request(Request::PresenceSet(PresenceSet {
        status: PresenceStatus::Dnd,
    }))
    .await
    .unwrap();
    assert_eq!(
        next_event(&mut ae, status_of(bob.user_id().clone())).await,
        PresenceStatus::Dnd
    );
    // Invisible looks offline to others.
    bob.request(Request::PresenceSet(PresenceSet {
        status: PresenceStatus::Invisible,
    }))
    .await
    .unwrap();
    assert_eq!(
        next_event(&mut ae, status_of(bob.user_id().clone())).await,
        PresenceStatus::Offline
    );
    let Response::Presences(list) = alice.request(Request::PresenceList).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        list.entries,
        vec![PresenceEntry {
            user: bob.user_id().clone(),
            status: PresenceStatus::Offline
        }]
    );
    bob.request(Request::PresenceSet(PresenceSet {
        status: PresenceStatus::Online,
    }))
    .await
    .unwrap();
    assert_eq!(
        next_event(&mut ae, status_of(bob.user_id().clone())).await,
        PresenceStatus::Online
    );

    // Typing goes to the other members, not back to the typer.
    bob.request(Request::Typing(ChannelRef {
        channel: ch.channel.clone(),
    }))
    .await
    .unwrap();
    let t = next_event(&mut ae, |e| match e {
        Event::Typing(t) => Some(t),
        _ => None,
    })
    .await;
    assert_eq!(t.user, *bob.user_id());

    // Disconnecting shows offline.
    bob.close();
    assert_eq!(
        next_event(&mut ae, status_of(bob.user_id().clone())).await,
        PresenceStatus::Offline
    );
    // Someone who shares no channel heard none of it.
    no_event(&mut se, Duration::from_millis(200), |e| {
        matches!(e, Event::Presence(_) | Event::Typing(_))
    })
    .await;
    no_event(&mut be, Duration::from_millis(50), |e| {
        matches!(e, Event::Typing(_))
    })
    .await;
    drop(stranger);
    server.stop().await;
}

both_backends!(presence_and_typing_reach_co_members);
