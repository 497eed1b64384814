//! Checks made before a server says it is ready, each failing with a message that tells a
//! self-hoster what is wrong and what to do, instead of starting and failing later.
//!
//! - [`pin_server_name`]: the database remembers the name it was created under. User and
//!   channel ids contain the server name, so a database served under another name (a changed
//!   `SC_SERVER_NAME`, or a changed port under the default `localhost:<port>`) would silently
//!   break every client and every federated peer.
//! - [`pin_server_key`] (managed servers): every instance must serve the key the first one
//!   stored, or peers would see two keys for one name.
//! - [`check_database_writable`]: a read-only database (file, directory or PostgreSQL
//!   transaction mode) would let the server start, say it is ready and then fail every write
//!   with `internal error`.

use mobium_spec::{PublicKey, ServerName};

use crate::config::Config;
use crate::domain::now_ms;
use crate::storage::{META_HEALTH_PROBE, META_SERVER_KEY, META_SERVER_NAME, Store, StoreError};

/// Why start-up was refused.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The database was created under another server name.
    #[error(
        "this database belongs to the server named {stored}, but this server would be named \
         {wanted} ({why}). User and channel ids contain the server name, so serving this data \
         under another name would break every client and federated peer. To keep the data, set \
         SC_SERVER_NAME={stored} (the port you listen on may still change; users then run \
         `mobium client server move OLD_URL NEW_URL`). A server with a new name needs a new \
         data directory (SC_DATA_DIR) or database (SC_DATABASE_URL)"
    )]
    NameChanged {
        /// The name in the database.
        stored: String,
        /// The name this start would use.
        wanted: ServerName,
        /// Where `wanted` came from.
        why: &'static str,
    },
    /// A managed instance was given another key than the one its cluster serves.
    #[error(
        "this managed server's database was first served with server key {stored}, but this \
         instance's key is {wanted}. Every instance must serve one key: give this instance the \
         same key file as the others (SC_SERVER_KEY_FILE)"
    )]
    KeyChanged {
        /// The key in the database.
        stored: String,
        /// This instance's key.
        wanted: PublicKey,
    },
    /// A write to the database failed.
    #[error(
        "the database {database} is not writable: {source}; check its owner and permissions, \
         the free disk space, and that it is not mounted or configured read-only"
    )]
    NotWritable {
        /// The database (URL without password).
        database: String,
        /// Why.
        source: StoreError,
    },
    /// The pinned name could not be read or written.
    #[error("cannot read the server name stored in the database: {0}")]
    Store(#[from] StoreError),
}

/// Stores `name` in a new database, or checks that an existing one was created under it.
pub async fn pin_server_name(
    store: &dyn Store,
    name: &ServerName,
    config: &Config,
) -> Result<(), PreflightError> {
    let stored = store
        .meta_insert_or_get(META_SERVER_NAME, &name.to_string())
        .await?;
    if stored == name.to_string() {
        return Ok(());
    }
    Err(PreflightError::NameChanged {
        stored,
        wanted: name.clone(),
        why: if config.server_name.is_some() {
            "from SC_SERVER_NAME"
        } else {
            "SC_SERVER_NAME is unset, so the name is localhost:<port> and follows the port"
        },
    })
}

/// Stores `key` in a new managed server's database, or checks that the cluster serves it.
pub async fn pin_server_key(store: &dyn Store, key: &PublicKey) -> Result<(), PreflightError> {
    let stored = store
        .meta_insert_or_get(META_SERVER_KEY, &key.to_string())
        .await?;
    if stored == key.to_string() {
        return Ok(());
    }
    Err(PreflightError::KeyChanged {
        stored,
        wanted: *key,
    })
}

/// Writes the health probe row once, so that a read-only database stops start-up.
pub async fn check_database_writable(
    store: &dyn Store,
    database: &str,
) -> Result<(), PreflightError> {
    store
        .meta_set(META_HEALTH_PROBE, &now_ms().to_string())
        .await
        .map_err(|source| PreflightError::NotWritable {
            database: database.to_owned(),
            source,
        })
}
