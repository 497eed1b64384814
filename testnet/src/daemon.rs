//! The testnet daemon: the DNS server, the relays and the control channel, in one process that
//! outlives `testnet up`.
//!
//! `testnet up` writes a [`DaemonPlan`] to `<dir>/daemon.json` and starts `testnet daemon
//! --plan <dir>/daemon.json` in its own process group (so a Ctrl-C in the terminal that ran `up`
//! does not take the network down), with stdin closed and stdout/stderr appended to
//! `<dir>/daemon.log`. The daemon binds everything, then answers on its control port; `up` waits
//! for that answer before starting any homeserver, so the nodes' first DNS lookups already
//! succeed. The daemon stops on the control request `shutdown` (what `testnet down` sends) or on
//! SIGTERM/SIGINT.
//!
//! The library can also run the same daemon as tasks inside the calling process
//! ([`start_in_process`]); integration tests do that, so a test's network dies with the test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::control::{ControlRequest, ControlResponse, MAX_LINE};
use crate::dns::{self, DnsServer, Published};
use crate::relay::{Partitions, Relay, RelayHandle};

/// Name of the plan file in the testnet directory.
pub const PLAN_FILE: &str = "daemon.json";

/// Name of the daemon's log file in the testnet directory.
pub const LOG_FILE: &str = "daemon.log";

/// Everything the daemon serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonPlan {
    /// The DNS zone (`mobium.test`).
    pub zone: String,
    /// DNS address (UDP and TCP).
    pub dns: SocketAddr,
    /// Control channel address (TCP).
    pub control: SocketAddr,
    /// The nodes.
    pub nodes: Vec<PlanNode>,
}

/// One node as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanNode {
    /// 1-based index.
    pub index: usize,
    /// Server name.
    pub name: String,
    /// Server key (hex).
    pub key: String,
    /// The relay's listening address (advertised by DNS).
    pub relay: SocketAddr,
    /// The node's own federation socket (the relay's upstream, and the source address of the
    /// node's outgoing federation traffic).
    pub federation: SocketAddr,
}

impl DaemonPlan {
    /// Reads a plan file.
    pub fn load(path: &Path) -> anyhow::Result<DaemonPlan> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a daemon plan", path.display()))
    }

    /// Writes the plan file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    fn published(&self) -> Vec<Published> {
        self.nodes
            .iter()
            .map(|n| dns::published(&n.name, n.relay, &n.key))
            .collect()
    }
}

/// The daemon's running parts.
struct Running {
    dns: DnsServer,
    relays: Vec<RelayHandle>,
    partitions: Arc<Partitions>,
    tasks: Vec<JoinHandle<()>>,
}

/// Binds DNS, relays and the control port, then serves until `shutdown` turns true or a client
/// asks the control channel to shut down.
pub async fn run(plan: DaemonPlan, shutdown: watch::Sender<bool>) -> anyhow::Result<()> {
    let control = TcpListener::bind(plan.control)
        .await
        .with_context(|| format!("control channel: cannot bind TCP {}", plan.control))?;
    let running = start_parts(&plan, &shutdown).await?;
    tracing::info!(
        dns = %running.dns.addr(),
        control = %plan.control,
        "testnet daemon ready; zone:\n{}",
        dns::describe(&plan.zone, &plan.published())?
    );
    let mut stop = shutdown.subscribe();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = control.accept() => match accepted {
                Ok((stream, _)) => {
                    let (relays, partitions, shutdown) =
                        (running.relays.clone(), running.partitions.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        if let Err(e) = serve_control(stream, &relays, &partitions, &shutdown).await {
                            tracing::debug!(error = %e, "control connection failed");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "control channel accept failed"),
            },
        }
    }
    tracing::info!("testnet daemon stopping");
    for t in running.tasks {
        let _ = t.await;
    }
    running.dns.shutdown().await;
    Ok(())
}

async fn start_parts(plan: &DaemonPlan, shutdown: &watch::Sender<bool>) -> anyhow::Result<Running> {
    let dns = DnsServer::start(plan.dns, &plan.zone, &plan.published()).await?;
    let partitions = Arc::new(Partitions::new(
        plan.nodes.iter().map(|n| (n.federation, n.index)),
    ));
    let mut relays = Vec::new();
    let mut tasks = Vec::new();
    for n in &plan.nodes {
        let relay = Relay::bind(n.index, n.relay, n.federation, partitions.clone()).await?;
        relays.push(relay.handle()?);
        tasks.push(tokio::spawn(relay.run(shutdown.subscribe())));
    }
    Ok(Running {
        dns,
        relays,
        partitions,
        tasks,
    })
}

