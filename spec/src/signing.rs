//! Domain-separated signatures, canonical bytes and the signed envelope (spec `encoding.md`).
//!
//! Every Ed25519 signature in Mobium is made over `domain || 0x00 || bytes`, where `domain` is one
//! of the ASCII strings of [`Domain`]. A signature made for one purpose can therefore never be
//! replayed as another (an auth proof is never a valid federation frame signature).
//!
//! Two ways of fixing the signed bytes are used:
//! - **Canonical bytes** ([`canonical_bytes`]) for small fixed structures that the verifier rebuilds
//!   itself (the auth proof, prekey signatures): MessagePack maps with named fields, keys in
//!   ascending byte order, every integer, string and binary in its shortest form.
//! - **The signed envelope** ([`SignedEnvelope`]) for frames that must evolve (federation): the
//!   signature covers the payload bytes exactly as transmitted, so fields unknown to the receiver
//!   survive verification.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::encoding::{self, DecodeError};
use crate::keys::{Keypair, PublicKey, Signature};

/// The purpose a signature was made for; its string is prefixed to the signed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Domain {
    /// A client proving possession of its key to a homeserver (`client/auth.md`).
    ClientAuth,
    /// A user signing one of its Olm prekeys (`client/keys.md`).
    Prekey,
    /// A homeserver signing a federation frame (`federation.md`).
    FederationFrame,
    /// A user binding a username to its key (managed tier).
    UsernameBinding,
}

impl Domain {
    /// The ASCII domain-separation string.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::ClientAuth => "mobium/v1/client-auth",
            Domain::Prekey => "mobium/v1/prekey",
            Domain::FederationFrame => "mobium/v1/federation-frame",
            Domain::UsernameBinding => "mobium/v1/username-binding",
        }
    }

    /// `domain || 0x00 || message`: the exact bytes handed to Ed25519.
    pub fn signing_input(self, message: &[u8]) -> Vec<u8> {
        let d = self.as_str().as_bytes();
        let mut out = Vec::with_capacity(d.len() + 1 + message.len());
        out.extend_from_slice(d);
        out.push(0);
        out.extend_from_slice(message);
        out
    }
}

/// The canonical MessagePack bytes of a value whose struct fields are declared in ascending key
/// order (every type this crate signs this way is; a test checks it).
pub fn canonical_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    encoding::encode(value)
}

/// A payload together with its signer's signature over the payload bytes.
///
/// Wire form: `{"payload": bin, "signature": bin(64)}`. The signer's key is *not* carried: the
/// receiver knows whose key to check against (the authenticated peer's key from discovery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEnvelope {
    /// The MessagePack encoding of the signed value, verbatim.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Ed25519 signature over `domain || 0x00 || payload`.
    pub signature: Signature,
}

/// Why a [`SignedEnvelope`] was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The signature does not verify with the expected key.
    #[error("signature does not verify")]
    BadSignature,
    /// The signature verified but the payload does not decode.
    #[error("payload: {0}")]
    Decode(#[from] DecodeError),
}

impl SignedEnvelope {
    /// Encodes `value` and signs the bytes under `domain`.
    pub fn sign<T: Serialize>(domain: Domain, value: &T, key: &Keypair) -> Self {
        let payload = encoding::encode(value);
        let signature = key.sign(domain, &payload);
        SignedEnvelope { payload, signature }
    }

    /// Checks the signature against `signer` first, and only then decodes the payload.
    pub fn verify<T: DeserializeOwned + Serialize>(
        &self,
        domain: Domain,
        signer: &PublicKey,
    ) -> Result<T, EnvelopeError> {
        if !signer.verify(domain, &self.payload, &self.signature) {
            return Err(EnvelopeError::BadSignature);
        }
        Ok(encoding::decode(&self.payload)?)
    }

    /// Decodes the payload *without* checking the signature, to learn who claims to have sent
    /// it (for example the federation origin) before looking up the key to verify with.
    pub fn peek<T: DeserializeOwned + Serialize>(&self) -> Result<T, DecodeError> {
        encoding::decode(&self.payload)
    }
}
