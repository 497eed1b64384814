//! Strict decoding (spec `encoding.md` §Value types, `client/transport.md` §Decoding failures):
//! the frames serde alone would accept and the spec refuses, and a proptest that turns any one
//! map of a valid frame into a positional array, or any one `bin` into a `str` or an array of
//! integers, and expects `malformed` every time.

use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::*;
use crate::encoding::walk::{Head, Reader};
use crate::encoding::{DecodeError, MAX_DEPTH, decode, encode};
use crate::federation::*;

/// Appends a `str`.
pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    rmp::encode::write_str(out, s).expect("writing to a Vec");
}

/// `{"id": id, "body": <body>}` where `body` is already encoded.
pub(super) fn frame_with_body(id: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82];
    put_str(&mut out, "id");
    out.push(id);
    put_str(&mut out, "body");
    out.extend_from_slice(body);
    out
}

/// A `message_send` body whose `ciphertext` is the given encoded value.
pub(super) fn message_send_with_ciphertext(ciphertext: &[u8]) -> Vec<u8> {
    let mut out = vec![0x84];
    put_str(&mut out, "op");
    put_str(&mut out, "message_send");
    put_str(&mut out, "channel");
    put_str(&mut out, "#4194304001@example.org");
    put_str(&mut out, "ciphertext");
    out.extend_from_slice(ciphertext);
    put_str(&mut out, "reply_to");
    out.push(0xc0);
    out
}

/// `{"op": "ping", "x": 1, "x": 1, ...}` with `copies` copies of `"x"`.
pub(super) fn ping_with_repeated_key(copies: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 3 * copies as usize);
    rmp::encode::write_map_len(&mut out, copies + 1).expect("writing to a Vec");
    put_str(&mut out, "op");
    put_str(&mut out, "ping");
    for _ in 0..copies {
        out.extend_from_slice(&[0xa1, b'x', 0x01]);
    }
    out
}

/// `{"op": "ping", "x": [[...[]...]]}`: the whole frame nests `depth` levels once wrapped in a
/// client frame.
pub(super) fn ping_nested(depth: usize) -> Vec<u8> {
    let mut out = vec![0x82];
    put_str(&mut out, "op");
    put_str(&mut out, "ping");
    put_str(&mut out, "x");
    // frame (1) > body (2) > arrays from depth 3.
    out.extend(std::iter::repeat_n(0x91, depth - 3));
    out.push(0x90);
    out
}

fn malformed(bytes: &[u8]) -> String {
    match decode::<ClientFrame>(bytes) {
        Err(DecodeError::Malformed(why)) => why,
        other => panic!("expected malformed, got {other:?}"),
    }
}

#[test]
fn bin_fields_refuse_str_and_integer_arrays() {
    let ok = frame_with_body(1, &message_send_with_ciphertext(&[0xc4, 1, b'x']));
    assert!(decode::<ClientFrame>(&ok).is_ok());
    let as_str = frame_with_body(1, &message_send_with_ciphertext(&[0xa1, b'x']));
    assert_eq!(
        malformed(&as_str),
        "expected bin, found str at body.ciphertext"
    );
    let as_array = frame_with_body(1, &message_send_with_ciphertext(&[0x93, 1, 2, 3]));
    assert_eq!(
        malformed(&as_array),
        "expected bin, found array at body.ciphertext"
    );

    // channel_create.metadata, direct_send.ciphertext, a prekey's key and a signature.
    let mut create = vec![0x82];
    put_str(&mut create, "op");
    put_str(&mut create, "channel_create");
    put_str(&mut create, "metadata");
    put_str(&mut create, "m");
    assert!(malformed(&frame_with_body(2, &create)).contains("body.metadata"));

    let mut direct = encode(&ClientFrame {
        id: 3,
        body: Request::DirectSend(DirectSend {
            to: sample_user(),
            ciphertext: b"abc".to_vec(),
            txn: None,
        }),
    });
    let at = find(&direct, &[0xc4, 3, b'a', b'b', b'c']);
    direct.splice(at..at + 2, [0xa3]);
    assert!(malformed(&direct).contains("body.ciphertext"));

    let key = crate::Keypair::from_seed([7; 32]);
    let prekey = Prekey::sign(&key, PrekeyKind::Signed, "AAAAAQ", b"kkkk");
    let upload = encode(&ClientFrame {
        id: 4,
        body: Request::KeysUpload(KeysUpload {
            signed_prekey: Some(prekey),
            ..KeysUpload::default()
        }),
    });
    let mut text_key = upload.clone();
    let at = find(&text_key, &[0xc4, 4, b'k', b'k', b'k', b'k']);
    text_key.splice(at..at + 2, [0xa4]);
    assert!(malformed(&text_key).contains("body.signed_prekey.key"));
    let mut text_sig = upload;
    let at = find(&text_sig, &[0xc4, 64]);
    text_sig.splice(at..at + 2, [0xd9, 64]);
    // Signature bytes are not UTF-8 as a rule; either check refuses them.
    assert!(decode::<ClientFrame>(&text_sig).is_err());
}

