//! Ed25519 keys and signatures (spec `identity.md` §Keys, `encoding.md` §Signatures).
//!
//! A user *is* an Ed25519 public key, and every server has one too, so one [`PublicKey`] type
//! serves both. Its canonical text form is 64 lowercase hex digits; on the wire it travels as that
//! string so that logs, ids and frames all show the same form. A [`Signature`] travels as 64 raw
//! bytes (MessagePack `bin`). Verification is *strict* (RFC 8032 with the checks of
//! `verify_strict`), so signature malleability and small-order keys are rejected.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::IdError;
use crate::signing::Domain;

/// Length of the canonical text form of a public key.
pub const PUBLIC_KEY_HEX_LEN: usize = 64;

/// An Ed25519 public key: a user's identity or a server's signing key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Validates 32 raw bytes as an Ed25519 public key (a curve point not of small order).
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, IdError> {
        let vk = VerifyingKey::from_bytes(&bytes).map_err(|_| IdError::InvalidKey)?;
        if vk.is_weak() {
            return Err(IdError::InvalidKey);
        }
        Ok(PublicKey(bytes))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Verifies `signature` over `domain || 0x00 || message` (see [`Domain`]).
    pub fn verify(&self, domain: Domain, message: &[u8], signature: &Signature) -> bool {
        let Ok(vk) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        vk.verify_strict(&domain.signing_input(message), &sig)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() != PUBLIC_KEY_HEX_LEN {
            return Err(IdError::WrongLength {
                expected: PUBLIC_KEY_HEX_LEN,
                got: s.chars().count(),
            });
        }
        let bytes = decode_lower_hex::<32>(s)?;
        PublicKey::from_bytes(bytes)
    }
}

impl TryFrom<&str> for PublicKey {
    type Error = IdError;
    fn try_from(s: &str) -> Result<Self, IdError> {
        s.parse()
    }
}

/// Decodes exactly `N` bytes of lowercase hex; uppercase is rejected as non-canonical.
pub(crate) fn decode_lower_hex<const N: usize>(s: &str) -> Result<[u8; N], IdError> {
    if s.len() != N * 2 {
        return Err(IdError::WrongLength {
            expected: N * 2,
            got: s.chars().count(),
        });
    }
    if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(IdError::NotLowercaseHex);
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| IdError::NotLowercaseHex)?;
    Ok(out)
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A 64-byte Ed25519 signature, MessagePack `bin 8` of length 64 on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// Lowercase hex, for logs and test vectors.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 128 lowercase hex digits.
    pub fn from_hex(s: &str) -> Result<Self, IdError> {
        decode_lower_hex::<64>(s).map(Signature)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let buf: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        let arr: [u8; 64] = buf
            .as_slice()
            .try_into()
            .map_err(|_| serde::de::Error::invalid_length(buf.len(), &"64 bytes"))?;
        Ok(Signature(arr))
    }
}

/// An Ed25519 signing key pair. Never serialized onto the wire; [`Keypair::secret_bytes`] exists
/// for storing a server key or a test key on disk.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// Generates a fresh key pair from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        // The OS random source failing is unrecoverable for a cryptographic program.
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut seed).expect("operating system random source unavailable");
        Self::from_seed(seed)
    }

    /// Rebuilds a key pair from its 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The 32-byte secret seed (keep it secret; file mode 0600).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs `domain || 0x00 || message`.
    pub fn sign(&self, domain: Domain, message: &[u8]) -> Signature {
        Signature(self.signing.sign(&domain.signing_input(message)).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public())
    }
}

/// Anything that can sign for an Ed25519 identity: a plain [`Keypair`], or an E2EE account whose
/// Ed25519 identity key is the user's key (vodozemac's `Account::sign`).
pub trait Signer {
    /// The public key signatures verify with.
    fn public_key(&self) -> PublicKey;
    /// Signs `domain || 0x00 || message`.
    fn sign_domain(&self, domain: Domain, message: &[u8]) -> Signature;
}

impl Signer for Keypair {
    fn public_key(&self) -> PublicKey {
        self.public()
    }

    fn sign_domain(&self, domain: Domain, message: &[u8]) -> Signature {
        self.sign(domain, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_is_canonical_lowercase_hex() {
        let kp = Keypair::from_seed([7; 32]);
        let text = kp.public().to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<PublicKey>(), Ok(kp.public()));
        assert_eq!(
            text.to_uppercase().parse::<PublicKey>(),
            Err(IdError::NotLowercaseHex)
        );
        assert!(matches!(
            text[..62].parse::<PublicKey>(),
            Err(IdError::WrongLength { .. })
        ));
        // The identity point is of small order and must be refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(identity), Err(IdError::InvalidKey));
    }

    #[test]
    fn signatures_are_bound_to_their_domain() {
        let kp = Keypair::from_seed([9; 32]);
        let sig = kp.sign(Domain::ClientAuth, b"hello");
        assert!(kp.public().verify(Domain::ClientAuth, b"hello", &sig));
        assert!(!kp.public().verify(Domain::Prekey, b"hello", &sig));
        assert!(!kp.public().verify(Domain::ClientAuth, b"hellO", &sig));
    }
}
