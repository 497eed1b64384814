//! MessagePack encoding with named fields (spec `encoding.md`).
//!
//! Every frame of both protocols is one MessagePack value whose structs are maps keyed by field
//! name (`rmp_serde::to_vec_named`), so fields can be added without breaking older peers: a
//! decoder ignores map keys it does not know. Decoding is bounded by a caller-supplied size limit
//! before any parsing happens.

use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// Decodes any value, rejecting trailing bytes after it.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut rest: &[u8] = bytes;
    let mut de = rmp_serde::Deserializer::new(&mut rest);
    let value = T::deserialize(&mut de).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    drop(de);
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!(
            "{} trailing bytes after the value",
            rest.len()
        )));
    }
    Ok(value)
}

/// [`decode`] after checking `bytes.len() <= max`.
pub fn decode_limited<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    decode(bytes)
}
