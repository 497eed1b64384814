//! Validated identifiers (spec `identity.md`).
//!
//! Each id has exactly one canonical text form; parsers reject everything else with an
//! [`IdError`](crate::IdError) saying why, and `Display` writes the canonical form, so
//! `parse(x.to_string()) == x` always holds (a proptest checks it).

mod channel_id;
mod message_id;
mod server_name;
mod user_id;

pub use channel_id::ChannelId;
pub use message_id::{MOBIUM_EPOCH_MS, MessageId, MessageIdGenerator};
pub use server_name::{MAX_SERVER_NAME_LEN, ServerName};
pub use user_id::UserId;

/// Implements `Serialize`/`Deserialize` through the canonical text form.
macro_rules! serde_via_str {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl TryFrom<&str> for $ty {
            type Error = crate::IdError;
            fn try_from(s: &str) -> Result<Self, crate::IdError> {
                s.parse()
            }
        }
    };
}
pub(crate) use serde_via_str;

/// Parses a canonical decimal `u64`: digits only, no sign, no leading zero, no overflow.
pub(crate) fn parse_canonical_u64(s: &str) -> Result<u64, crate::IdError> {
    use crate::IdError::InvalidNumber;
    if s.is_empty() {
        return Err(InvalidNumber("empty"));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidNumber("only the digits 0-9 are allowed"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(InvalidNumber("leading zero"));
    }
    s.parse::<u64>()
        .map_err(|_| InvalidNumber("larger than 2^64-1"))
}
