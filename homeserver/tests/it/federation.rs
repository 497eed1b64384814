//! Federation between real homeservers on loopback (real QUIC, real databases): cross-server
//! DMs, a channel with members on three servers, a peer that is down for a while, and a sending
//! server killed mid-burst.

use std::collections::HashSet;
use std::time::Duration;

use mobium_client_api::sdk::{Client, ConnectOptions, Events};
use mobium_homeserver::config::PeerSetting;
use mobium_spec::client::*;
use mobium_spec::{ChannelId, Keypair, MessageId, ServerName, UserId};

use crate::both_backends;
use crate::support::*;

/// A node of a test federation: its name, key and federation port, fixed before it starts so
/// every node can list the others as static peers.
#[derive(Clone)]
pub(crate) struct NodeSpec {
    pub(crate) name: ServerName,
    pub(crate) key: Keypair,
    pub(crate) fed_port: u16,
}

pub(crate) fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

pub(crate) fn specs(n: usize) -> Vec<NodeSpec> {
    (1..=n)
        .map(|i| NodeSpec {
            name: format!("node{i}.fed.test").parse().unwrap(),
            key: Keypair::generate(),
            fed_port: free_udp_port(),
        })
        .collect()
}

pub(crate) fn peers(all: &[NodeSpec]) -> Vec<PeerSetting> {
    all.iter()
        .map(|s| PeerSetting {
            name: s.name.clone(),
            addr: format!("127.0.0.1:{}", s.fed_port).parse().unwrap(),
            key: s.key.public(),
        })
        .collect()
}

pub(crate) async fn start_node(
    backend: Backend,
    spec: &NodeSpec,
    all: &[NodeSpec],
) -> Option<TestServer> {
    start_node_with(backend, spec, all, |_| {}).await
}

