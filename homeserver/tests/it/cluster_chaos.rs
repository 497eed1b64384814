//! A managed server's instances under failure (spec `managed.md`): NATS restarted in the middle
//! of traffic, and an instance killed with SIGKILL in the middle of a burst. Whatever was
//! acknowledged reaches its recipients (live, or by catching up from the database after the
//! reconnect every possible loss forces), once.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mobium_client_api::sdk::{Client, ConnectOptions, Notice, Notices};
use mobium_spec::client::*;
use mobium_spec::{ChannelId, Keypair, MessageId};
use tokio::process::{Child, Command};

use crate::cluster::{cluster_spec, history, history_after, join_from_elsewhere, start_cluster_on};
use crate::durability::spawn_with;
use crate::federation::{free_udp_port, send, specs, start_node};
use crate::support::*;

/// A nats-server of the test's own, on a free port, that the test may kill and start again.
struct PrivateNats {
    port: u16,
    child: Option<Child>,
}

impl PrivateNats {
    async fn start() -> PrivateNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut n = PrivateNats { port, child: None };
        n.restart().await;
        n
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server is installed (the CI script installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.start_kill().expect("kill nats-server");
            let _ = c.wait().await;
        }
    }
}

/// What one receiving user saw: channel messages and to-device messages (each id once), and how
/// often its connection was closed under it.
#[derive(Default)]
struct Seen {
    messages: BTreeSet<MessageId>,
    direct: BTreeSet<MessageId>,
    reconnects: usize,
}

/// Receives on a persistent client: records live events, acknowledges to-device messages, and
/// after every reconnect catches up on `ch` from the newest message it holds (what a real
/// client does).
async fn receive(
    c: Client,
    mut notices: Notices,
    ch: ChannelId,
    seen: Arc<tokio::sync::Mutex<Seen>>,
) {
    while let Some(n) = notices.recv().await {
        match n {
            Notice::Event(Event::Message(m)) if m.channel == ch => {
                seen.lock().await.messages.insert(m.id);
            }
            Notice::Event(Event::Direct(d)) => {
                seen.lock().await.direct.insert(d.id);
                let _ = c
                    .request(Request::DirectAck(DirectAck { ids: vec![d.id] }))
                    .await;
            }
            Notice::Connected(_) => {
                let after = seen.lock().await.messages.last().copied();
                let after = after.or(MessageId::new(1).ok());
                let caught = history_after(&c, &ch, after).await;
                seen.lock()
                    .await
                    .messages
                    .extend(caught.iter().map(|m| m.id));
            }
            Notice::Disconnected(_) => seen.lock().await.reconnects += 1,
            _ => {}
        }
    }
}

/// NATS is killed and started again while a user on instance 1 sends channel messages and DMs
/// to a user on instance 2: every acknowledged message reaches the recipient (the instances
/// close their connections when the bus may have lost events; the client catches up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_mid_traffic_loses_nothing_acknowledged() {
    let mut nats = PrivateNats::start().await;
    let spec = cluster_spec();
    let Some(cluster) = start_cluster_on(2, &spec, &[], &nats.url(), |_| {}).await else {
        return;
    };
    let (a, b) = (&cluster.instances[0], &cluster.instances[1]);
    let alice_key: Arc<Keypair> = Arc::new(Keypair::generate());
    let bob_key: Arc<Keypair> = Arc::new(Keypair::generate());
    let (alice, _an) =
        Client::connect_persistent(&a.ws_url(), alice_key, ConnectOptions::default())
            .await
            .unwrap();
    let (bob, bn) = Client::connect_persistent(&b.ws_url(), bob_key, ConnectOptions::default())
        .await
        .unwrap();
    let ch = create_channel(&alice).await;
    join_with_new_invite(&alice, &bob, &ch).await;
    let seen = Arc::new(tokio::sync::Mutex::new(Seen::default()));
    let rx = tokio::spawn(receive(bob.clone(), bn, ch.clone(), seen.clone()));

    const N: usize = 240;
    let (mut acked, mut acked_dm) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..N {
        if i == N / 3 {
            nats.kill().await;
        }
        if i == N / 3 + 40 {
            nats.restart().await;
        }
        let body = format!("m{i}").into_bytes();
        if let Ok(Response::MessageSent(s)) = alice
            .request(Request::MessageSend(MessageSend {
                channel: ch.clone(),
                ciphertext: body.clone(),
                reply_to: None,
                txn: Some(format!("m{i}")),
            }))
            .await
        {
            acked.insert(s.id);
        }
        if i % 4 == 0
            && let Ok(Response::DirectSent(s)) = alice
                .request(Request::DirectSend(DirectSend {
                    to: bob.user_id().clone(),
                    ciphertext: body,
                    txn: Some(format!("d{i}")),
                }))
                .await
        {
            acked_dm.insert(s.id);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        acked.len() > N / 2,
        "most sends acknowledged: {}",
        acked.len()
    );
    let done = wait_for("bob has every acknowledged message and DM", || {
        let (seen, acked, acked_dm) = (seen.clone(), acked.clone(), acked_dm.clone());
        async move {
            let s = seen.lock().await;
            (acked.is_subset(&s.messages) && acked_dm.is_subset(&s.direct)).then_some(s.reconnects)
        }
    })
    .await;
    assert!(
        done >= 1,
        "the loss of the bus closed bob's connection so he caught up"
    );
    rx.abort();
    alice.close();
    bob.close();
    cluster.stop().await;
    nats.kill().await;
}