fn sample_user() -> crate::UserId {
    crate::UserId::new(
        crate::Keypair::from_seed([9; 32]).public(),
        "x.test".parse().expect("name"),
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

#[test]
fn ids_refuse_bin_and_tags_refuse_variant_indexes() {
    let mut frame = encode(&ClientFrame {
        id: 1,
        body: Request::Typing(ChannelRef {
            channel: "#4194304001@example.org".parse().expect("channel"),
        }),
    });
    let at = find(&frame, b"#4194304001");
    // fixstr of 23 bytes -> bin 8 of 23 bytes.
    frame.splice(at - 1..at, [0xc4, 23]);
    assert!(malformed(&frame).contains("body.channel"));
    // {"op": 1} would be variant 1 (ping) to serde.
    let mut body = vec![0x81];
    put_str(&mut body, "op");
    body.push(0x01);
    assert!(malformed(&frame_with_body(1, &body)).contains("body.op"));
}

#[test]
fn positional_arrays_are_refused() {
    // [105, {"op": "ping"}]
    let mut top = vec![0x92, 105, 0x81];
    put_str(&mut top, "op");
    put_str(&mut top, "ping");
    assert_eq!(
        malformed(&top),
        "expected map, found array at the top level"
    );
    // {"id": 106, "body": ["ping"]}
    let mut body = vec![0x91];
    put_str(&mut body, "ping");
    assert_eq!(
        malformed(&frame_with_body(106, &body)),
        "expected map, found array at body"
    );
}

#[test]
fn repeated_keys_are_refused_cheaply() {
    assert_eq!(
        malformed(&frame_with_body(1, &ping_with_repeated_key(2))),
        "a key appears twice in one map"
    );
    let big = frame_with_body(1, &ping_with_repeated_key(1_000_000));
    let start = std::time::Instant::now();
    malformed(&big);
    let took = start.elapsed();
    assert!(took < std::time::Duration::from_millis(100), "{took:?}");
    // One copy is an ordinary unknown key.
    assert!(decode::<ClientFrame>(&frame_with_body(1, &ping_with_repeated_key(1))).is_ok());
}

#[test]
fn nesting_is_limited_even_under_unknown_keys() {
    assert!(decode::<ClientFrame>(&frame_with_body(1, &ping_nested(MAX_DEPTH))).is_ok());
    assert_eq!(
        malformed(&frame_with_body(1, &ping_nested(MAX_DEPTH + 1))),
        format!("arrays and maps nested deeper than {MAX_DEPTH}")
    );
}

/// Which position of a frame [`mutate`] changes.
#[derive(Debug, Clone, Copy)]
enum Mutation {
    /// The n-th map (pre-order) becomes an array of its values.
    MapToArray(usize),
    /// The n-th `bin` becomes a `str` (the same bytes).
    BinToStr(usize),
    /// The n-th `bin` becomes an array of integers.
    BinToArray(usize),
}

/// Re-writes `bytes` with one [`Mutation`]; `None` when there is no such position.
fn mutate(bytes: &[u8], m: Mutation) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut maps, mut bins, mut done) = (0, 0, false);
    copy(
        &mut Reader::new(bytes),
        &mut out,
        m,
        &mut maps,
        &mut bins,
        &mut done,
    )?;
    done.then_some(out)
}

