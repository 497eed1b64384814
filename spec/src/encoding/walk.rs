//! A bounds-checked reader over the MessagePack marker grammar, and the strict pre-pass built on
//! it (spec `encoding.md` §MessagePack with named fields).
//!
//! serde decoding (rmp-serde) is lenient about things the spec forbids and that a serde visitor
//! never sees: a key repeated in a map (the derived visitor keeps one of them, or errors late after
//! buffering the rest), nesting without bound inside ignored values, `str` bytes that are not
//! UTF-8. [`check`] walks the raw bytes once, before serde runs, and refuses those frames. It
//! allocates nothing for small maps and one hash set for a map with more than
//! [`LINEAR_KEYS`] entries, and it stops at the first repeated key, so a frame made of a million
//! copies of one key costs about as much as a frame with two.

use std::collections::HashSet;

/// The deepest nesting of arrays and maps a frame may have; the top-level value is depth 1
/// (spec `encoding.md`: "Nesting depth").
pub const MAX_DEPTH: usize = 32;

/// Maps with at most this many entries are checked for repeated keys by comparing each key with
/// the earlier ones, without allocating.
const LINEAR_KEYS: u32 = 16;

/// Why a frame failed the pre-pass or the shape check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkError {
    /// The bytes end inside a value.
    Truncated,
    /// The marker byte `0xc1`, which MessagePack never uses.
    ReservedMarker,
    /// A `str` whose bytes are not UTF-8.
    InvalidUtf8,
    /// A map holds the same key twice.
    RepeatedKey,
    /// Arrays and maps nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Bytes remain after the value.
    Trailing(usize),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::Truncated => f.write_str("truncated MessagePack value"),
            WalkError::ReservedMarker => f.write_str("reserved marker 0xc1"),
            WalkError::InvalidUtf8 => f.write_str("str that is not UTF-8"),
            WalkError::RepeatedKey => f.write_str("a key appears twice in one map"),
            WalkError::TooDeep => write!(f, "arrays and maps nested deeper than {MAX_DEPTH}"),
            WalkError::Trailing(n) => write!(f, "{n} trailing bytes after the value"),
        }
    }
}

/// The header of one MessagePack value: its family and, for containers, the entry count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head<'a> {
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// Any integer marker, normalised: non-negative values are `Uint` whatever their width.
    Uint(u64),
    /// A negative integer.
    Int(i64),
    /// `float 32` / `float 64`.
    Float,
    /// A `str` (its bytes, checked to be UTF-8 by [`check`]).
    Str(&'a [u8]),
    /// A `bin`.
    Bin(&'a [u8]),
    /// An `ext` (type byte and data).
    Ext(i8, &'a [u8]),
    /// An array of this many values.
    Array(u32),
    /// A map of this many key/value pairs.
    Map(u32),
}

impl Head<'_> {
    /// A short name of the family, for error messages.
    pub fn family(&self) -> &'static str {
        match self {
            Head::Nil => "nil",
            Head::Bool(_) => "bool",
            Head::Uint(_) | Head::Int(_) => "int",
            Head::Float => "float",
            Head::Str(_) => "str",
            Head::Bin(_) => "bin",
            Head::Ext(..) => "ext",
            Head::Array(_) => "array",
            Head::Map(_) => "map",
        }
    }
}

