//! The signed envelope decoder (spec `encoding.md` §The signed envelope): a federation frame body
//! decoded as a `SignedEnvelope`, its payload peeked for the origin, and the signature checked.
//! Nothing may panic; a random signature must never verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mobium_spec::federation::{FedRequest, FedResponse, MAX_FRAME_BYTES};
use mobium_spec::{Domain, Keypair, SignedEnvelope, encoding};

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = encoding::decode_limited::<SignedEnvelope>(data, MAX_FRAME_BYTES) else {
        return;
    };
    let _ = envelope.peek::<FedRequest>();
    let _ = envelope.peek::<FedResponse>();
    let key = Keypair::from_seed([7; 32]).public();
    assert!(
        envelope
            .verify::<FedRequest>(Domain::FederationFrame, &key)
            .is_err(),
        "a fuzzed signature verified"
    );
});
