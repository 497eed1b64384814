//! Presence and typing reach exactly the users who share a channel.

use std::time::Duration;

use mobium_spec::client::*;

use crate::both_backends;
use crate::support::*;

async fn presence_and_typing_reach_co_members(backend: Backend) {
    // Without a grace period, offline is announced as the last connection closes.
    let Some(server) = start_with(backend, |c| c.presence_grace = 0).await else {
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

/// A reconnect within the grace period continues the session: the others see no offline/online
/// pair (what every `mobium client` command used to cause); offline comes a grace after the last
/// disconnect.
async fn a_reconnect_within_the_grace_announces_nothing(backend: Backend) {
    let grace = Duration::from_secs(1);
    let Some(server) = start_with(backend, |c| c.presence_grace = grace.as_secs()).await else {
        return;
    };
    let (alice, mut ae, _) = client(&server).await;
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
    let (bob, _be) = connect_as(&server, &bob_key).await.unwrap();
    bob.request(Request::ChannelJoin(ChannelJoin { code: inv.code }))
        .await
        .unwrap();
    let bob_id = bob.user_id().clone();
    // Bob's arrival in the channel is not a presence change; drain what came so far.
    no_event(&mut ae, Duration::from_millis(100), |_| false).await;

    bob.close();
    let (bob, _be) = connect_as(&server, &bob_key).await.unwrap();
    // Past the first disconnect's grace: still nothing about Bob.
    no_event(
        &mut ae,
        grace + Duration::from_millis(700),
        |e| matches!(e, Event::Presence(p) if p.user == bob_id),
    )
    .await;
    let started = std::time::Instant::now();
    bob.close();
    let status = next_event(&mut ae, |e| match e {
        Event::Presence(p) if p.user == bob_id => Some(p.status),
        _ => None,
    })
    .await;
    assert_eq!(status, PresenceStatus::Offline);
    assert!(started.elapsed() >= grace - Duration::from_millis(100));
    server.stop().await;
}

both_backends!(
    presence_and_typing_reach_co_members,
    a_reconnect_within_the_grace_announces_nothing,
);