/// Starts instance `i` of the cluster as a `mobium serve` process.
async fn spawn_instance(
    data: &std::path::Path,
    db: &str,
    key_file: &std::path::Path,
    spec_name: &str,
    fed_port: u16,
    peers: &str,
) -> (Child, String) {
    spawn_with(
        data,
        Some(db),
        &[
            ("SC_SERVER_TYPE", "managed".into()),
            ("SC_NATS_URL", crate::cluster::nats_url()),
            ("SC_SERVER_KEY_FILE", key_file.display().to_string()),
            ("SC_SERVER_NAME", spec_name.to_owned()),
            ("SC_FED_PORT", fed_port.to_string()),
            ("SC_FED_PEERS", peers.to_owned()),
            ("SC_FED_WELL_KNOWN", "off".into()),
            ("SC_PRESENCE_GRACE", "0".into()),
        ],
    )
    .await
}

/// Polls `f` until it returns `Some`, for up to 30 s (these tests run beside others on two
/// cores), failing with `what`.
async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(Instant::now() < deadline, "not within 30 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which instance holds the outbox lease of `destination`, if any.
async fn lease_holder(db: &str, destination: &str) -> Option<i32> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(db).await.unwrap();
    sqlx::query_scalar("SELECT instance FROM outbox_leases WHERE destination = $1")
        .bind(destination)
        .fetch_optional(&mut conn)
        .await
        .unwrap()
}

