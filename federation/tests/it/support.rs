//! Shared test fixtures: a recording handler, test networks of nodes, a DNS zone, envelopes.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use mobium_federation::{
    Ack, DiscoveryConfig, FedConfig, FedRequest, Federation, FederationHandler, Query, QueryResult,
    StaticPeer, Transaction, WellKnownMode,
};
use mobium_spec::client::ErrorBody;
use mobium_spec::federation::{FedBody, FedDirect, FedEvent, Rejected};
use mobium_spec::{
    Domain, ErrorCode, Keypair, MessageId, PROTOCOL_VERSION, ServerName, SignedEnvelope, UserId,
};

/// What a test node's handler saw.
#[derive(Default)]
pub struct TestHandler {
    /// `(origin, txn_id)` → how many times the handler was called with it.
    pub calls: Mutex<HashMap<(ServerName, u64), usize>>,
    /// Number of events received, in total.
    pub events: Mutex<usize>,
    /// Peers announced through `peer_connected`.
    pub connected: Mutex<Vec<ServerName>>,
    /// Codes passed to `rejected`.
    pub rejected: Mutex<Vec<ErrorCode>>,
    /// The software string answered to `ping`.
    pub software: String,
}

#[async_trait::async_trait]
impl FederationHandler for TestHandler {
    async fn transaction(
        &self,
        origin: &ServerName,
        txn_id: u64,
        txn: Transaction,
    ) -> Result<Ack, ErrorBody> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry((origin.clone(), txn_id))
            .or_default() += 1;
        *self.events.lock().unwrap() += txn.events.len();
        // Refuse events with an empty ciphertext, so that acks carry something to check.
        let rejected = txn
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, FedEvent::Direct(d) if d.ciphertext.is_empty()))
            .map(|(i, _)| Rejected {
                index: u32::try_from(i).unwrap(),
                error: ErrorBody::new(ErrorCode::InvalidArgument, "empty ciphertext"),
            })
            .collect();
        Ok(Ack {
            rejected,
            deferred: Vec::new(),
        })
    }

    async fn query(&self, _origin: &ServerName, query: Query) -> Result<QueryResult, ErrorBody> {
        match query {
            Query::Ping => Ok(QueryResult::Pong {
                protocol_version: PROTOCOL_VERSION,
                software: self.software.clone(),
            }),
            _ => Err(ErrorBody::new(ErrorCode::NotFound, "no such user")),
        }
    }

    fn peer_connected(&self, peer: &ServerName) {
        self.connected.lock().unwrap().push(peer.clone());
    }

    fn rejected(&self, code: ErrorCode) {
        self.rejected.lock().unwrap().push(code);
    }
}

impl TestHandler {
    pub fn calls_for(&self, origin: &ServerName, txn_id: u64) -> usize {
        self.calls
            .lock()
            .unwrap()
            .get(&(origin.clone(), txn_id))
            .copied()
            .unwrap_or(0)
    }

    pub fn total_calls(&self) -> usize {
        self.calls.lock().unwrap().values().sum()
    }
}

/// One federation endpoint with its handler and identity.
pub struct Node {
    pub fed: Federation,
    pub handler: Arc<TestHandler>,
    pub name: ServerName,
    pub keypair: Keypair,
}

pub fn name(text: &str) -> ServerName {
    ServerName::from_str(text).unwrap()
}

pub fn keypair(i: u8) -> Keypair {
    Keypair::from_seed([i.wrapping_add(1); 32])
}

/// A UDP port free right now on 127.0.0.1 (for static peer tables, which need the port before
/// the node starts).
pub fn free_port() -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.local_addr().unwrap()
}

/// A DNS server with an empty `test.` zone, shared by the whole test binary and running on its
/// own thread (each test has its own runtime), so that names missing from the static peers are
/// answered NXDOMAIN at once instead of waiting for a resolver timeout.
pub fn empty_dns() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let dns = TestDns::start().await;
                tx.send(dns.addr).unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().unwrap()
    })
}

/// A discovery config with the static peers, the empty test zone as DNS and no well-known.
pub fn offline_discovery(static_peers: Vec<StaticPeer>) -> DiscoveryConfig {
    DiscoveryConfig {
        nameservers: vec![empty_dns()],
        static_peers,
        well_known: WellKnownMode::Off,
        negative_ttl: Duration::from_secs(30),
    }
}

