//! Prekeys: `keys_upload`, `keys_claim`, `keys_count`, the `keys_low` event (spec `client/keys.md`).
//!
//! All keys here are Curve25519 public keys of the user's vodozemac Olm account, each signed by
//! the user's Ed25519 identity key under [`Domain::Prekey`](crate::Domain::Prekey) over the
//! canonical bytes of [`PrekeyStatement`], so a claimer can check that the server handed out
//! keys the user really published.

use serde::{Deserialize, Serialize};

use crate::{PublicKey, Signature, Signer, UserId};

/// What a prekey is for.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrekeyKind {
    /// The Olm account's long-term Curve25519 identity key.
    Identity,
    /// A medium-term signed prekey (published alongside; optional in the Olm flow).
    Signed,
    /// A one-time key: handed out to exactly one claimer.
    OneTime,
    /// The fallback key: handed out (repeatedly) when no one-time key is left.
    Fallback,
}

impl PrekeyKind {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            PrekeyKind::Identity => "identity",
            PrekeyKind::Signed => "signed",
            PrekeyKind::OneTime => "one_time",
            PrekeyKind::Fallback => "fallback",
        }
    }
}

/// A signed Curve25519 public key.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prekey {
    /// Client-chosen id, unique per user and kind (at most 64 bytes).
    pub key_id: String,
    /// The 32-byte Curve25519 public key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Signature over the [`PrekeyStatement`].
    pub signature: Signature,
}

/// The signed statement about one prekey; fields in ascending key order (canonical).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrekeyStatement<'a> {
    /// The Curve25519 key.
    #[serde(with = "serde_bytes")]
    pub key: &'a [u8],
    /// Its id.
    pub key_id: &'a str,
    /// Its kind.
    pub kind: PrekeyKind,
    /// The owner's identity key.
    pub user: PublicKey,
}

impl Prekey {
    /// Makes a signed prekey.
    pub fn sign(
        owner: &(impl Signer + ?Sized),
        kind: PrekeyKind,
        key_id: &str,
        key: &[u8],
    ) -> Prekey {
        let statement = PrekeyStatement {
            key,
            key_id,
            kind,
            user: owner.public_key(),
        };
        Prekey {
            key_id: key_id.to_owned(),
            key: key.to_vec(),
            signature: owner.sign_domain(
                crate::Domain::Prekey,
                &crate::signing::canonical_bytes(&statement),
            ),
        }
    }

    /// Checks the signature for `owner` and `kind`.
    pub fn verify(&self, owner: &PublicKey, kind: PrekeyKind) -> bool {
        let statement = PrekeyStatement {
            key: &self.key,
            key_id: &self.key_id,
            kind,
            user: *owner,
        };
        owner.verify(
            crate::Domain::Prekey,
            &crate::signing::canonical_bytes(&statement),
            &self.signature,
        )
    }
}

/// Publish keys. Every field is optional; what is given replaces (identity, signed, fallback) or
/// adds to (one-time) what the server holds.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeysUpload {
    /// The Curve25519 identity key.
    pub identity_key: Option<Prekey>,
    /// A signed prekey.
    pub signed_prekey: Option<Prekey>,
    /// New one-time keys (at most [`super::MAX_KEYS_PER_UPLOAD`]); may be omitted.
    #[serde(default)]
    #[cfg_attr(
        test,
        proptest(
            strategy = "proptest::collection::vec(proptest::arbitrary::any::<Prekey>(), 0..3)"
        )
    )]
    pub one_time_keys: Vec<Prekey>,
    /// The fallback key.
    pub fallback_key: Option<Prekey>,
}

/// How many keys the caller has left.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysCount {
    /// Unclaimed one-time keys.
    pub one_time: u32,
    /// Whether a fallback key is published.
    pub fallback: bool,
}

/// Claim a key bundle for starting an Olm session with `user` (who may be on another server).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysClaim {
    /// Whose keys.
    pub user: UserId,
}

/// What a claim returns: the identity key, the signed prekey if any, and exactly one of a
/// one-time key (removed from the server by this claim) or the fallback key.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBundle {
    /// Whose keys.
    pub user: UserId,
    /// Curve25519 identity key.
    pub identity_key: Prekey,
    /// Signed prekey, if published.
    pub signed_prekey: Option<Prekey>,
    /// A one-time key, if any was left.
    pub one_time_key: Option<Prekey>,
    /// The fallback key, when no one-time key was left.
    pub fallback_key: Option<Prekey>,
}
