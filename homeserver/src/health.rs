//! `mobium health`: asks a running server's `GET /health` and exits 0 only for a 200 answer.
//!
//! It is the container image's `HEALTHCHECK`: the image holds nothing but the binary (no curl,
//! no shell), so the binary checks itself. It reads the same settings as `mobium serve` (the
//! TOML file, then `SC_*` variables) to find the client port, and asks on the loopback
//! address when the server listens on every interface. It speaks plain HTTP: a server with its
//! own certificate (`SC_TLS_CERT`) is checked with `--addr` against a plain listener, or by a
//! probe that speaks TLS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use mobium_homeserver::config::Config;

/// The whole check (connect, ask, read) must finish within this long.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The health answer is a small JSON object; more is not a Mobium server.
const MAX_BODY: usize = 64 * 1024;

/// Where `mobium health` asks when not told: the configured client address, with an
/// unspecified host (`0.0.0.0`, `::`) replaced by loopback.
pub fn default_addr(config: &Config) -> anyhow::Result<SocketAddr> {
    if config.tls_cert.is_some() {
        bail!("the server speaks TLS (tls_cert is set); mobium health speaks plain HTTP");
    }
    let host = match config.host {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    if config.port == 0 {
        bail!("the port is 0 (chosen at start-up); pass --addr");
    }
    Ok(SocketAddr::new(host, config.port))
}

/// `GET /health` at `addr`: `Ok` with the body for a 200, an error naming the status or the
/// failure otherwise.
pub async fn check(addr: SocketAddr) -> anyhow::Result<String> {
    tokio::time::timeout(TIMEOUT, ask(addr))
        .await
        .with_context(|| format!("no answer from {addr} within {TIMEOUT:?}"))?
}

async fn ask(addr: SocketAddr) -> anyhow::Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .context("HTTP handshake")?;
    let driver = tokio::spawn(connection);
    let request = Request::get("/health")
        .header(HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .context("request")?;
    let response = sender.send_request(request).await.context("HTTP")?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
        .to_bytes();
    driver.abort();
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        bail!("/health answered {status}: {body}");
    }
    Ok(body)
}
