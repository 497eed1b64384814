//! A testnet as a value: start one ([`Network::up`]), attach to a running one
//! ([`Network::attach`]), operate it (kill, restart, partition, heal, status) and stop it
//! ([`Network::down`]). The CLI and the integration tests both go through this type.
//!
//! `up` does, in order: check that nothing runs in the directory already; find the `mobium`
//! binary; choose ports ([`crate::ports`]); create or reuse each node's key; start the daemon
//! (DNS + relays + control, [`crate::daemon`]) and wait for it; start every homeserver and wait
//! for `/health`; then prove federation works between every ordered pair of nodes
//! ([`crate::probe`]); and finally write `testnet.json`. It writes `testnet.json` as soon as
//! the daemon runs and after every node, so even an interrupted `up` leaves enough behind for
//! `testnet down` to clean up; if a step fails, `up` stops what it started before returning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::control::{self, ControlRequest, ControlResponse};
use crate::daemon::{self, DaemonPlan, InProcess, PlanNode};
use crate::info::{FORMAT_VERSION, NodeInfo, TestnetInfo, ZONE};
use crate::ports::{Layout, loopback};
use crate::process;
use crate::{managed, node};

/// How long a node gets to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// Where the DNS server, relays and control channel run.
#[derive(Debug, Clone)]
pub enum DaemonMode {
    /// A detached `testnet daemon` process started from this executable, outliving the caller
    /// (the CLI).
    Detached {
        /// The `testnet` executable to re-exec.
        testnet_exe: PathBuf,
    },
    /// Tasks of the calling process (tests): the network is torn down when the [`Network`]
    /// is dropped or the process exits.
    InProcess,
}

/// How to start a testnet.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Number of homeservers.
    pub nodes: usize,
    /// Instances of the managed peer (0: none).
    pub managed: usize,
    /// Fixed port layout from this base ([`crate::ports`]); `None` lets the OS pick ports.
    pub base_port: Option<u16>,
    /// The testnet directory (created if missing).
    pub dir: PathBuf,
    /// Where the daemon runs.
    pub daemon: DaemonMode,
    /// The `mobium` binary; `None` searches for it ([`process::find_mobium`]).
    pub mobium: Option<PathBuf>,
    /// How long the federation check may take.
    pub reach_timeout: Duration,
}

impl UpOptions {
    /// Options for `nodes` nodes in `dir`: OS-chosen ports, in-process daemon (what tests want).
    pub fn local(nodes: usize, dir: impl Into<PathBuf>) -> UpOptions {
        UpOptions {
            nodes,
            managed: 0,
            base_port: None,
            dir: dir.into(),
            daemon: DaemonMode::InProcess,
            mobium: None,
            reach_timeout: Duration::from_secs(90),
        }
    }
}

/// A running testnet.
pub struct Network {
    info: TestnetInfo,
    /// Node processes this value started, by index, so they can be reaped.
    children: HashMap<usize, Child>,
    /// The daemon, when it runs in this process.
    daemon: Option<InProcess>,
    /// Whether dropping this value must kill the nodes (networks whose daemon is in-process).
    owned: bool,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("info", &self.info).finish()
    }
}

/// A node's state as `status` reports it.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The node.
    pub node: NodeInfo,
    /// Its process runs.
    pub alive: bool,
    /// `/health` answered 200.
    pub healthy: bool,
}

/// What `testnet status` shows.
#[derive(Debug, Clone)]
pub struct Status {
    /// The description.
    pub info: TestnetInfo,
    /// Per node.
    pub nodes: Vec<NodeStatus>,
    /// The daemon's answer, or why there was none.
    pub daemon: Result<ControlResponse, String>,
}

