//! The daemon's DNS zone, queried with hickory-resolver as the homeservers' discovery does,
//! and its control channel.

use std::net::SocketAddr;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use mobium_testnet::control::{ControlRequest, call};
use mobium_testnet::daemon::{DaemonPlan, PlanNode, start_in_process};
use mobium_testnet::ports::{Layout, loopback};

fn resolver(dns: SocketAddr, protocol: ProtocolConfig) -> TokioResolver {
    let mut connection = ConnectionConfig::new(protocol);
    connection.port = dns.port();
    let server = NameServerConfig::new(dns.ip(), true, vec![connection]);
    Resolver::builder_with_config(
        ResolverConfig::from_parts(None, Vec::new(), vec![server]),
        TokioRuntimeProvider::default(),
    )
    .build()
    .expect("resolver")
}

fn plan(nodes: usize) -> DaemonPlan {
    let layout = Layout::free(nodes).expect("ports");
    DaemonPlan {
        zone: "mobium.test".into(),
        dns: loopback(layout.dns),
        control: loopback(layout.control),
        nodes: layout
            .nodes
            .iter()
            .enumerate()
            .map(|(i, p)| PlanNode {
                index: i + 1,
                name: format!("node{}.mobium.test", i + 1),
                key: format!("{:02x}", i + 1).repeat(32),
                relay: loopback(p.relay),
                federation: loopback(p.federation),
            })
            .collect(),
    }
}

#[tokio::test]
async fn the_zone_answers_srv_txt_and_a_over_udp_and_tcp() {
    super::support::init_logs();
    let plan = plan(3);
    let daemon = start_in_process(plan.clone()).await.expect("daemon");
    for protocol in [ProtocolConfig::Udp, ProtocolConfig::Tcp] {
        let r = resolver(plan.dns, protocol.clone());
        for n in &plan.nodes {
            let srv = r
                .srv_lookup(format!("_mobium._udp.{}.", n.name))
                .await
                .unwrap_or_else(|e| panic!("SRV for {} over {protocol:?}: {e}", n.name));
            let records: Vec<_> = srv
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some((s.port, s.target.to_string())),
                    _ => None,
                })
                .collect();
            assert_eq!(records, vec![(n.relay.port(), format!("{}.", n.name))]);

            let txt = r
                .txt_lookup(format!("_mobium.{}.", n.name))
                .await
                .expect("TXT");
            let texts: Vec<String> = txt
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect();
            assert_eq!(texts, vec![format!("v=mobium1 key={}", n.key)]);

            let ips: Vec<_> = r
                .lookup_ip(format!("{}.", n.name))
                .await
                .expect("A")
                .iter()
                .collect();
            assert_eq!(ips, vec![n.relay.ip()]);
        }
        // Names outside the testnet's nodes do not exist.
        assert!(r.txt_lookup("_mobium.node9.mobium.test.").await.is_err());
    }
    daemon.stop().await;
}

#[tokio::test]
async fn the_control_channel_cuts_and_heals_links() {
    let plan = plan(3);
    let daemon = start_in_process(plan.clone()).await.expect("daemon");
    let cut = call(plan.control, &ControlRequest::Partition { a: 2, b: 1 })
        .await
        .expect("partition");
    assert!(cut.changed);
    assert_eq!(cut.partitions, vec![(1, 2)]);
    assert_eq!(cut.relays.len(), 3);
    let again = call(plan.control, &ControlRequest::Partition { a: 1, b: 2 })
        .await
        .expect("again");
    assert!(!again.changed, "cutting a cut link changes nothing");
    assert!(
        call(plan.control, &ControlRequest::Partition { a: 1, b: 7 })
            .await
            .is_err()
    );
    let healed = call(plan.control, &ControlRequest::Heal { a: 1, b: 2 })
        .await
        .expect("heal");
    assert!(healed.changed && healed.partitions.is_empty());
    call(plan.control, &ControlRequest::Shutdown)
        .await
        .expect("shutdown");
    daemon.stop().await;
    assert!(
        call(plan.control, &ControlRequest::Ping).await.is_err(),
        "the daemon still answers after shutdown"
    );
}
