//! The testnet's authoritative DNS server (hickory-server) for the zone `mobium.test`.
//!
//! Every homeserver is started with `SC_FED_NAMESERVERS` pointing here, so federation discovery
//! (spec `federation.md` §Discovery) runs exactly as on the Internet, only against this zone:
//!
//! ```text
//! mobium.test.                     SOA  ns.mobium.test. admin.mobium.test. 1 …
//! node1.mobium.test.               A    127.0.0.1
//! _mobium._udp.node1.mobium.test.  SRV  0 0 7112 node1.mobium.test.
//! _mobium.node1.mobium.test.       TXT  "v=mobium1 key=<64 hex>"
//! ```
//!
//! The SRV port is the node's **relay** (owned by the daemon, see [`crate::relay`]), not its own
//! federation socket: that is what lets `testnet partition` cut a link without touching the
//! homeservers. The zone never changes while the testnet runs (ports and keys are fixed at
//! `up`), so it is built once; the server answers on UDP and TCP on the same port.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use serde::{Deserialize, Serialize};

/// TTL of every record, in seconds. Discovery clamps cache lifetimes to at least 60 s anyway.
pub const TTL: u32 = 60;

/// One homeserver as DNS publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Its server name, inside the zone (`node1.mobium.test`).
    pub name: String,
    /// The advertised federation address (the relay): an A record for the name and the SRV port.
    pub addr: SocketAddr,
    /// Its server key, 64 lowercase hex digits, for the TXT record.
    pub key: String,
}

/// The records of the zone `origin` for `nodes`: SOA, then A, SRV and TXT per node.
pub fn records(origin: &str, nodes: &[Published]) -> anyhow::Result<Vec<Record>> {
    let origin_name = fqdn(origin)?;
    let soa = SOA::new(
        fqdn(&format!("ns.{origin}"))?,
        fqdn(&format!("admin.{origin}"))?,
        1,
        3600,
        600,
        86_400,
        TTL,
    );
    let mut out = vec![Record::from_rdata(origin_name, TTL, RData::SOA(soa))];
    // A server of several instances (the managed peer) is several entries with one name and
    // key: one A and one TXT record, and one SRV target per instance.
    let mut named = std::collections::BTreeSet::new();
    for n in nodes {
        let std::net::IpAddr::V4(ip) = n.addr.ip() else {
            anyhow::bail!(
                "{}: the testnet publishes IPv4 loopback addresses only",
                n.name
            );
        };
        let host = fqdn(&n.name)?;
        let first = named.insert(n.name.clone());
        if first {
            out.push(Record::from_rdata(host.clone(), TTL, RData::A(A(ip))));
        }
        out.push(Record::from_rdata(
            fqdn(&format!("_mobium._udp.{}", n.name))?,
            TTL,
            RData::SRV(SRV::new(0, 0, n.addr.port(), host)),
        ));
        if first {
            out.push(Record::from_rdata(
                fqdn(&format!("_mobium.{}", n.name))?,
                TTL,
                RData::TXT(TXT::new(vec![format!("v=mobium1 key={}", n.key)])),
            ));
        }
    }
    Ok(out)
}

fn fqdn(name: &str) -> anyhow::Result<Name> {
    let name = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(&name).with_context(|| format!("{name:?} is not a DNS name"))
}

/// A running DNS server. Dropping it stops answering.
pub struct DnsServer {
    addr: SocketAddr,
    server: Server<Catalog>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl DnsServer {
    /// Serves the zone `origin` with `nodes` on `addr` (UDP and TCP; port 0 picks one).
    pub async fn start(
        addr: SocketAddr,
        origin: &str,
        nodes: &[Published],
    ) -> anyhow::Result<DnsServer> {
        let origin_name = fqdn(origin)?;
        let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin_name.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        for record in records(origin, nodes)? {
            let what = format!("{} {}", record.name, record.record_type());
            anyhow::ensure!(zone.upsert_mut(record, 1), "cannot add {what} to the zone");
        }
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::new(&origin_name),
            vec![Arc::new(zone) as Arc<dyn ZoneHandler>],
        );
        let udp = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("DNS: cannot bind UDP {addr}"))?;
        let addr = udp.local_addr()?;
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("DNS: cannot bind TCP {addr}"))?;
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        Ok(DnsServer { addr, server })
    }

    /// Where it answers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops answering and waits for the server's tasks to end.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::debug!(error = %e, "DNS server shut down with an error");
        }
    }
}

/// The published form of a node: its name, its relay address and key.
pub fn published(name: &str, relay: SocketAddr, key: &str) -> Published {
    Published {
        name: name.to_owned(),
        addr: relay,
        key: key.to_owned(),
    }
}

/// The zone as text, one record per line (for `daemon.log` and debugging).
pub fn describe(origin: &str, nodes: &[Published]) -> anyhow::Result<String> {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records(origin, nodes)? {
        by_name.entry(r.name.to_string()).or_default().push(format!(
            "{} {}",
            r.record_type(),
            r.data
        ));
    }
    Ok(by_name
        .into_iter()
        .flat_map(|(name, rs)| rs.into_iter().map(move |r| format!("{name} {r}")))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `127.0.0.1`, the only address testnet records point at.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_gets_a_srv_txt_and_a_record() -> anyhow::Result<()> {
        let key = "ab".repeat(32);
        let nodes = [published(
            "node1.mobium.test",
            "127.0.0.1:7112".parse()?,
            &key,
        )];
        let text = describe("mobium.test", &nodes)?;
        assert!(text.contains("_mobium._udp.node1.mobium.test. SRV 0 0 7112 node1.mobium.test."));
        assert!(text.contains(&format!(
            "_mobium.node1.mobium.test. TXT v=mobium1 key={key}"
        )));
        assert!(text.contains("node1.mobium.test. A 127.0.0.1"));
        Ok(())
    }
}
