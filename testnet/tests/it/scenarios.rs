//! The scenarios on a real three-node network: they must pass.

use mobium_testnet::scenario;
use mobium_testnet::{Network, UpOptions};

use super::support::{init_logs, mobium};

async fn three_nodes(dir: &std::path::Path) -> Network {
    let mut opts = UpOptions::local(3, dir);
    opts.mobium = Some(mobium());
    Network::up(opts).await.expect("up")
}

/// `dm` and `partition` on one network (starting one costs seconds; the scenarios leave it as
/// they found it).
#[tokio::test]
async fn dm_and_partition_scenarios_pass() {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = three_nodes(dir.path()).await;
    for name in ["dm", "partition"] {
        let report = scenario::run(name, &mut net).await.expect("scenario");
        println!("{report}");
        assert!(report.passed(), "scenario {name} failed:\n{report}");
    }
    net.down(true).await.expect("down");
}

/// The benchmark suite runs end to end on a small scale and reports plausible figures.
#[tokio::test]
async fn a_small_bench_run_reports_every_figure() {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = UpOptions::local(2, dir.path());
    opts.mobium = Some(mobium());
    let mut net = Network::up(opts).await.expect("up");
    let config = mobium_testnet::bench::BenchConfig {
        latency_messages: 100,
        latency_rate: 200,
        throughput_messages: 300,
        window: 64,
        idle_connections: 20,
        catch_up_events: 300,
    };
    let results = mobium_testnet::bench::run(&mut net, config)
        .await
        .expect("bench");
    println!("{}", results.table());
    assert_eq!(results.latency.messages, 100);
    assert!(results.latency.p50_ms > 0.0 && results.latency.p50_ms <= results.latency.p99_ms);
    assert!(results.throughput.per_second > 0.0);
    assert!(results.memory.rss_after > 0);
    assert_eq!(results.catch_up.events, 300);
    assert!(results.catch_up.catch_up_ms >= results.catch_up.restart_ms);
    let json = serde_json::to_string(&results).expect("json");
    // Parsing may move a float by one unit in the last place: compare loosely.
    let back: mobium_testnet::bench::BenchResults = serde_json::from_str(&json).expect("parse");
    assert_eq!(
        (back.config, back.memory.rss_after),
        (results.config, results.memory.rss_after)
    );
    assert!((back.latency.p99_ms - results.latency.p99_ms).abs() < 1e-9);
    net.down(true).await.expect("down");
}

/// `testnet up --managed 2` with one community node: the federation check passes across the
/// instances and the node, DNS lists both instances under one name, the `managed` scenario
/// passes, and `down --wipe` drops the cluster's database.
#[tokio::test]
async fn a_managed_peer_of_two_instances_is_one_server() {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = UpOptions::local(1, dir.path());
    opts.managed = 2;
    opts.mobium = Some(mobium());
    let mut net = Network::up(opts).await.expect("up with a managed peer");
    let info = net.info().clone();
    let cloud = info.managed();
    assert_eq!(cloud.len(), 2);
    assert_eq!(cloud[0].name, cloud[1].name, "one server name");
    assert_eq!(cloud[0].key, cloud[1].key, "one server key");
    assert_eq!(
        (cloud[0].short_name(), cloud[1].short_name()),
        ("cloud1".to_owned(), "cloud2".to_owned())
    );
    let report = scenario::run("managed", &mut net).await.expect("scenario");
    println!("{report}");
    assert!(report.passed(), "scenario managed failed:\n{report}");
    let db = cloud[0].managed.clone().expect("managed").database_url;
    net.down(true).await.expect("down");
    use sqlx::Connection;
    let gone = sqlx::PgConnection::connect(&db).await;
    assert!(gone.is_err(), "down --wipe dropped {db}");
}