fn copy(
    r: &mut Reader<'_>,
    out: &mut Vec<u8>,
    m: Mutation,
    maps: &mut usize,
    bins: &mut usize,
    done: &mut bool,
) -> Option<()> {
    let raw = r.value_bytes(1).ok()?;
    let mut inner = Reader::new(raw);
    match inner.head().ok()? {
        Head::Map(n) => {
            let hit = matches!(m, Mutation::MapToArray(k) if k == *maps);
            *maps += 1;
            if hit {
                *done = true;
                rmp::encode::write_array_len(out, n).ok()?;
            } else {
                rmp::encode::write_map_len(out, n).ok()?;
            }
            for _ in 0..n {
                let key = inner.value_bytes(2).ok()?;
                if !hit {
                    out.extend_from_slice(key);
                }
                copy(&mut inner, out, m, maps, bins, done)?;
            }
        }
        Head::Array(n) => {
            rmp::encode::write_array_len(out, n).ok()?;
            for _ in 0..n {
                copy(&mut inner, out, m, maps, bins, done)?;
            }
        }
        Head::Bin(b) => {
            match m {
                Mutation::BinToStr(k) if k == *bins => {
                    *done = true;
                    rmp::encode::write_str_len(out, u32::try_from(b.len()).ok()?).ok()?;
                    out.extend_from_slice(b);
                }
                Mutation::BinToArray(k) if k == *bins => {
                    *done = true;
                    rmp::encode::write_array_len(out, u32::try_from(b.len()).ok()?).ok()?;
                    for byte in b {
                        rmp::encode::write_uint(out, u64::from(*byte)).ok()?;
                    }
                }
                _ => out.extend_from_slice(raw),
            }
            *bins += 1;
        }
        _ => out.extend_from_slice(raw),
    }
    Some(())
}

/// Every mutation of `value`'s encoding is refused, and the unmutated copy round-trips.
fn every_mutation_is_refused<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + std::fmt::Debug,
{
    let bytes = encode(value);
    for n in 0.. {
        let mut any = false;
        for m in [
            Mutation::MapToArray(n),
            Mutation::BinToStr(n),
            Mutation::BinToArray(n),
        ] {
            if let Some(bad) = mutate(&bytes, m) {
                any = true;
                prop_assert!(
                    decode::<T>(&bad).is_err(),
                    "{m:?} of {value:?} was accepted"
                );
            }
        }
        if !any {
            break;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mutated_client_frames_are_refused(v in any::<ClientFrame>()) {
        every_mutation_is_refused(&v)?;
    }

    #[test]
    fn mutated_server_frames_are_refused(v in any::<ServerFrame>()) {
        every_mutation_is_refused(&v)?;
    }

    #[test]
    fn mutated_federation_requests_are_refused(v in any::<FedRequest>()) {
        every_mutation_is_refused(&v)?;
    }

    #[test]
    fn mutated_federation_responses_are_refused(v in any::<FedResponse>()) {
        every_mutation_is_refused(&v)?;
    }

    #[test]
    fn mutated_envelopes_are_refused(
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        signature in any::<crate::Signature>(),
    ) {
        every_mutation_is_refused(&crate::SignedEnvelope { payload, signature })?;
    }
}

/// The nesting depth of an encoded value (containers only; the top level is 1).
fn depth(r: &mut Reader<'_>) -> usize {
    match r.head() {
        Ok(Head::Array(n)) => 1 + (0..n).map(|_| depth(r)).max().unwrap_or(0),
        Ok(Head::Map(n)) => 1 + (0..n).map(|_| depth(r).max(depth(r))).max().unwrap_or(0),
        _ => 0,
    }
}

/// The depth limit leaves room: spec `encoding.md` says no version 1 structure nests deeper than
/// [`V1_MAX_DEPTH`].
const V1_MAX_DEPTH: usize = 6;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valid_frames_nest_well_below_the_limit(
        c in any::<ClientFrame>(),
        s in any::<ServerFrame>(),
        q in any::<FedRequest>(),
        a in any::<FedResponse>(),
    ) {
        for bytes in [encode(&c), encode(&s), encode(&q), encode(&a)] {
            let d = depth(&mut Reader::new(&bytes));
            prop_assert!(d <= V1_MAX_DEPTH, "depth {d}");
        }
    }
}
