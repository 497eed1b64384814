//! The data directory: created private (0700), locked by one server at a time, and checked to
//! be writable before the server says it is ready.
//!
//! The lock is an exclusive advisory lock (`flock`) on `mobium.lock`, which also holds the pid
//! of the server that took it, so a second server started on the same directory (whose SQLite
//! writes would interleave with the first one's and whose key is the same) fails at once with a
//! message naming the first. The operating system releases the lock when the process dies, so a
//! crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "mobium.lock";

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// It could not be created.
    #[error("cannot create data directory {}: {source}", path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds the lock.
    #[error(
        "data directory {} is in use by another mobium server{}; stop it first, or give this \
         one its own SC_DATA_DIR",
        path.display(),
        match pid { Some(p) => format!(" (pid {p})"), None => String::new() }
    )]
    InUse {
        /// The directory.
        path: PathBuf,
        /// The other server's pid, if it wrote one.
        pid: Option<u32>,
    },
    /// The directory (or a file in it) cannot be written.
    #[error(
        "data directory {} is not writable: {source}; the server needs to write its database, \
         key and lock file there (check the owner and permissions, and that the filesystem is \
         not mounted read-only)",
        path.display()
    )]
    NotWritable {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The held lock; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Unlock explicitly rather than by closing: a process forked at this moment (which
        // shares the open file until it execs) would otherwise keep the lock a little longer,
        // and an in-process restart would find the directory still in use.
        let _ = self.file.unlock();
    }
}

/// Creates `dir` (mode 0700 on Unix, parents included) if missing, checks that it is writable,
/// and takes its lock.
pub fn open(dir: &Path) -> Result<DataDirLock, DataDirError> {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|source| DataDirError::Create {
            path: dir.to_owned(),
            source,
        })?;
    }
    probe_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let not_writable = |source| DataDirError::NotWritable {
        path: dir.to_owned(),
        source,
    };
    let mut file = options.open(&path).map_err(not_writable)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(DataDirError::InUse {
                path: dir.to_owned(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(not_writable(e)),
    }
    // Writing the pid doubles as the writability check of the directory's filesystem.
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.sync_all())
        .map_err(not_writable)?;
    Ok(DataDirLock { file })
}

/// Creates and removes a file in `dir`: the database needs to create its `-wal` and `-shm`
/// files there, which an existing, writable lock file does not prove.
fn probe_dir(dir: &Path) -> Result<(), DataDirError> {
    let probe = dir.join(".mobium-write-probe");
    File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|source| DataDirError::NotWritable {
            path: dir.to_owned(),
            source,
        })
}

/// Checks that `file`, if it exists, can be opened for writing (a database or key that is
/// read-only, or owned by another user, fails here rather than on the first message).
pub fn check_writable_file(file: &Path) -> Result<(), DataDirError> {
    if !file.exists() {
        return Ok(());
    }
    OpenOptions::new()
        .append(true)
        .open(file)
        .map(drop)
        .map_err(|source| DataDirError::NotWritable {
            path: file.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_second_lock_names_the_first_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let held = open(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let err = open(&dir).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("in use by another mobium server"), "{text}");
        drop(held);
        open(&dir).unwrap();
    }
}
