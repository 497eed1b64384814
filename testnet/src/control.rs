//! The daemon's control channel: one JSON object per line over TCP on loopback.
//!
//! `testnet partition node1 node2` is one round trip: connect to the daemon's control port
//! (recorded in `testnet.json`), send `{"cmd":"partition","a":1,"b":2}\n`, read one
//! [`ControlResponse`] line. Nodes are named by index. The channel listens on 127.0.0.1 only
//! and carries nothing secret; anyone on the machine who can reach it can already kill the
//! processes it describes.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::relay::RelayReport;

/// How long a control call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest line accepted on the control channel.
pub const MAX_LINE: usize = 64 * 1024;

/// What the control channel can be asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Is the daemon up? (Answers with the current status.)
    Ping,
    /// Cut federation traffic between nodes `a` and `b` (1-based indexes).
    Partition {
        /// One node.
        a: usize,
        /// The other node.
        b: usize,
    },
    /// Restore federation traffic between nodes `a` and `b`.
    Heal {
        /// One node.
        a: usize,
        /// The other node.
        b: usize,
    },
    /// Restore every link.
    HealAll,
    /// Stop the daemon (DNS and relays).
    Shutdown,
}

/// The daemon's answer to every request: the outcome and the current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlResponse {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not, when `ok` is false.
    pub error: Option<String>,
    /// Whether the request changed anything (a partition that existed already did not).
    pub changed: bool,
    /// The daemon's pid.
    pub pid: u32,
    /// The cut links, as pairs of node indexes (smaller first).
    pub partitions: Vec<(usize, usize)>,
    /// Per relay, its addresses and datagram counters.
    pub relays: Vec<RelayReport>,
}

/// Sends `request` to the daemon at `addr` and returns its answer; an error if the daemon is not
/// there, does not answer in [`CALL_TIMEOUT`], or refused the request.
pub async fn call(addr: SocketAddr, request: &ControlRequest) -> anyhow::Result<ControlResponse> {
    let response = tokio::time::timeout(CALL_TIMEOUT, exchange(addr, request))
        .await
        .with_context(|| format!("the testnet daemon at {addr} did not answer in time"))??;
    if !response.ok {
        anyhow::bail!(
            "the testnet daemon refused: {}",
            response.error.as_deref().unwrap_or("no reason given")
        );
    }
    Ok(response)
}

async fn exchange(addr: SocketAddr, request: &ControlRequest) -> anyhow::Result<ControlResponse> {
    let mut stream = TcpStream::connect(addr).await.with_context(|| {
        format!("cannot reach the testnet daemon at {addr} (is the testnet up? `testnet status`)")
    })?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes()).await?;
    let mut reader = BufReader::new(stream.take(MAX_LINE as u64));
    let mut answer = String::new();
    reader
        .read_line(&mut answer)
        .await
        .context("reading the daemon's answer")?;
    serde_json::from_str(answer.trim())
        .with_context(|| format!("the daemon at {addr} answered something unexpected: {answer:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_cmd() -> anyhow::Result<()> {
        let text = serde_json::to_string(&ControlRequest::Partition { a: 1, b: 2 })?;
        assert_eq!(text, r#"{"cmd":"partition","a":1,"b":2}"#);
        let back: ControlRequest = serde_json::from_str(r#"{"cmd":"heal_all"}"#)?;
        assert_eq!(back, ControlRequest::HealAll);
        Ok(())
    }
}
