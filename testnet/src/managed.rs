//! The managed peer of a testnet (`testnet up --managed N`): one server, `cloud.mobium.test`,
//! run as N `mobium serve` instances (`SC_SERVER_TYPE=managed`) that share one PostgreSQL
//! database, one key file and the NATS server, each with its own client port, federation socket
//! and relay. DNS lists one SRV target per instance (all with the one key), so the community
//! nodes federate with the cluster as with any peer.
//!
//! The database is created by `up` on the PostgreSQL server at `TESTNET_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, the machine's own) as
//! `mobium_testnet_<random>`, and dropped by `down --wipe`; NATS is `TESTNET_NATS_URL` (default
//! `nats://127.0.0.1:4222`), checked before anything starts.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sqlx::Connection;

/// The managed peer's name inside the zone's domain.
pub const NAME: &str = "cloud";

/// The PostgreSQL server the testnet creates the cluster's database on.
pub const POSTGRES_ENV: &str = "TESTNET_POSTGRES_URL";
/// The NATS server the instances use.
pub const NATS_ENV: &str = "TESTNET_NATS_URL";

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_NATS: &str = "nats://127.0.0.1:4222";

/// What makes a node an instance of the managed peer (`testnet.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedInstance {
    /// 1-based: this is `cloud<instance>`.
    pub instance: usize,
    /// The shared database.
    pub database_url: String,
    /// The PostgreSQL server's administrative URL the database was created through.
    pub admin_url: String,
    /// The NATS server.
    pub nats_url: String,
    /// The shared server key file.
    pub key_file: PathBuf,
}

/// Where the managed peer's shared files live: `<dir>/cloud` (its key).
pub fn shared_dir(dir: &Path) -> PathBuf {
    dir.join(NAME)
}

/// The data directory of instance `k`: `<dir>/cloud<k>`.
pub fn data_dir(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("{NAME}{k}"))
}

/// The PostgreSQL and NATS servers to use, each checked reachable.
pub async fn services() -> anyhow::Result<(String, String)> {
    let admin = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
    let nats = std::env::var(NATS_ENV).unwrap_or_else(|_| DEFAULT_NATS.to_owned());
    let hostport = nats
        .strip_prefix("nats://")
        .with_context(|| format!("{NATS_ENV}={nats}: expected nats://host:port"))?
        .to_owned();
    if tokio::net::TcpStream::connect(&hostport).await.is_err() {
        bail!(
            "the managed peer needs NATS, and nothing answers at {nats} (start nats-server, or set {NATS_ENV})"
        );
    }
    Ok((admin, nats))
}

/// Creates a fresh database for the cluster; returns its URL.
pub async fn create_database(admin: &str) -> anyhow::Result<String> {
    let mut token = [0u8; 6];
    getrandom::fill(&mut token).context("no randomness")?;
    let name = format!("mobium_testnet_{}", hex::encode(token));
    let mut conn = sqlx::PgConnection::connect(admin).await.with_context(|| {
        format!("the managed peer needs PostgreSQL, and {admin} refused (set {POSTGRES_ENV})")
    })?;
    // The name is made here of hex digits: safe to splice in (identifiers cannot be bound).
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .with_context(|| format!("cannot create database {name}"))?;
    let _ = conn.close().await;
    Ok(with_database(admin, &name))
}

/// Drops the cluster's database (`down --wipe`).
pub async fn drop_database(m: &ManagedInstance) -> anyhow::Result<()> {
    let Some(name) = m.database_url.rsplit('/').next() else {
        return Ok(());
    };
    if !name.starts_with("mobium_testnet_")
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        bail!("not dropping {name}: not a testnet database");
    }
    let mut conn = sqlx::PgConnection::connect(&m.admin_url)
        .await
        .with_context(|| format!("cannot reach {} to drop {name}", m.admin_url))?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .with_context(|| format!("cannot drop database {name}"))?;
    Ok(())
}

/// `url` with its database replaced by `db` (any query string dropped).
fn with_database(url: &str, db: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    match base[scheme_end..].find('/') {
        Some(i) => format!("{}/{db}", &base[..scheme_end + i]),
        None => format!("{base}/{db}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_replaces_the_admin_one() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x"
        );
    }
}
