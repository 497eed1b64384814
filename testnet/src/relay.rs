//! Per-node UDP relays: the federation addresses the testnet's DNS advertises, and the switch
//! that `testnet partition` / `testnet heal` flip.
//!
//! Relay *i* listens on node *i*'s advertised federation port and forwards every datagram to the
//! node's own federation socket. For each source it keeps a dedicated upstream socket, so the
//! node's replies come back on that socket and are sent on to the right source from the relay's
//! listening address: both directions of a QUIC connection cross the relay, and the peers never
//! notice it (QUIC only sees a stable 4-tuple per connection).
//!
//! ```text
//!  node1 fed socket ──► relay2 (advertised for node2) ──upstream socket for node1──► node2 fed socket
//!                   ◄──                                ◄──
//! ```
//!
//! Homeservers dial from their federation socket (one quinn endpoint serves and dials), so the
//! source address of a datagram arriving at a relay says which node sent it. A partition
//! between A and B is a pair in the shared [`Partitions`] set: relay B then drops every
//! datagram from A's federation socket (and every reply towards it), and relay A does the same
//! for B. QUIC sees a silent network: requests time out, connections idle out, and the senders'
//! outboxes keep the events and retry with backoff. Healing removes the pair; the next retry
//! (at most a minute later, given the outbox's capped backoff) gets through and everything
//! queued is delivered.
//!
//! Upstream sockets idle for [`IDLE`] are dropped; a later datagram from the same source opens a
//! fresh one, which the node sees as a QUIC path migration (quinn accepts it).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// How long an upstream socket may stay silent before it is dropped.
pub const IDLE: Duration = Duration::from_secs(300);

/// Largest datagram relayed (QUIC datagrams are far smaller; this is the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;

/// The partitioned pairs of nodes (by 1-based index, smaller first) and the federation socket
/// of each node, shared by all relays.
#[derive(Debug, Default)]
pub struct Partitions {
    pairs: RwLock<BTreeSet<(usize, usize)>>,
    /// Node federation socket → node index.
    sockets: HashMap<SocketAddr, usize>,
}

impl Partitions {
    /// A set with no partitions, knowing each node's own federation socket.
    pub fn new(sockets: impl IntoIterator<Item = (SocketAddr, usize)>) -> Partitions {
        Partitions {
            pairs: RwLock::default(),
            sockets: sockets.into_iter().collect(),
        }
    }

    fn key(a: usize, b: usize) -> (usize, usize) {
        (a.min(b), a.max(b))
    }

    /// Cuts the link between nodes `a` and `b`; `false` if it was cut already.
    pub fn cut(&self, a: usize, b: usize) -> bool {
        self.pairs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Self::key(a, b))
    }

    /// Restores the link; `false` if it was not cut.
    pub fn heal(&self, a: usize, b: usize) -> bool {
        self.pairs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Self::key(a, b))
    }

    /// Restores every link; returns how many were cut.
    pub fn heal_all(&self) -> usize {
        let mut pairs = self.pairs.write().unwrap_or_else(|p| p.into_inner());
        let n = pairs.len();
        pairs.clear();
        n
    }

    /// The cut pairs.
    pub fn list(&self) -> Vec<(usize, usize)> {
        self.pairs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Whether traffic between node `node` and the socket `peer` is cut.
    pub fn blocks(&self, node: usize, peer: SocketAddr) -> bool {
        match self.sockets.get(&peer) {
            Some(&other) => self
                .pairs
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&Self::key(node, other)),
            None => false,
        }
    }
}

/// Datagram counters of one relay.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams passed on (both directions).
    pub forwarded: AtomicU64,
    /// Datagrams dropped because of a partition (both directions).
    pub dropped: AtomicU64,
}

/// A snapshot of [`RelayStats`], as the control channel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayReport {
    /// Node index.
    pub node: usize,
    /// Listening address (advertised in DNS).
    pub listen: SocketAddr,
    /// The node's own federation socket.
    pub upstream: SocketAddr,
    /// Datagrams passed on.
    pub forwarded: u64,
    /// Datagrams dropped by a partition.
    pub dropped: u64,
}

/// A relay bound and ready to run.
pub struct Relay {
    node: usize,
    socket: Arc<UdpSocket>,
    upstream: SocketAddr,
    partitions: Arc<Partitions>,
    stats: Arc<RelayStats>,
}