impl Network {
    /// Starts a testnet (see the module documentation for the steps).
    pub async fn up(opts: UpOptions) -> anyhow::Result<Network> {
        std::fs::create_dir_all(&opts.dir)
            .with_context(|| format!("cannot create {}", opts.dir.display()))?;
        let dir = opts
            .dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", opts.dir.display()))?;
        if let Some(old) = TestnetInfo::load(&dir)? {
            let running = old.nodes.iter().any(|n| node_alive(&old, n))
                || old
                    .daemon_pid
                    .is_some_and(|p| process::is_alive(p, &plan_path(&dir)));
            if running {
                bail!(
                    "a testnet is already running in {} (`testnet status`; stop it with `testnet down`)",
                    dir.display()
                );
            }
        }
        let mobium = match opts.mobium {
            Some(m) => m,
            None => process::find_mobium()?,
        };
        let mobium = mobium.canonicalize().unwrap_or(mobium);
        let total = opts.nodes + opts.managed;
        let layout = match opts.base_port {
            Some(base) => Layout::from_base(base, total)?,
            None => Layout::free(total)?,
        };
        let cluster = match opts.managed {
            0 => None,
            _ => {
                let (admin, nats) = managed::services().await?;
                let shared = managed::shared_dir(&dir);
                let key = node::load_or_create_key(&shared)?;
                let db = managed::create_database(&admin).await?;
                Some((admin, nats, shared.join(node::KEY_FILE), key, db))
            }
        };
        let mut nodes = Vec::new();
        for (i, ports) in layout.nodes.iter().enumerate() {
            let index = i + 1;
            let (name, data_dir, key, managed) = match (&cluster, index > opts.nodes) {
                (Some((admin, nats, key_file, key, db)), true) => {
                    let k = index - opts.nodes;
                    let m = managed::ManagedInstance {
                        instance: k,
                        database_url: db.clone(),
                        admin_url: admin.clone(),
                        nats_url: nats.clone(),
                        key_file: key_file.clone(),
                    };
                    let data_dir = managed::data_dir(&dir, k);
                    std::fs::create_dir_all(&data_dir)
                        .with_context(|| format!("cannot create {}", data_dir.display()))?;
                    let name = format!("{}.{ZONE}", managed::NAME);
                    (name, data_dir, key.clone(), Some(m))
                }
                _ => {
                    let data_dir = node::data_dir(&dir, index);
                    let key = node::load_or_create_key(&data_dir)?;
                    (format!("node{index}.{ZONE}"), data_dir, key, None)
                }
            };
            nodes.push(NodeInfo {
                index,
                name,
                ws_url: format!("ws://{}/v1/ws", loopback(ports.client)),
                http_url: format!("http://{}", loopback(ports.client)),
                client_addr: loopback(ports.client),
                federation_addr: loopback(ports.relay),
                federation_bind: loopback(ports.federation),
                key: key.public().to_string(),
                pid: None,
                log: data_dir.join(node::LOG_FILE),
                data_dir,
                managed,
            });
        }
        let plan = DaemonPlan {
            zone: ZONE.to_owned(),
            dns: loopback(layout.dns),
            control: loopback(layout.control),
            nodes: nodes
                .iter()
                .map(|n| PlanNode {
                    index: n.index,
                    name: n.name.clone(),
                    key: n.key.clone(),
                    relay: n.federation_addr,
                    federation: n.federation_bind,
                })
                .collect(),
        };
        let (daemon_pid, daemon, owned) = match &opts.daemon {
            DaemonMode::Detached { testnet_exe } => (
                Some(daemon::spawn_detached(testnet_exe, &dir, &plan).await?),
                None,
                false,
            ),
            DaemonMode::InProcess => (
                None,
                Some(daemon::start_in_process(plan.clone()).await?),
                true,
            ),
        };
        let mut net = Network {
            info: TestnetInfo {
                version: FORMAT_VERSION,
                dir,
                zone: ZONE.to_owned(),
                dns_addr: plan.dns,
                control_addr: plan.control,
                daemon_pid,
                mobium_bin: mobium,
                nodes,
            },
            children: HashMap::new(),
            daemon,
            owned,
        };
        match net.finish_up(opts.reach_timeout).await {
            Ok(()) => Ok(net),
            Err(e) => {
                if let Err(cleanup) = net.stop_all().await {
                    tracing::warn!(error = %cleanup, "cleaning up after a failed start");
                }
                // Keep the description (it says where the logs are), with nothing running.
                let _ = net.info.save();
                Err(e)
            }
        }
    }

