//! The profile file decoder (`client-api/src/sdk/profile.rs`): a file on disk that another
//! program or a damaged disk may have written. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mobium_client_api::sdk::profile::check_file(data);
});
