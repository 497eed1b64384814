//! Which loopback ports a testnet uses.
//!
//! With a base port `P` (the CLI's `--base-port`, default [`DEFAULT_BASE_PORT`]) the layout is
//! fixed and easy to remember:
//!
//! | port | protocol | what |
//! |---|---|---|
//! | `P` | UDP + TCP | the authoritative DNS server for `mobium.test` |
//! | `P+1` | TCP | the daemon's control channel |
//! | `P+10·i` | TCP | node *i*'s clients (`ws://127.0.0.1:P+10i/v1/ws`, `/health`) |
//! | `P+10·i+1` | UDP | node *i*'s own federation socket |
//! | `P+10·i+2` | UDP | node *i*'s relay: the federation address DNS advertises |
//!
//! So with the default `P = 7100`, node1's clients connect to port 7110 and node2's to 7120.
//! Every port is checked before anything starts, so a clash is one clear error instead of a
//! half-started network. Without a base port (tests), every port is one the OS hands out.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use anyhow::{Context, bail};

/// The CLI's default base port.
pub const DEFAULT_BASE_PORT: u16 = 7100;

/// Most nodes one testnet may have (keeps `P+10·N+2` small and the machine responsive).
pub const MAX_NODES: usize = 50;

/// The ports of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePorts {
    /// TCP: WebSocket and HTTP.
    pub client: u16,
    /// UDP: the node's own federation endpoint.
    pub federation: u16,
    /// UDP: the daemon's relay in front of it.
    pub relay: u16,
}

/// Every port of a testnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// UDP and TCP: DNS.
    pub dns: u16,
    /// TCP: control channel.
    pub control: u16,
    /// Per node, `nodes[0]` for node1.
    pub nodes: Vec<NodePorts>,
}

/// A loopback socket address.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

impl Layout {
    /// The fixed layout from `base`, after checking that every port is free.
    pub fn from_base(base: u16, nodes: usize) -> anyhow::Result<Layout> {
        check_count(nodes)?;
        let top = u32::from(base) + 10 * nodes as u32 + 2;
        if top > u32::from(u16::MAX) || base == 0 {
            bail!("base port {base} leaves no room for {nodes} nodes (ports up to {top})");
        }
        let at = |offset: usize| base + offset as u16;
        let layout = Layout {
            dns: base,
            control: at(1),
            nodes: (1..=nodes)
                .map(|i| NodePorts {
                    client: at(10 * i),
                    federation: at(10 * i + 1),
                    relay: at(10 * i + 2),
                })
                .collect(),
        };
        layout.check_free()?;
        Ok(layout)
    }

    /// Ports the OS picks (bound to port 0, then released). Another process could grab one in
    /// the moment between, which is why tests use this and the CLI uses a fixed base.
    pub fn free(nodes: usize) -> anyhow::Result<Layout> {
        check_count(nodes)?;
        // Hold every socket until all are chosen, so no port is handed out twice.
        let mut held_tcp = Vec::new();
        let mut held_udp = Vec::new();
        let mut tcp = || -> anyhow::Result<u16> {
            let l = TcpListener::bind(loopback(0)).context("no free TCP port")?;
            let port = l.local_addr()?.port();
            held_tcp.push(l);
            Ok(port)
        };
        let dns = tcp()?;
        let control = tcp()?;
        let clients: Vec<u16> = (0..nodes).map(|_| tcp()).collect::<Result<_, _>>()?;
        let mut udp = || -> anyhow::Result<u16> {
            let s = UdpSocket::bind(loopback(0)).context("no free UDP port")?;
            let port = s.local_addr()?.port();
            held_udp.push(s);
            Ok(port)
        };
        // DNS needs the same number free for UDP too.
        if UdpSocket::bind(loopback(dns)).is_err() {
            return Layout::free(nodes);
        }
        let nodes = clients
            .into_iter()
            .map(|client| {
                Ok(NodePorts {
                    client,
                    federation: udp()?,
                    relay: udp()?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Layout {
            dns,
            control,
            nodes,
        })
    }

    /// Fails, naming the first one, if any port is taken.
    pub fn check_free(&self) -> anyhow::Result<()> {
        let taken_tcp = |p: u16| TcpListener::bind(loopback(p)).is_err();
        let taken_udp = |p: u16| UdpSocket::bind(loopback(p)).is_err();
        let mut clashes = Vec::new();
        if taken_udp(self.dns) || taken_tcp(self.dns) {
            clashes.push(format!("{} (DNS)", self.dns));
        }
        if taken_tcp(self.control) {
            clashes.push(format!("{} (control)", self.control));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if taken_tcp(n.client) {
                clashes.push(format!("{} (node{} clients)", n.client, i + 1));
            }
            if taken_udp(n.federation) {
                clashes.push(format!("{} (node{} federation)", n.federation, i + 1));
            }
            if taken_udp(n.relay) {
                clashes.push(format!("{} (node{} relay)", n.relay, i + 1));
            }
        }
        if !clashes.is_empty() {
            bail!(
                "ports already in use on 127.0.0.1: {}; is another testnet running? (`testnet status`, or pick another `--base-port`)",
                clashes.join(", ")
            );
        }
        Ok(())
    }
}

fn check_count(nodes: usize) -> anyhow::Result<()> {
    if nodes == 0 || nodes > MAX_NODES {
        bail!("a testnet has 1 to {MAX_NODES} nodes, not {nodes}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_layouts_never_repeat_a_port() -> anyhow::Result<()> {
        let l = Layout::free(4)?;
        let mut tcp = vec![l.dns, l.control];
        tcp.extend(l.nodes.iter().map(|n| n.client));
        let mut udp: Vec<u16> = l
            .nodes
            .iter()
            .flat_map(|n| [n.federation, n.relay])
            .collect();
        udp.push(l.dns);
        for ports in [&mut tcp, &mut udp] {
            let before = ports.len();
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(ports.len(), before);
        }
        Ok(())
    }

    #[test]
    fn bad_node_counts_are_refused() {
        assert!(Layout::free(0).is_err());
        assert!(Layout::from_base(65_500, 10).is_err());
    }
}
