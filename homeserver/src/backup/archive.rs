//! The backup file's format: a POSIX tar archive that standard tools can list and unpack.
//!
//! Members, in this order (every member mode 0600, owner 0:0, mtime the backup's time):
//!
//! 1. `manifest.json`: [`Manifest`]: the format and its version, the Mobium version that wrote
//!    it, the server name the database is pinned to, when it was made, the database backend,
//!    and every other member's name, size and SHA-256.
//! 2. the members the manifest lists: `server.key` (always) and `mobium.db` (SQLite only).
//! 3. `SHA256SUMS`: the SHA-256 of `manifest.json` and of every member, in `sha256sum` format,
//!    so `tar -xf backup.tar && sha256sum -c SHA256SUMS` checks a backup without Mobium.
//!
//! Reading ([`read`]) trusts nothing in the file: member names are fixed (no paths are taken
//! from the archive, so nothing can be written outside the target), each member is hashed as
//! it is copied and compared with both the manifest and `SHA256SUMS`, and an archive that ends
//! before `SHA256SUMS` is refused as truncated.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::BackupError;

/// `manifest.format` of every Mobium backup.
pub const FORMAT: &str = "mobium-backup";
/// The format version this code writes and reads. Version 1: the members above.
pub const VERSION: u32 = 1;
/// The manifest member's name.
pub const MANIFEST: &str = "manifest.json";
/// The checksum member's name.
pub const SUMS: &str = "SHA256SUMS";
/// The server key member's name (and its name in the data directory).
pub const KEY: &str = "server.key";
/// The SQLite database member's name (and its name in the data directory).
pub const DATABASE: &str = "mobium.db";
/// Largest manifest or checksum member accepted (they are a few hundred bytes).
const MAX_SMALL_MEMBER: u64 = 64 * 1024;

/// Which database the backed-up server used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The database is in the archive (`mobium.db`).
    Sqlite,
    /// The database is not: it is backed up with `pg_dump` (deploy/README.md).
    Postgres,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version, [`VERSION`] for what this code writes.
    pub version: u32,
    /// The `mobium` version that made the backup.
    pub mobium_version: String,
    /// The server name the database is pinned to (`None`: no server had started on it yet).
    pub server_name: Option<String>,
    /// When the backup was made, RFC 3339 UTC (`2026-12-02T05:00:00Z`).
    pub created_at: String,
    /// Where the messages are.
    pub backend: Backend,
    /// Every member but the manifest and `SHA256SUMS`.
    pub members: Vec<Member>,
}

/// One member of the archive as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its name (no directories).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

/// The SHA-256 (hex) and size of the file at `path`.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = BufReader::new(File::open(path)?);
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut HashWriter(&mut hasher, io::sink()))?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// A writer that hashes what passes through it.
struct HashWriter<'a, W>(&'a mut Sha256, W);

impl<W: Write> Write for HashWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.1.write(buf)?;
        self.0.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.1.flush()
    }
}

fn header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Writes the archive to `out`: the manifest, the `files` (member name, path; each must match
/// its manifest entry), then `SHA256SUMS`.
pub fn write(
    out: File,
    manifest: &Manifest,
    files: &[(&str, &Path)],
    mtime: u64,
) -> Result<File, BackupError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| BackupError::Io { what, source }
    };
    let manifest_json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| BackupError::Format(format!("manifest: {e}")))?;
    let mut sums = format!(
        "{}  {MANIFEST}\n",
        hex::encode(Sha256::digest(&manifest_json))
    );
    let mut builder = tar::Builder::new(BufWriter::new(out));
    let mut h = header(manifest_json.len() as u64, mtime);
    builder
        .append_data(&mut h, MANIFEST, manifest_json.as_slice())
        .map_err(io("cannot write the archive"))?;
    for (name, path) in files {
        let listed = manifest
            .members
            .iter()
            .find(|m| m.name == *name)
            .ok_or_else(|| BackupError::Format(format!("{name} is not in the manifest")))?;
        let file = File::open(path).map_err(io(&format!("cannot read {}", path.display())))?;
        let mut h = header(listed.size, mtime);
        // A file that changed since it was hashed would make the tar header's size wrong:
        // `take` keeps the member at the hashed size, and the reader's hash check catches it.
        builder
            .append_data(&mut h, name, BufReader::new(file).take(listed.size))
            .map_err(io("cannot write the archive"))?;
        sums.push_str(&format!("{}  {name}\n", listed.sha256));
    }
    let mut h = header(sums.len() as u64, mtime);
    builder
        .append_data(&mut h, SUMS, sums.as_bytes())
        .map_err(io("cannot write the archive"))?;
    let writer = builder
        .into_inner()
        .map_err(io("cannot write the archive"))?;
    writer.into_inner().map_err(|e| BackupError::Io {
        what: "cannot write the archive".into(),
        source: e.into_error(),
    })
}

