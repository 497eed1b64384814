//! A managed server of several instances (spec `managed.md`): real PostgreSQL, real nats-server
//! (`MOBIUM_TEST_NATS_URL`, default `nats://127.0.0.1:4222`; these tests fail, not skip, when it
//! cannot be reached). To clients and to a community server federating with it, the cluster must
//! behave as one server.

use std::time::Duration;

use mobium_client_api::sdk::Client;
use mobium_homeserver::config::{Config, ServerType};
use mobium_spec::client::*;
use mobium_spec::{ChannelId, Keypair, ServerName};

use crate::federation::{NodeSpec, peers, send, specs, start_node};
use crate::support::*;

/// The NATS server the tests use.
pub(crate) fn nats_url() -> String {
    std::env::var("MOBIUM_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Fails the test with a clear message when NATS is not there.
async fn require_nats() {
    let url = nats_url();
    let addr = url.trim_start_matches("nats://").to_owned();
    if tokio::net::TcpStream::connect(&addr).await.is_err() {
        panic!(
            "NATS is not reachable at {url}: start nats-server (the CI script does) or set \
             MOBIUM_TEST_NATS_URL"
        );
    }
}

/// The instances of one managed server, sharing one database and one key file.
pub(crate) struct TestCluster {
    pub(crate) instances: Vec<TestServer>,
    db: Option<PgDb>,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    pub(crate) async fn stop(mut self) {
        for i in self.instances.drain(..) {
            i.stop().await;
        }
        if let Some(db) = self.db.take() {
            db.drop_db().await;
        }
    }
}

/// Settings of instance `fed_port`'s of a cluster named `spec.name` on `db_url`.
pub(crate) fn instance_config(
    spec: &NodeSpec,
    key_file: &std::path::Path,
    db_url: &str,
    data_dir: &std::path::Path,
    fed_port: u16,
    others: &[NodeSpec],
) -> Config {
    let mut c = base_config(data_dir);
    c.server_type = ServerType::Managed;
    c.database_url = Some(db_url.to_owned());
    c.nats_url = Some(nats_url());
    c.server_key_file = Some(key_file.to_owned());
    c.server_name = Some(spec.name.clone());
    c.fed_port = fed_port;
    c.fed_peers = peers(others);
    c.fed_well_known = mobium_homeserver::config::WellKnown::Off;
    c.presence_grace = 0;
    c
}

/// Starts a cluster of `n` instances named and keyed by `spec` (instance 1 on `spec.fed_port`),
/// federating with `others`. `None` when PostgreSQL is not configured.
pub(crate) async fn start_cluster(
    n: usize,
    spec: &NodeSpec,
    others: &[NodeSpec],
) -> Option<TestCluster> {
    require_nats().await;
    start_cluster_on(n, spec, others, &nats_url(), |_| {}).await
}

/// [`start_cluster`] with the instances talking through the NATS server at `nats`.
pub(crate) async fn start_cluster_on(
    n: usize,
    spec: &NodeSpec,
    others: &[NodeSpec],
    nats: &str,
    tweak: impl Fn(&mut Config),
) -> Option<TestCluster> {
    let db = PgDb::create().await?;
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("server.key");
    std::fs::write(&key_file, hex::encode(spec.key.secret_bytes())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut instances = Vec::new();
    for i in 0..n {
        let data = dir.path().join(format!("instance{i}"));
        let port = if i == 0 { spec.fed_port } else { 0 };
        let mut config = instance_config(spec, &key_file, &db.url, &data, port, others);
        config.nats_url = Some(nats.to_owned());
        tweak(&mut config);
        let running = mobium_homeserver::server::start(config.clone())
            .await
            .expect("instance starts");
        instances.push(TestServer {
            running: Some(running),
            _dir: tempfile::tempdir().expect("tempdir"),
            config,
            pg_db: None,
        });
    }
    Some(TestCluster {
        instances,
        db: Some(db),
        _dir: dir,
    })
}

pub(crate) async fn history(c: &Client, ch: &ChannelId) -> Vec<ChannelMessage> {
    // `after: 1` reads forwards from the oldest message (spec `client/messages.md`).
    history_after(c, ch, Some(mobium_spec::MessageId::new(1).unwrap())).await
}

/// Every message of `ch` after `after` (the newest page only with `None`), oldest first.
pub(crate) async fn history_after(
    c: &Client,
    ch: &ChannelId,
    mut after: Option<mobium_spec::MessageId>,
) -> Vec<ChannelMessage> {
    let mut out = Vec::new();
    loop {
        let Response::Messages(page) = c
            .request(Request::History(History {
                channel: ch.clone(),
                before: None,
                after,
                limit: Some(100),
            }))
            .await
            .unwrap()
        else {
            panic!("history")
        };
        after = page.messages.last().map(|m| m.id);
        let more = page.has_more;
        out.extend(page.messages);
        if !more || after.is_none() {
            return out;
        }
    }
}

/// `member`, a user of another server, joins `owner`'s channel `ch` with a `code@host` invite.
pub(crate) async fn join_from_elsewhere(owner: &Client, member: &Client, ch: &ChannelId) {
    let Response::Invite(inv) = owner
        .request(Request::InviteCreate(InviteCreate {
            channel: ch.clone(),
            max_uses: None,
            expires_in_secs: None,
        }))
        .await
        .unwrap()
    else {
        panic!("invite")
    };
    member
        .request(Request::ChannelJoin(ChannelJoin {
            code: format!("{}@{}", inv.code, ch.host),
        }))
        .await
        .unwrap();
}

pub(crate) fn cluster_spec() -> NodeSpec {
    let mut s = specs(1).remove(0);
    s.name = "cluster.fed.test".parse::<ServerName>().unwrap();
    s
}

/// A DM, a channel, edits, deletions, typing, presence and a kick between a user on instance 1
/// and a user on instance 2, exactly as on one server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_two_instances_talk_as_on_one_server() {
    let spec = cluster_spec();
    let Some(cluster) = start_cluster(2, &spec, &[]).await else {
        return;
    };
    let (a, b) = (&cluster.instances[0], &cluster.instances[1]);
    let (alice, mut ae, _) = client(a).await;
    let (bob, mut be, _) = client(b).await;
    assert_eq!(
        alice.user_id().server,
        bob.user_id().server,
        "one server name"
    );

    // A DM, delivered live on the other instance.
    alice
        .request(Request::DirectSend(DirectSend {
            to: bob.user_id().clone(),
            ciphertext: b"hello bob".to_vec(),
            txn: None,
        }))
        .await
        .unwrap();
    let d = next_event(&mut be, |e| match e {
        Event::Direct(d) => Some(d),
        _ => None,
    })
    .await;
    assert_eq!(
        (d.from, d.ciphertext),
        (alice.user_id().clone(), b"hello bob".to_vec())
    );

    // A channel on instance 1, joined from instance 2.
    let ch = create_channel(&alice).await;
    join_with_new_invite(&alice, &bob, &ch).await;
    let joined = next_event(&mut ae, |e| match e {
        Event::MemberJoined(m) => Some(m.user),
        _ => None,
    })
    .await;
    assert_eq!(&joined, bob.user_id());
    let sent = send(&alice, &ch, b"m1").await;
    let got = next_event(&mut be, |e| match e {
        Event::Message(m) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!((got.id, got.ciphertext), (sent, b"m1".to_vec()));
    let mine = send(&bob, &ch, b"m2").await;
    let got = next_event(&mut ae, |e| match e {
        Event::Message(m) if &m.sender == bob.user_id() => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(got.id, mine);
    bob.request(Request::MessageEdit(MessageEdit {
        channel: ch.clone(),
        id: mine,
        ciphertext: b"m2 edited".to_vec(),
    }))
    .await
    .unwrap();
    let edited = next_event(&mut ae, |e| match e {
        Event::MessageEdited(m) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(
        (edited.id, edited.ciphertext),
        (mine, b"m2 edited".to_vec())
    );
    bob.request(Request::MessageDelete(MessageRef {
        channel: ch.clone(),
        id: mine,
    }))
    .await
    .unwrap();
    let deleted = next_event(&mut ae, |e| match e {
        Event::MessageDeleted(m) => Some(m.id),
        _ => None,
    })
    .await;
    assert_eq!(deleted, mine);

    // Typing and presence.
    bob.request(Request::Typing(ChannelRef {
        channel: ch.clone(),
    }))
    .await
    .unwrap();
    let typing = next_event(&mut ae, |e| match e {
        Event::Typing(t) => Some(t.user),
        _ => None,
    })
    .await;
    assert_eq!(&typing, bob.user_id());
    let Response::Presences(p) = alice.request(Request::PresenceList).await.unwrap() else {
        panic!("presence")
    };
    let bob_status = p
        .entries
        .iter()
        .find(|e| &e.user == bob.user_id())
        .map(|e| e.status);
    assert_eq!(
        bob_status,
        Some(PresenceStatus::Online),
        "bob is online on instance 2"
    );

    // The history is one, whichever instance asks.
    let (ha, hb) = (history(&alice, &ch).await, history(&bob, &ch).await);
    assert_eq!(ha, hb);
    assert_eq!(ha.iter().map(|m| m.id).collect::<Vec<_>>(), vec![sent]);

    // Bob leaves: alice sees him offline (he has no session on any instance).
    bob.close();
    let offline = next_event(&mut ae, |e| match e {
        Event::Presence(p) if &p.user == bob.user_id() => Some(p.status),
        _ => None,
    })
    .await;
    assert_eq!(offline, PresenceStatus::Offline);

    // A kick on instance 1 reaches carol on instance 2, and she can no longer send.
    let (carol, mut ce, _) = client(b).await;
    join_with_new_invite(&alice, &carol, &ch).await;
    alice
        .request(Request::ChannelKick(MemberRef {
            channel: ch.clone(),
            user: carol.user_id().clone(),
        }))
        .await
        .unwrap();
    let left = next_event(&mut ce, |e| match e {
        Event::MemberLeft(m) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(
        (&left.user, left.reason),
        (carol.user_id(), LeaveReason::Kicked)
    );
    let refused = carol
        .request(Request::MessageSend(MessageSend {
            channel: ch.clone(),
            ciphertext: b"after kick".to_vec(),
            reply_to: None,
            txn: None,
        }))
        .await;
    assert_eq!(
        code(refused),
        mobium_spec::ErrorCode::NotFound,
        "not a member any more"
    );

    drop((alice, ae, be, ce));
    cluster.stop().await;
}

/// `/v1/info` says managed; every instance has its own instance id; a user connected to two
/// instances stays online when one connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_lease_distinct_ids_and_share_presence() {
    let spec = cluster_spec();
    let Some(cluster) = start_cluster(2, &spec, &[]).await else {
        return;
    };
    let (a, b) = (&cluster.instances[0], &cluster.instances[1]);
    let ids: Vec<u16> = cluster
        .instances
        .iter()
        .map(|i| i.running().app.cluster().expect("managed").instance)
        .collect();
    assert_ne!(ids[0], ids[1], "instance ids are distinct: {ids:?}");
    let (status, body) = http(a, "GET", "/v1/info", &[], "").await;
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["server_type"], "managed");
    assert_eq!(info["server_key"], spec.key.public().to_string());
    let (_, metrics) = http(b, "GET", "/metrics", &[], "").await;
    assert!(
        metrics.contains(&format!("mobium_cluster_instance {}", ids[1])),
        "{metrics}"
    );
    assert!(metrics.contains("mobium_nats_connected 1"), "{metrics}");

    let (alice, mut ae, _) = client(a).await;
    let bob_key = Keypair::generate();
    let (bob1, _e1) = connect_as(a, &bob_key).await.unwrap();
    let (bob2, _e2) = connect_as(b, &bob_key).await.unwrap();
    let ch = create_channel(&alice).await;
    join_with_new_invite(&alice, &bob1, &ch).await;
    bob1.close();
    // Bob is still connected through instance 2: nobody is told he went offline.
    no_event(
        &mut ae,
        Duration::from_millis(800),
        |e| matches!(e, Event::Presence(p) if p.status == PresenceStatus::Offline),
    )
    .await;
    let Response::Presences(p) = alice.request(Request::PresenceList).await.unwrap() else {
        panic!("presence")
    };
    assert!(
        p.entries
            .iter()
            .any(|e| &e.user == bob2.user_id() && e.status == PresenceStatus::Online),
        "{p:?}"
    );
    drop((alice, bob2));
    cluster.stop().await;
}

/// Users on three instances of a managed host send to one channel at once; a community server
/// with a member receives every message (hosted events strictly increase in `seq` across the
/// instances, or the member server would drop some as retries) from one peer key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_community_member_server_sees_one_ordered_peer() {
    let mut all = specs(1);
    let spec = cluster_spec();
    all.push(spec.clone());
    let Some(community) = start_node(Backend::Sqlite, &all[0], &all).await else {
        return;
    };
    let Some(cluster) = start_cluster(3, &spec, &all).await else {
        return;
    };
    let (alice, _ae, _) = client(&cluster.instances[0]).await;
    let (bob, _be, _) = client(&cluster.instances[1]).await;
    let (dave, _de, _) = client(&cluster.instances[2]).await;
    let (carol, mut ce, _) = client(&community).await;
    let ch = create_channel(&alice).await;
    join_with_new_invite(&alice, &bob, &ch).await;
    join_with_new_invite(&alice, &dave, &ch).await;
    join_from_elsewhere(&alice, &carol, &ch).await;
    const EACH: usize = 40;
    let (sa, sb, sd) = tokio::join!(
        async {
            let mut ids = Vec::new();
            for i in 0..EACH {
                ids.push(send(&alice, &ch, format!("a{i}").as_bytes()).await);
            }
            ids
        },
        async {
            let mut ids = Vec::new();
            for i in 0..EACH {
                ids.push(send(&bob, &ch, format!("b{i}").as_bytes()).await);
            }
            ids
        },
        async {
            let mut ids = Vec::new();
            for i in 0..EACH {
                ids.push(send(&dave, &ch, format!("d{i}").as_bytes()).await);
            }
            ids
        }
    );
    let mut want: Vec<_> = sa.into_iter().chain(sb).chain(sd).collect();
    want.sort();
    let mut got = Vec::new();
    while got.len() < want.len() {
        got.push(
            next_event(&mut ce, |e| match e {
                Event::Message(m) => Some(m.id),
                _ => None,
            })
            .await,
        );
    }
    got.sort();
    assert_eq!(
        got, want,
        "carol's server got every message of both instances"
    );
    let on_member: Vec<_> = history(&carol, &ch).await.iter().map(|m| m.id).collect();
    assert_eq!(on_member, want, "the member server stored all of them");
    drop((alice, bob, dave, carol));
    cluster.stop().await;
    community.stop().await;
}

/// Claims of one user's one-time keys made on two instances at once hand out each key once,
/// and the owner, on a third connection elsewhere, hears `keys_low` once per count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_keys_are_claimed_once_across_instances() {
    let spec = cluster_spec();
    let Some(cluster) = start_cluster(2, &spec, &[]).await else {
        return;
    };
    let (owner, mut oe, owner_key) = client(&cluster.instances[1]).await;
    crate::keys::upload(&owner, &owner_key, 50).await;
    let mut claimers = Vec::new();
    for i in 0..4 {
        claimers.push(client(&cluster.instances[i % 2]).await);
    }
    let mut claims = Vec::new();
    for i in 0..100 {
        let (c, user) = (claimers[i % 4].0.clone(), owner.user_id().clone());
        claims.push(tokio::spawn(async move {
            c.request(Request::KeysClaim(KeysClaim { user })).await
        }));
    }
    let mut handed = Vec::new();
    for c in claims {
        if let Ok(Response::KeyBundle(b)) = c.await.unwrap()
            && let Some(k) = b.one_time_key
        {
            handed.push(k.key_id);
        }
    }
    let distinct: std::collections::HashSet<_> = handed.iter().collect();
    assert_eq!(
        (handed.len(), distinct.len()),
        (50, 50),
        "each one-time key handed out once"
    );
    let mut counts = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(800), oe.recv()).await {
        if let Event::KeysLow(k) = e {
            counts.push(k.one_time);
        }
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (0..10).collect::<Vec<u32>>(),
        "keys_low from both instances"
    );
    drop((owner, claimers));
    cluster.stop().await;
}

/// One user connected to two instances shares one rate-limit bucket: a burst of 10 allows
/// about 10 requests in all, not 10 per instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_on_two_instances_shares_one_rate_limit() {
    require_nats().await;
    let spec = cluster_spec();
    let Some(cluster) = start_cluster_on(2, &spec, &[], &nats_url(), |c| {
        c.rate_limit_burst = 10;
        c.rate_limit_per_sec = 1;
    })
    .await
    else {
        return;
    };
    let key = Keypair::generate();
    let (one, _e1) = connect_as(&cluster.instances[0], &key).await.unwrap();
    let (two, _e2) = connect_as(&cluster.instances[1], &key).await.unwrap();
    let mut accepted = 0;
    let mut limited = 0;
    for i in 0..16 {
        let c = if i % 2 == 0 { &one } else { &two };
        match c.request(Request::Ping).await {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert_eq!(code(Err(e)), mobium_spec::ErrorCode::RateLimited);
                limited += 1;
            }
        }
    }
    // Each instance's own bucket alone would let all 16 through (8 each, burst 10).
    assert!(
        (10..=12).contains(&accepted),
        "accepted {accepted}, limited {limited}"
    );
    drop((one, two));
    cluster.stop().await;
}
