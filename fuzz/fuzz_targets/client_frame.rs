//! The client frame decoder (spec `client/transport.md` §Decoding failures): what the server does
//! with every WebSocket binary message, and what the SDK does with every server frame. Nothing may
//! panic, and whatever decodes must re-encode to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mobium_spec::client::{ClientFrame, FrameHead, ServerFrame};
use mobium_spec::encoding;

/// The server's default `SC_MAX_MESSAGE_SIZE`.
const MAX: usize = 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    match encoding::decode_limited::<ClientFrame>(data, MAX) {
        Ok(frame) => {
            let again: ClientFrame =
                encoding::decode(&encoding::encode(&frame)).expect("re-encoding decodes");
            assert_eq!(again, frame);
        }
        // The server's fallback when the frame does not decode.
        Err(_) => {
            let _ = encoding::decode::<FrameHead>(data);
        }
    }
    if let Ok(frame) = encoding::decode::<ServerFrame>(data) {
        let again: ServerFrame =
            encoding::decode(&encoding::encode(&frame)).expect("re-encoding decodes");
        assert_eq!(again, frame);
    }
});
