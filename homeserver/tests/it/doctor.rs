//! `mobium doctor` as an operator runs it, against the data directory of a real server (left
//! running: the checks must work beside it) and a real authoritative DNS server: every check
//! passes on a healthy setup, and each kind of problem is a `FAIL` line with its fix and exit
//! code 1.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use mobium_spec::{Keypair, PublicKey, ServerName};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_mobium");

/// Runs `mobium doctor` with only `env`; returns its exit code and stdout.
async fn doctor(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("doctor").env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The report's line for `check`, e.g. `ok    data directory: ...`.
fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| {
            l.get(6..)
                .is_some_and(|rest| rest.starts_with(&format!("{check}:")))
        })
        .unwrap_or_else(|| panic!("no {check} line in:\n{report}"))
}

fn status<'a>(report: &'a str, check: &str) -> &'a str {
    line(report, check).split_whitespace().next().unwrap_or("")
}

#[cfg(unix)]
fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_healthy_setup_and_names_the_fix_for_each_problem() {
    let server = start_with(Backend::Sqlite, |c| {
        c.server_name = Some("doctor.test".parse().unwrap());
        c.fed_enabled = false;
    })
    .await
    .unwrap();
    let data = server.config.data_dir.clone();
    let data_s = data.to_str().unwrap();
    let base = [
        ("SC_DATA_DIR", data_s),
        ("SC_SERVER_NAME", "doctor.test"),
        ("SC_FED_ENABLED", "false"),
    ];
    let (code, report) = doctor(&base).await;
    assert_eq!(code, Some(0), "{report}");
    for check in [
        "config",
        "data directory",
        "server key",
        "database",
        "server name",
    ] {
        assert_eq!(status(&report, check), "ok", "{report}");
    }
    assert_eq!(status(&report, "federation DNS"), "skip", "{report}");
    assert!(!report.contains("FAIL"), "{report}");

    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env: Vec<(&str, &str)> = base.to_vec();
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k, v));
        }
        env
    };

    #[cfg(unix)]
    {
        chmod(&data, 0o755);
        let (code, report) = doctor(&base).await;
        assert_eq!(code, Some(1), "{report}");
        assert_eq!(status(&report, "data directory"), "FAIL", "{report}");
        assert!(
            report.contains(&format!("fix: chmod 700 {data_s}")),
            "{report}"
        );
        chmod(&data, 0o700);

        let key = data.join("server.key");
        chmod(&key, 0o644);
        let (code, report) = doctor(&base).await;
        assert_eq!(code, Some(1), "{report}");
        assert_eq!(status(&report, "server key"), "FAIL", "{report}");
        assert!(
            report.contains(&format!("fix: chmod 600 {}", key.display())),
            "{report}"
        );
        chmod(&key, 0o600);
    }

    // Another name than the database was created under.
    let (code, report) = doctor(&with(&[("SC_SERVER_NAME", "other.test")])).await;
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(status(&report, "server name"), "FAIL", "{report}");
    assert!(report.contains("SC_SERVER_NAME=doctor.test"), "{report}");

    // A database that refuses writes, and one that cannot be reached.
    let ro = format!("sqlite://{}?mode=ro", data.join("mobium.db").display());
    let (code, report) = doctor(&with(&[("SC_DATABASE_URL", ro.leak())])).await;
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(status(&report, "database"), "FAIL", "{report}");
    let (code, report) = doctor(&with(&[(
        "SC_DATABASE_URL",
        "postgres://mobium@127.0.0.1:1/mobium",
    )]))
    .await;
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(status(&report, "database"), "FAIL", "{report}");
    assert!(report.contains("check SC_DATABASE_URL"), "{report}");

    // No data directory at all; settings that do not load.
    let missing = data.join("nope");
    let (code, report) = doctor(&with(&[(
        "SC_DATA_DIR",
        missing.to_str().unwrap().to_owned().leak(),
    )]))
    .await;
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(status(&report, "data directory"), "FAIL", "{report}");
    assert!(report.contains("does not exist"), "{report}");
    let (code, report) = doctor(&with(&[("SC_PORT", "eighty")])).await;
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(status(&report, "config"), "FAIL", "{report}");
    assert!(report.contains("SC_PORT"), "{report}");

    // Everything fixed again: a clean bill, with the server still running all along.
    let (code, report) = doctor(&base).await;
    assert_eq!(code, Some(0), "{report}");
    server.stop().await;
}

