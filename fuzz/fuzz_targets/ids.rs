//! Identifier parsing (spec `identity.md`): `PublicKey`, `ServerName`, `UserId`, `ChannelId` and
//! `MessageId` from text. Parsers accept only the canonical form, so whatever parses must print
//! back as exactly the input.
#![no_main]

use std::fmt::Display;
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use mobium_spec::{ChannelId, MessageId, PublicKey, ServerName, UserId};

fn canonical<T: FromStr + Display>(s: &str) {
    if let Ok(v) = s.parse::<T>() {
        assert_eq!(
            v.to_string(),
            s,
            "{} accepted a non-canonical form",
            std::any::type_name::<T>()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    canonical::<PublicKey>(s);
    canonical::<ServerName>(s);
    canonical::<UserId>(s);
    canonical::<ChannelId>(s);
    canonical::<MessageId>(s);
});
