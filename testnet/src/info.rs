//! `testnet.json`: the machine-readable description of a running testnet.
//!
//! `testnet up` writes it into the testnet directory once every node is healthy and reachable;
//! every later command (`status`, `down`, `kill`, `restart`, `partition`, `scenario`, `bench`)
//! starts by reading it. It is also the contract for anything outside this crate that wants to
//! drive the network (scripts, other test suites): field names are stable, additions are
//! backwards compatible, and [`FORMAT_VERSION`] changes when they are not.
//!
//! It holds everything needed to operate the network again from a fresh process: each node's
//! ports, key, data directory and pid, the DNS and control addresses of the daemon, and the path
//! of the `mobium` binary the nodes were started from (so `restart` runs the same build).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Version of the `testnet.json` format.
pub const FORMAT_VERSION: u32 = 1;

/// Name of the description file inside the testnet directory.
pub const INFO_FILE: &str = "testnet.json";

/// The DNS zone every node lives in: node `i` is `node<i>.mobium.test`.
pub const ZONE: &str = "mobium.test";

/// A running (or stopped) testnet, as written to `testnet.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestnetInfo {
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// The testnet directory (absolute).
    pub dir: PathBuf,
    /// The DNS zone served by the daemon.
    pub zone: String,
    /// Where the daemon's authoritative DNS server answers (UDP and TCP).
    pub dns_addr: SocketAddr,
    /// The daemon's control channel (TCP, loopback): partition, heal, status, shutdown.
    pub control_addr: SocketAddr,
    /// Pid of the detached daemon process; `None` when the daemon runs inside the process that
    /// started the network (the library's in-process mode, used by tests).
    pub daemon_pid: Option<u32>,
    /// The `mobium` binary the nodes run.
    pub mobium_bin: PathBuf,
    /// The homeservers, in order (`nodes[0]` is `node1`), then the managed peer's instances.
    pub nodes: Vec<NodeInfo>,
}

/// One homeserver of the testnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// 1-based index: this is `node<index>`.
    pub index: usize,
    /// Server name, e.g. `node1.mobium.test`.
    pub name: String,
    /// Client WebSocket URL, e.g. `ws://127.0.0.1:7110/v1/ws`.
    pub ws_url: String,
    /// Base URL of the plain HTTP routes (`/health`, `/v1/info`, `/metrics`).
    pub http_url: String,
    /// The client (TCP) address the node listens on.
    pub client_addr: SocketAddr,
    /// The federation address the rest of the network uses: the daemon's relay for this node,
    /// which DNS advertises in the node's SRV record.
    pub federation_addr: SocketAddr,
    /// The node's own federation (UDP) socket, behind the relay.
    pub federation_bind: SocketAddr,
    /// The server's public key (64 hex digits), also published in DNS.
    pub key: String,
    /// Pid of the `mobium serve` process; `None` after `testnet kill`.
    pub pid: Option<u32>,
    /// The node's data directory (server key, SQLite database, log).
    pub data_dir: PathBuf,
    /// The file receiving the node's stdout and stderr.
    pub log: PathBuf,
    /// Set when the node is an instance of the managed peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<crate::managed::ManagedInstance>,
}

impl TestnetInfo {
    /// Path of `testnet.json` in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(INFO_FILE)
    }

    /// Reads `testnet.json` from `dir`; `Ok(None)` if there is none.
    pub fn load(dir: &Path) -> anyhow::Result<Option<TestnetInfo>> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let info: TestnetInfo = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a testnet description", path.display()))?;
        anyhow::ensure!(
            info.version == FORMAT_VERSION,
            "{} has format version {}, this testnet understands {FORMAT_VERSION}; run `testnet down` with the build that started it",
            path.display(),
            info.version
        );
        Ok(Some(info))
    }

    /// Writes `testnet.json` atomically (a temporary file renamed over the old one), so a reader
    /// never sees half a file.
    pub fn save(&self) -> anyhow::Result<()> {
        let path = Self::path(&self.dir);
        let tmp = self.dir.join(format!(".{INFO_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).context("encoding testnet.json")?;
        std::fs::write(&tmp, text + "\n")
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// The node called `name`: its full server name (`node2.mobium.test`; for the managed peer,
    /// its first instance), its short name (`node2`, `cloud2`) or its index (`2`).
    pub fn node(&self, name: &str) -> anyhow::Result<&NodeInfo> {
        let found = self.nodes.iter().find(|n| {
            n.name == name
                || n.short_name() == name
                || name.parse::<usize>().is_ok_and(|i| i == n.index)
        });
        found.with_context(|| {
            let names: Vec<String> = self.nodes.iter().map(|n| n.short_name()).collect();
            format!(
                "no node {name:?} in this testnet (nodes: {})",
                names.join(", ")
            )
        })
    }

    /// Mutable access to the node called `name` (see [`TestnetInfo::node`]).
    pub fn node_mut(&mut self, name: &str) -> anyhow::Result<&mut NodeInfo> {
        let index = self.node(name)?.index;
        self.nodes
            .iter_mut()
            .find(|n| n.index == index)
            .context("node vanished")
    }

    /// The node table printed by `up` and `status`: name, client URL, federation address (the
    /// advertised relay, then the node's own socket), server key, and the process state.
    pub fn table(&self, alive: impl Fn(&NodeInfo) -> bool) -> String {
        let mut rows = vec![[
            "NAME".to_owned(),
            "CLIENT URL".to_owned(),
            "FEDERATION (relay -> node)".to_owned(),
            "SERVER KEY".to_owned(),
            "STATE".to_owned(),
        ]];
        for n in &self.nodes {
            let state = match n.pid {
                Some(pid) if alive(n) => format!("up (pid {pid})"),
                Some(_) => "dead".to_owned(),
                None => "stopped".to_owned(),
            };
            rows.push([
                n.name.clone(),
                n.ws_url.clone(),
                format!("{} -> {}", n.federation_addr, n.federation_bind),
                n.key.clone(),
                state,
            ]);
        }
        render_table(&rows)
    }
}

impl TestnetInfo {
    /// The instances of the managed peer, in order (empty without one).
    pub fn managed(&self) -> Vec<&NodeInfo> {
        self.nodes.iter().filter(|n| n.managed.is_some()).collect()
    }

    /// The community nodes (every node that is not a managed instance).
    pub fn community(&self) -> Vec<&NodeInfo> {
        self.nodes.iter().filter(|n| n.managed.is_none()).collect()
    }
}

impl NodeInfo {
    /// `node2` for `node2.mobium.test`; `cloud2` for the managed peer's second instance.
    pub fn short_name(&self) -> String {
        let base = self.name.split('.').next().unwrap_or(&self.name);
        match &self.managed {
            Some(m) => format!("{base}{}", m.instance),
            None => base.to_owned(),
        }
    }
}

/// Left-aligned columns separated by two spaces.
pub fn render_table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = [
            ["a".to_owned(), "bb".to_owned()],
            ["ccc".to_owned(), "d".to_owned()],
        ];
        assert_eq!(render_table(&rows), "a    bb\nccc  d\n");
    }
}
