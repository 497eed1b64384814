//! MessagePack encoding with named fields (spec `encoding.md`).
//!
//! Every frame of both protocols is one MessagePack value whose structs are maps keyed by field
//! name (`rmp_serde::to_vec_named`), so fields can be added without breaking older peers: a
//! decoder ignores map keys it does not know. Decoding is bounded by a caller-supplied size limit
//! before any parsing happens.
//!
//! [`decode`] is the one decoder for every byte string that comes from the network (client frames,
//! federation envelopes, requests and responses, stored events) and it is strict, in three steps:
//!
//! 1. [`walk::check`] reads the raw bytes once: one well-formed value, nothing after it, `str` is
//!    UTF-8, no map repeats a key, nesting at most [`MAX_DEPTH`].
//! 2. rmp-serde decodes the value into the Rust type.
//! 3. [`shape::same_shape`] compares the input with the re-encoding of the decoded value: maps
//!    where the type has structures, `bin` where it has byte strings, and so on, because serde
//!    alone accepts positional arrays for structs and `str` for byte strings.

mod shape;
pub(crate) mod walk;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use walk::MAX_DEPTH;

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input is larger than the limit for this kind of frame.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Input length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Not valid MessagePack, or not of the expected shape.
    #[error("malformed: {0}")]
    Malformed(String),
}

/// Encodes with named fields. Encoding our own types cannot fail (no maps with non-string keys,
/// no unsupported types), so this returns bytes directly.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    match rmp_serde::to_vec_named(value) {
        Ok(bytes) => bytes,
        // Only reachable with a hand-written Serialize impl that reports an error.
        Err(e) => unreachable!("encoding a protocol value failed: {e}"),
    }
}

/// Decodes one value under the spec's rules (see the module docs): anything else is
/// [`DecodeError::Malformed`].
///
/// `T: Serialize` because the last step compares the input with `T`'s own encoding.
pub fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, DecodeError> {
    walk::check(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let mut rest: &[u8] = bytes;
    let mut de = rmp_serde::Deserializer::new(&mut rest);
    let value = T::deserialize(&mut de).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    drop(de);
    if !rest.is_empty() {
        // `walk::check` found exactly one value; rmp-serde stopping early would be a bug there.
        return Err(DecodeError::Malformed(format!(
            "{} trailing bytes after the value",
            rest.len()
        )));
    }
    shape::same_shape(&encode(&value), bytes).map_err(|m| DecodeError::Malformed(m.to_string()))?;
    Ok(value)
}

/// [`decode`] after checking `bytes.len() <= max`.
pub fn decode_limited<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    max: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    decode(bytes)
}