    async fn finish_up(&mut self, reach_timeout: Duration) -> anyhow::Result<()> {
        self.info.save()?;
        let starts = self
            .info
            .nodes
            .iter()
            .map(|n| node::start(&self.info.mobium_bin, n, self.info.dns_addr));
        let results = futures_util::future::join_all(starts).await;
        let mut first_error = None;
        for (n, result) in self.info.nodes.iter_mut().zip(results) {
            match result {
                Ok(child) => {
                    n.pid = Some(child.id());
                    self.children.insert(n.index, child);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.info.save()?;
        if let Some(e) = first_error {
            return Err(e);
        }
        if reach_timeout.is_zero() {
            return Ok(());
        }
        crate::probe::check_all(&self.info, reach_timeout).await
    }

    /// Attaches to the testnet described by `<dir>/testnet.json`.
    pub fn attach(dir: &Path) -> anyhow::Result<Network> {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        let info = TestnetInfo::load(&dir)?.with_context(|| {
            format!(
                "no testnet in {} (start one with `testnet up`)",
                dir.display()
            )
        })?;
        Ok(Network {
            info,
            children: HashMap::new(),
            daemon: None,
            owned: false,
        })
    }

    /// The network's description (what `testnet.json` holds).
    pub fn info(&self) -> &TestnetInfo {
        &self.info
    }

    /// Node `name` (full name, short name or index).
    pub fn node(&self, name: &str) -> anyhow::Result<&NodeInfo> {
        self.info.node(name)
    }

    /// Whether node `name`'s process runs.
    pub fn is_alive(&mut self, name: &str) -> anyhow::Result<bool> {
        let n = self.info.node(name)?.clone();
        self.reap(n.index);
        Ok(node_alive(&self.info, &n))
    }

    /// Kills node `name` at once (SIGKILL: no graceful shutdown, as a crash).
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let n = self.info.node(name)?.clone();
        if let Some(pid) = n.pid {
            process::kill(pid, &bin_name(&self.info)).await?;
        }
        self.reap(n.index);
        self.info.node_mut(name)?.pid = None;
        self.info.save()
    }

    /// Stops node `name` gracefully (SIGTERM, then SIGKILL after [`STOP_GRACE`]).
    pub async fn stop(&mut self, name: &str) -> anyhow::Result<()> {
        let n = self.info.node(name)?.clone();
        if let Some(pid) = n.pid {
            process::terminate(pid, &bin_name(&self.info), STOP_GRACE).await?;
        }
        self.reap(n.index);
        self.info.node_mut(name)?.pid = None;
        self.info.save()
    }

    /// Starts node `name` again with the same data, ports and key (stopping it first if it
    /// runs) and waits until it is healthy.
    pub async fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        if self.is_alive(name)? {
            self.stop(name).await?;
        }
        let n = self.info.node(name)?.clone();
        let child = node::start(&self.info.mobium_bin, &n, self.info.dns_addr).await?;
        self.info.node_mut(name)?.pid = Some(child.id());
        self.children.insert(n.index, child);
        self.info.save()
    }

    /// Cuts federation traffic between nodes `a` and `b`.
    pub async fn partition(&self, a: &str, b: &str) -> anyhow::Result<ControlResponse> {
        let (a, b) = (self.info.node(a)?.index, self.info.node(b)?.index);
        control::call(self.info.control_addr, &ControlRequest::Partition { a, b }).await
    }

    /// Restores federation traffic between nodes `a` and `b`.
    pub async fn heal(&self, a: &str, b: &str) -> anyhow::Result<ControlResponse> {
        let (a, b) = (self.info.node(a)?.index, self.info.node(b)?.index);
        control::call(self.info.control_addr, &ControlRequest::Heal { a, b }).await
    }

    /// Restores every link.
    pub async fn heal_all(&self) -> anyhow::Result<ControlResponse> {
        control::call(self.info.control_addr, &ControlRequest::HealAll).await
    }

    /// Every node's process and health, and the daemon's state.
    pub async fn status(&mut self) -> Status {
        let mut nodes = Vec::new();
        for n in self.info.nodes.clone() {
            self.reap(n.index);
            let alive = node_alive(&self.info, &n);
            let healthy = alive && node::health(&n).await.is_ok();
            nodes.push(NodeStatus {
                node: n,
                alive,
                healthy,
            });
        }
        let daemon = control::call(self.info.control_addr, &ControlRequest::Ping)
            .await
            .map_err(|e| format!("{e:#}"));
        Status {
            info: self.info.clone(),
            nodes,
            daemon,
        }
    }

    /// Stops every node and the daemon. Keeps the data directories unless `wipe`.
    pub async fn down(mut self, wipe: bool) -> anyhow::Result<()> {
        self.stop_all().await?;
        let dir = self.info.dir.clone();
        for f in [crate::info::INFO_FILE, daemon::PLAN_FILE] {
            remove_file(&dir.join(f))?;
        }
        if wipe {
            remove_file(&dir.join(daemon::LOG_FILE))?;
            for n in &self.info.nodes {
                match std::fs::remove_dir_all(&n.data_dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("cannot remove {}", n.data_dir.display()));
                    }
                }
            }
            if let Some(m) = self.info.nodes.iter().find_map(|n| n.managed.clone()) {
                managed::drop_database(&m).await?;
                if let Some(shared) = m.key_file.parent() {
                    let _ = std::fs::remove_dir_all(shared);
                }
            }
            // Only if nothing else lives there.
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(())
    }

