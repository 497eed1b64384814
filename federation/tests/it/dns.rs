//! DNS discovery against a real authoritative server (hickory-server) on a loopback port: nodes
//! that know each other only through SRV and TXT records.

use std::time::Duration;

use mobium_federation::{DiscoveryConfig, FedConfig, FedError, Query, QueryResult, WellKnownMode};

use crate::support::*;

fn dns_config(name_text: &str, seed: u8, dns: &TestDns) -> FedConfig {
    dns_config_with(name_text, seed, dns, WellKnownMode::Off)
}

fn dns_config_with(
    name_text: &str,
    seed: u8,
    dns: &TestDns,
    well_known: WellKnownMode,
) -> FedConfig {
    let mut config = FedConfig::new(name(name_text), keypair(seed));
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.discovery = DiscoveryConfig {
        nameservers: vec![dns.addr],
        static_peers: Vec::new(),
        well_known,
        negative_ttl: Duration::from_secs(30),
    };
    config
}

#[tokio::test]
async fn nodes_find_each_other_through_srv_and_txt() {
    let dns = TestDns::start().await;
    let alpha = start_node(dns_config("alpha.test", 1, &dns)).await;
    let beta = start_node(dns_config("beta.test:7102", 2, &dns)).await;
    dns.publish(&alpha.name, alpha.fed.local_addr(), alpha.keypair.public())
        .await;
    dns.publish(&beta.name, beta.fed.local_addr(), beta.keypair.public())
        .await;

    let found = alpha.fed.resolve(&beta.name).await.unwrap();
    assert_eq!(found.addr, beta.fed.local_addr());
    assert_eq!(found.key, beta.keypair.public());

    alpha
        .fed
        .send_transaction(&beta.name, txn(&alpha, &beta.name, 2))
        .await
        .unwrap();
    assert_eq!(beta.handler.total_calls(), 1);
    let pong = beta.fed.query(&alpha.name, Query::Ping).await.unwrap();
    assert!(matches!(pong, QueryResult::Pong { .. }));
}

#[tokio::test]
async fn names_without_a_key_record_are_not_discovered() {
    let dns = TestDns::start().await;
    let alpha = start_node(dns_config("alpha.test", 1, &dns)).await;

    // No records at all.
    let nobody = name("nobody.test");
    assert!(matches!(
        alpha.fed.resolve(&nobody).await,
        Err(FedError::Discovery(_))
    ));

    // Two valid TXT records with different keys make the DNS source fail.
    let twice = name("twice.test");
    dns.publish(&twice, "127.0.0.1:9".parse().unwrap(), keypair(5).public())
        .await;
    dns.add_txt(&twice, &format!("v=mobium1 key={}", keypair(6).public()))
        .await;
    assert!(matches!(
        alpha.fed.resolve(&twice).await,
        Err(FedError::Discovery(_))
    ));

    // Records of other formats are ignored.
    let other = name("other.test");
    dns.add_txt(&other, "v=spf1 -all").await;
    dns.publish(&other, "127.0.0.1:9".parse().unwrap(), keypair(7).public())
        .await;
    let found = alpha.fed.resolve(&other).await.unwrap();
    assert_eq!(found.key, keypair(7).public());
    assert_eq!(found.addr.port(), 9);
}

#[tokio::test]
async fn an_origin_published_with_another_key_is_refused() {
    let dns = TestDns::start().await;
    let alpha = start_node(dns_config("alpha.test", 1, &dns)).await;
    let beta = start_node(dns_config("beta.test", 2, &dns)).await;
    dns.publish(&alpha.name, alpha.fed.local_addr(), alpha.keypair.public())
        .await;
    // beta's zone advertises a key that is not the one beta signs and handshakes with.
    dns.publish(&beta.name, beta.fed.local_addr(), keypair(9).public())
        .await;

    match beta
        .fed
        .send_transaction(&alpha.name, txn(&beta, &alpha.name, 1))
        .await
    {
        Err(FedError::Rejected(e)) => assert_eq!(e.code, mobium_spec::ErrorCode::FedUnknownKey),
        other => panic!("expected fed_unknown_key, got {other:?}"),
    }
    assert_eq!(alpha.handler.total_calls(), 0);
}

