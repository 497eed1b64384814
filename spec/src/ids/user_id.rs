//! User ids: `<pubkey>@<server>` (spec `identity.md` §User ids).

use std::fmt;
use std::str::FromStr;

use crate::{IdError, PublicKey, ServerName};

/// A user: an Ed25519 public key at a homeserver, written `<64 lowercase hex>@<server name>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId {
    /// The user's identity key.
    pub key: PublicKey,
    /// The user's homeserver.
    pub server: ServerName,
}

impl UserId {
    /// Builds a user id from its parts.
    pub fn new(key: PublicKey, server: ServerName) -> Self {
        UserId { key, server }
    }
}

impl FromStr for UserId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        let (key, server) = s.split_once('@').ok_or(IdError::MissingAt)?;
        Ok(UserId {
            key: key.parse()?,
            server: server.parse()?,
        })
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.key, self.server)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({self})")
    }
}

super::serde_via_str!(UserId);