/// Reads the archive at `from`, copying each member into `staging/<name>` (created 0600) and
/// checking every checksum. Returns the manifest and the staged members' paths.
pub fn read(
    from: &Path,
    staging: &Path,
) -> Result<(Manifest, Vec<(String, PathBuf)>), BackupError> {
    let file = File::open(from).map_err(|source| BackupError::Io {
        what: format!("cannot read {}", from.display()),
        source,
    })?;
    let corrupt = |why: String| BackupError::Format(format!("{}: {why}", from.display()));
    let bad_tar = |e: io::Error| corrupt(format!("not a readable backup archive ({e})"));
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut entries = archive.entries().map_err(bad_tar)?;

    let mut manifest: Option<(Manifest, String)> = None;
    let mut staged: Vec<(String, PathBuf)> = Vec::new();
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut sums: Option<String> = None;
    for entry in entries.by_ref() {
        let mut entry = entry.map_err(bad_tar)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if sums.is_some() {
            return Err(corrupt(format!("{name} after {SUMS}")));
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(corrupt(format!("{name} is not a regular file")));
        }
        let size = entry.header().size().map_err(bad_tar)?;
        match (&manifest, name.as_str()) {
            (None, MANIFEST) => {
                let bytes = read_small(&mut entry, size).map_err(bad_tar)?;
                let parsed: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| corrupt(format!("{MANIFEST} does not parse ({e})")))?;
                check_manifest(&parsed).map_err(corrupt)?;
                manifest = Some((parsed, hex::encode(Sha256::digest(&bytes))));
            }
            (None, _) => return Err(corrupt(format!("{MANIFEST} is not the first member"))),
            (Some(_), SUMS) => {
                let bytes = read_small(&mut entry, size).map_err(bad_tar)?;
                sums = Some(
                    String::from_utf8(bytes).map_err(|_| corrupt(format!("{SUMS} is not text")))?,
                );
            }
            (Some((m, _)), _) => {
                let listed = m
                    .members
                    .iter()
                    .find(|l| l.name == name)
                    .ok_or_else(|| corrupt(format!("{name} is not in the manifest")))?;
                if hashes.contains_key(&name) {
                    return Err(corrupt(format!("{name} appears twice")));
                }
                if size != listed.size {
                    return Err(corrupt(format!(
                        "{name} is {size} bytes, the manifest says {}",
                        listed.size
                    )));
                }
                let path = staging.join(&listed.name);
                let out = create_private(&path).map_err(|source| BackupError::Io {
                    what: format!("cannot write {}", path.display()),
                    source,
                })?;
                let mut hasher = Sha256::new();
                let mut writer = HashWriter(&mut hasher, BufWriter::new(out));
                io::copy(&mut entry, &mut writer)
                    .and_then(|_| writer.flush())
                    .map_err(|source| BackupError::Io {
                        what: format!(
                            "cannot copy {name} out of the archive to {}",
                            path.display()
                        ),
                        source,
                    })?;
                let got = hex::encode(hasher.finalize());
                if got != listed.sha256 {
                    return Err(BackupError::Checksum { member: name });
                }
                hashes.insert(name.clone(), got);
                staged.push((name, path));
            }
        }
    }
    let (manifest, manifest_hash) = manifest.ok_or_else(|| corrupt("empty archive".into()))?;
    let sums = sums.ok_or_else(|| corrupt(format!("truncated: no {SUMS} at the end")))?;
    for m in &manifest.members {
        if !hashes.contains_key(&m.name) {
            return Err(corrupt(format!("truncated: {} is missing", m.name)));
        }
    }
    hashes.insert(MANIFEST.to_owned(), manifest_hash);
    let listed: BTreeMap<String, String> = sums
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once("  ") {
            Some((hash, name)) => Ok((name.to_owned(), hash.to_owned())),
            None => Err(corrupt(format!("{SUMS} has a malformed line {l:?}"))),
        })
        .collect::<Result<_, _>>()?;
    if listed.len() != hashes.len() {
        return Err(corrupt(format!("{SUMS} does not list exactly the members")));
    }
    for (name, hash) in &hashes {
        if listed.get(name) != Some(hash) {
            return Err(BackupError::Checksum {
                member: name.clone(),
            });
        }
    }
    Ok((manifest, staged))
}

