//! A client profile on disk: one directory holding the client's state ([`super::e2ee`]'s
//! account, sessions, contacts and servers) in `profile.json`, encrypted at rest.
//!
//! - **With a passphrase:** Argon2id (parameters and a random 16-byte salt stored in the file)
//!   derives 64 bytes: the first 32 are the XChaCha20-Poly1305 key, the last 32 a check value
//!   kept in the file, so that a wrong passphrase ([`ProfileError::Locked`]) is told apart
//!   from a damaged file ([`ProfileError::Corrupt`]). Every write uses a fresh random nonce; the
//!   format name and version are authenticated as associated data.
//! - **Without a passphrase:** the state is stored unencrypted; the file is created with mode
//!   0600 (the directory 0700) and callers should warn the user.
//!
//! Writes are atomic (a temporary file, `fsync`, `rename`), so a crash leaves the old or the new
//! state, never a mix. A lock file keeps two processes from using one profile at once: their
//! Olm ratchets would diverge.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// The state file inside a profile directory.
pub const STATE_FILE: &str = "profile.json";
const LOCK_FILE: &str = "lock";
const FORMAT: &str = "mobium-profile";
const VERSION: u32 = 1;
const AAD: &[u8] = b"mobium-profile/v1";

/// What can go wrong with a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// No profile in this directory.
    #[error("no profile in {0} (create one with `mobium client identity create`)")]
    NotFound(PathBuf),
    /// A profile already exists there.
    #[error("a profile already exists in {0}")]
    AlreadyExists(PathBuf),
    /// The profile is encrypted and the passphrase is missing or wrong.
    #[error("profile is locked: {0}")]
    Locked(String),
    /// The profile file is damaged or not a profile.
    #[error("profile is corrupt: {0}")]
    Corrupt(String),
    /// Another process uses the profile.
    #[error("profile {0} is in use by another process")]
    InUse(PathBuf),
    /// The file system refused.
    #[error("profile I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// The argon2 crate's recommended defaults (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        KdfParams {
            m_cost: Params::DEFAULT_M_COST,
            t_cost: Params::DEFAULT_T_COST,
            p_cost: Params::DEFAULT_P_COST,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Encryption {
    kdf: String,
    params: KdfParams,
    salt: String,
    check: String,
    cipher: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileFormat {
    format: String,
    version: u32,
    encryption: Option<Encryption>,
    #[serde(default)]
    nonce: Option<String>,
    data: String,
}

struct Key {
    key: [u8; 32],
    header: Encryption,
}

/// An open, locked profile directory.
pub struct Profile {
    dir: PathBuf,
    key: Option<Key>,
    _lock: File,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("dir", &self.dir)
            .field("encrypted", &self.key.is_some())
            .finish()
    }
}

impl Profile {
    /// Creates a profile in `dir` (created if missing) holding `state`, encrypted with
    /// `passphrase` if one is given.
    pub fn create(
        dir: &Path,
        passphrase: Option<&str>,
        params: KdfParams,
        state: &[u8],
    ) -> Result<Profile, ProfileError> {
        create_private_dir(dir)?;
        let lock = lock(dir)?;
        if dir.join(STATE_FILE).exists() {
            return Err(ProfileError::AlreadyExists(dir.to_owned()));
        }
        let key = match passphrase {
            Some(p) => {
                let mut salt = [0u8; 16];
                getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
                let (key, check) = derive(p, &salt, params)?;
                Some(Key {
                    key,
                    header: Encryption {
                        kdf: "argon2id".into(),
                        params,
                        salt: vodozemac::base64_encode(salt),
                        check: vodozemac::base64_encode(check),
                        cipher: "xchacha20poly1305".into(),
                    },
                })
            }
            None => None,
        };
        let profile = Profile {
            dir: dir.to_owned(),
            key,
            _lock: lock,
        };
        profile.write(state)?;
        Ok(profile)
    }

