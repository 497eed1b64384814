//! The federation request/response check (spec `federation.md` §Validation): the payload of a
//! signed envelope decoded as a `FedRequest` (inbound), a `FedResponse` (outbound), the bare
//! `txn_id` read when it is neither, and a stored outbox event. Nothing may panic, and whatever
//! decodes must survive a re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mobium_spec::encoding;
use mobium_spec::federation::{FedEvent, FedRequest, FedResponse, MAX_FRAME_BYTES};
use serde::{Deserialize, Serialize};

/// What the inbound side reads from a payload that is not a valid request.
#[derive(Serialize, Deserialize)]
struct IdOnly {
    txn_id: u64,
}

fn round_trips<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = encoding::decode_limited::<T>(data, MAX_FRAME_BYTES) {
        let again: T = encoding::decode(&encoding::encode(&v)).expect("re-encoding decodes");
        assert_eq!(again, v);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trips::<FedRequest>(data);
    round_trips::<FedResponse>(data);
    round_trips::<FedEvent>(data);
    let _ = encoding::decode::<IdOnly>(data);
});
