//! The network a scenario or benchmark runs against: the testnet already up in the given
//! directory, or, when none is, a temporary one started for the run and stopped after it.
//!
//! Attaching leaves the network as it found it: scenarios that kill nodes restart them and
//! scenarios that partition heal. A temporary network uses OS-chosen ports, a temporary
//! directory and an in-process daemon, so it can run beside a developer's own testnet.

use std::path::Path;

use anyhow::bail;

use crate::info::TestnetInfo;
use crate::network::{Network, UpOptions, node_alive};

/// A network to run against.
#[derive(Debug)]
pub struct Target {
    /// The network.
    pub net: Network,
    /// The temporary directory of a network started for this run (removed on release).
    temp: Option<tempfile::TempDir>,
}

impl Target {
    /// The testnet running in `dir` if there is one with at least `min_nodes` live nodes (and,
    /// when `managed` is not 0, a managed peer); otherwise a fresh temporary one with
    /// `default_nodes` nodes and a managed peer of `managed` instances.
    pub async fn acquire(
        dir: &Path,
        min_nodes: usize,
        default_nodes: usize,
        managed: usize,
    ) -> anyhow::Result<Target> {
        if let Some(info) = TestnetInfo::load(dir)? {
            let alive = info.nodes.iter().filter(|n| node_alive(&info, n)).count();
            if alive < info.nodes.len() {
                bail!(
                    "the testnet in {} has {} of {} nodes running; restart them (`testnet restart NODE`) or `testnet down` first",
                    dir.display(),
                    alive,
                    info.nodes.len()
                );
            }
            if info.nodes.len() < min_nodes {
                bail!(
                    "this needs {min_nodes} nodes and the testnet in {} has {}; `testnet down` and `testnet up --nodes {min_nodes}`",
                    dir.display(),
                    info.nodes.len()
                );
            }
            if managed > 0 && info.managed().len() < managed {
                bail!(
                    "this needs a managed peer of {managed} instances and the testnet in {} has {}; `testnet down` and `testnet up --managed {managed}`",
                    dir.display(),
                    info.managed().len()
                );
            }
            eprintln!("testnet: using the running testnet in {}", dir.display());
            return Ok(Target {
                net: Network::attach(dir)?,
                temp: None,
            });
        }
        eprintln!(
            "testnet: no testnet in {}; starting a temporary one with {default_nodes} nodes and {managed} managed instances",
            dir.display()
        );
        let temp = tempfile::Builder::new()
            .prefix("mobium-testnet-")
            .tempdir()?;
        let mut opts = UpOptions::local(default_nodes, temp.path());
        opts.managed = managed;
        let net = Network::up(opts).await?;
        Ok(Target {
            net,
            temp: Some(temp),
        })
    }

    /// Wraps a network the caller started (tests); released like an attached one.
    pub fn borrowed(net: Network) -> Target {
        Target { net, temp: None }
    }

    /// Whether this run started the network itself.
    pub fn is_temporary(&self) -> bool {
        self.temp.is_some()
    }

    /// Stops a temporary network (and removes its directory); leaves an attached one running.
    pub async fn release(self) -> anyhow::Result<()> {
        if self.temp.is_some() {
            self.net.down(true).await?;
        }
        Ok(())
    }
}
