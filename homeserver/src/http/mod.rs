//! Plain HTTP routes beside the WebSocket (spec `client/http.md`): `/v1/info`, `/health`,
//! `/metrics`, `/.well-known/mobium` and the operator's admin API ([`admin`]), the last two
//! optionally on their own listener (`SC_ADMIN_LISTEN`).

mod admin;
mod metrics;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mobium_spec::PROTOCOL_VERSION;
use serde::Serialize;

use crate::config::ServerType;
use crate::domain::{App, now_ms};
use crate::storage::META_HEALTH_PROBE;

/// Shared state of the HTTP routes.
#[derive(Clone)]
pub struct HttpState {
    /// The domain.
    pub app: Arc<App>,
    /// Bearer token of the admin API (`SC_ADMIN_TOKEN`); `None` disables it.
    pub admin_token: Option<String>,
}

/// Every route: the public ones and the operator's ([`operator_router`]), for a server
/// without a separate admin listener.
pub fn router(state: HttpState) -> Router {
    public_router(state.clone()).merge(operator_router(state))
}

/// The routes for everyone: `/v1/info`, `/health`, `/.well-known/mobium`.
pub fn public_router(state: HttpState) -> Router {
    Router::new()
        .route("/v1/info", get(info))
        .route("/health", get(health))
        .route("/.well-known/mobium", get(well_known))
        .with_state(state)
}

/// The operator's routes: `/metrics` and the admin API. With `SC_ADMIN_LISTEN` they are
/// served only on that address.
pub fn operator_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/v1/admin/registration-tokens", post(admin::create_token))
        .route("/v1/admin/administrators", post(admin::make_administrator))
        .with_state(state)
}

#[derive(Serialize)]
struct Info {
    name: String,
    protocol_version: u32,
    server_type: &'static str,
    capabilities: Vec<&'static str>,
    server_key: String,
    software: String,
}

/// `GET /v1/info`: what a client needs before connecting.
async fn info(State(s): State<HttpState>) -> Json<Info> {
    Json(Info {
        name: s.app.server_name.to_string(),
        protocol_version: PROTOCOL_VERSION,
        server_type: match s.app.cluster() {
            Some(_) => ServerType::Managed.as_str(),
            None => ServerType::Community.as_str(),
        },
        capabilities: vec!["dm", "channels", "roles", "presence"],
        server_key: s.app.keypair.public().to_string(),
        software: format!("mobium {}", env!("CARGO_PKG_VERSION")),
    })
}

/// `GET /health`: 200 when the database answers and accepts a write, 503 otherwise; never
/// slower than [`HEALTH_TIMEOUT`], so a monitor sees a hung database as down.
async fn health(State(s): State<HttpState>) -> Response {
    let store = &s.app.store;
    let probe = async {
        store.ping().await.map_err(|e| ("unreachable", e))?;
        // A database can answer reads and refuse every write (read-only file, full disk,
        // a PostgreSQL standby): the probe is a tiny write.
        store
            .meta_set(META_HEALTH_PROBE, &now_ms().to_string())
            .await
            .map_err(|e| ("not_writable", e))
    };
    let database = match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
        Ok(Ok(())) => return Json(Health::ok()).into_response(),
        Ok(Err((state, e))) => {
            tracing::error!(error = %e, database = state, "health check failed");
            state
        }
        Err(_) => {
            tracing::error!(
                timeout_secs = HEALTH_TIMEOUT.as_secs(),
                "health check: the database did not answer"
            );
            "timeout"
        }
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(Health::down(database)),
    )
        .into_response()
}

/// How long `/health` waits for the database.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/health`.
#[derive(Serialize)]
struct Health {
    status: &'static str,
    /// `ok`, `unreachable`, `not_writable` or `timeout`.
    database: &'static str,
}

impl Health {
    fn ok() -> Health {
        Health {
            status: "ok",
            database: "ok",
        }
    }

    fn down(database: &'static str) -> Health {
        Health {
            status: "unavailable",
            database,
        }
    }
}

#[derive(Serialize)]
struct WellKnown {
    server: String,
    server_key: String,
    /// `host:port` of the federation endpoint (UDP), when federation is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    federation: Option<String>,
}

/// `GET /.well-known/mobium`: a federation discovery source.
async fn well_known(State(s): State<HttpState>) -> Json<WellKnown> {
    Json(WellKnown {
        server: s.app.server_name.to_string(),
        server_key: s.app.keypair.public().to_string(),
        federation: s.app.federation().map(|l| {
            let port = l.federation.local_addr().port();
            format!("{}:{port}", s.app.server_name.host())
        }),
    })
}
