//! Message ids: time-ordered 64-bit snowflakes (spec `identity.md` §Message ids).
//!
//! Layout, most significant bit first: 42 bits of milliseconds since [`MOBIUM_EPOCH_MS`]
//! (2026-01-01T00:00:00Z; good for 139 years), 10 bits of node number, 12 bits of sequence within
//! the millisecond. Sorting ids sorts by time, which is what history pagination relies on. On the
//! wire an id is a MessagePack unsigned integer; its text form is canonical decimal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::IdError;

/// 2026-01-01T00:00:00Z in milliseconds since the Unix epoch.
pub const MOBIUM_EPOCH_MS: u64 = 1_767_225_600_000;

const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// A non-zero, time-ordered 64-bit id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct MessageId(u64);

impl MessageId {
    /// Wraps a raw value; zero is not an id.
    pub fn new(raw: u64) -> Result<Self, IdError> {
        if raw == 0 {
            return Err(IdError::InvalidNumber("zero"));
        }
        Ok(MessageId(raw))
    }

    /// The raw value.
    pub fn get(self) -> u64 {
        self.0
    }

    /// Milliseconds since the Unix epoch at which the id was made.
    pub fn timestamp_ms(self) -> u64 {
        (self.0 >> (NODE_BITS + SEQ_BITS)) + MOBIUM_EPOCH_MS
    }

    /// The smallest id that could be made at `unix_ms` (for "messages since time T" queries).
    pub fn lower_bound_at(unix_ms: u64) -> u64 {
        unix_ms.saturating_sub(MOBIUM_EPOCH_MS) << (NODE_BITS + SEQ_BITS)
    }
}

impl TryFrom<u64> for MessageId {
    type Error = IdError;
    fn try_from(raw: u64) -> Result<Self, IdError> {
        MessageId::new(raw)
    }
}

impl From<MessageId> for u64 {
    fn from(id: MessageId) -> u64 {
        id.0
    }
}

impl FromStr for MessageId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        MessageId::new(super::parse_canonical_u64(s)?)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0)
    }
}

/// Makes strictly increasing ids for one node. Pure: the caller passes the clock reading, so the
/// generator stays free of I/O and is deterministic in tests.
#[derive(Debug, Clone)]
pub struct MessageIdGenerator {
    node: u64,
    last_ms: u64,
    seq: u64,
}

impl MessageIdGenerator {
    /// A generator for `node` (0–1023; higher bits are dropped).
    pub fn new(node: u16) -> Self {
        MessageIdGenerator {
            node: u64::from(node) & ((1 << NODE_BITS) - 1),
            last_ms: 0,
            seq: 0,
        }
    }

    /// The next id, given the current Unix time in milliseconds. Ids never go backwards: if the
    /// clock steps back, or more than 4096 ids are asked for in one millisecond, the generator
    /// borrows from the future millisecond.
    pub fn next(&mut self, unix_ms: u64) -> MessageId {
        let ms = unix_ms.saturating_sub(MOBIUM_EPOCH_MS).max(1);
        if ms > self.last_ms {
            self.last_ms = ms;
            self.seq = 0;
        } else {
            self.seq += 1;
            if self.seq > SEQ_MASK {
                self.last_ms += 1;
                self.seq = 0;
            }
        }
        MessageId((self.last_ms << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_even_when_the_clock_steps_back() {
        let mut g = MessageIdGenerator::new(3);
        let t = MOBIUM_EPOCH_MS + 1_000;
        let mut last = g.next(t);
        assert_eq!(last.timestamp_ms(), t);
        for now in [t, t, t - 500, t + 1]
            .into_iter()
            .chain(std::iter::repeat_n(t + 1, 5000))
        {
            let id = g.next(now);
            assert!(id > last);
            last = id;
        }
    }

    #[test]
    fn text_form_is_canonical_decimal() {
        assert_eq!("42".parse::<MessageId>().map(MessageId::get), Ok(42));
        for bad in ["0", "042", "-1", "+1", "1e3", "", "18446744073709551616"] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad}");
        }
    }
}
