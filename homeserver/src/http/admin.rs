//! The operator's admin API (spec `client/http.md` §Admin API): registration tokens and
//! administrators, behind the `SC_ADMIN_TOKEN` bearer token.
//!
//! Bodies are parsed here rather than by axum's `Json` extractor, whose rejections are
//! `415`/`422` with a plain-text body: the spec says a body that is not the JSON described
//! (malformed, a member of the wrong type, a value out of range) gets `400` with the error body
//! `{"error": {"code": "invalid_argument", "message": …}}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mobium_spec::permissions::Permissions;
use mobium_spec::{ErrorCode, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::HttpState;
use crate::domain::now_ms;

/// An admin API failure: its status and the spec's JSON error body. Internal causes are logged
/// where they happen and never put in `message`.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, message)
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code.as_str(), "message": self.message }
        });
        (self.status, Json(body)).into_response()
    }
}

/// Parses a JSON body into `T`; an empty body is `T::default()` when `empty` allows it.
fn parse_body<T: DeserializeOwned>(body: &Bytes, empty: Option<T>) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return empty.ok_or_else(|| ApiError::invalid("a JSON body is required"));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
    // serde would also read a struct from an array of its members in order.
    if !value.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("invalid body: {e}")))
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the admin bearer token.
fn admin_only(s: &HttpState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = s.admin_token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "the admin API is disabled (set SC_ADMIN_TOKEN)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| same(g.as_bytes(), expected.as_bytes())) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "bad or missing admin token",
        ));
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    uses: Option<u32>,
    expires_in_secs: Option<u64>,
}

#[derive(Serialize)]
pub(super) struct TokenCreated {
    token: String,
    uses: u32,
    expires_at: Option<u64>,
}

/// `POST /v1/admin/registration-tokens`: a registration token for `SC_REGISTRATION=invite`.
pub(super) async fn create_token(
    State(s): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TokenCreated>, ApiError> {
    admin_only(&s, &headers)?;
    let req: TokenRequest = parse_body(&body, Some(TokenRequest::default()))?;
    let uses = match req.uses {
        None => 1,
        Some(0) => return Err(ApiError::invalid("uses must be at least 1")),
        Some(n) => n,
    };
    let expires_at = match req.expires_in_secs {
        None => None,
        Some(0) => return Err(ApiError::invalid("expires_in_secs must be at least 1")),
        Some(secs) => Some(now_ms().saturating_add(secs.saturating_mul(1000))),
    };
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a registration token");
        ApiError::internal()
    })?;
    let token = hex::encode(raw);
    s.app
        .store
        .reg_token_create(&token, uses, expires_at)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "creating a registration token failed");
            ApiError::internal()
        })?;
    Ok(Json(TokenCreated {
        token,
        uses,
        expires_at,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdministratorRequest {
    user: String,
}

/// Name of the built-in role the admin API grants.
const ADMINISTRATOR_ROLE: &str = "administrator";

/// `POST /v1/admin/administrators`: grants a user the `administrator` role (created on first
/// use), how an operator bootstraps role management on a fresh server.
pub(super) async fn make_administrator(
    State(s): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin_only(&s, &headers)?;
    let req: AdministratorRequest = parse_body(&body, None)?;
    let user: UserId = req
        .user
        .parse()
        .map_err(|e| ApiError::invalid(format!("invalid user id: {e}")))?;
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
            Ok(Json(
                serde_json::json!({ "user": user.to_string(), "role": role }),
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "granting administrator failed");
            Err(ApiError::internal())
        }
    }
}
