//! `mobium backup` and `mobium restore`: an online, consistent copy of a server's state in one
//! file, and its restoration into an empty data directory.
//!
//! What a server's state is: its **key** (`server.key`, its federation identity) and its
//! **database**. With SQLite the database is copied with `VACUUM INTO` while the server keeps
//! running (one read transaction: the copy is the database as of one commit; every message
//! acknowledged before the backup started is in it). With PostgreSQL the database is not
//! copied: `pg_dump` does that (deploy/README.md), and the file holds the key and the manifest.
//! The file's layout is in [`archive`]. It holds the server's secret key: it is created 0600,
//! and should be stored like the key itself.
//!
//! Restoring never mixes old and new: it refuses a data directory that is not empty, copies
//! every member into a staging directory inside it while checking its checksums (and, for
//! SQLite, runs `PRAGMA integrity_check`), and only then moves them into place.

pub mod archive;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use archive::{Backend, DATABASE, KEY, Manifest, Member};

use crate::config::Config;
use crate::storage::StoreError;
use crate::storage::ops::{self, Db};

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// Why.
        source: io::Error,
    },
    /// The database could not be read.
    #[error("database: {0}")]
    Database(#[from] StoreError),
    /// The file is not a backup this version can restore, or is damaged or truncated.
    #[error("{0}")]
    Format(String),
    /// A member's contents do not match its checksum.
    #[error(
        "{member} does not match its SHA-256 checksum: the backup is damaged; nothing was restored"
    )]
    Checksum {
        /// The member.
        member: String,
    },
    /// The target data directory already holds files.
    #[error("{} is not empty: restore into a new or empty data directory", .0.display())]
    NotEmpty(PathBuf),
    /// The backed-up database failed SQLite's integrity check.
    #[error(
        "the database in the backup fails SQLite's integrity check ({0}); nothing was restored"
    )]
    Integrity(String),
    /// There is nothing to back up.
    #[error("{0}")]
    Missing(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// The server key's path for `config` (`SC_SERVER_KEY_FILE`, or `server.key` in the data
/// directory). Restore always writes `server.key` into the data directory it restores.
pub fn key_path(config: &Config) -> PathBuf {
    config.server_key_path()
}

/// `dir/.name.suffix`: a hidden file beside `path`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    path.with_file_name(format!(".{name}.{suffix}"))
}

/// Removes `path` if it exists.
fn remove_if_there(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io_err(format!("cannot remove {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Writes a backup of the server configured by `config` to `to` (replaced atomically if it
/// exists). The server may be running.
pub async fn create(config: &Config, to: &Path) -> Result<Manifest, BackupError> {
    let key = key_path(config);
    if !key.is_file() {
        return Err(BackupError::Missing(format!(
            "no server key at {}: has a server run with this configuration (SC_DATA_DIR, \
             SC_SERVER_KEY_FILE)?",
            key.display()
        )));
    }
    let url = config.database_url();
    let backend = match ops::is_postgres(&url) {
        true => Backend::Postgres,
        false => Backend::Sqlite,
    };
    let partial = beside(to, "partial");
    let db_copy = beside(to, "db.partial");
    remove_if_there(&partial)?;
    remove_if_there(&db_copy)?;
    let result = write_backup(config, &url, backend, &key, to, &partial, &db_copy).await;
    let _ = std::fs::remove_file(&db_copy);
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

async fn write_backup(
    config: &Config,
    url: &str,
    backend: Backend,
    key: &Path,
    to: &Path,
    partial: &Path,
    db_copy: &Path,
) -> Result<Manifest, BackupError> {
    let server_name = match backend {
        Backend::Sqlite => {
            let db_file = config.data_dir.join(DATABASE);
            if config.database_url.is_none() && !db_file.is_file() {
                return Err(BackupError::Missing(format!(
                    "no database at {}: has a server run with this configuration?",
                    db_file.display()
                )));
            }
            archive::create_private(db_copy)
                .map_err(io_err(format!("cannot create {}", db_copy.display())))?;
            ops::sqlite_snapshot(Db::Url(url), db_copy).await?;
            ops::pinned_server_name(Db::SqliteFile(db_copy)).await?
        }
        Backend::Postgres => ops::pinned_server_name(Db::Url(url)).await?,
    };
    let mut files: Vec<(&str, &Path)> = vec![(KEY, key)];
    if backend == Backend::Sqlite {
        files.push((DATABASE, db_copy));
    }
    let mut members = Vec::new();
    for (name, path) in &files {
        let (sha256, size) =
            archive::hash_file(path).map_err(io_err(format!("cannot read {}", path.display())))?;
        members.push(Member {
            name: (*name).to_owned(),
            size,
            sha256,
        });
    }
    let now = crate::now_ms() / 1000;
    let manifest = Manifest {
        format: archive::FORMAT.into(),
        version: archive::VERSION,
        mobium_version: env!("CARGO_PKG_VERSION").into(),
        server_name,
        created_at: archive::rfc3339(now),
        backend,
        members,
    };
    let out = archive::create_private(partial)
        .map_err(io_err(format!("cannot create {}", partial.display())))?;
    let out = archive::write(out, &manifest, &files, now)?;
    out.sync_all()
        .map_err(io_err(format!("cannot write {}", partial.display())))?;
    drop(out);
    std::fs::rename(partial, to).map_err(io_err(format!("cannot create {}", to.display())))?;
    sync_dir(to.parent());
    Ok(manifest)
}

/// Makes a rename durable (best effort: not every platform can open a directory).
fn sync_dir(dir: Option<&Path>) {
    let dir = match dir {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Restores the backup `from` into `data_dir`, which must be empty or not exist (it is then
/// created 0700). Returns the backup's manifest.
pub async fn restore(from: &Path, data_dir: &Path) -> Result<Manifest, BackupError> {
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(data_dir.to_owned()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_private_dir(data_dir)?,
        Err(e) => return Err(io_err(format!("cannot read {}", data_dir.display()))(e)),
    }
    let staging = data_dir.join(".restore");
    create_private_dir(&staging)?;
    let result = restore_into(from, data_dir, &staging).await;
    let _ = std::fs::remove_dir_all(&staging);
    result
}

async fn restore_into(
    from: &Path,
    data_dir: &Path,
    staging: &Path,
) -> Result<Manifest, BackupError> {
    let (manifest, staged) = archive::read(from, staging)?;
    if manifest.backend == Backend::Sqlite {
        let db = staging.join(DATABASE);
        ops::sqlite_integrity(Db::SqliteFile(&db))
            .await?
            .map_err(BackupError::Integrity)?;
    }
    for (name, path) in &staged {
        let target = data_dir.join(name);
        std::fs::rename(path, &target)
            .map_err(io_err(format!("cannot create {}", target.display())))?;
    }
    sync_dir(Some(data_dir));
    Ok(manifest)
}

fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(io_err(format!("cannot create {}", dir.display())))
}
