//! Discovery: from a server name to its federation address and Ed25519 key (spec
//! `federation.md` §Discovery).
//!
//! Sources, first hit wins:
//! 1. **Static peers** from the configuration. They are the operator's explicit word, are never
//!    cached (always current) and spare air-gapped setups and testnets any DNS timeout. (The
//!    spec lists them last; this implementation asks them first, and the spec says so.)
//! 2. **DNS** (only for DNS names, not IP literals): TXT `_mobium.<host>` holding
//!    `v=mobium1 key=<64 hex>` and SRV `_mobium._udp.<host>` for the target and UDP port (without
//!    SRV: `<host>:8448`). The source yields a result only if it found exactly one key.
//! 3. **Well-known**: `GET http(s)://<name>/.well-known/mobium` (`wellknown.rs`).
//!
//! Results are cached: positives for the DNS TTL (smallest of the records used) or the document's
//! `max-age`, clamped to 60 s – 24 h; failures for `negative_ttl`. When a peer presents a key other
//! than the cached one, callers may [`forget`](Discovery::forget) the entry and ask once more (key
//! rotation); [`Discovery::may_refresh`] keeps them from doing that for an entry that is already
//! fresh.
//!
//! Host names are looked up with hickory's resolver, also for the well-known fetch, so that a
//! testnet's own DNS server (configured in [`DiscoveryConfig::nameservers`]) answers everything.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::rdata::SRV;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use mobium_spec::federation::DEFAULT_FED_PORT;
use mobium_spec::{PublicKey, ServerName};

use crate::config::{DiscoveryConfig, WellKnownMode};
use crate::error::FedError;
use crate::wellknown::WellKnown;

/// Shortest time a positive result is cached.
const MIN_TTL: Duration = Duration::from_secs(60);
/// Longest time a positive result is cached.
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Most names remembered; beyond that expired entries are dropped, then everything.
const MAX_CACHED_NAMES: usize = 10_000;
/// Per-query DNS timeout.
const DNS_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a server can be reached and the key it must present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its federation (UDP) address.
    pub addr: SocketAddr,
    /// Its Ed25519 server key.
    pub key: PublicKey,
}

/// A discovery answer and how old it is.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The answer.
    pub result: Result<PeerInfo, String>,
    /// Time since the answer was obtained from its source; `None` for static peers.
    pub age: Option<Duration>,
}

struct Entry {
    result: Result<PeerInfo, String>,
    fetched: Instant,
    expires: Instant,
}

/// The discovery service of one federation endpoint.
pub(crate) struct Discovery {
    statics: HashMap<ServerName, PeerInfo>,
    resolver: Option<TokioResolver>,
    well_known: Option<WellKnown>,
    negative_ttl: Duration,
    cache: Mutex<HashMap<ServerName, Entry>>,
}