/// A cursor over MessagePack bytes. Every read is bounds-checked; nothing panics on any input.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WalkError> {
        if n > self.remaining() {
            return Err(WalkError::Truncated);
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, WalkError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, WalkError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, WalkError> {
        // At most 4 bytes, so the value fits a usize on every supported target.
        usize::try_from(self.be(n)?).map_err(|_| WalkError::Truncated)
    }

    fn count(&mut self, n: usize) -> Result<u32, WalkError> {
        u32::try_from(self.be(n)?).map_err(|_| WalkError::Truncated)
    }

    fn signed(&mut self, n: usize) -> Result<Head<'a>, WalkError> {
        let raw = self.be(n)?;
        let shift = 64 - 8 * n as u32;
        // Sign-extend the n-byte two's complement value.
        let v = ((raw << shift) as i64) >> shift;
        Ok(match u64::try_from(v) {
            Ok(u) => Head::Uint(u),
            Err(_) => Head::Int(v),
        })
    }

    fn ext(&mut self, len: usize) -> Result<Head<'a>, WalkError> {
        let ty = self.byte()? as i8;
        Ok(Head::Ext(ty, self.take(len)?))
    }

    /// Reads one value's header (and, for scalars, the whole value).
    pub fn head(&mut self) -> Result<Head<'a>, WalkError> {
        let m = self.byte()?;
        Ok(match m {
            0x00..=0x7f => Head::Uint(u64::from(m)),
            0x80..=0x8f => Head::Map(u32::from(m & 0x0f)),
            0x90..=0x9f => Head::Array(u32::from(m & 0x0f)),
            0xa0..=0xbf => Head::Str(self.take(usize::from(m & 0x1f))?),
            0xc0 => Head::Nil,
            0xc1 => return Err(WalkError::ReservedMarker),
            0xc2 => Head::Bool(false),
            0xc3 => Head::Bool(true),
            0xc4 => Head::Bin(self.take_len(1)?),
            0xc5 => Head::Bin(self.take_len(2)?),
            0xc6 => Head::Bin(self.take_len(4)?),
            0xc7 => {
                let n = self.len(1)?;
                self.ext(n)?
            }
            0xc8 => {
                let n = self.len(2)?;
                self.ext(n)?
            }
            0xc9 => {
                let n = self.len(4)?;
                self.ext(n)?
            }
            0xca => {
                self.take(4)?;
                Head::Float
            }
            0xcb => {
                self.take(8)?;
                Head::Float
            }
            0xcc => Head::Uint(self.be(1)?),
            0xcd => Head::Uint(self.be(2)?),
            0xce => Head::Uint(self.be(4)?),
            0xcf => Head::Uint(self.be(8)?),
            0xd0 => self.signed(1)?,
            0xd1 => self.signed(2)?,
            0xd2 => self.signed(4)?,
            0xd3 => self.signed(8)?,
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => Head::Str(self.take_len(1)?),
            0xda => Head::Str(self.take_len(2)?),
            0xdb => Head::Str(self.take_len(4)?),
            0xdc => Head::Array(self.count(2)?),
            0xdd => Head::Array(self.count(4)?),
            0xde => Head::Map(self.count(2)?),
            0xdf => Head::Map(self.count(4)?),
            0xe0..=0xff => Head::Int(i64::from(m as i8)),
        })
    }

    fn take_len(&mut self, n: usize) -> Result<&'a [u8], WalkError> {
        let len = self.len(n)?;
        self.take(len)
    }

    /// Skips one whole value, checking it as [`check`] does. `depth` is the nesting depth of the
    /// value being skipped (1 for a top-level value).
    pub fn skip(&mut self, depth: usize) -> Result<(), WalkError> {
        match self.head()? {
            Head::Str(s) => {
                std::str::from_utf8(s).map_err(|_| WalkError::InvalidUtf8)?;
            }
            Head::Array(n) => {
                if depth > MAX_DEPTH {
                    return Err(WalkError::TooDeep);
                }
                for _ in 0..n {
                    self.skip(depth + 1)?;
                }
            }
            Head::Map(n) => {
                if depth > MAX_DEPTH {
                    return Err(WalkError::TooDeep);
                }
                self.skip_map(n, depth)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Skips one whole value of bytes that already passed [`check`] (or that we encoded), without
    /// repeating its checks; the depth bound still applies, so recursion stays bounded.
    pub fn skip_trusted(&mut self, depth: usize) -> Result<(), WalkError> {
        let entries = match self.head()? {
            Head::Array(n) => u64::from(n),
            Head::Map(n) => 2 * u64::from(n),
            _ => return Ok(()),
        };
        if depth > MAX_DEPTH {
            return Err(WalkError::TooDeep);
        }
        for _ in 0..entries {
            self.skip_trusted(depth + 1)?;
        }
        Ok(())
    }

    /// Skips one value (as [`Reader::skip_trusted`]) and returns its encoded bytes.
    #[cfg(test)]
    pub fn value_bytes(&mut self, depth: usize) -> Result<&'a [u8], WalkError> {
        let start = self.pos;
        self.skip_trusted(depth)?;
        Ok(&self.buf[start..self.pos])
    }

    fn skip_map(&mut self, n: u32, depth: usize) -> Result<(), WalkError> {
        if n <= LINEAR_KEYS {
            let mut keys: [Key<'a>; LINEAR_KEYS as usize] = [Key::Raw(&[]); LINEAR_KEYS as usize];
            for i in 0..n as usize {
                let key = self.key(depth + 1)?;
                if keys[..i].contains(&key) {
                    return Err(WalkError::RepeatedKey);
                }
                keys[i] = key;
                self.skip(depth + 1)?;
            }
        } else {
            // Grown as keys arrive rather than sized from the header, so a header claiming many
            // entries costs nothing until they are really there (each takes at least two bytes).
            let mut seen = HashSet::new();
            for _ in 0..n {
                if !seen.insert(self.key(depth + 1)?) {
                    return Err(WalkError::RepeatedKey);
                }
                self.skip(depth + 1)?;
            }
        }
        Ok(())
    }

    /// Reads a map key and returns it in a form where equal keys compare equal (a `str` key by its
    /// text whatever its header width, an integer by its value, anything else by its bytes).
    pub fn key(&mut self, depth: usize) -> Result<Key<'a>, WalkError> {
        let start = self.pos;
        let mut probe = *self;
        let head = probe.head()?;
        Ok(match head {
            Head::Str(s) => {
                std::str::from_utf8(s).map_err(|_| WalkError::InvalidUtf8)?;
                *self = probe;
                Key::Str(s)
            }
            Head::Uint(u) => {
                *self = probe;
                Key::Uint(u)
            }
            Head::Int(i) => {
                *self = probe;
                Key::Int(i)
            }
            _ => {
                self.skip(depth)?;
                Key::Raw(&self.buf[start..self.pos])
            }
        })
    }
}

/// A map key, normalised for comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    /// A `str` key's UTF-8 bytes.
    Str(&'a [u8]),
    /// A non-negative integer key.
    Uint(u64),
    /// A negative integer key.
    Int(i64),
    /// Any other key, by its encoded bytes.
    Raw(&'a [u8]),
}

/// Checks that `bytes` is exactly one MessagePack value within the spec's rules: well formed,
/// `str` is UTF-8, no map repeats a key, nesting at most [`MAX_DEPTH`], nothing after the value.
pub fn check(bytes: &[u8]) -> Result<(), WalkError> {
    let mut r = Reader::new(bytes);
    r.skip(1)?;
    match r.remaining() {
        0 => Ok(()),
        n => Err(WalkError::Trailing(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Vec<u8> {
        let mut v = vec![0x91; depth - 1];
        v.push(0x90);
        v
    }

    #[test]
    fn accepts_well_formed_values() {
        for hex_text in [
            "c0",
            "82a2696401a4626f647981a26f70a470696e67",
            "dc0002c403010203d0ff",
            "d40102",
        ] {
            let bytes = hex::decode(hex_text).expect("hex");
            assert_eq!(check(&bytes), Ok(()), "{hex_text}");
        }
    }

    #[test]
    fn refuses_repeated_keys_whatever_the_header_width() {
        // {"x": 1, "x": 2}, then the second "x" written as str 8.
        assert_eq!(
            check(&[0x82, 0xa1, b'x', 1, 0xa1, b'x', 2]),
            Err(WalkError::RepeatedKey)
        );
        assert_eq!(
            check(&[0x82, 0xa1, b'x', 1, 0xd9, 1, b'x', 2]),
            Err(WalkError::RepeatedKey)
        );
        // An integer key written as uint 8 and as int 8.
        assert_eq!(
            check(&[0x82, 0xcc, 5, 1, 0xd0, 5, 2]),
            Err(WalkError::RepeatedKey)
        );
        // Distinct keys in a large map are fine.
        let mut big = vec![0xde, 0x00, 0x20];
        for i in 0..0x20u8 {
            big.extend([i, 0xc0]);
        }
        assert_eq!(check(&big), Ok(()));
        // Make the last key equal the first.
        let last_key = big.len() - 2;
        big[last_key] = 0;
        assert_eq!(check(&big), Err(WalkError::RepeatedKey));
    }

    #[test]
    fn limits_depth_even_in_ignored_values() {
        assert_eq!(check(&nested(MAX_DEPTH)), Ok(()));
        assert_eq!(check(&nested(MAX_DEPTH + 1)), Err(WalkError::TooDeep));
        // A deep key is counted too.
        let mut deep_key = vec![0x81];
        deep_key.extend(nested(MAX_DEPTH));
        deep_key.push(0xc0);
        assert_eq!(check(&deep_key), Err(WalkError::TooDeep));
    }

    #[test]
    fn refuses_bad_bytes() {
        assert_eq!(check(&[]), Err(WalkError::Truncated));
        assert_eq!(check(&[0xc1]), Err(WalkError::ReservedMarker));
        assert_eq!(check(&[0xa2, 0xff, 0xfe]), Err(WalkError::InvalidUtf8));
        assert_eq!(check(&[0xc0, 0xc0]), Err(WalkError::Trailing(1)));
        // A map header claiming 2^32 - 1 entries with none present fails fast.
        assert_eq!(
            check(&[0xdf, 0xff, 0xff, 0xff, 0xff]),
            Err(WalkError::Truncated)
        );
        assert_eq!(
            check(&[0xdb, 0xff, 0xff, 0xff, 0xff]),
            Err(WalkError::Truncated)
        );
    }

    #[test]
    fn a_million_copies_of_one_key_stop_at_the_second() {
        let mut bytes = vec![0xdf, 0x00, 0x0f, 0x42, 0x40];
        for _ in 0..1_000_000 {
            bytes.extend([0xa1, b'x', 0x01]);
        }
        let start = std::time::Instant::now();
        assert_eq!(check(&bytes), Err(WalkError::RepeatedKey));
        assert!(start.elapsed() < std::time::Duration::from_millis(50));
    }
}
