//! The `/.well-known/mobium` discovery source (spec `client/http.md`, `federation.md` §Discovery).
//!
//! One HTTP/1.1 `GET` per lookup over a fresh connection, with hyper's low-level client
//! (`hyper::client::conn::http1`), which needs no connection pool or extra crates; HTTPS goes
//! through tokio-rustls with the Mozilla roots (`webpki-roots`), i.e. ordinary web PKI, as the spec
//! requires for this source. Plain HTTP exists for tests and local testnets only.
//!
//! The caller resolves the address to connect to (so that the testnet's DNS server answers it)
//! and validates the document's key and federation address; this file only fetches, bounds and
//! parses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{CACHE_CONTROL, HOST, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use mobium_spec::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::WellKnownMode;

/// The document's path.
pub(crate) const PATH: &str = "/.well-known/mobium";
/// Largest accepted document.
const MAX_BODY: usize = 64 * 1024;
/// Whole-fetch timeout (connect, TLS, request, body).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Cache time when the response has no `max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);

/// A fetched and parsed document (key and address still unvalidated text).
#[derive(Debug)]
pub(crate) struct Document {
    pub server_key: String,
    pub federation: String,
    pub max_age: Duration,
}

#[derive(Deserialize)]
struct Body {
    server: String,
    server_key: String,
    federation: String,
}

/// The well-known client of one discovery service.
pub(crate) struct WellKnown {
    tls: Option<TlsConnector>,
}

impl WellKnown {
    /// A client for `mode` (`Https` or `Http`; `Off` is handled by the caller).
    pub fn new(mode: WellKnownMode) -> Result<Self, String> {
        let tls = match mode {
            WellKnownMode::Https => {
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                let mut config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(TlsConnector::from(Arc::new(config)))
            }
            WellKnownMode::Http | WellKnownMode::Off => None,
        };
        Ok(WellKnown { tls })
    }

    /// The port used when the server name has none.
    pub fn default_port(&self) -> u16 {
        if self.tls.is_some() { 443 } else { 80 }
    }

    /// Fetches the document of `name` from `addr`.
    pub async fn fetch(&self, name: &ServerName, addr: SocketAddr) -> Result<Document, String> {
        tokio::time::timeout(FETCH_TIMEOUT, self.fetch_inner(name, addr))
            .await
            .map_err(|_| "timed out".to_owned())?
    }

    async fn fetch_inner(&self, name: &ServerName, addr: SocketAddr) -> Result<Document, String> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (status, max_age, body) = match &self.tls {
            None => get(tcp, name).await?,
            Some(connector) => {
                let host = name.host();
                let bare = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                let sni = rustls::pki_types::ServerName::try_from(bare.to_owned())
                    .map_err(|e| format!("TLS name {bare}: {e}"))?;
                let tls = connector
                    .connect(sni, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                get(tls, name).await?
            }
        };
        if status != StatusCode::OK {
            return Err(format!("HTTP status {status}"));
        }
        let doc: Body = serde_json::from_slice(&body).map_err(|e| format!("document: {e}"))?;
        if doc.server != name.as_str() {
            return Err(format!("document is for {:?}", doc.server));
        }
        Ok(Document {
            server_key: doc.server_key,
            federation: doc.federation,
            max_age: max_age.unwrap_or(DEFAULT_MAX_AGE),
        })
    }
}

/// One `GET` on an established connection: status, `max-age` and the (bounded) body.
async fn get<IO>(io: IO, name: &ServerName) -> Result<(StatusCode, Option<Duration>, Bytes), String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "well-known connection ended");
        }
    });
    let request = Request::get(PATH)
        .header(HOST, name.as_str())
        .header(
            USER_AGENT,
            concat!("mobium-federation/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status();
        let max_age = response
            .headers()
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_max_age);
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, max_age, body))
    }
    .await;
    driver.abort();
    result
}

/// The `max-age` directive of a `Cache-Control` value.
fn parse_max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let (k, v) = directive.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        v.trim()
            .trim_matches('"')
            .parse()
            .ok()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            parse_max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_max_age("no-cache"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }
}
