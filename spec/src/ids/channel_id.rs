//! Channel ids: `#<id>@<host server>` (spec `identity.md` §Channel ids).

use std::fmt;
use std::str::FromStr;

use crate::{IdError, ServerName};

/// A channel, named by the server that hosts (orders) it and a non-zero 64-bit id unique on that
/// server. Text form: `#` + canonical decimal + `@` + server name, e.g. `#1234@example.org`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    /// Id unique on the host server (time-ordered like message ids).
    pub local: u64,
    /// The host server.
    pub host: ServerName,
}

impl ChannelId {
    /// Builds a channel id; `local` must be non-zero.
    pub fn new(local: u64, host: ServerName) -> Result<Self, IdError> {
        if local == 0 {
            return Err(IdError::InvalidNumber("zero"));
        }
        Ok(ChannelId { local, host })
    }
}

impl FromStr for ChannelId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        let rest = s.strip_prefix('#').ok_or(IdError::MissingHash)?;
        let (num, host) = rest.split_once('@').ok_or(IdError::MissingAt)?;
        ChannelId::new(super::parse_canonical_u64(num)?, host.parse()?)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}@{}", self.local, self.host)
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({self})")
    }
}

super::serde_via_str!(ChannelId);