impl Relay {
    /// Binds the relay for node `node` on `listen`, forwarding to `upstream`.
    pub async fn bind(
        node: usize,
        listen: SocketAddr,
        upstream: SocketAddr,
        partitions: Arc<Partitions>,
    ) -> anyhow::Result<Relay> {
        let socket = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("relay for node{node}: cannot bind UDP {listen}"))?;
        Ok(Relay {
            node,
            socket: Arc::new(socket),
            upstream,
            partitions,
            stats: Arc::default(),
        })
    }

    /// What the daemon keeps to report on the relay once it runs.
    pub fn handle(&self) -> anyhow::Result<RelayHandle> {
        Ok(RelayHandle {
            node: self.node,
            listen: self.socket.local_addr()?,
            upstream: self.upstream,
            stats: self.stats.clone(),
        })
    }

    /// Relays until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let sessions: Arc<Mutex<HashMap<SocketAddr, Arc<Session>>>> = Arc::default();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (len, src) = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    // ICMP errors from earlier sends surface here on some systems; keep going.
                    Err(e) => {
                        tracing::trace!(node = self.node, error = %e, "relay receive error");
                        continue;
                    }
                },
            };
            if self.partitions.blocks(self.node, src) {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let existing = sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&src)
                .cloned();
            let session = match existing {
                Some(s) => s,
                None => match self.open_session(src, &sessions, shutdown.clone()).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(node = self.node, error = %e, "relay cannot open an upstream socket");
                        continue;
                    }
                },
            };
            session.touch();
            // A node that is down answers with ICMP; the datagram is simply lost, as on a network.
            if session.socket.send(&buf[..len]).await.is_ok() {
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn open_session(
        &self,
        src: SocketAddr,
        sessions: &Arc<Mutex<HashMap<SocketAddr, Arc<Session>>>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Session>> {
        let socket = UdpSocket::bind(crate::ports::loopback(0)).await?;
        socket.connect(self.upstream).await?;
        let session = Arc::new(Session {
            socket,
            last: AtomicU64::new(0),
            born: Instant::now(),
        });
        session.touch();
        sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(src, session.clone());
        let (back, node, partitions, stats, sessions) = (
            self.socket.clone(),
            self.node,
            self.partitions.clone(),
            self.stats.clone(),
            sessions.clone(),
        );
        let s = session.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let got = tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => break,
                    r = tokio::time::timeout(IDLE, s.socket.recv(&mut buf)) => r,
                };
                match got {
                    Ok(Ok(len)) => {
                        s.touch();
                        if partitions.blocks(node, src) {
                            stats.dropped.fetch_add(1, Ordering::Relaxed);
                        } else if back.send_to(&buf[..len], src).await.is_ok() {
                            stats.forwarded.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Connection refused (node down) and the like: the session stays.
                    Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                    Err(_) if s.idle() >= IDLE => break,
                    Err(_) => {}
                }
            }
            sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, v| !Arc::ptr_eq(v, &s));
        });
        Ok(session)
    }
}

/// A running relay's identity and counters.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    node: usize,
    listen: SocketAddr,
    upstream: SocketAddr,
    stats: Arc<RelayStats>,
}

impl RelayHandle {
    /// A snapshot of the relay's counters.
    pub fn report(&self) -> RelayReport {
        RelayReport {
            node: self.node,
            listen: self.listen,
            upstream: self.upstream,
            forwarded: self.stats.forwarded.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
        }
    }
}

/// One source's upstream socket.
struct Session {
    socket: UdpSocket,
    /// Milliseconds after `born` of the last datagram either way.
    last: AtomicU64,
    born: Instant,
}

impl Session {
    fn touch(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.born
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::loopback;

    #[tokio::test]
    async fn relays_both_ways_and_drops_partitioned_sources() -> anyhow::Result<()> {
        let node = UdpSocket::bind(loopback(0)).await?;
        let peer = UdpSocket::bind(loopback(0)).await?;
        let partitions = Arc::new(Partitions::new([
            (node.local_addr()?, 2),
            (peer.local_addr()?, 1),
        ]));
        let relay = Relay::bind(2, loopback(0), node.local_addr()?, partitions.clone()).await?;
        let handle = relay.handle()?;
        let relay_addr = handle.listen;
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(relay.run(rx));
        let mut buf = [0u8; 64];

        peer.send_to(b"ping", relay_addr).await?;
        let (n, via) = node.recv_from(&mut buf).await?;
        assert_eq!(&buf[..n], b"ping");
        node.send_to(b"pong", via).await?;
        let (n, from) = peer.recv_from(&mut buf).await?;
        assert_eq!((&buf[..n], from), (&b"pong"[..], relay_addr));

        assert!(partitions.cut(1, 2));
        peer.send_to(b"lost", relay_addr).await?;
        let lost = tokio::time::timeout(Duration::from_millis(200), node.recv_from(&mut buf)).await;
        assert!(lost.is_err(), "a partitioned datagram got through");
        assert_eq!(handle.report().dropped, 1);

        assert!(partitions.heal(2, 1));
        peer.send_to(b"back", relay_addr).await?;
        let (n, _) = node.recv_from(&mut buf).await?;
        assert_eq!(&buf[..n], b"back");
        stop.send(true)?;
        task.await?;
        Ok(())
    }
}