impl Discovery {
    /// Builds the resolver and the well-known client from `config`. A missing system resolver
    /// configuration only disables the DNS source (logged), it does not fail the start.
    pub fn new(config: &DiscoveryConfig) -> Self {
        let statics = config
            .static_peers
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    PeerInfo {
                        addr: p.addr,
                        key: p.key,
                    },
                )
            })
            .collect();
        let well_known = match config.well_known {
            WellKnownMode::Off => None,
            mode => WellKnown::new(mode)
                .inspect_err(|e| tracing::warn!(error = %e, "well-known discovery disabled"))
                .ok(),
        };
        Discovery {
            statics,
            resolver: build_resolver(&config.nameservers),
            well_known,
            negative_ttl: config.negative_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves `name` (cached).
    pub async fn resolve(&self, name: &ServerName) -> Result<PeerInfo, FedError> {
        self.resolve_traced(name)
            .await
            .result
            .map_err(FedError::Discovery)
    }

    /// Resolves `name` and says how old the answer is.
    pub async fn resolve_traced(&self, name: &ServerName) -> Resolved {
        if let Some(info) = self.statics.get(name) {
            return Resolved {
                result: Ok(*info),
                age: None,
            };
        }
        let now = Instant::now();
        if let Some(entry) = self.lock_cache().get(name)
            && entry.expires > now
        {
            return Resolved {
                result: entry.result.clone(),
                age: Some(now.duration_since(entry.fetched)),
            };
        }
        let (result, ttl) = self.discover(name).await;
        match &result {
            Ok(info) => {
                tracing::debug!(peer = %name, addr = %info.addr, key = %info.key, "discovered")
            }
            Err(e) => tracing::debug!(peer = %name, error = %e, "discovery failed"),
        }
        self.store(name, result.clone(), ttl);
        Resolved {
            result,
            age: Some(Duration::ZERO),
        }
    }

    /// Whether `resolved` is old enough to be asked for again when the peer presents another key
    /// (key rotation). Answers younger than the negative TTL were just fetched: asking again
    /// would only hammer the sources on behalf of whoever presents a wrong key.
    pub fn may_refresh(&self, resolved: &Resolved) -> bool {
        resolved.age.is_some_and(|age| age >= self.negative_ttl)
    }

    /// Drops the cached answer for `name` (and the resolver's cached key and SRV records for it),
    /// so that the next resolve asks the sources again.
    pub fn forget(&self, name: &ServerName) {
        self.lock_cache().remove(name);
        if let Some(resolver) = &self.resolver {
            let host = name.host();
            resolver.clear_lookup_cache(format!("_mobium.{host}."), RecordType::TXT);
            resolver.clear_lookup_cache(format!("_mobium._udp.{host}."), RecordType::SRV);
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<ServerName, Entry>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self, name: &ServerName, result: Result<PeerInfo, String>, ttl: Duration) {
        let now = Instant::now();
        let mut cache = self.lock_cache();
        if cache.len() >= MAX_CACHED_NAMES {
            cache.retain(|_, e| e.expires > now);
            if cache.len() >= MAX_CACHED_NAMES {
                cache.clear();
            }
        }
        cache.insert(
            name.clone(),
            Entry {
                result,
                fetched: now,
                expires: now + ttl,
            },
        );
    }

    /// Asks DNS, then well-known; returns the answer and how long to cache it.
    async fn discover(&self, name: &ServerName) -> (Result<PeerInfo, String>, Duration) {
        let mut reasons = Vec::new();
        match self.dns(name).await {
            Ok((info, ttl)) => return (Ok(info), clamp_ttl(ttl)),
            Err(e) => reasons.push(format!("dns: {e}")),
        }
        if let Some(well_known) = &self.well_known {
            match self.fetch_well_known(well_known, name).await {
                Ok((info, ttl)) => return (Ok(info), clamp_ttl(ttl)),
                Err(e) => reasons.push(format!("well-known: {e}")),
            }
        }
        if reasons.is_empty() {
            reasons.push("no discovery source".into());
        }
        (Err(reasons.join("; ")), self.negative_ttl)
    }

    /// The DNS source: TXT for the key, SRV (or the host itself) for the address.
    async fn dns(&self, name: &ServerName) -> Result<(PeerInfo, Duration), String> {
        let resolver = self.resolver.as_ref().ok_or("no resolver")?;
        let host = name.host();
        if ip_literal(host).is_some() {
            return Err("IP literal".into());
        }
        let (txt, srv) = tokio::join!(
            resolver.txt_lookup(format!("_mobium.{host}.")),
            resolver.srv_lookup(format!("_mobium._udp.{host}.")),
        );
        let txt = txt.map_err(|e| format!("TXT: {e}"))?;
        let mut valid_until = txt.valid_until();
        let mut key: Option<PublicKey> = None;
        for record in txt.answers() {
            let RData::TXT(data) = &record.data else {
                continue;
            };
            let text: Vec<u8> = data
                .txt_data
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
            match parse_txt(&String::from_utf8_lossy(&text)) {
                Some(Ok(k)) if key.is_some_and(|old| old != k) => {
                    return Err("TXT records with different keys".into());
                }
                Some(Ok(k)) => key = Some(k),
                Some(Err(e)) => tracing::debug!(peer = %name, error = %e, "ignoring TXT record"),
                None => {}
            }
        }
        let key = key.ok_or("no v=mobium1 TXT record")?;
        let targets = match srv {
            Ok(lookup) => {
                valid_until = valid_until.min(lookup.valid_until());
                let records: Vec<SRV> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(srv) => Some(srv.clone()),
                        _ => None,
                    })
                    .collect();
                order_srv(records)?
            }
            Err(e) if e.is_no_records_found() => vec![(host.to_owned(), DEFAULT_FED_PORT)],
            Err(e) => return Err(format!("SRV: {e}")),
        };
        let mut last_error = String::from("no SRV target");
        for (target, port) in targets {
            match self.lookup_addr(&target, port).await {
                Ok((addr, until)) => {
                    let until = until.map_or(valid_until, |u| u.min(valid_until));
                    let ttl = until.saturating_duration_since(Instant::now());
                    return Ok((PeerInfo { addr, key }, ttl));
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn fetch_well_known(
        &self,
        well_known: &WellKnown,
        name: &ServerName,
    ) -> Result<(PeerInfo, Duration), String> {
        let port = name.port().unwrap_or(well_known.default_port());
        let (http_addr, _) = self.lookup_addr(name.host(), port).await?;
        let doc = well_known.fetch(name, http_addr).await?;
        let key: PublicKey = doc
            .server_key
            .parse()
            .map_err(|e| format!("server_key: {e}"))?;
        let (host, port) = split_host_port(&doc.federation)
            .ok_or_else(|| format!("federation {:?} is not host:port", doc.federation))?;
        let (addr, _) = self.lookup_addr(host, port).await?;
        Ok((PeerInfo { addr, key }, doc.max_age))
    }

    /// `host` (a DNS name, an IPv4 literal or a bracketed IPv6 literal) and `port` as a socket
    /// address, with the time the DNS answer stays valid.
    pub async fn lookup_addr(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(SocketAddr, Option<Instant>), String> {
        let host = host.strip_suffix('.').unwrap_or(host);
        if let Some(ip) = ip_literal(host) {
            return Ok((SocketAddr::new(ip, port), None));
        }
        let resolver = self.resolver.as_ref().ok_or("no resolver")?;
        let lookup = resolver
            .lookup_ip(format!("{host}."))
            .await
            .map_err(|e| format!("address of {host}: {e}"))?;
        let ip = lookup
            .iter()
            .next()
            .ok_or_else(|| format!("no address for {host}"))?;
        Ok((SocketAddr::new(ip, port), Some(lookup.valid_until())))
    }
}

/// Looks `name` up in DNS only, as another server's discovery would (TXT `_mobium.<host>` for the
/// key, SRV `_mobium._udp.<host>` for the target and port, then the target's address), with no
/// cache, static peer or well-known fallback: what `mobium doctor` checks. `nameservers` as in
/// [`DiscoveryConfig::nameservers`] (empty: the system's).
pub async fn lookup_dns(nameservers: &[SocketAddr], name: &ServerName) -> Result<PeerInfo, String> {
    let discovery = Discovery {
        statics: HashMap::new(),
        resolver: build_resolver(nameservers),
        well_known: None,
        negative_ttl: Duration::ZERO,
        cache: Mutex::new(HashMap::new()),
    };
    discovery.dns(name).await.map(|(info, _)| info)
}

/// The hickory resolver: the given name servers (UDP, then TCP, on their own ports) or, with none,
/// the system's configuration.
fn build_resolver(nameservers: &[SocketAddr]) -> Option<TokioResolver> {
    let mut builder = if nameservers.is_empty() {
        match TokioResolver::builder_tokio() {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!(error = %e, "no system DNS configuration: DNS discovery disabled");
                return None;
            }
        }
    } else {
        let servers = nameservers
            .iter()
            .map(|addr| {
                let connections = [ProtocolConfig::Udp, ProtocolConfig::Tcp]
                    .into_iter()
                    .map(|protocol| {
                        let mut connection = ConnectionConfig::new(protocol);
                        connection.port = addr.port();
                        connection
                    })
                    .collect();
                NameServerConfig::new(addr.ip(), true, connections)
            })
            .collect();
        let mut builder = Resolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), servers),
            TokioRuntimeProvider::default(),
        );
        // An explicit DNS server (a testnet's zone) is the whole truth: no /etc/hosts.
        builder.options_mut().use_hosts_file = ResolveHosts::Never;
        builder
    };
    let options = builder.options_mut();
    options.timeout = DNS_TIMEOUT;
    options.attempts = 1;
    match builder.build() {
        Ok(resolver) => Some(resolver),
        Err(e) => {
            tracing::warn!(error = %e, "DNS resolver unavailable: DNS discovery disabled");
            None
        }
    }
}

