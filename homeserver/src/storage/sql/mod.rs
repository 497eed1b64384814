//! The SQL of both backends, written once, one module per area.
//!
//! Nearly every statement reads the same on SQLite and PostgreSQL once its placeholders are
//! written `$N` (sqlx's SQLite driver accepts them, a repeated `$1` included). So this directory
//! is not a module of `storage` by itself: each backend includes it (`#[path = "../sql/mod.rs"]
//! mod sql;`) and it is compiled once against each backend's concrete sqlx types. The code stays
//! plain sqlx calls on a concrete pool (no generic bounds over `sqlx::Database`, which would need
//! a bound per bound type and a trait for `rows_affected`), and a statement that does not
//! type-check for one backend fails in that backend's build.
//!
//! What really differs stays in the backend module (`sqlite/mod.rs`, `postgres/mod.rs`), which
//! provides, under the same names:
//! - `Pool`, `Connection`, `Executor`: its sqlx pool, connection and executor types; `Backend`
//!   and `NAME`: the store type [`Store`](crate::storage::Store) is implemented for here
//!   (`store.rs`), and its name;
//! - `begin_write`: how a write transaction opens (`BEGIN IMMEDIATE` on SQLite, so the write
//!   lock is taken up front);
//! - `direct_enqueue`: one capped enqueue (one statement on SQLite, a transaction holding the
//!   recipient's advisory lock on PostgreSQL);
//! - `lock_claims`, `lock_queue`, `lock_outbox`: the locks PostgreSQL takes under `READ
//!   COMMITTED` where SQLite's single writer needs none;
//! - the statements whose text differs: `ONE_TIME_TAKE` (`FOR UPDATE SKIP LOCKED`), and
//!   `DIRECT_ACK`, `FAILURES_ACK`, `OUTBOX_DELETE`, which take a list of ids as `IdList` (made by
//!   `id_list`): an array on PostgreSQL, a JSON array on SQLite, which cannot bind arrays.
//!
//! Rows are decoded, and values encoded, by the shared [`codec`](crate::storage::codec).

mod channels;
mod direct;
mod federation;
mod messages;
mod meta;
mod roles;
mod store;
mod txns;
mod users;

pub(super) use direct::insert_capped;

use super::{
    Backend, Connection, DIRECT_ACK, Executor, FAILURES_ACK, NAME, ONE_TIME_TAKE, OUTBOX_DELETE,
    Pool, begin_write, direct_enqueue, id_list, lock_claims, lock_outbox, lock_queue,
};
