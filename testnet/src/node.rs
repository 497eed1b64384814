//! One homeserver of the testnet: its key on disk, its `mobium serve` process and environment,
//! its health.
//!
//! Keys are written by the testnet before the first start (`<data dir>/server.key`, the seed as
//! 64 hex digits and a newline, mode 0600: the homeserver's own format), so the testnet knows
//! every node's key up front and can publish it in DNS before any node runs. A key that already
//! exists (data kept by `testnet down`) is reused.
//!
//! Every node gets the same settings, apart from names and ports:
//!
//! | variable | value | why |
//! |---|---|---|
//! | `SC_SERVER_NAME` | `node<i>.mobium.test` | user ids are `<key>@node<i>.mobium.test` |
//! | `SC_HOST`, `SC_PORT` | `127.0.0.1`, its client port | |
//! | `SC_DATA_DIR` | `<dir>/node<i>` | its key and SQLite database |
//! | `SC_FED_HOST`, `SC_FED_PORT` | `127.0.0.1`, its federation port | behind its relay |
//! | `SC_FED_NAMESERVERS` | the daemon's DNS address | discovery through the test zone |
//! | `SC_FED_WELL_KNOWN` | `off` | DNS is the only discovery source |
//! | `SC_RATE_LIMIT_PER_SEC`, `SC_RATE_LIMIT_BURST` | 100000 | scenarios and benchmarks send bursts |
//! | `SC_MAX_CONNECTIONS_PER_IP`, `SC_MAX_CONNECTIONS` | 20000 | every client comes from 127.0.0.1 |
//! | `SC_MAX_OFFLINE_MESSAGES` | 100000 | the catch-up benchmark queues 10,000 messages |
//! | `SC_LOG` | `$TESTNET_LOG` or `info` | |
//!
//! An instance of the managed peer ([`crate::managed`]) also gets `SC_SERVER_TYPE=managed`, the
//! shared `SC_DATABASE_URL`, `SC_NATS_URL` and `SC_SERVER_KEY_FILE`, and `SC_INSTANCE_ID`
//! (its instance number less one).
//!
//! Every other `SC_*` variable of the calling environment is removed, so a developer's own
//! homeserver settings cannot leak into the testnet. Output goes to `<data dir>/mobium.log`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use mobium_spec::Keypair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::info::NodeInfo;
use crate::process;

/// Name of the key file in a node's data directory (the homeserver's own choice).
pub const KEY_FILE: &str = "server.key";

/// Name of a node's log file in its data directory.
pub const LOG_FILE: &str = "mobium.log";

/// Environment variable that sets the nodes' `SC_LOG`.
pub const LOG_ENV: &str = "TESTNET_LOG";

/// How long a node may take to answer `/health` after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Loads the node key in `data_dir`, or creates it in the homeserver's format.
pub fn load_or_create_key(data_dir: &Path) -> anyhow::Result<Keypair> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let seed: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("{} does not hold a 64-hex-digit key", path.display()))?;
            Ok(Keypair::from_seed(seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let key = Keypair::generate();
            write_private(
                &path,
                format!("{}\n", hex::encode(key.secret_bytes())).as_bytes(),
            )
            .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// The `mobium serve` command for `node`, with its environment, output to its log file.
fn command(mobium: &Path, node: &NodeInfo, dns: std::net::SocketAddr) -> anyhow::Result<Command> {
    let mut cmd = Command::new(mobium);
    cmd.arg("serve");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SC_") {
            cmd.env_remove(key);
        }
    }
    let log_level = std::env::var(LOG_ENV).unwrap_or_else(|_| "info".to_owned());
    cmd.env("SC_SERVER_NAME", &node.name)
        .env("SC_HOST", node.client_addr.ip().to_string())
        .env("SC_PORT", node.client_addr.port().to_string())
        .env("SC_DATA_DIR", &node.data_dir)
        .env("SC_FED_HOST", node.federation_bind.ip().to_string())
        .env("SC_FED_PORT", node.federation_bind.port().to_string())
        .env("SC_FED_NAMESERVERS", dns.to_string())
        .env("SC_FED_WELL_KNOWN", "off")
        .env("SC_RATE_LIMIT_PER_SEC", "100000")
        .env("SC_RATE_LIMIT_BURST", "100000")
        .env("SC_MAX_CONNECTIONS", "20000")
        .env("SC_MAX_CONNECTIONS_PER_IP", "20000")
        .env("SC_MAX_OFFLINE_MESSAGES", "100000")
        .env("SC_LOG", log_level)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    if let Some(m) = &node.managed {
        cmd.env("SC_SERVER_TYPE", "managed")
            .env("SC_DATABASE_URL", &m.database_url)
            .env("SC_NATS_URL", &m.nats_url)
            .env("SC_SERVER_KEY_FILE", &m.key_file)
            .env("SC_INSTANCE_ID", (m.instance - 1).to_string());
    }
    let (out, err) = process::log_files(&node.log)?;
    cmd.stdout(out).stderr(err);
    process::detach(&mut cmd);
    Ok(cmd)
}

/// Starts `node`'s homeserver (detached) and waits until `/health` answers. The returned child
/// lets a long-lived caller reap it; a short-lived one may simply drop it.
pub async fn start(
    mobium: &Path,
    node: &NodeInfo,
    dns: std::net::SocketAddr,
) -> anyhow::Result<Child> {
    let mut child = command(mobium, node, dns)?
        .spawn()
        .with_context(|| format!("cannot run {}", mobium.display()))?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if health(node).await.is_ok() {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "{} exited during start-up ({status}); the end of {}:\n{}",
                node.name,
                node.log.display(),
                process::tail(&node.log, 15)
            );
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not become healthy within {START_TIMEOUT:?}; the end of {}:\n{}",
                node.name,
                node.log.display(),
                process::tail(&node.log, 15)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /health` on the node's client port: `Ok` for a 200 answer.
pub async fn health(node: &NodeInfo) -> anyhow::Result<()> {
    let (status, body) = http_get(node.client_addr, "/health").await?;
    if status != 200 {
        bail!("{}: /health answered {status}: {body}", node.name);
    }
    Ok(())
}

/// A minimal HTTP/1.1 GET over plain TCP (loopback only, small answers): status and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(1 << 20).read_to_end(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .with_context(|| format!("GET {path} on {addr} timed out"))??;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("GET {path} on {addr}: not an HTTP answer"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Resident memory of `pid` in bytes (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the memory use of process {pid}"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .with_context(|| format!("no VmRSS for process {pid}"))?;
    Ok(kb * 1024)
}

/// The CPU time (user + system) process `pid` has used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read the CPU time of process {pid}"))?;
    // The command name (field 2) may hold spaces; the fields after it start at ") ".
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .with_context(|| format!("unexpected /proc/{pid}/stat"))?;
    let field = |i: usize| -> anyhow::Result<u64> {
        rest.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no field {i} in /proc/{pid}/stat"))
    };
    // utime and stime: fields 14 and 15 of proc(5), 11 and 12 counted from the state field.
    let ticks = field(11)? + field(12)?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_micros(ticks.saturating_mul(1_000_000) / hz))
}

/// The data directory of node `index` under `dir`.
pub fn data_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("node{index}"))
}