fn clamp_ttl(ttl: Duration) -> Duration {
    ttl.clamp(MIN_TTL, MAX_TTL)
}

/// The IP address of a host that is an IP literal (`192.0.2.1`, `[2001:db8::1]`).
fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// Splits `host:port` where host may be a bracketed IPv6 literal.
fn split_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some((host, port))
}

/// Parses a TXT record's text: `None` if it is not a `v=mobium1` record, otherwise its key.
fn parse_txt(text: &str) -> Option<Result<PublicKey, String>> {
    let mut fields = text.split_ascii_whitespace();
    if fields.next() != Some("v=mobium1") {
        return None;
    }
    let key = fields
        .find_map(|f| f.strip_prefix("key="))
        .ok_or_else(|| "no key= field".to_owned())
        .and_then(|hex| hex.parse::<PublicKey>().map_err(|e| e.to_string()));
    Some(key)
}

/// SRV targets in the order to try (RFC 2782): by priority, and within one priority a weighted
/// random order. A single target `.` means the service is explicitly not offered.
fn order_srv(mut records: Vec<SRV>) -> Result<Vec<(String, u16)>, String> {
    if records.is_empty() {
        return Err("no SRV records".into());
    }
    if records.len() == 1 && records[0].target.is_root() {
        return Err("SRV says the service is not available".into());
    }
    records.retain(|r| !r.target.is_root());
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .take_while(|r| r.priority == first.priority)
            .count();
        let (group, tail) = rest.split_at(same);
        let mut group: Vec<&SRV> = group.iter().collect();
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut point = random_u64() % (total + 1);
                group
                    .iter()
                    .position(|r| {
                        let w = u64::from(r.weight);
                        if point <= w {
                            true
                        } else {
                            point -= w;
                            false
                        }
                    })
                    .unwrap_or(0)
            };
            let chosen = group.remove(pick);
            out.push((chosen.target.to_ascii(), chosen.port));
        }
        rest = tail;
    }
    Ok(out)
}

