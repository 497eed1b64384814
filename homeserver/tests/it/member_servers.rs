//! Channels seen from a member server (a server whose users joined a channel hosted elsewhere):
//! what it reports must match what the host knows, not just its own partial copy.

use mobium_spec::ChannelId;
use mobium_spec::client::*;

use crate::both_backends;
use crate::federation::{specs, start_node, user};
use crate::support::*;

/// Creates a channel on `owner`'s server and returns it with a shareable `code@host` invite.
async fn hosted_channel(owner: &mobium_client_api::sdk::Client) -> (ChannelId, String) {
    let Response::ChannelCreated(ch) = owner
        .request(Request::ChannelCreate(ChannelCreate {
            metadata: b"sealed".to_vec(),
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let Response::Invite(inv) = owner
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
    let code = format!("{}@{}", inv.code, ch.channel.host);
    (ch.channel, code)
}

/// `channel_list` on a member server counts the members `channel_members` lists (the host's),
/// including those who joined before any of its users did.
async fn member_count_on_a_member_server_is_the_hosts(backend: Backend) {
    let all = specs(2);
    let Some(host) = start_node(backend, &all[0], &all).await else {
        return;
    };
    let Some(member) = start_node(backend, &all[1], &all).await else {
        return;
    };
    let (owner, _oe, _) = user(&host).await;
    let (early, _ee, _) = user(&host).await;
    let (bob, _be, _) = user(&member).await;
    let (ch, code) = hosted_channel(&owner).await;
    for c in [&early, &bob] {
        c.request(Request::ChannelJoin(ChannelJoin { code: code.clone() }))
            .await
            .unwrap();
    }
    let Response::Members(m) = bob
        .request(Request::ChannelMembers(ChannelRef {
            channel: ch.clone(),
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let Response::Channels(list) = bob.request(Request::ChannelList).await.unwrap() else {
        panic!()
    };
    let counts: Vec<(ChannelId, u32)> = list
        .channels
        .iter()
        .map(|c| (c.channel.clone(), c.member_count))
        .collect();
    assert_eq!((m.members.len(), counts), (3, vec![(ch, 3)]));
    member.stop().await;
    host.stop().await;
}

both_backends!(member_count_on_a_member_server_is_the_hosts);
