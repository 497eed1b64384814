//! Channels: invites (limits, expiry, revocation), membership, fan-out, history pages,
//! edit/delete permissions, kick and ban, roles and overrides.

use std::collections::HashSet;

use mobium_client_api::sdk::{Client, Events};
use mobium_spec::client::*;
use mobium_spec::permissions::Permissions;
use mobium_spec::{ChannelId, ErrorCode, MessageId};

use crate::both_backends;
use crate::support::*;

async fn invite(
    c: &Client,
    ch: &ChannelId,
    max_uses: Option<u32>,
    expires_in_secs: Option<u64>,
) -> String {
    let r = c
        .request(Request::InviteCreate(InviteCreate {
            channel: ch.clone(),
            max_uses,
            expires_in_secs,
        }))
        .await
        .unwrap();
    let Response::Invite(i) = r else {
        panic!("{r:?}")
    };
    assert_eq!(i.code.len(), 22);
    i.code
}

async fn join(c: &Client, code: &str) -> Result<Response, mobium_client_api::sdk::SdkError> {
    c.request(Request::ChannelJoin(ChannelJoin {
        code: code.to_owned(),
    }))
    .await
}

async fn send(
    c: &Client,
    ch: &ChannelId,
    body: &[u8],
) -> Result<Response, mobium_client_api::sdk::SdkError> {
    c.request(Request::MessageSend(MessageSend {
        channel: ch.clone(),
        ciphertext: body.to_vec(),
        reply_to: None,
        txn: None,
    }))
    .await
}

async fn next_message(e: &mut Events) -> ChannelMessage {
    next_event(e, |ev| match ev {
        Event::Message(m) => Some(m),
        _ => None,
    })
    .await
}