#[tokio::test]
async fn well_known_document_is_used_when_dns_has_no_key() {
    let dns = TestDns::start().await;
    dns.add_a("wk.test", std::net::Ipv4Addr::LOCALHOST).await;
    let alpha = start_node(dns_config_with("alpha.test", 1, &dns, WellKnownMode::Http)).await;
    dns.publish(&alpha.name, alpha.fed.local_addr(), alpha.keypair.public())
        .await;

    // beta's name carries the HTTP port of its well-known document; DNS has only its A record,
    // no TXT, so the DNS source yields nothing and the document is fetched.
    let beta_quic = free_port();
    let beta_key = keypair(2).public();
    let http_port = serve_well_known(|port| {
        format!(
            r#"{{"server": "wk.test:{port}", "server_key": "{beta_key}", "federation": "127.0.0.1:{}"}}"#,
            beta_quic.port()
        )
    })
    .await;
    let mut beta_config = dns_config_with(
        &format!("wk.test:{http_port}"),
        2,
        &dns,
        WellKnownMode::Http,
    );
    beta_config.bind = beta_quic;
    let beta = start_node(beta_config).await;

    let found = alpha.fed.resolve(&beta.name).await.unwrap();
    assert_eq!(found.addr, beta_quic);
    assert_eq!(found.key, beta_key);
    alpha
        .fed
        .send_transaction(&beta.name, txn(&alpha, &beta.name, 1))
        .await
        .unwrap();
    assert_eq!(beta.handler.total_calls(), 1);

    // A document that names another server is ignored.
    let liar_port = serve_well_known(|_| {
        format!(r#"{{"server": "someone-else.test", "server_key": "{beta_key}", "federation": "127.0.0.1:9"}}"#)
    })
    .await;
    let liar = name(&format!("wk.test:{liar_port}"));
    assert!(matches!(
        alpha.fed.resolve(&liar).await,
        Err(FedError::Discovery(_))
    ));
}

/// Both sides pick up a peer's new key: the dialler when the handshake shows another key than its
/// cached one, the acceptor when a request's origin presents another key. (The negative TTL, here
/// zero, is also the minimum age of a cached answer before such a re-discovery.)
#[tokio::test]
async fn a_rotated_key_is_rediscovered() {
    let dns = TestDns::start().await;
    let config = |text: &str, seed: u8| {
        let mut config = dns_config(text, seed, &dns);
        config.discovery.negative_ttl = Duration::ZERO;
        config
    };
    let alpha = start_node(config("alpha.test", 1)).await;
    let beta = start_node(config("beta.test", 2)).await;
    dns.publish(&alpha.name, alpha.fed.local_addr(), alpha.keypair.public())
        .await;
    dns.publish(&beta.name, beta.fed.local_addr(), beta.keypair.public())
        .await;
    alpha
        .fed
        .send_transaction(&beta.name, txn(&alpha, &beta.name, 1))
        .await
        .unwrap();
    beta.fed
        .send_transaction(&alpha.name, txn(&beta, &alpha.name, 1))
        .await
        .unwrap();

    // beta restarts with a new key at the same address and publishes it.
    let beta_addr = beta.fed.local_addr();
    beta.fed.shutdown().await;
    drop(beta);
    let mut rotated = config("beta.test", 12);
    rotated.bind = beta_addr;
    let beta = start_node(rotated).await;
    dns.replace_key(&beta.name, beta.keypair.public()).await;

    // alpha's cache still says the old key: the handshake fails, alpha asks DNS again and
    // retries on the new key.
    alpha
        .fed
        .send_transaction(&beta.name, txn(&alpha, &beta.name, 1))
        .await
        .unwrap();
    assert_eq!(
        alpha.fed.resolve(&beta.name).await.unwrap().key,
        beta.keypair.public()
    );
    beta.fed
        .send_transaction(&alpha.name, txn(&beta, &alpha.name, 1))
        .await
        .unwrap();
    assert_eq!(alpha.handler.total_calls(), 2);

    // Now alpha rotates. beta has alpha's old key cached from checking alpha's request above:
    // the new alpha's request shows a different certificate key, beta asks DNS again, accepts.
    let alpha_addr = alpha.fed.local_addr();
    alpha.fed.shutdown().await;
    drop(alpha);
    let mut rotated = config("alpha.test", 11);
    rotated.bind = alpha_addr;
    let alpha = start_node(rotated).await;
    dns.replace_key(&alpha.name, alpha.keypair.public()).await;
    alpha
        .fed
        .send_transaction(&beta.name, txn(&alpha, &beta.name, 1))
        .await
        .unwrap();
    assert_eq!(beta.handler.total_calls(), 2);
    assert_eq!(
        beta.fed
            .stats()
            .rejected_with(mobium_spec::ErrorCode::FedUnknownKey),
        0
    );
}