/// An authoritative DNS server for the zone `test.` on a loopback port.
struct TestDns {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    _server: Server<Catalog>,
}

impl TestDns {
    async fn start() -> TestDns {
        let origin = Name::from_ascii("test.").unwrap();
        let mut zone =
            InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_ascii("ns.test.").unwrap(),
            Name::from_ascii("admin.test.").unwrap(),
            1,
            3600,
            600,
            86400,
            60,
        );
        assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 300, RData::SOA(soa)), 1));
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::new(&origin),
            vec![zone.clone() as Arc<dyn ZoneHandler>],
        );
        let udp = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        TestDns {
            addr,
            zone,
            _server: server,
        }
    }

    /// The README's records for `host`: A 127.0.0.1, SRV to `port`, TXT with `key`.
    async fn publish(&self, host: &str, port: u16, key: PublicKey) {
        let target = Name::from_ascii(format!("{host}.")).unwrap();
        let records = [
            (format!("{host}."), RData::A(A(Ipv4Addr::LOCALHOST))),
            (
                format!("_mobium._udp.{host}."),
                RData::SRV(SRV::new(0, 0, port, target)),
            ),
            (
                format!("_mobium.{host}."),
                RData::TXT(TXT::new(vec![format!("v=mobium1 key={key}")])),
            ),
        ];
        for (i, (owner, rdata)) in records.into_iter().enumerate() {
            let record = Record::from_rdata(Name::from_ascii(&owner).unwrap(), 300, rdata);
            assert!(self.zone.upsert(record, 2 + i as u32).await, "{owner}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_records_other_servers_find() {
    let name: ServerName = "doctor.test".parse().unwrap();
    let server = start_with(Backend::Sqlite, |c| {
        c.server_name = Some(name.clone());
        c.fed_enabled = false;
    })
    .await
    .unwrap();
    let key = server.running().app.keypair.public();
    let data = server.config.data_dir.to_str().unwrap().to_owned();
    let dns = TestDns::start().await;
    let dns_addr = dns.addr.to_string();
    let env = |fed_port: &'static str| {
        vec![
            ("SC_DATA_DIR", data.clone()),
            ("SC_SERVER_NAME", "doctor.test".to_owned()),
            ("SC_FED_PORT", fed_port.to_owned()),
            ("SC_FED_NAMESERVERS", dns_addr.clone()),
        ]
    };
    let run = |vars: Vec<(&'static str, String)>| async move {
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        doctor(&refs).await
    };

    // Nothing published: FAIL, and the fix is the records to publish.
    let (code, report) = run(env("7448")).await;
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(status(&report, "federation DNS"), "FAIL", "{report}");
    assert!(
        report.contains("_mobium._udp.doctor.test.  3600 IN SRV 0 0 7448 doctor.test."),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "_mobium.doctor.test.       3600 IN TXT \"v=mobium1 key={key}\""
        )),
        "{report}"
    );

    // Published as the README says: ok, and nothing else fails.
    dns.publish("doctor.test", 7448, key).await;
    let (code, report) = run(env("7448")).await;
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(status(&report, "federation DNS"), "ok", "{report}");
    assert!(report.contains("at 127.0.0.1:7448"), "{report}");

    // The SRV record leads to another port than the one configured.
    let (code, report) = run(env("7449")).await;
    assert_eq!(code, Some(1), "{report}");
    assert!(
        line(&report, "federation DNS").contains("SC_FED_PORT is 7449"),
        "{report}"
    );

    // The TXT record carries another key (a server that was reinstalled with a new key).
    dns.publish("rekeyed.test", 7448, Keypair::generate().public())
        .await;
    let mut vars = env("7448");
    vars[1].1 = "rekeyed.test".to_owned();
    let (code, report) = run(vars).await;
    assert_eq!(code, Some(1), "{report}");
    assert!(
        line(&report, "federation DNS").contains(&format!("but this server's key is {key}")),
        "{report}"
    );
    server.stop().await;
}