async fn invites_limits_expiry_and_revocation(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (owner, _oe, _) = client(&server).await;
    let ch = create_channel(&owner).await;

    let once = invite(&owner, &ch, Some(1), None).await;
    let (a, _ae, _) = client(&server).await;
    let (b, _be, _) = client(&server).await;
    let Response::Joined(info) = join(&a, &once).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        (
            info.channel.clone(),
            info.member_count,
            info.metadata.as_slice()
        ),
        (ch.clone(), 2, &b"sealed"[..])
    );
    assert_eq!(code(join(&b, &once).await), ErrorCode::InviteExhausted);
    assert_eq!(
        code(join(&a, &invite(&owner, &ch, None, None).await).await),
        ErrorCode::Conflict
    );

    let soon = invite(&owner, &ch, None, Some(1)).await;
    // Wait until the server no longer lists it as usable, then try it.
    eventually(|| async {
        let Response::Invites(list) = owner
            .request(Request::InviteList(ChannelRef {
                channel: ch.clone(),
            }))
            .await
            .unwrap()
        else {
            panic!()
        };
        (!list.invites.iter().any(|i| i.code == soon)).then_some(())
    })
    .await;
    assert_eq!(code(join(&b, &soon).await), ErrorCode::InviteExpired);

    let revoked = invite(&owner, &ch, None, None).await;
    owner
        .request(Request::InviteRevoke(InviteRevoke {
            code: revoked.clone(),
        }))
        .await
        .unwrap();
    assert_eq!(code(join(&b, &revoked).await), ErrorCode::InviteInvalid);
    assert_eq!(
        code(join(&b, "no-such-code").await),
        ErrorCode::InviteInvalid
    );

    // Concurrent use never exceeds max_uses.
    let five = invite(&owner, &ch, Some(5), None).await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (c, _e, _) = client(&server).await;
        let code = five.clone();
        tasks.push(tokio::spawn(async move { join(&c, &code).await.is_ok() }));
    }
    let mut joined = 0;
    for t in tasks {
        joined += usize::from(t.await.unwrap());
    }
    assert_eq!(joined, 5);
    let Response::Members(m) = owner
        .request(Request::ChannelMembers(ChannelRef {
            channel: ch.clone(),
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(m.members.len(), 1 + 1 + 5);
    server.stop().await;
}

async fn messages_fan_out_and_page_through_history(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (owner, mut oe, _) = client(&server).await;
    let ch = create_channel(&owner).await;
    let code = invite(&owner, &ch, None, None).await;
    let (a, mut ae, _) = client(&server).await;
    let (b, mut be, _) = client(&server).await;
    join(&a, &code).await.unwrap();
    join(&b, &code).await.unwrap();
    let (outsider, _xe, _) = client(&server).await;

    let Response::MessageSent(sent) = send(&a, &ch, b"hello").await.unwrap() else {
        panic!()
    };
    for events in [&mut oe, &mut ae, &mut be] {
        let m = next_message(events).await;
        assert_eq!(
            (m.id, m.sender.clone(), m.ciphertext.as_slice()),
            (sent.id, a.user_id().clone(), &b"hello"[..])
        );
    }
    // Outsiders see nothing and cannot probe the channel.
    assert_eq!(
        code_of(send(&outsider, &ch, b"x").await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code_of(
            outsider
                .request(Request::History(History {
                    channel: ch.clone(),
                    before: None,
                    after: None,
                    limit: None
                }))
                .await
        ),
        ErrorCode::NotFound
    );

    // 120 more messages, then page backwards and forwards.
    let mut ids: Vec<MessageId> = vec![sent.id];
    for i in 0..120u32 {
        let Response::MessageSent(s) = send(&b, &ch, &i.to_be_bytes()).await.unwrap() else {
            panic!()
        };
        ids.push(s.id);
    }
    let page = |before: Option<MessageId>, after: Option<MessageId>, limit: Option<u32>| {
        let owner = owner.clone();
        let ch = ch.clone();
        async move {
            let Response::Messages(m) = owner
                .request(Request::History(History {
                    channel: ch,
                    before,
                    after,
                    limit,
                }))
                .await
                .unwrap()
            else {
                panic!()
            };
            (
                m.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
                m.has_more,
            )
        }
    };
    assert_eq!(page(None, None, Some(50)).await, (ids[71..].to_vec(), true));
    assert_eq!(
        page(Some(ids[71]), None, Some(50)).await,
        (ids[21..71].to_vec(), true)
    );
    assert_eq!(
        page(Some(ids[21]), None, Some(50)).await,
        (ids[..21].to_vec(), false)
    );
    assert_eq!(
        page(None, Some(ids[0]), Some(100)).await,
        (ids[1..101].to_vec(), true)
    );
    assert_eq!(
        page(None, Some(ids[100]), Some(100)).await,
        (ids[101..].to_vec(), false)
    );
    assert_eq!(
        page(Some(ids[10]), Some(ids[5]), None).await.0,
        ids[6..10].to_vec()
    );
    assert_eq!(
        code_of(
            owner
                .request(Request::History(History {
                    channel: ch.clone(),
                    before: None,
                    after: None,
                    limit: Some(101)
                }))
                .await
        ),
        ErrorCode::InvalidArgument
    );
    server.stop().await;
}

fn code_of(r: Result<Response, mobium_client_api::sdk::SdkError>) -> ErrorCode {
    code(r)
}

async fn edit_delete_kick_ban_and_overrides(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (owner, mut oe, _) = client(&server).await;
    let ch = create_channel(&owner).await;
    let code = invite(&owner, &ch, None, None).await;
    let (a, mut ae, _) = client(&server).await;
    let (b, mut be, _) = client(&server).await;
    join(&a, &code).await.unwrap();
    join(&b, &code).await.unwrap();

    let Response::MessageSent(m) = send(&a, &ch, b"v1").await.unwrap() else {
        panic!()
    };
    // Only the sender (or manage_messages) may edit or delete.
    let edit = |c: &Client, text: &[u8]| {
        let c = c.clone();
        let req = Request::MessageEdit(MessageEdit {
            channel: ch.clone(),
            id: m.id,
            ciphertext: text.to_vec(),
        });
        async move { c.request(req).await }
    };
    assert_eq!(code_of(edit(&b, b"evil").await), ErrorCode::Forbidden);
    edit(&a, b"v2").await.unwrap();
    let edited = next_event(&mut be, |e| match e {
        Event::MessageEdited(x) => Some(x),
        _ => None,
    })
    .await;
    assert_eq!(
        (edited.id, edited.ciphertext.as_slice()),
        (m.id, &b"v2"[..])
    );
    // The owner holds every permission, manage_messages included.
    owner
        .request(Request::MessageDelete(MessageRef {
            channel: ch.clone(),
            id: m.id,
        }))
        .await
        .unwrap();
    next_event(&mut ae, |e| {
        matches!(e, Event::MessageDeleted(d) if d.id == m.id).then_some(())
    })
    .await;
    let Response::Messages(h) = owner
        .request(Request::History(History {
            channel: ch.clone(),
            before: None,
            after: None,
            limit: None,
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(h.messages.is_empty());

    // A read-only channel: everyone loses send; one user gets it back.
    let everyone = OverrideTarget::Role {
        role: EVERYONE_ROLE,
    };
    owner
        .request(Request::OverrideSet(OverrideSet {
            channel: ch.clone(),
            target: everyone.clone(),
            allow: Permissions::NONE,
            deny: Permissions::SEND,
        }))
        .await
        .unwrap();
    assert_eq!(code_of(send(&a, &ch, b"x").await), ErrorCode::Forbidden);
    owner
        .request(Request::OverrideSet(OverrideSet {
            channel: ch.clone(),
            target: OverrideTarget::User {
                user: b.user_id().clone(),
            },
            allow: Permissions::SEND,
            deny: Permissions::NONE,
        }))
        .await
        .unwrap();
    send(&b, &ch, b"allowed").await.unwrap();
    let Response::Permissions(p) = a
        .request(Request::ChannelPermissions(ChannelRef {
            channel: ch.clone(),
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(
        p.permissions.contains(Permissions::VIEW) && !p.permissions.contains(Permissions::SEND)
    );
    owner
        .request(Request::OverrideClear(OverrideClear {
            channel: ch.clone(),
            target: everyone,
        }))
        .await
        .unwrap();
    send(&a, &ch, b"speaking again").await.unwrap();

    // Members cannot kick; the owner can; the kicked member is told and loses access.
    assert_eq!(
        code_of(
            a.request(Request::ChannelKick(MemberRef {
                channel: ch.clone(),
                user: b.user_id().clone()
            }))
            .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code_of(
            a.request(Request::ChannelKick(MemberRef {
                channel: ch.clone(),
                user: owner.user_id().clone()
            }))
            .await
        ),
        ErrorCode::Forbidden
    );
    owner
        .request(Request::ChannelKick(MemberRef {
            channel: ch.clone(),
            user: b.user_id().clone(),
        }))
        .await
        .unwrap();
    let left = next_event(&mut be, |e| match e {
        Event::MemberLeft(l) => Some(l),
        _ => None,
    })
    .await;
    assert_eq!(
        (left.user.clone(), left.reason),
        (b.user_id().clone(), LeaveReason::Kicked)
    );
    assert_eq!(code_of(send(&b, &ch, b"x").await), ErrorCode::NotFound);
    // Kicked members may come back with an invite; banned ones may not.
    join(&b, &code).await.unwrap();
    owner
        .request(Request::ChannelBan(MemberRef {
            channel: ch.clone(),
            user: b.user_id().clone(),
        }))
        .await
        .unwrap();
    assert_eq!(code_of(join(&b, &code).await), ErrorCode::Banned);
    owner
        .request(Request::ChannelUnban(MemberRef {
            channel: ch.clone(),
            user: b.user_id().clone(),
        }))
        .await
        .unwrap();
    join(&b, &code).await.unwrap();
    let _ = next_message(&mut oe).await;

    // Server-wide roles need manage_roles, which ordinary users lack.
    assert_eq!(
        code_of(
            a.request(Request::RoleCreate(RoleCreate {
                name: "mods".into(),
                permissions: Permissions::KICK
            }))
            .await
        ),
        ErrorCode::Forbidden
    );
    let Response::Channels(list) = b.request(Request::ChannelList).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        list.channels
            .iter()
            .map(|c| c.channel.clone())
            .collect::<HashSet<_>>(),
        HashSet::from([ch.clone()])
    );
    server.stop().await;
}

async fn administrators_manage_roles(backend: Backend) {
    let Some(server) = start_with(backend, |c| {
        c.admin_token = Some("another-long-admin-token".into())
    })
    .await
    else {
        return;
    };
    let (admin, _e, _) = client(&server).await;
    let (owner, _oe, _) = client(&server).await;
    let (mod_user, _me, _) = client(&server).await;
    let (target, mut te, _) = client(&server).await;
    let body = format!(r#"{{"user": "{}"}}"#, admin.user_id());
    let (status, text) = http(
        &server,
        "POST",
        "/v1/admin/administrators",
        &[("Authorization", "Bearer another-long-admin-token")],
        &body,
    )
    .await;
    assert_eq!(status, 200, "{text}");

    let Response::Role(role) = admin
        .request(Request::RoleCreate(RoleCreate {
            name: "moderator".into(),
            permissions: Permissions::KICK,
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    admin
        .request(Request::RoleGrant(RoleGrant {
            user: mod_user.user_id().clone(),
            role: role.id,
        }))
        .await
        .unwrap();
    let ch = create_channel(&owner).await;
    let code = invite(&owner, &ch, None, None).await;
    join(&mod_user, &code).await.unwrap();
    join(&target, &code).await.unwrap();
    // The moderator role's KICK applies in every channel of the server.
    mod_user
        .request(Request::ChannelKick(MemberRef {
            channel: ch.clone(),
            user: target.user_id().clone(),
        }))
        .await
        .unwrap();
    next_event(&mut te, |e| matches!(e, Event::MemberLeft(_)).then_some(())).await;
    // But a moderator cannot hand out roles.
    assert_eq!(
        code_of(
            mod_user
                .request(Request::RoleGrant(RoleGrant {
                    user: target.user_id().clone(),
                    role: role.id
                }))
                .await
        ),
        ErrorCode::Forbidden
    );
    let Response::Roles(roles) = admin.request(Request::RoleList).await.unwrap() else {
        panic!()
    };
    assert!(roles.roles.iter().any(|r| r.id == EVERYONE_ROLE));
    assert!(roles.roles.iter().any(|r| r.name == "moderator"));
    server.stop().await;
}

/// `invite_revoke` does not reveal a channel to a non-member (`not_found`); a member who may not
/// manage the channel is `forbidden`.
async fn invite_revoke_hides_the_channel_from_non_members(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (owner, _oe, _) = client(&server).await;
    let ch = create_channel(&owner).await;
    let code = invite(&owner, &ch, None, None).await;
    let revoke = |c: &Client| {
        let c = c.clone();
        let req = Request::InviteRevoke(InviteRevoke { code: code.clone() });
        async move { c.request(req).await }
    };
    let (stranger, _se, _) = client(&server).await;
    assert_eq!(code_of(revoke(&stranger).await), ErrorCode::NotFound);
    let (member, _me, _) = client(&server).await;
    join(&member, &code).await.unwrap();
    assert_eq!(code_of(revoke(&member).await), ErrorCode::Forbidden);
    revoke(&owner).await.unwrap();
    assert_eq!(code_of(revoke(&owner).await), ErrorCode::InviteInvalid);
    server.stop().await;
}

/// Kicking or banning oneself is `invalid_argument` (use `channel_leave`), the owner included.
async fn removing_oneself_is_invalid_even_for_the_owner(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let (owner, _oe, _) = client(&server).await;
    let ch = create_channel(&owner).await;
    let me = MemberRef {
        channel: ch.clone(),
        user: owner.user_id().clone(),
    };
    assert_eq!(
        code_of(owner.request(Request::ChannelKick(me.clone())).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code_of(owner.request(Request::ChannelBan(me.clone())).await),
        ErrorCode::InvalidArgument
    );
    // A moderator naming the owner is still refused as before.
    let code = invite(&owner, &ch, None, None).await;
    let (other, _xe, _) = client(&server).await;
    join(&other, &code).await.unwrap();
    owner
        .request(Request::OverrideSet(OverrideSet {
            channel: ch.clone(),
            target: OverrideTarget::User {
                user: other.user_id().clone(),
            },
            allow: Permissions::KICK,
            deny: Permissions::NONE,
        }))
        .await
        .unwrap();
    assert_eq!(
        code_of(other.request(Request::ChannelKick(me)).await),
        ErrorCode::Forbidden
    );
    server.stop().await;
}

/// Forward paging starts at `after: 1`, below every id; `after: 0` is not an id (`malformed`).
async fn history_reads_forward_from_after_one(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let key = mobium_spec::Keypair::generate();
    let (owner, _oe) = connect_as(&server, &key).await.unwrap();
    let ch = create_channel(&owner).await;
    let mut sent = Vec::new();
    for body in [&b"one"[..], b"two", b"three"] {
        let Response::MessageSent(m) = send(&owner, &ch, body).await.unwrap() else {
            panic!()
        };
        sent.push(m.id);
    }
    let Response::Messages(page) = owner
        .request(Request::History(History {
            channel: ch.clone(),
            before: None,
            after: Some(MessageId::new(1).unwrap()),
            limit: Some(2),
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let ids: Vec<MessageId> = page.messages.iter().map(|m| m.id).collect();
    assert_eq!((ids, page.has_more), (sent[..2].to_vec(), true));

    #[derive(serde::Serialize)]
    struct ZeroAfter {
        op: &'static str,
        channel: ChannelId,
        after: u64,
    }
    #[derive(serde::Serialize)]
    struct Frame {
        id: u64,
        body: ZeroAfter,
    }
    let mut ws = raw(&server).await;
    raw_auth(&mut ws, &key).await;
    raw_send(
        &mut ws,
        &Frame {
            id: 4,
            body: ZeroAfter {
                op: "history",
                channel: ch.clone(),
                after: 0,
            },
        },
    )
    .await;
    match raw_next(&mut ws).await {
        Some(mobium_spec::client::ServerFrame::Error { id, error }) => {
            assert_eq!((id, error.code), (Some(4), ErrorCode::Malformed))
        }
        other => panic!("expected malformed, got {other:?}"),
    }
    server.stop().await;
}

both_backends!(
    invites_limits_expiry_and_revocation,
    messages_fan_out_and_page_through_history,
    edit_delete_kick_ban_and_overrides,
    administrators_manage_roles,
    invite_revoke_hides_the_channel_from_non_members,
    removing_oneself_is_invalid_even_for_the_owner,
    history_reads_forward_from_after_one,
);