fn read_small(entry: &mut impl Read, size: u64) -> io::Result<Vec<u8>> {
    if size > MAX_SMALL_MEMBER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {size}-byte manifest"),
        ));
    }
    let mut bytes = Vec::new();
    entry.take(MAX_SMALL_MEMBER).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The manifest is one this code can restore: its format and version, and member names that
/// are the known ones (never a path), each once.
fn check_manifest(m: &Manifest) -> Result<(), String> {
    if m.format != FORMAT {
        return Err(format!("not a Mobium backup (format {:?})", m.format));
    }
    if m.version != VERSION {
        return Err(format!(
            "backup format version {} is not supported (this mobium reads version {VERSION})",
            m.version
        ));
    }
    let expected: &[&str] = match m.backend {
        Backend::Sqlite => &[KEY, DATABASE],
        Backend::Postgres => &[KEY],
    };
    let mut names: Vec<&str> = m.members.iter().map(|x| x.name.as_str()).collect();
    names.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    if names != want {
        return Err(format!(
            "the manifest lists {names:?}; a {:?} backup has {want:?}",
            m.backend
        ));
    }
    Ok(())
}

/// Creates `path` (which must not exist) readable by its owner only.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// `secs` since the Unix epoch as RFC 3339 UTC, e.g. `2026-12-02T05:00:00Z`.
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_180_645), "2026-12-02T03:04:05Z");
    }

    fn sample(dir: &Path) -> (PathBuf, Manifest) {
        let key = dir.join("key");
        let db = dir.join("db");
        std::fs::write(&key, b"00\n").unwrap();
        std::fs::write(&db, vec![7u8; 5000]).unwrap();
        let member = |name: &str, path: &Path| {
            let (sha256, size) = hash_file(path).unwrap();
            Member {
                name: name.into(),
                size,
                sha256,
            }
        };
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            mobium_version: "test".into(),
            server_name: Some("a.test".into()),
            created_at: rfc3339(0),
            backend: Backend::Sqlite,
            members: vec![member(KEY, &key), member(DATABASE, &db)],
        };
        let out = dir.join("backup.tar");
        write(
            create_private(&out).unwrap(),
            &manifest,
            &[(KEY, &key), (DATABASE, &db)],
            0,
        )
        .unwrap();
        (out, manifest)
    }

    #[test]
    fn round_trip_and_every_corruption_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (archive, manifest) = sample(dir.path());
        let stage = |name: &str| {
            let s = dir.path().join(name);
            std::fs::create_dir(&s).unwrap();
            s
        };
        let (read_back, staged) = read(&archive, &stage("ok")).unwrap();
        assert_eq!(read_back, manifest);
        assert_eq!(staged.len(), 2);
        assert_eq!(std::fs::read(&staged[1].1).unwrap(), vec![7u8; 5000]);

        let bytes = std::fs::read(&archive).unwrap();
        // Flip one byte inside the database member's data (after the 512-byte headers of
        // the manifest, its data block and the key).
        let db_data = bytes.windows(16).position(|w| w == [7u8; 16]).unwrap();
        let mut flipped = bytes.clone();
        flipped[db_data + 100] ^= 1;
        let bad = dir.path().join("flipped.tar");
        std::fs::write(&bad, &flipped).unwrap();
        let err = read(&bad, &stage("flipped")).unwrap_err();
        assert!(
            matches!(&err, BackupError::Checksum { member } if member == DATABASE),
            "{err}"
        );

        // Cut before SHA256SUMS: truncated.
        let cut = dir.path().join("cut.tar");
        std::fs::write(&cut, &bytes[..db_data + 5000 + 400]).unwrap();
        let err = read(&cut, &stage("cut")).unwrap_err().to_string();
        assert!(
            err.contains("truncated") || err.contains("not a readable"),
            "{err}"
        );

        // Not a tar at all.
        let junk = dir.path().join("junk.bin");
        std::fs::write(&junk, b"hello").unwrap();
        assert!(read(&junk, &stage("junk")).is_err());
    }
}
