//! Length-prefixed frames on a QUIC stream (spec `federation.md` §Framing).
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of one MessagePack
//! [`SignedEnvelope`]. Both directions use the same shape: the requester writes one frame and
//! finishes its side, the responder answers with one frame on the same stream.
//!
//! The length is checked against the limit *before* any of the body is read, and the body buffer
//! grows only as bytes actually arrive, so a peer announcing 4 MiB on many streams at once costs
//! only what it really sends (bounded by QUIC flow control).

use mobium_spec::SignedEnvelope;
use mobium_spec::encoding::{self, DecodeError};

/// Size of the length prefix.
pub(crate) const PREFIX_LEN: usize = 4;

/// Largest initial buffer for a frame body; beyond that the buffer grows with the data.
const INITIAL_BUFFER: usize = 64 * 1024;

/// Why no frame could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The length prefix announced more than the limit; nothing of the body was read.
    TooLarge(u32),
    /// The stream ended or broke before a whole frame arrived.
    Stream(String),
}

/// Encodes `envelope` as a frame: length prefix, then the envelope bytes.
pub(crate) fn encode(envelope: &SignedEnvelope) -> Vec<u8> {
    let body = encoding::encode(envelope);
    let mut out = Vec::with_capacity(PREFIX_LEN + body.len());
    // Envelopes are built by this process; one over 4 GiB cannot be represented and is sent as a
    // length that will be refused rather than truncated silently.
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes the envelope bytes of a frame (without its prefix).
pub(crate) fn decode(bytes: &[u8]) -> Result<SignedEnvelope, DecodeError> {
    encoding::decode(bytes)
}

/// Reads one frame body of at most `max` bytes.
pub(crate) async fn read(recv: &mut quinn::RecvStream, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut prefix = [0u8; PREFIX_LEN];
    recv.read_exact(&mut prefix)
        .await
        .map_err(|e| ReadError::Stream(e.to_string()))?;
    let announced = u32::from_be_bytes(prefix);
    let len = usize::try_from(announced).map_err(|_| ReadError::TooLarge(announced))?;
    if len > max {
        return Err(ReadError::TooLarge(announced));
    }
    let mut body = Vec::with_capacity(len.min(INITIAL_BUFFER));
    while body.len() < len {
        let chunk = recv
            .read_chunk(len - body.len(), true)
            .await
            .map_err(|e| ReadError::Stream(e.to_string()))?
            .ok_or_else(|| ReadError::Stream("stream ended inside a frame".into()))?;
        body.extend_from_slice(&chunk.bytes);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobium_spec::{Domain, Keypair};

    #[test]
    fn frame_is_prefix_then_envelope() {
        let env = SignedEnvelope::sign(
            Domain::FederationFrame,
            &"hello",
            &Keypair::from_seed([1; 32]),
        );
        let frame = encode(&env);
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(len, frame.len() - PREFIX_LEN);
        assert_eq!(decode(&frame[PREFIX_LEN..]).expect("decode"), env);
        assert!(decode(&frame[PREFIX_LEN..frame.len() - 1]).is_err());
    }
}