/// Logs to the test output when `RUST_LOG` is set (for example `mobium_federation=debug`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Starts a node, retrying while its (reserved or previous) address is still being released.
pub async fn start_node(config: FedConfig) -> Node {
    init_tracing();
    let handler = Arc::new(TestHandler {
        software: format!("test {}", config.server_name),
        ..TestHandler::default()
    });
    let name = config.server_name.clone();
    let keypair = config.keypair.clone();
    let mut attempts = 0;
    let fed = loop {
        match Federation::start(config.clone(), handler.clone()).await {
            Ok(fed) => break fed,
            Err(e) if attempts < 100 => {
                attempts += 1;
                tracing::debug!(error = %e, "start failed, retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("node {name} did not start: {e}"),
        }
    };
    Node {
        fed,
        handler,
        name,
        keypair,
    }
}

/// The configs of `n` nodes `n0.test`, `n1.test`, … that know each other as static peers.
pub fn static_configs(n: usize) -> Vec<FedConfig> {
    let addrs: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
    let peers: Vec<StaticPeer> = (0..n)
        .map(|i| StaticPeer {
            name: name(&format!("n{i}.test")),
            addr: addrs[i],
            key: keypair(i as u8).public(),
        })
        .collect();
    (0..n)
        .map(|i| {
            let mut config = FedConfig::new(peers[i].name.clone(), keypair(i as u8));
            config.bind = addrs[i];
            config.discovery = offline_discovery(peers.clone());
            config
        })
        .collect()
}

/// `n` nodes that know each other as static peers.
pub async fn static_net(n: usize) -> Vec<Node> {
    let mut nodes = Vec::new();
    for config in static_configs(n) {
        nodes.push(start_node(config).await);
    }
    nodes
}

/// A transaction of `n` direct events from a user of `from` to a user of `to`.
pub fn txn(from: &Node, to: &ServerName, n: usize) -> Transaction {
    let sender = UserId::new(from.keypair.public(), from.name.clone());
    let recipient = UserId::new(keypair(99).public(), to.clone());
    let events = (0..n)
        .map(|i| {
            FedEvent::Direct(FedDirect {
                id: MessageId::new(1_000_000 + i as u64).unwrap(),
                from: sender.clone(),
                to: recipient.clone(),
                ciphertext: vec![7; 64],
                sent_at: 1_767_225_600_000,
            })
        })
        .collect();
    Transaction {
        events,
        ephemeral: Vec::new(),
    }
}

/// A request envelope made by hand (possibly forged, misaddressed or stale).
pub fn envelope(
    origin: &ServerName,
    destination: &ServerName,
    txn_id: u64,
    ts: u64,
    body: FedBody,
    signer: &Keypair,
) -> SignedEnvelope {
    let request = FedRequest {
        origin: origin.clone(),
        destination: destination.clone(),
        txn_id,
        ts,
        body,
    };
    SignedEnvelope::sign(Domain::FederationFrame, &request, signer)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits until `condition` holds (polling), failing the test after 10 s.
pub async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An authoritative DNS server for the zone `test.` on a loopback UDP+TCP port.
pub struct TestDns {
    pub addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    serial: AtomicU32,
    _server: Server<Catalog>,
}

impl TestDns {
    pub async fn start() -> TestDns {
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
            serial: AtomicU32::new(1),
            _server: server,
        }
    }

    async fn add(&self, owner: &str, rdata: RData) {
        let serial = self.serial.fetch_add(1, Ordering::SeqCst) + 1;
        let record = Record::from_rdata(Name::from_ascii(owner).unwrap(), 300, rdata);
        assert!(
            self.zone.upsert(record, serial).await,
            "record {owner} not added"
        );
    }

    /// Publishes `name` (a `*.test` name) as served at `addr` with `key`: an A record for the
    /// host, SRV `_mobium._udp` with the port, TXT `_mobium` with the key.
    pub async fn publish(&self, name: &ServerName, addr: SocketAddr, key: mobium_spec::PublicKey) {
        let host = name.host();
        let ip = match addr.ip() {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => panic!("tests publish IPv4 only"),
        };
        self.add(&format!("fed.{host}."), RData::A(A(ip))).await;
        let target = Name::from_ascii(format!("fed.{host}.")).unwrap();
        self.add(
            &format!("_mobium._udp.{host}."),
            RData::SRV(SRV::new(10, 5, addr.port(), target)),
        )
        .await;
        self.add_txt(name, &format!("v=mobium1 key={key}")).await;
    }

    /// Replaces the key published for `name` (its `_mobium` TXT records).
    pub async fn replace_key(&self, name: &ServerName, key: mobium_spec::PublicKey) {
        let owner = Name::from_ascii(format!("_mobium.{}.", name.host())).unwrap();
        self.zone
            .records_mut()
            .await
            .remove(&RrKey::new(LowerName::new(&owner), RecordType::TXT));
        self.add_txt(name, &format!("v=mobium1 key={key}")).await;
    }

    /// Adds an A record.
    pub async fn add_a(&self, host: &str, ip: Ipv4Addr) {
        self.add(&format!("{host}."), RData::A(A(ip))).await;
    }

    /// Adds a TXT record at `_mobium.<host>`.
    pub async fn add_txt(&self, name: &ServerName, text: &str) {
        self.add(
            &format!("_mobium.{}.", name.host()),
            RData::TXT(TXT::new(vec![text.to_owned()])),
        )
        .await;
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1 answering `GET /.well-known/mobium` with the JSON
/// `document(port)` and `Cache-Control: max-age=120`; runs until the test's runtime ends.
/// Returns its port.
pub async fn serve_well_known(document: impl FnOnce(u16) -> String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let document = document(port);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let document = document.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let status = if head.starts_with("GET /.well-known/mobium ") {
                    "200 OK"
                } else {
                    "404 Not Found"
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nCache-Control: max-age=120\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{document}",
                    document.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}
