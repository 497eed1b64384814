//! The client edge: the [`ClientHandler`] the WebSocket transport (`mobium-client-api`) calls
//! for each authenticated connection. It counts requests, applies the per-user rate limit and
//! hands the request to the domain ([`domain::dispatch`]). The domain's [`DomainError`] becomes
//! the wire error here (its internal causes logged once, in the connection's span).

use std::sync::atomic::Ordering;
use std::time::Instant;

use mobium_client_api::server::{AuthRequest, ClientHandler, Connection, Entry};
use mobium_spec::client::{Authed, ErrorBody, Request, Response};
use mobium_spec::{ErrorCode, PublicKey};

use crate::domain::{self, App, DomainError};

#[async_trait::async_trait]
impl ClientHandler for App {
    /// `auth`: the registration policy, then the connection is registered for live events.
    async fn authenticate(
        &self,
        conn: &Connection,
        auth: AuthRequest,
    ) -> Result<Authed, ErrorBody> {
        domain::authenticate(self, conn, auth)
            .await
            .map_err(DomainError::into_wire)
    }

    /// After `authed` was sent: the queued to-device messages and failure notices.
    async fn authenticated(&self, conn: &Connection, user: &PublicKey) {
        domain::authenticated(self, conn, user).await;
    }

    /// Every other request of an authenticated connection.
    async fn handle(
        &self,
        _conn: &Connection,
        user: &PublicKey,
        request: Request,
        entry: &Entry,
    ) -> Result<Response, ErrorBody> {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        if let Err(wait) = self.rate.check(user, Instant::now()) {
            let mut e = ErrorBody::new(ErrorCode::RateLimited, "too many requests");
            e.retry_after_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
            return Err(e);
        }
        // A managed server's bucket is shared: connections on several instances share it.
        if let Some(c) = self.cluster()
            && !c
                .rate_take(user, self.settings.rate_per_sec, self.settings.rate_burst)
                .await
        {
            let mut e = ErrorBody::new(ErrorCode::RateLimited, "too many requests");
            e.retry_after_ms = Some((1000 / u64::from(self.settings.rate_per_sec.max(1))).max(1));
            return Err(e);
        }
        domain::dispatch(self, user, request, entry)
            .await
            .map_err(DomainError::into_wire)
    }

    /// The connection closed: presence on the last one, the rate limiter forgets the user.
    async fn disconnected(&self, conn: &Connection, user: Option<&PublicKey>) {
        if let Some(user) = user {
            domain::disconnected(self, conn, user).await;
        }
    }

    fn record_error(&self, code: ErrorCode) {
        self.metrics.error(code);
    }
}
