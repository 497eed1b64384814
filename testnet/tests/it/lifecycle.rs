//! Starting and stopping networks: nothing is left behind, and a restarted node keeps its
//! identity.

use std::time::Duration;

use mobium_testnet::network::node_alive;
use mobium_testnet::process::is_alive;
use mobium_testnet::{DaemonMode, Network, TestnetInfo, UpOptions};

use super::support::{init_logs, mobium, testnet_exe};

/// `up` with a detached daemon (as the CLI does), then `down`: every process is gone and the
/// data directories remain; `down --wipe` removes them.
#[tokio::test]
async fn up_then_down_leaves_no_processes() {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = UpOptions::local(2, dir.path());
    opts.mobium = Some(mobium());
    opts.daemon = DaemonMode::Detached {
        testnet_exe: testnet_exe(),
    };
    // Health only: the federation check is the scenarios' business.
    opts.reach_timeout = Duration::ZERO;
    let net = Network::up(opts).await.expect("up");
    let info = net.info().clone();
    let daemon_pid = info.daemon_pid.expect("a detached daemon has a pid");
    let plan = info.dir.join("daemon.json").display().to_string();
    assert!(is_alive(daemon_pid, &plan));
    for n in &info.nodes {
        assert!(node_alive(&info, n), "{} is not running", n.name);
    }
    // Another process (the CLI) finds the same network from testnet.json.
    let written = TestnetInfo::load(dir.path())
        .expect("read")
        .expect("testnet.json");
    assert_eq!(written, info);
    assert!(
        Network::up(UpOptions::local(2, dir.path())).await.is_err(),
        "a second up in the same directory"
    );
    drop(net);

    Network::attach(dir.path())
        .expect("attach")
        .down(false)
        .await
        .expect("down");
    assert!(!is_alive(daemon_pid, &plan), "the daemon survived down");
    for n in &info.nodes {
        let pid = n.pid.expect("pid");
        assert!(
            !is_alive(pid, &info.mobium_bin.display().to_string()),
            "{} survived down",
            n.name
        );
        assert!(
            n.data_dir.join("server.key").is_file(),
            "down without --wipe keeps data"
        );
    }
    assert!(TestnetInfo::load(dir.path()).expect("read").is_none());

    // Up again in the same directory: same keys.
    let mut opts = UpOptions::local(2, dir.path());
    opts.mobium = Some(mobium());
    opts.reach_timeout = Duration::ZERO;
    let net = Network::up(opts).await.expect("up again");
    let keys: Vec<_> = net.info().nodes.iter().map(|n| n.key.clone()).collect();
    assert_eq!(
        keys,
        info.nodes.iter().map(|n| n.key.clone()).collect::<Vec<_>>()
    );
    net.down(true).await.expect("down --wipe");
    assert!(!info.nodes[0].data_dir.exists(), "--wipe removes the data");
}

/// kill leaves the node dead; restart brings it back on the same port with the same key.
#[tokio::test]
async fn kill_and_restart_keep_the_nodes_identity() {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = UpOptions::local(1, dir.path());
    opts.mobium = Some(mobium());
    let mut net = Network::up(opts).await.expect("up");
    let before = net.node("node1").expect("node1").clone();
    net.kill("node1").await.expect("kill");
    assert!(!net.is_alive("node1").expect("node1"));
    assert!(mobium_testnet::node::health(&before).await.is_err());
    net.restart("node1").await.expect("restart");
    let after = net.node("node1").expect("node1").clone();
    assert_ne!(after.pid, before.pid);
    assert_eq!(
        (after.client_addr, after.key.clone()),
        (before.client_addr, before.key.clone())
    );
    let (status, body) = mobium_testnet::node::http_get(after.client_addr, "/v1/info")
        .await
        .expect("info");
    assert_eq!(status, 200);
    assert!(
        body.contains(&after.key),
        "/v1/info shows the same server key: {body}"
    );
    net.down(true).await.expect("down");
}