async fn serve_control(
    stream: TcpStream,
    relays: &[RelayHandle],
    partitions: &Partitions,
    shutdown: &watch::Sender<bool>,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_LINE as u64));
    let mut line = String::new();
    lines.read_line(&mut line).await?;
    let known = |i: usize| relays.iter().any(|r| r.report().node == i);
    let mut response = ControlResponse {
        ok: true,
        error: None,
        changed: false,
        pid: std::process::id(),
        partitions: Vec::new(),
        relays: Vec::new(),
    };
    let mut stop = false;
    match serde_json::from_str::<ControlRequest>(line.trim()) {
        Err(e) => {
            response.ok = false;
            response.error = Some(format!("not a control request: {e}"));
        }
        Ok(ControlRequest::Ping) => {}
        Ok(ControlRequest::Partition { a, b } | ControlRequest::Heal { a, b })
            if a == b || !known(a) || !known(b) =>
        {
            response.ok = false;
            response.error = Some(format!("no link between node{a} and node{b}"));
        }
        Ok(ControlRequest::Partition { a, b }) => {
            response.changed = partitions.cut(a, b);
            tracing::info!(a, b, "partition");
        }
        Ok(ControlRequest::Heal { a, b }) => {
            response.changed = partitions.heal(a, b);
            tracing::info!(a, b, "heal");
        }
        Ok(ControlRequest::HealAll) => {
            response.changed = partitions.heal_all() > 0;
            tracing::info!("heal all");
        }
        Ok(ControlRequest::Shutdown) => stop = true,
    }
    response.partitions = partitions.list();
    response.relays = relays.iter().map(RelayHandle::report).collect();
    let mut text = serde_json::to_string(&response)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await?;
    if stop {
        shutdown.send_replace(true);
    }
    Ok(())
}

/// The entry point of `testnet daemon --plan FILE`: runs until told to stop or signalled.
pub async fn main(plan_path: &Path) -> anyhow::Result<()> {
    let plan = DaemonPlan::load(plan_path)?;
    let (shutdown, _) = watch::channel(false);
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        crate::process::wait_for_signal().await;
        on_signal.send_replace(true);
    });
    run(plan, shutdown).await
}

/// A daemon running as tasks of this process.
#[derive(Debug)]
pub struct InProcess {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    /// Stops it and waits until its sockets are closed.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "in-process daemon failed"),
            Err(e) => tracing::warn!(error = %e, "in-process daemon panicked"),
        }
    }
}

/// Starts the daemon inside this process and waits until it answers on its control port.
pub async fn start_in_process(plan: DaemonPlan) -> anyhow::Result<InProcess> {
    let control = plan.control;
    let (shutdown, _) = watch::channel(false);
    let task = tokio::spawn(run(plan, shutdown.clone()));
    let daemon = InProcess { shutdown, task };
    if let Err(e) = wait_ready(control, None).await {
        daemon.shutdown.send_replace(true);
        return match daemon.task.await {
            Ok(Err(inner)) => Err(inner),
            _ => Err(e),
        };
    }
    Ok(daemon)
}

/// Starts `testnet daemon --plan <dir>/daemon.json` as a detached process (its own process
/// group, output appended to `<dir>/daemon.log`) and waits until it answers. Returns its pid.
pub async fn spawn_detached(
    testnet_exe: &Path,
    dir: &Path,
    plan: &DaemonPlan,
) -> anyhow::Result<u32> {
    let plan_path = dir.join(PLAN_FILE);
    plan.save(&plan_path)?;
    let log = dir.join(LOG_FILE);
    let (out, err) = crate::process::log_files(&log)?;
    let mut cmd = std::process::Command::new(testnet_exe);
    cmd.arg("daemon")
        .arg("--plan")
        .arg(&plan_path)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    crate::process::detach(&mut cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", testnet_exe.display()))?;
    let pid = child.id();
    if let Err(e) = wait_ready(plan.control, Some(&mut child)).await {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e.context(format!(
            "the testnet daemon did not start; its log:\n{}",
            crate::process::tail(&log, 20)
        )));
    }
    // The daemon now belongs to nobody: `testnet down` stops it by its control channel or pid.
    drop(child);
    Ok(pid)
}

/// Polls the control port until the daemon answers (up to 10 s), failing early if `child`
/// exits.
async fn wait_ready(
    control: SocketAddr,
    mut child: Option<&mut std::process::Child>,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if crate::control::call(control, &ControlRequest::Ping)
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            anyhow::bail!("the testnet daemon exited ({status})");
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("the testnet daemon did not answer on {control} within 10 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Default path of the `testnet` executable used to re-exec the daemon: this process's own.
pub fn current_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the testnet executable to start the daemon")
}
