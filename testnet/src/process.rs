//! Processes by pid: starting detached children, telling whether a pid is still ours, stopping
//! it, and finding the `mobium` binary.
//!
//! The testnet's processes outlive the command that started them, so later commands only know
//! their pids (from `testnet.json`). Before signalling a pid the testnet checks, on Linux, that
//! the process still runs the expected program (`/proc/<pid>/cmdline`), so a pid reused by an
//! unrelated process after a reboot or a crash is never touched. Signals go through `rustix`
//! (no `unsafe` here). Unix only, like the rest of the testnet.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal};

/// Environment variable naming the `mobium` binary to run, overriding the search.
pub const MOBIUM_BIN_ENV: &str = "MOBIUM_BIN";

/// Puts the child in its own process group, so a Ctrl-C aimed at the terminal that started it
/// does not reach it: testnet processes stop only when told to.
pub fn detach(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
}

/// Opens `path` for appending (creating it) twice, for a child's stdout and stderr.
pub fn log_files(path: &Path) -> anyhow::Result<(Stdio, Stdio)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let copy = file.try_clone()?;
    Ok((Stdio::from(file), Stdio::from(copy)))
}

/// The last `lines` lines of a text file, or a note that it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({} cannot be read: {e})", path.display()),
    }
}

fn pid_of(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

/// Whether `pid` is a live (not zombie) process whose command line mentions `program`.
pub fn is_alive(pid: u32, program: &str) -> bool {
    let Some(p) = pid_of(pid) else {
        return false;
    };
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if Path::new("/proc/self").exists() {
        let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
            return false;
        };
        // The state is the first field after the parenthesised command name.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        if matches!(state, Some('Z' | 'X' | 'x') | None) {
            return false;
        }
        let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
            return false;
        };
        return String::from_utf8_lossy(&cmdline).contains(program);
    }
    rustix::process::test_kill_process(p).is_ok()
}

/// Sends `signal` to `pid` if it is alive and runs `program`; `false` if there was nothing to
/// signal.
fn signal(pid: u32, program: &str, signal: Signal) -> anyhow::Result<bool> {
    if !is_alive(pid, program) {
        return Ok(false);
    }
    let p = pid_of(pid).context("invalid pid")?;
    match rustix::process::kill_process(p, signal) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::SRCH) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot signal process {pid}")),
    }
}

/// Kills `pid` at once (SIGKILL), as a crash would, and waits until it is gone.
pub async fn kill(pid: u32, program: &str) -> anyhow::Result<()> {
    if signal(pid, program, Signal::KILL)? {
        wait_gone(pid, program, Duration::from_secs(10)).await?;
    }
    Ok(())
}

/// Asks `pid` to stop (SIGTERM), waits up to `grace`, then kills it. Returns once it is gone.
pub async fn terminate(pid: u32, program: &str, grace: Duration) -> anyhow::Result<()> {
    if !signal(pid, program, Signal::TERM)? {
        return Ok(());
    }
    if wait_gone(pid, program, grace).await.is_ok() {
        return Ok(());
    }
    tracing::warn!(pid, "process ignored SIGTERM; killing it");
    kill(pid, program).await
}

async fn wait_gone(pid: u32, program: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while is_alive(pid, program) {
        if tokio::time::Instant::now() >= deadline {
            bail!("process {pid} still running after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits for SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Finds the workspace's `mobium` binary: `$MOBIUM_BIN`, else next to the running executable
/// (`target/<profile>/`), else one directory up from it (test executables live in
/// `target/<profile>/deps/`), else `$CARGO_TARGET_DIR/{debug,release}/` or `./target/…`.
pub fn find_mobium() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(MOBIUM_BIN_ENV) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "{MOBIUM_BIN_ENV}={} is not a file; build it with `cargo build -p mobium-homeserver`",
            path.display()
        );
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join("mobium"));
        if let Some(up) = dir.parent() {
            candidates.push(up.join("mobium"));
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    for profile in ["debug", "release"] {
        candidates.push(target.join(profile).join("mobium"));
    }
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    bail!(
        "cannot find the `mobium` binary (looked at {}); run `cargo build -p mobium-homeserver` first, or set {MOBIUM_BIN_ENV}",
        looked.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_bogus_pid_is_not() {
        let me = std::process::id();
        let exe = std::env::current_exe().ok();
        let name = exe
            .as_ref()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("");
        assert!(is_alive(me, name));
        assert!(!is_alive(me, "definitely-not-this-program"));
        assert!(!is_alive(0, ""));
        assert!(!is_alive(u32::MAX, ""));
    }
}
