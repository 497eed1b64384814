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