/// A random number good enough to spread SRV weights (not for anything secret).
fn random_u64() -> u64 {
    RandomState::new().hash_one(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::Name;
    use std::str::FromStr;

    #[test]
    fn txt_records_are_parsed_strictly() {
        let key = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";
        assert!(matches!(
            parse_txt(&format!("v=mobium1 key={key}")),
            Some(Ok(_))
        ));
        assert!(parse_txt(&format!("v=spf1 key={key}")).is_none());
        assert!(matches!(parse_txt("v=mobium1"), Some(Err(_))));
        assert!(matches!(
            parse_txt(&format!("v=mobium1 key={}", key.to_uppercase())),
            Some(Err(_))
        ));
    }

    #[test]
    fn host_port_splitting() {
        assert_eq!(
            split_host_port("fed.example.org:8448"),
            Some(("fed.example.org", 8448))
        );
        assert_eq!(split_host_port("[::1]:7101"), Some(("[::1]", 7101)));
        assert_eq!(split_host_port("::1:7101"), None);
        assert_eq!(split_host_port("example.org"), None);
        assert_eq!(split_host_port("example.org:0"), None);
        assert_eq!(
            ip_literal("[::1]"),
            Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
        );
        assert_eq!(ip_literal("example.org"), None);
    }

    #[test]
    fn srv_order_is_by_priority() {
        let srv = |prio, weight, target: &str| {
            SRV::new(
                prio,
                weight,
                1000 + prio,
                Name::from_str(target).expect("name"),
            )
        };
        let order = order_srv(vec![srv(20, 0, "b.test."), srv(10, 5, "a.test.")]).expect("srv");
        assert_eq!(order[0], ("a.test.".into(), 1010));
        assert_eq!(order[1], ("b.test.".into(), 1020));
        assert!(order_srv(vec![srv(0, 0, ".")]).is_err());
    }

    #[test]
    fn ttls_are_clamped() {
        assert_eq!(clamp_ttl(Duration::from_secs(1)), MIN_TTL);
        assert_eq!(clamp_ttl(Duration::from_secs(1 << 30)), MAX_TTL);
        assert_eq!(
            clamp_ttl(Duration::from_secs(600)),
            Duration::from_secs(600)
        );
    }
}