/// The instance that holds a community member server's outbox lease is killed with SIGKILL in
/// the middle of a burst of channel messages. Its user reconnects to the other instance and
/// goes on; every acknowledged message is in the history once, a user on the other instance
/// and the community server's user receive all of them, and the survivor takes the outbox over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_loses_nothing_and_its_outbox_is_taken_over() {
    let mut all = specs(1);
    let spec = cluster_spec();
    all.push(spec.clone());
    let Some(community) = start_node(Backend::Sqlite, &all[0], &all).await else {
        return;
    };
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("server.key");
    std::fs::write(&key_file, hex::encode(spec.key.secret_bytes())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let c = &all[0];
    let peers = format!("{},127.0.0.1:{},{}", c.name, c.fed_port, c.key.public());
    let name = spec.name.to_string();
    let (mut first, url1) = spawn_instance(
        &dir.path().join("i1"),
        &db.url,
        &key_file,
        &name,
        spec.fed_port,
        &peers,
    )
    .await;

    let alice_key = Keypair::generate();
    let (alice, _ae) = Client::connect(&url1, &alice_key, ConnectOptions::default())
        .await
        .unwrap();
    let (carol, mut ce, _) = client(&community).await;
    let ch = create_channel(&alice).await;
    join_from_elsewhere(&alice, &carol, &ch).await;
    // Instance 1 answered the join and queued its event first: it holds the lease.
    send(&alice, &ch, b"warm-up").await;
    let community_name = c.name.to_string();
    let holder = wait_for(
        "instance 1 takes the community server's outbox lease",
        || async { lease_holder(&db.url, &community_name).await },
    )
    .await;
    // The second instance starts only now, so the first surely holds the lease.
    let (mut second, url2) = spawn_instance(
        &dir.path().join("i2"),
        &db.url,
        &key_file,
        &name,
        free_udp_port(),
        &peers,
    )
    .await;
    let bob_key: Arc<Keypair> = Arc::new(Keypair::generate());
    let (bob, bn) = Client::connect_persistent(&url2, bob_key, ConnectOptions::default())
        .await
        .unwrap();
    join_with_new_invite(&alice, &bob, &ch).await;
    let seen = Arc::new(tokio::sync::Mutex::new(Seen::default()));
    let rx = tokio::spawn(receive(bob.clone(), bn, ch.clone(), seen.clone()));

    // 300 sends in flight at once on instance 1; SIGKILL it once 100 are acknowledged.
    let (tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..300u32 {
        let (alice, tx, ch) = (alice.clone(), tx.clone(), ch.clone());
        tokio::spawn(async move {
            if let Ok(Response::MessageSent(s)) = alice
                .request(Request::MessageSend(MessageSend {
                    channel: ch,
                    ciphertext: i.to_be_bytes().to_vec(),
                    reply_to: None,
                    txn: None,
                }))
                .await
            {
                let _ = tx.send(s.id);
            }
        });
    }
    drop(tx);
    let mut acked: HashSet<MessageId> = HashSet::new();
    while acked.len() < 100 {
        acked.insert(acks.recv().await.expect("sends stopped early"));
    }
    first.start_kill().unwrap();
    let killed_at = Instant::now();
    while let Ok(Some(id)) = tokio::time::timeout(Duration::from_millis(500), acks.recv()).await {
        acked.insert(id);
    }
    assert!(!first.wait().await.unwrap().success(), "killed, not exited");

    // Alice reconnects to the surviving instance and goes on.
    let (alice, _ae) = Client::connect(&url2, &alice_key, ConnectOptions::default())
        .await
        .unwrap();
    for i in 0..20u32 {
        acked.insert(send(&alice, &ch, format!("after {i}").as_bytes()).await);
    }
    let stored: Vec<MessageId> = history(&alice, &ch).await.iter().map(|m| m.id).collect();
    let unique: HashSet<MessageId> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "no message stored twice");
    assert!(
        acked.is_subset(&unique),
        "every acknowledged message is stored"
    );

    // The survivor took the community server's outbox over; carol gets every message.
    let new_holder = eventually(|| async {
        lease_holder(&db.url, &community_name)
            .await
            .filter(|h| *h != holder)
    })
    .await;
    eprintln!(
        "outbox lease of {community_name} moved from instance {holder} to {new_holder} {:?} after the kill",
        killed_at.elapsed()
    );
    let mut got: HashSet<MessageId> = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !acked.is_subset(&got) {
        match tokio::time::timeout_at(deadline, ce.recv()).await {
            Ok(Some(Event::Message(m))) => {
                got.insert(m.id);
            }
            Ok(Some(_)) => {}
            _ => panic!(
                "carol got {} of {} acknowledged messages",
                acked.intersection(&got).count(),
                acked.len()
            ),
        }
    }
    // Bob, on the survivor all along, saw every one too.
    let bob_done = eventually(|| {
        let (seen, acked) = (seen.clone(), acked.clone());
        async move {
            let s = seen.lock().await;
            acked.iter().all(|id| s.messages.contains(id)).then_some(())
        }
    });
    tokio::time::timeout(Duration::from_secs(15), bob_done)
        .await
        .expect("bob saw every acknowledged message");
    rx.abort();
    bob.close();
    let _ = second.start_kill();
    let _ = second.wait().await;
    community.stop().await;
    db.drop_db().await;
}
