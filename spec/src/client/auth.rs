//! Authentication: `challenge` event, `auth` request, `authed` response (spec `client/auth.md`).
//!
//! On connect the server pushes a [`Challenge`] with a fresh 32-byte nonce and its own name. The
//! client answers with [`Auth`]: its public key and a signature, under
//! [`Domain::ClientAuth`](crate::Domain::ClientAuth), over the canonical bytes of [`AuthProof`].
//! Binding the server name stops a malicious server relaying the challenge to another server.

use serde::{Deserialize, Serialize};

use crate::{PublicKey, ServerName, Signature, Signer, UserId};

/// The first frame of every connection.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// 32 random bytes, never reused.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    /// The server's name, to be signed back.
    pub server: ServerName,
    /// The server's protocol version ([`crate::PROTOCOL_VERSION`]).
    pub protocol_version: u32,
    /// Milliseconds the client has to answer before the connection is closed.
    pub auth_timeout_ms: u64,
}

/// The client's answer to the challenge.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// The user's Ed25519 identity key.
    pub user: PublicKey,
    /// Signature over `AuthProof { nonce, server, user }`.
    pub signature: Signature,
    /// For a first connection to a server whose registration policy is `invite`: a registration
    /// token from the operator, or a channel invite code.
    pub invite: Option<String>,
}

/// The signed statement. Fields are in ascending key order: this struct's MessagePack encoding is
/// canonical (spec `encoding.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthProof {
    /// The challenge nonce.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    /// The server name from the challenge.
    pub server: ServerName,
    /// The key being proven.
    pub user: PublicKey,
}

impl AuthProof {
    /// Signs the proof with the user's key, producing the `auth` request.
    pub fn sign(&self, key: &(impl Signer + ?Sized), invite: Option<String>) -> Auth {
        let signature = key.sign_domain(
            crate::Domain::ClientAuth,
            &crate::signing::canonical_bytes(self),
        );
        Auth {
            user: self.user,
            signature,
            invite,
        }
    }

    /// Checks an `auth` signature against this proof.
    pub fn verify(&self, signature: &Signature) -> bool {
        self.user.verify(
            crate::Domain::ClientAuth,
            &crate::signing::canonical_bytes(self),
            signature,
        )
    }
}

/// The session is authenticated.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authed {
    /// The caller's full id on this server.
    pub user_id: UserId,
    /// Whether this connection registered the user.
    pub registered: bool,
    /// How many queued to-device messages follow as `direct` events.
    pub queued: u32,
}
