//! The shape check: a decoded frame must have had the shape of its own encoding (spec
//! `encoding.md` §Value types).
//!
//! serde's derived visitors are lenient in ways the spec forbids: a struct accepts a positional
//! array as well as a map, `serde_bytes` accepts a `str` or an array of integers for a byte
//! string, a `String` accepts `bin` holding UTF-8, an enum tag accepts a variant index. Inside an
//! internally tagged enum the fields are first buffered by serde into its private `Content` and
//! decoded from there, so no wrapper around the deserializer can see which type asked for what.
//!
//! Rather than annotating every field, [`same_shape`] compares the input with the re-encoding of
//! what it decoded to. The re-encoding is exactly what the spec's tables prescribe, so walking
//! both together checks every position the type knows about: where the encoding has a map the
//! input must have a map, an array an array, `bin` a `bin`, `str` a `str`, an integer an integer.
//! Keys the type does not know (present only in the input) are ignored, keys the input omits
//! (optional fields) are skipped, key order and integer widths do not matter. Nothing else is
//! compared: values were already checked by decoding them.

use std::collections::HashMap;
use std::fmt;

use super::walk::{Head, Key, Reader, WalkError};

/// Maps of the re-encoding with more entries than this are indexed by a hash map.
const LINEAR_FIELDS: usize = 16;

/// A position in a frame, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(u32),
}

/// Where and how the input differs from the shape of its decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Innermost segment last.
    path: Vec<Seg>,
    expected: &'static str,
    found: &'static str,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, found {} at ", self.expected, self.found)?;
        if self.path.is_empty() {
            return f.write_str("the top level");
        }
        for (n, seg) in self.path.iter().enumerate() {
            match seg {
                Seg::Key(k) if n == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

impl Mismatch {
    fn at(mut self, seg: Seg) -> Self {
        self.path.insert(0, seg);
        self
    }

    fn bad_bytes(e: WalkError) -> Self {
        // Unreachable for inputs that passed `walk::check` and for our own encodings; kept as an
        // error rather than a panic because the input is a peer's.
        Mismatch {
            path: Vec::new(),
            expected: "MessagePack",
            found: if e == WalkError::TooDeep {
                "deep nesting"
            } else {
                "bad bytes"
            },
        }
    }
}

/// Checks that `input` (already accepted by [`walk::check`](super::walk::check)) has the shape of
/// `expected`, the re-encoding of the value decoded from it.
pub fn same_shape(expected: &[u8], input: &[u8]) -> Result<(), Mismatch> {
    value(&mut Reader::new(expected), &mut Reader::new(input), 1)
}

fn value(e: &mut Reader<'_>, i: &mut Reader<'_>, depth: usize) -> Result<(), Mismatch> {
    let eh = e.head().map_err(Mismatch::bad_bytes)?;
    let ih = i.head().map_err(Mismatch::bad_bytes)?;
    match (eh, ih) {
        (Head::Map(en), Head::Map(inn)) => map(e, en, i, inn, depth),
        (Head::Array(en), Head::Array(inn)) if en == inn => {
            for n in 0..en {
                value(e, i, depth + 1).map_err(|m| m.at(Seg::Index(n)))?;
            }
            Ok(())
        }
        (eh, ih) if eh.family() == ih.family() && !matches!(eh, Head::Map(_) | Head::Array(_)) => {
            Ok(())
        }
        (eh, ih) => Err(Mismatch {
            path: Vec::new(),
            expected: eh.family(),
            found: ih.family(),
        }),
    }
}

fn map(
    e: &mut Reader<'_>,
    en: u32,
    i: &mut Reader<'_>,
    inn: u32,
    depth: usize,
) -> Result<(), Mismatch> {
    // The re-encoding's entries: its keys are the fields the type knows.
    let mut fields = Vec::with_capacity(en as usize);
    for _ in 0..en {
        let key = e.key(depth + 1).map_err(Mismatch::bad_bytes)?;
        fields.push((key, *e, None));
        e.skip_trusted(depth + 1).map_err(Mismatch::bad_bytes)?;
    }
    let index: Option<HashMap<Key<'_>, usize>> = (fields.len() > LINEAR_FIELDS)
        .then(|| fields.iter().enumerate().map(|(n, f)| (f.0, n)).collect());
    // One pass over the input's entries finds each field's value; unknown keys are passed over.
    for _ in 0..inn {
        let key = i.key(depth + 1).map_err(Mismatch::bad_bytes)?;
        let slot = match &index {
            Some(index) => index.get(&key).copied(),
            None => fields.iter().position(|f| f.0 == key),
        };
        if let Some(n) = slot {
            fields[n].2 = Some(*i);
        }
        i.skip_trusted(depth + 1).map_err(Mismatch::bad_bytes)?;
    }
    for (key, mut ev, iv) in fields {
        // A field the input omitted was optional (decoding succeeded), so there is nothing to
        // compare.
        let Some(mut iv) = iv else { continue };
        value(&mut ev, &mut iv, depth + 1).map_err(|m| m.at(seg(key)))?;
    }
    Ok(())
}

fn seg(key: Key<'_>) -> Seg {
    Seg::Key(match key {
        Key::Str(s) => String::from_utf8_lossy(s).into_owned(),
        Key::Uint(u) => u.to_string(),
        Key::Int(i) => i.to_string(),
        Key::Raw(_) => "<key>".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(e: &[u8], i: &[u8]) -> Result<(), String> {
        same_shape(e, i).map_err(|m| m.to_string())
    }

    #[test]
    fn ignores_order_widths_unknown_and_omitted_keys() {
        // expected {"a": 1, "b": nil}; input {"z": [1], "a": uint16 1}
        let e = [0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0xc0];
        let i = [0x82, 0xa1, b'z', 0x91, 0x01, 0xa1, b'a', 0xcd, 0x00, 0x01];
        assert_eq!(shape(&e, &i), Ok(()));
    }

    #[test]
    fn names_the_position_of_a_mismatch() {
        // expected {"body": {"c": bin}}; input {"body": {"c": "x"}}
        let e = [
            0x81, 0xa4, b'b', b'o', b'd', b'y', 0x81, 0xa1, b'c', 0xc4, 0x01, b'x',
        ];
        let i = [
            0x81, 0xa4, b'b', b'o', b'd', b'y', 0x81, 0xa1, b'c', 0xa1, b'x',
        ];
        assert_eq!(
            shape(&e, &i),
            Err("expected bin, found str at body.c".to_owned())
        );
        // expected [{"k": 1}]; input [[1]]
        assert_eq!(
            shape(&[0x91, 0x81, 0xa1, b'k', 1], &[0x91, 0x91, 1]),
            Err("expected map, found array at [0]".to_owned())
        );
        assert_eq!(
            shape(&[0x81, 0xa1, b'k', 1], &[0x91, 1]),
            Err("expected map, found array at the top level".to_owned())
        );
    }
}
