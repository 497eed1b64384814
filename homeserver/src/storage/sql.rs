//! SQL text that both backends run unchanged (sqlx's SQLite driver accepts `$N` placeholders).
//!
//! A statement lives here when its text is the same for SQLite and PostgreSQL; each backend
//! binds and executes it with its own executor. What really differs per backend (arrays versus
//! JSON lists, how a write transaction opens) stays in `sqlite/` and `postgres/`.

/// Queues one failure notice; a notice already queued (same sender and id) is kept once.
pub(crate) const FAILURE_INSERT: &str = "INSERT INTO direct_failures (sender, id, recipient, code, message, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sender, id) DO NOTHING";

/// A sender's failure notices after an id (0 for all), ascending, with a limit.
pub(crate) const FAILURES_PENDING: &str = "SELECT id, sender, recipient, code, message, expires_at FROM direct_failures \
     WHERE sender = $1 AND id > $2 ORDER BY id LIMIT $3";

/// Forgets failure notices nobody acknowledged before they expired.
pub(crate) const FAILURES_PURGE: &str = "DELETE FROM direct_failures WHERE expires_at <= $1";