/// [`start_node`] with further settings.
pub(crate) async fn start_node_with(
    backend: Backend,
    spec: &NodeSpec,
    all: &[NodeSpec],
    tweak: impl FnOnce(&mut mobium_homeserver::config::Config),
) -> Option<TestServer> {
    let spec = spec.clone();
    let peers = peers(all);
    start_with(backend, move |c| {
        std::fs::create_dir_all(&c.data_dir).unwrap();
        std::fs::write(
            c.data_dir.join("server.key"),
            hex::encode(spec.key.secret_bytes()),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                c.data_dir.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        c.server_name = Some(spec.name.clone());
        c.fed_port = spec.fed_port;
        c.fed_peers = peers;
        c.fed_well_known = mobium_homeserver::config::WellKnown::Off;
        tweak(c);
    })
    .await
}

pub(crate) async fn user(server: &TestServer) -> (Client, Events, Keypair) {
    let key = Keypair::generate();
    let (c, e) = Client::connect(&server.ws_url(), &key, ConnectOptions::default())
        .await
        .unwrap();
    (c, e, key)
}

pub(crate) async fn direct(events: &mut Events) -> DirectMessage {
    next_event(events, |e| match e {
        Event::Direct(d) => Some(d),
        _ => None,
    })
    .await
}

async fn cross_server_dm_both_ways(backend: Backend) {
    let all = specs(2);
    let Some(a) = start_node(backend, &all[0], &all).await else {
        return;
    };
    let Some(b) = start_node(backend, &all[1], &all).await else {
        return;
    };
    let (alice, mut ae, _) = user(&a).await;
    let (bob, mut be, _) = user(&b).await;
    assert_eq!(bob.user_id().server, all[1].name);

    let sent = alice
        .request(Request::DirectSend(DirectSend {
            to: bob.user_id().clone(),
            ciphertext: b"olm:hello bob".to_vec(),
            txn: None,
        }))
        .await
        .unwrap();
    assert!(matches!(sent, Response::DirectSent(_)));
    let got = direct(&mut be).await;
    assert_eq!(
        (got.from.clone(), got.ciphertext.as_slice()),
        (alice.user_id().clone(), &b"olm:hello bob"[..])
    );
    bob.request(Request::DirectAck(DirectAck { ids: vec![got.id] }))
        .await
        .unwrap();

    bob.request(Request::DirectSend(DirectSend {
        to: alice.user_id().clone(),
        ciphertext: b"olm:hi alice".to_vec(),
        txn: None,
    }))
    .await
    .unwrap();
    assert_eq!(direct(&mut ae).await.ciphertext, b"olm:hi alice");

    // Keys of a remote user are claimed through their server.
    let key = Keypair::generate();
    let (carol, _ce) = Client::connect(&b.ws_url(), &key, ConnectOptions::default())
        .await
        .unwrap();
    carol
        .request(Request::KeysUpload(KeysUpload {
            identity_key: Some(Prekey::sign(&key, PrekeyKind::Identity, "id", &[1; 32])),
            one_time_keys: vec![Prekey::sign(&key, PrekeyKind::OneTime, "o1", &[2; 32])],
            ..Default::default()
        }))
        .await
        .unwrap();
    let Response::KeyBundle(bundle) = alice
        .request(Request::KeysClaim(KeysClaim {
            user: carol.user_id().clone(),
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(
        bundle
            .one_time_key
            .unwrap()
            .verify(&key.public(), PrekeyKind::OneTime)
    );
    a.stop().await;
    b.stop().await;
}

/// Sends `body` to `ch` and returns the id the host gave it.
pub(crate) async fn send(c: &Client, ch: &ChannelId, body: &[u8]) -> MessageId {
    let Response::MessageSent(s) = c
        .request(Request::MessageSend(MessageSend {
            channel: ch.clone(),
            ciphertext: body.to_vec(),
            reply_to: None,
            txn: None,
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    s.id
}

async fn channel_across_three_servers(backend: Backend) {
    let all = specs(3);
    let mut nodes = Vec::new();
    for s in &all {
        let Some(n) = start_node(backend, s, &all).await else {
            return;
        };
        nodes.push(n);
    }
    // Two users on each server; the channel lives on node1.
    let mut users = Vec::new();
    for n in &nodes {
        for _ in 0..2 {
            users.push(user(n).await);
        }
    }
    let owner = users[0].0.clone();
    let Response::ChannelCreated(ch) = owner
        .request(Request::ChannelCreate(ChannelCreate {
            metadata: b"sealed".to_vec(),
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let ch = ch.channel;
    // History from before anyone else joins.
    let early = send(&owner, &ch, b"before anyone joined").await;
    let Response::Invite(inv) = owner
        .request(Request::InviteCreate(InviteCreate {
            channel: ch.clone(),
            max_uses: None,
            expires_in_secs: None,
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let code = format!("{}@{}", inv.code, all[0].name);
    for (c, _, _) in &users[1..] {
        let Response::Joined(info) = c
            .request(Request::ChannelJoin(ChannelJoin { code: code.clone() }))
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(info.channel, ch);
    }
    // Everyone sees all six members, through the host.
    let Response::Members(m) = users[5]
        .0
        .request(Request::ChannelMembers(ChannelRef {
            channel: ch.clone(),
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(m.members.len(), 6);
    // A remote member pages history from before they joined, from the host.
    let Response::Messages(h) = users[4]
        .0
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
    assert_eq!(h.messages.first().map(|m| m.id), Some(early));

    // 100 messages from all six users, 17 each round-robin.
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for i in 0..102u32 {
        let (c, _, _) = &users[(i % 6) as usize];
        let body = format!("m{i:03}").into_bytes();
        send(c, &ch, &body).await;
        expected.push(body);
    }
    // Each user receives every message exactly once; messages from one sender keep their order.
    for (idx, (c, events, _)) in users.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let m = next_event(events, |e| match e {
                Event::Message(m) if m.channel == ch && m.id != early => Some(m),
                _ => None,
            })
            .await;
            got.push(m);
        }
        let bodies: HashSet<Vec<u8>> = got.iter().map(|m| m.ciphertext.clone()).collect();
        assert_eq!(
            bodies.len(),
            expected.len(),
            "user {idx} ({}) got duplicates or gaps",
            c.user_id()
        );
        // Each sender's messages arrive in the order they were sent.
        let mut last_by_sender: std::collections::HashMap<UserId, Vec<u8>> = Default::default();
        for m in &got {
            if let Some(prev) = last_by_sender.insert(m.sender.clone(), m.ciphertext.clone()) {
                assert!(
                    prev < m.ciphertext,
                    "user {idx}: {:?} after {:?}",
                    m.ciphertext,
                    prev
                );
            }
        }
        // Ids are host-assigned and increase in delivery order.
        assert!(
            got.windows(2).all(|w| w[0].id < w[1].id),
            "user {idx}: out of order"
        );
    }
    // Leaving propagates to the host and the other servers.
    users[3]
        .0
        .request(Request::ChannelLeave(ChannelRef {
            channel: ch.clone(),
        }))
        .await
        .unwrap();
    let gone = users[3].0.user_id().clone();
    let left = next_event(&mut users[0].1, |e| match e {
        Event::MemberLeft(l) if l.user == gone => Some(l.reason),
        _ => None,
    })
    .await;
    assert_eq!(left, LeaveReason::Left);
    // The host's owner kicks a user of node3; node3's user is told and can no longer send.
    let victim = users[5].0.user_id().clone();
    owner
        .request(Request::ChannelKick(MemberRef {
            channel: ch.clone(),
            user: victim.clone(),
        }))
        .await
        .unwrap();
    let reason = next_event(&mut users[5].1, |e| match e {
        Event::MemberLeft(l) if l.user == victim => Some(l.reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, LeaveReason::Kicked);
    assert!(
        users[5]
            .0
            .request(Request::MessageSend(MessageSend {
                channel: ch.clone(),
                ciphertext: b"x".to_vec(),
                reply_to: None,
                txn: None,
            }))
            .await
            .is_err()
    );
    for n in nodes {
        n.stop().await;
    }
}

async fn queued_events_reach_a_restarted_peer_once_in_order(backend: Backend) {
    let all = specs(2);
    let Some(a) = start_node(backend, &all[0], &all).await else {
        return;
    };
    let Some(mut b) = start_node(backend, &all[1], &all).await else {
        return;
    };
    let (alice, _ae, _) = user(&a).await;
    let bob_key = Keypair::generate();
    let (bob, _be) = Client::connect(&b.ws_url(), &bob_key, ConnectOptions::default())
        .await
        .unwrap();
    let bob_id = bob.user_id().clone();
    bob.close();

    // node2 goes down; node1 keeps accepting messages for its user.
    let b_running = b.running.take().unwrap();
    let b_addr = b_running.addr;
    b_running.shutdown().await.unwrap();
    let mut sent = Vec::new();
    for i in 0..50u32 {
        alice
            .request(Request::DirectSend(DirectSend {
                to: bob_id.clone(),
                ciphertext: i.to_be_bytes().to_vec(),
                txn: None,
            }))
            .await
            .unwrap();
        sent.push(i.to_be_bytes().to_vec());
    }
    assert_eq!(
        a.running()
            .app
            .federation()
            .unwrap()
            .outbox
            .pending(&all[1].name)
            .await,
        50
    );

    let (_, metrics) = http(&a, "GET", "/metrics", &[], "").await;
    assert!(
        metrics.contains(&format!(
            "mobium_outbox_pending{{destination=\"{}\"}} 50",
            all[1].name
        )),
        "{metrics}"
    );

    // node2 comes back on the same address, key and database.
    let mut config = b.config.clone();
    config.port = b_addr.port();
    b.running = Some(restart_on(config).await);
    let (_bob, mut be) = Client::connect(&b.ws_url(), &bob_key, ConnectOptions::default())
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 50 {
        got.push(direct(&mut be).await.ciphertext);
    }
    assert_eq!(got, sent, "every queued message, once, in order");
    no_event(&mut be, Duration::from_millis(500), |e| {
        matches!(e, Event::Direct(_))
    })
    .await;
    eventually(|| async {
        (a.running()
            .app
            .federation()
            .unwrap()
            .outbox
            .pending(&all[1].name)
            .await
            == 0)
            .then_some(())
    })
    .await;
    a.stop().await;
    b.stop().await;
}

async fn killed_sender_delivers_every_acknowledged_message(backend: Backend) {
    if backend == Backend::Postgres {
        return; // the outbox logic is backend-independent; the storage suite covers both
    }
    let all = specs(2);
    let Some(b) = start_node(backend, &all[1], &all).await else {
        return;
    };
    let (bob, mut be, _) = user(&b).await;
    let bob_id = bob.user_id().clone();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("server.key"),
        hex::encode(all[0].key.secret_bytes()),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let peers = peers(&all)
        .iter()
        .map(|p| format!("{},{},{}", p.name, p.addr, p.key))
        .collect::<Vec<_>>()
        .join(";");
    let env = [
        ("SC_SERVER_NAME", all[0].name.to_string()),
        ("SC_FED_PORT", all[0].fed_port.to_string()),
        ("SC_FED_PEERS", peers),
        ("SC_FED_WELL_KNOWN", "off".to_owned()),
    ];
    let (mut child, url) = crate::durability::spawn_with(&data, None, &env).await;
    let alice_key = Keypair::generate();
    let (alice, _ae) = Client::connect(&url, &alice_key, ConnectOptions::default())
        .await
        .unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..300u32 {
        let (alice, tx, to) = (alice.clone(), tx.clone(), bob_id.clone());
        tokio::spawn(async move {
            if alice
                .request(Request::DirectSend(DirectSend {
                    to,
                    ciphertext: i.to_be_bytes().to_vec(),
                    txn: None,
                }))
                .await
                .is_ok()
            {
                let _ = tx.send(i);
            }
        });
    }
    drop(tx);
    let mut acked = HashSet::new();
    while acked.len() < 150 {
        acked.insert(rx.recv().await.expect("sends stopped early"));
    }
    child.start_kill().unwrap();
    while let Ok(Some(i)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        acked.insert(i);
    }
    let _ = child.wait().await;

    let (mut child, _url) = crate::durability::spawn_with(&data, None, &env).await;
    let mut got = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !acked.is_subset(&got) {
        let ev = tokio::time::timeout_at(deadline, be.recv())
            .await
            .expect("acknowledged messages missing after 60 s")
            .expect("events");
        if let Event::Direct(d) = ev {
            let n = u32::from_be_bytes(d.ciphertext[..4].try_into().unwrap());
            assert!(got.insert(n), "message {n} delivered twice");
        }
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
    b.stop().await;
}

both_backends!(
    killed_sender_delivers_every_acknowledged_message,
    cross_server_dm_both_ways,
    channel_across_three_servers,
    queued_events_reach_a_restarted_peer_once_in_order,
);
