//! Server side of the client protocol: the `/v1/ws` route and what it needs from the homeserver.

mod handler;
mod limits;
mod proxy;
mod session;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mobium_spec::ServerName;
use tokio::sync::watch;

pub use handler::{
    AuthRequest, ClientHandler, Connection, ConnectionId, Entry, Outbound, encode_event,
};
pub use limits::{ConnectionGuard, ConnectionLimiter};
pub use proxy::{IpNet, ParseIpNetError, TrustedProxies};
pub use tls::{TlsError, TlsListener, server_config as tls_server_config};

/// Transport settings of the WebSocket endpoint.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// This server's name (signed into every auth proof).
    pub server_name: ServerName,
    /// Largest accepted WebSocket message, in bytes.
    pub max_message_size: usize,
    /// Time a client has to authenticate.
    pub auth_timeout: Duration,
    /// Interval between server pings; a connection silent for two intervals is closed.
    pub ping_interval: Duration,
    /// Frames that may wait for a slow client before it is disconnected.
    pub outbound_queue: usize,
    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` headers name the client (for the
    /// per-IP connection cap and logs); empty believes no header.
    pub trusted_proxies: TrustedProxies,
}

/// Shared state of the route.
struct WsState<H> {
    handler: Arc<H>,
    settings: WsSettings,
    limiter: Arc<ConnectionLimiter>,
    shutdown: watch::Receiver<bool>,
}

impl<H> Clone for WsState<H> {
    fn clone(&self) -> Self {
        WsState {
            handler: self.handler.clone(),
            settings: self.settings.clone(),
            limiter: self.limiter.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// The `/v1/ws` route. Serve the final router with
/// `into_make_service_with_connect_info::<SocketAddr>()` so peer addresses are known.
/// Sessions end (with close code 1001) when `shutdown` turns `true`.
pub fn router<H: ClientHandler>(
    handler: Arc<H>,
    settings: WsSettings,
    limiter: Arc<ConnectionLimiter>,
    shutdown: watch::Receiver<bool>,
) -> Router {
    Router::new()
        .route("/v1/ws", get(upgrade::<H>))
        .with_state(WsState {
            handler,
            settings,
            limiter,
            shutdown,
        })
}

async fn upgrade<H: ClientHandler>(
    State(state): State<WsState<H>>,
    ConnectInfo(tcp_peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // Behind a trusted reverse proxy the client is the address the proxy recorded.
    let client_ip = state
        .settings
        .trusted_proxies
        .client_ip(tcp_peer.ip(), &headers);
    let peer = SocketAddr::new(client_ip, tcp_peer.port());
    if *state.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting_down").into_response();
    }
    let guard = match state.limiter.admit(peer.ip()) {
        Ok(g) => g,
        Err(code) => {
            state.handler.record_error(code);
            tracing::debug!(%peer, "connection refused: too many connections");
            return (StatusCode::SERVICE_UNAVAILABLE, code.as_str()).into_response();
        }
    };
    let max = state.settings.max_message_size;
    ws
        // tungstenite's defaults (128 KiB read buffer, 128 KiB write buffer) would cost an idle
        // connection a quarter of a megabyte; small buffers grow on demand for large frames.
        .read_buffer_size(2048)
        .write_buffer_size(0)
        .max_write_buffer_size(max.saturating_mul(2).max(64 * 1024))
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session::run(socket, peer, state, guard))
}