    /// Opens the profile in `dir`. An encrypted profile needs its passphrase.
    pub fn open(dir: &Path, passphrase: Option<&str>) -> Result<Profile, ProfileError> {
        let path = dir.join(STATE_FILE);
        if !path.exists() {
            return Err(ProfileError::NotFound(dir.to_owned()));
        }
        let lock = lock(dir)?;
        let file = read_file(&path)?;
        let key = match (&file.encryption, passphrase) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ProfileError::Locked(
                    "it is encrypted; give the passphrase (MOBIUM_PASSPHRASE or --passphrase-file)"
                        .into(),
                ));
            }
            (Some(enc), Some(p)) => {
                if enc.kdf != "argon2id" || enc.cipher != "xchacha20poly1305" {
                    return Err(ProfileError::Corrupt(format!(
                        "unknown encryption {}/{}",
                        enc.kdf, enc.cipher
                    )));
                }
                let salt = b64(&enc.salt)?;
                let (key, check) = derive(p, &salt, enc.params)?;
                if b64(&enc.check)? != check {
                    return Err(ProfileError::Locked("wrong passphrase".into()));
                }
                Some(Key {
                    key,
                    header: enc.clone(),
                })
            }
        };
        Ok(Profile {
            dir: dir.to_owned(),
            key,
            _lock: lock,
        })
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the state is encrypted at rest.
    pub fn is_encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// Reads and decrypts the state.
    pub fn read(&self) -> Result<Vec<u8>, ProfileError> {
        let file = read_file(&self.dir.join(STATE_FILE))?;
        let data = b64(&file.data)?;
        match (&self.key, &file.encryption) {
            (None, None) => Ok(data),
            (Some(k), Some(_)) => {
                let nonce: [u8; 24] = b64(file.nonce.as_deref().unwrap_or_default())?
                    .try_into()
                    .map_err(|_| ProfileError::Corrupt("bad nonce".into()))?;
                XChaCha20Poly1305::new(&k.key.into())
                    .decrypt(
                        &XNonce::from(nonce),
                        Payload {
                            msg: &data,
                            aad: AAD,
                        },
                    )
                    .map_err(|_| ProfileError::Corrupt("the state does not authenticate".into()))
            }
            _ => Err(ProfileError::Corrupt(
                "the file's encryption changed while it was open".into(),
            )),
        }
    }

    /// Encrypts and writes the state atomically.
    pub fn write(&self, state: &[u8]) -> Result<(), ProfileError> {
        let file = match &self.key {
            None => FileFormat {
                format: FORMAT.into(),
                version: VERSION,
                encryption: None,
                nonce: None,
                data: vodozemac::base64_encode(state),
            },
            Some(k) => {
                let mut nonce = [0u8; 24];
                getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
                let ct = XChaCha20Poly1305::new(&k.key.into())
                    .encrypt(
                        &XNonce::from(nonce),
                        Payload {
                            msg: state,
                            aad: AAD,
                        },
                    )
                    .map_err(|_| std::io::Error::other("encryption failed"))?;
                FileFormat {
                    format: FORMAT.into(),
                    version: VERSION,
                    encryption: Some(k.header.clone()),
                    nonce: Some(vodozemac::base64_encode(nonce)),
                    data: vodozemac::base64_encode(ct),
                }
            }
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        // A leftover from a crash may carry other permissions: start afresh.
        let _ = std::fs::remove_file(&tmp);
        {
            let mut f = private_file(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(STATE_FILE))?;
        // Make the rename itself durable; not every platform lets a directory be synced.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn derive(
    passphrase: &str,
    salt: &[u8],
    p: KdfParams,
) -> Result<([u8; 32], [u8; 32]), ProfileError> {
    let params = Params::new(p.m_cost, p.t_cost, p.p_cost, Some(64))
        .map_err(|e| ProfileError::Corrupt(format!("argon2 parameters: {e}")))?;
    let mut out = [0u8; 64];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut out)
        .map_err(|e| ProfileError::Corrupt(format!("argon2: {e}")))?;
    let mut key = [0u8; 32];
    let mut check = [0u8; 32];
    key.copy_from_slice(&out[..32]);
    check.copy_from_slice(&out[32..]);
    Ok((key, check))
}

fn b64(s: &str) -> Result<Vec<u8>, ProfileError> {
    vodozemac::base64_decode(s).map_err(|_| ProfileError::Corrupt("bad base64".into()))
}

fn read_file(path: &Path) -> Result<FileFormat, ProfileError> {
    let bytes = std::fs::read(path)?;
    decode_file(&bytes).map_err(|e| match e {
        ProfileError::Corrupt(why) => ProfileError::Corrupt(format!("{}: {why}", path.display())),
        other => other,
    })
}

/// Parses a state file's bytes and checks its header.
fn decode_file(bytes: &[u8]) -> Result<FileFormat, ProfileError> {
    let file: FileFormat =
        serde_json::from_slice(bytes).map_err(|e| ProfileError::Corrupt(e.to_string()))?;
    if file.format != FORMAT || file.version != VERSION {
        return Err(ProfileError::Corrupt(format!(
            "not a version {VERSION} Mobium profile"
        )));
    }
    Ok(file)
}

/// Checks, without a passphrase, that `bytes` is a state file this build can open: the header,
/// and every base64 field. Returns whether the file is encrypted. This is everything
/// [`Profile::open`] and [`Profile::read`] do with the file before the key derivation; the fuzz
/// target `profile` drives it.
pub fn check_file(bytes: &[u8]) -> Result<bool, ProfileError> {
    let file = decode_file(bytes)?;
    b64(&file.data)?;
    match &file.encryption {
        None => Ok(false),
        Some(enc) => {
            b64(&enc.salt)?;
            b64(&enc.check)?;
            b64(file.nonce.as_deref().unwrap_or_default())?;
            Ok(true)
        }
    }
}

fn lock(dir: &Path) -> Result<File, ProfileError> {
    let f = private_file_keep(&dir.join(LOCK_FILE))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(ProfileError::InUse(dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Creates or truncates a file readable only by its owner.
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// Opens (creating if needed) a file readable only by its owner, keeping its content.
fn private_file_keep(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: these tests check the format, not the cost.
    const FAST: KdfParams = KdfParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    };

    #[test]
    fn encrypted_profile_round_trips_and_hides_the_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Profile::create(dir.path(), Some("correct horse"), FAST, b"secret state 42")
            .expect("create");
        assert!(p.is_encrypted());
        p.write(b"secret state 43").expect("write");
        drop(p);
        let raw = std::fs::read(dir.path().join(STATE_FILE)).expect("read");
        assert!(!String::from_utf8_lossy(&raw).contains("secret state"));
        let p = Profile::open(dir.path(), Some("correct horse")).expect("open");
        assert_eq!(p.read().expect("read"), b"secret state 43");
    }

    #[test]
    fn wrong_or_missing_passphrase_is_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Profile::create(dir.path(), Some("right"), FAST, b"x").expect("create"));
        assert!(matches!(
            Profile::open(dir.path(), Some("wrong")),
            Err(ProfileError::Locked(m)) if m.contains("wrong passphrase")
        ));
        assert!(matches!(
            Profile::open(dir.path(), None),
            Err(ProfileError::Locked(_))
        ));
    }

    #[test]
    fn damaged_files_are_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Profile::create(dir.path(), Some("pw"), FAST, b"state").expect("create"));
        let path = dir.path().join(STATE_FILE);
        // Flip one byte of the ciphertext: the passphrase is right, the data does not verify.
        let text = std::fs::read_to_string(&path).expect("read");
        let mut file: FileFormat = serde_json::from_str(&text).expect("json");
        let mut data = b64(&file.data).expect("b64");
        data[0] ^= 1;
        file.data = vodozemac::base64_encode(&data);
        std::fs::write(&path, serde_json::to_vec(&file).expect("json")).expect("write");
        let p = Profile::open(dir.path(), Some("pw")).expect("passphrase still checks");
        assert!(matches!(p.read(), Err(ProfileError::Corrupt(_))));
        drop(p);
        // Truncated JSON.
        std::fs::write(&path, &text.as_bytes()[..text.len() / 2]).expect("write");
        assert!(matches!(
            Profile::open(dir.path(), Some("pw")),
            Err(ProfileError::Corrupt(_))
        ));
        // Missing profile.
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Profile::open(empty.path(), None),
            Err(ProfileError::NotFound(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn unencrypted_profile_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("p");
        let p = Profile::create(&sub, None, FAST, b"plain").expect("create");
        assert!(!p.is_encrypted());
        p.write(b"plain 2").expect("write");
        let mode = std::fs::metadata(sub.join(STATE_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(&sub).expect("meta").permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        drop(p);
        assert_eq!(
            Profile::open(&sub, None)
                .expect("open")
                .read()
                .expect("read"),
            b"plain 2"
        );
    }

    #[test]
    fn a_profile_is_used_by_one_process_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _p = Profile::create(dir.path(), None, FAST, b"x").expect("create");
        assert!(matches!(
            Profile::open(dir.path(), None),
            Err(ProfileError::InUse(_))
        ));
    }
}
