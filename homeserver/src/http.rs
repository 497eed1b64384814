//! Plain HTTP routes beside the WebSocket (spec `client/http.md`): `/v1/info`, `/health`,
//! `/metrics`, `/.well-known/mobium` and the operator's admin API.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mobium_spec::permissions::Permissions;
use mobium_spec::{PROTOCOL_VERSION, UserId};
use serde::{Deserialize, Serialize};

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

/// The routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v1/info", get(info))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/.well-known/mobium", get(well_known))
        .route("/v1/admin/registration-tokens", post(create_token))
        .route("/v1/admin/administrators", post(make_administrator))
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

async fn info(State(s): State<HttpState>) -> Json<Info> {
    Json(Info {
        name: s.app.server_name.to_string(),
        protocol_version: PROTOCOL_VERSION,
        server_type: "community",
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

async fn metrics(State(s): State<HttpState>) -> Response {
    let mut body = s
        .app
        .metrics
        .render(s.app.limiter.current(), s.app.hub.online_users());
    if let Some(link) = s.app.federation() {
        federation_metrics(&s.app, link, &mut body).await;
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Federation counters and the outbox backlog per destination.
async fn federation_metrics(app: &App, link: &crate::fed::Link, out: &mut String) {
    use std::fmt::Write;
    let st = link.federation.stats();
    let _ = writeln!(
        out,
        "# HELP mobium_federation_requests_total Federation requests, by direction and outcome."
    );
    let _ = writeln!(out, "# TYPE mobium_federation_requests_total counter");
    let _ = writeln!(
        out,
        "mobium_federation_requests_total{{direction=\"sent\"}} {}",
        st.requests_sent
    );
    let _ = writeln!(
        out,
        "mobium_federation_requests_total{{direction=\"failed\"}} {}",
        st.requests_failed
    );
    let _ = writeln!(
        out,
        "mobium_federation_requests_total{{direction=\"received\"}} {}",
        st.requests_received
    );
    let _ = writeln!(
        out,
        "mobium_federation_requests_total{{direction=\"replayed\"}} {}",
        st.replays
    );
    let _ = writeln!(
        out,
        "# HELP mobium_federation_rejected_total Inbound federation requests refused, by code."
    );
    let _ = writeln!(out, "# TYPE mobium_federation_rejected_total counter");
    let mut rejected: Vec<_> = st.rejected.iter().collect();
    rejected.sort_by_key(|(c, _)| c.as_str());
    for (code, n) in rejected {
        let _ = writeln!(
            out,
            "mobium_federation_rejected_total{{code=\"{code}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP mobium_outbox_pending Durable federation events waiting for delivery, by destination."
    );
    let _ = writeln!(out, "# TYPE mobium_outbox_pending gauge");
    if let Ok(dests) = app.store.outbox_destinations().await {
        for d in dests {
            let n = app.store.outbox_len(&d).await.unwrap_or(0);
            let _ = writeln!(out, "mobium_outbox_pending{{destination=\"{d}\"}} {n}");
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

#[derive(Deserialize)]
struct TokenRequest {
    uses: Option<u32>,
    expires_in_secs: Option<u64>,
}

#[derive(Serialize)]
struct TokenCreated {
    token: String,
    uses: u32,
    expires_at: Option<u64>,
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the admin bearer token; the error is the response to send.
fn admin_only(s: &HttpState, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let Some(expected) = s.admin_token.as_deref() else {
        return Err((
            StatusCode::NOT_FOUND,
            "the admin API is disabled (set SC_ADMIN_TOKEN)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| same(g.as_bytes(), expected.as_bytes())) {
        return Err((StatusCode::UNAUTHORIZED, "bad or missing admin token"));
    }
    Ok(())
}

async fn create_token(
    State(s): State<HttpState>,
    headers: HeaderMap,
    body: Option<Json<TokenRequest>>,
) -> Response {
    if let Err(refusal) = admin_only(&s, &headers) {
        return refusal.into_response();
    }
    let req = body.map(|Json(b)| b).unwrap_or(TokenRequest {
        uses: None,
        expires_in_secs: None,
    });
    let uses = req.uses.unwrap_or(1).max(1);
    let expires_at = req
        .expires_in_secs
        .map(|s| now_ms().saturating_add(s.saturating_mul(1000)));
    let mut raw = [0u8; 16];
    if getrandom::fill(&mut raw).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let token = hex::encode(raw);
    match s.app.store.reg_token_create(&token, uses, expires_at).await {
        Ok(()) => Json(TokenCreated {
            token,
            uses,
            expires_at,
        })
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "creating a registration token failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Deserialize)]
struct AdministratorRequest {
    user: String,
}

/// Name of the built-in role the admin API grants.
const ADMINISTRATOR_ROLE: &str = "administrator";

/// Grants a user the `administrator` role (created on first use): how an operator bootstraps
/// role management on a fresh server.
async fn make_administrator(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Json(req): Json<AdministratorRequest>,
) -> Response {
    if let Err(refusal) = admin_only(&s, &headers) {
        return refusal.into_response();
    }
    let user: UserId = match req.user.parse() {
        Ok(u) => u,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("invalid user id: {e}")).into_response();
        }
    };
    let result = async {
        let all = Permissions::ADMINISTRATOR.0;
        let existing = s
            .app
            .store
            .roles()
            .await?
            .into_iter()
            .find(|r| r.name == ADMINISTRATOR_ROLE && r.permissions & all == all);
        let id = match existing {
            Some(r) => r.id,
            None => s.app.store.role_create(ADMINISTRATOR_ROLE, all).await?,
        };
        s.app.store.role_grant(&user, id).await?;
        Ok::<u64, crate::storage::StoreError>(id)
    }
    .await;
    match result {
        Ok(role) => {
            s.app.invalidate_permissions();
            tracing::info!(%user, "granted the administrator role");
            Json(serde_json::json!({ "user": user.to_string(), "role": role })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "granting administrator failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