    async fn stop_all(&mut self) -> anyhow::Result<()> {
        let program = bin_name(&self.info);
        let stops = self.info.nodes.iter().filter_map(|n| n.pid).map(|pid| {
            let program = program.clone();
            async move { process::terminate(pid, &program, STOP_GRACE).await }
        });
        let results = futures_util::future::join_all(stops).await;
        for n in &mut self.info.nodes {
            n.pid = None;
        }
        let indexes: Vec<usize> = self.children.keys().copied().collect();
        for i in indexes {
            self.reap(i);
        }
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
        if let Some(pid) = self.info.daemon_pid.take() {
            let plan = plan_path(&self.info.dir);
            if control::call(self.info.control_addr, &ControlRequest::Shutdown)
                .await
                .is_ok()
            {
                // Give it a moment to close its sockets, then make sure.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            process::terminate(pid, &plan, Duration::from_secs(5)).await?;
        }
        self.owned = false;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        Ok(())
    }

    /// Waits for a node process this value started, once it has exited, so no zombie stays.
    fn reap(&mut self, index: usize) {
        if let Some(child) = self.children.get_mut(&index)
            && !matches!(child.try_wait(), Ok(None))
        {
            self.children.remove(&index);
        }
    }
}

impl Drop for Network {
    /// A network whose daemon ran in this process cannot outlive it: kill its nodes rather than
    /// leave orphans behind (a test that panicked, say).
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `n`'s recorded pid is a live `mobium` of this testnet.
pub fn node_alive(info: &TestnetInfo, n: &NodeInfo) -> bool {
    n.pid
        .is_some_and(|pid| process::is_alive(pid, &bin_name(info)))
}

fn bin_name(info: &TestnetInfo) -> String {
    info.mobium_bin.display().to_string()
}

fn plan_path(dir: &Path) -> String {
    dir.join(daemon::PLAN_FILE).display().to_string()
}

fn remove_file(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}
