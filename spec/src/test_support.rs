//! proptest strategies for the types whose values are constrained (keys, names, ids, codes).

use proptest::prelude::*;

use crate::{ChannelId, ErrorCode, Keypair, MessageId, PublicKey, ServerName, Signature, UserId};

impl Arbitrary for PublicKey {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        any::<[u8; 32]>()
            .prop_map(|seed| Keypair::from_seed(seed).public())
            .boxed()
    }
}

impl Arbitrary for Signature {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        proptest::collection::vec(any::<u8>(), 64)
            .prop_map(|v| {
                let mut a = [0u8; 64];
                a.copy_from_slice(&v);
                Signature(a)
            })
            .boxed()
    }
}

impl Arbitrary for ServerName {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        prop_oneof![
            "[a-z][a-z0-9-]{0,8}[a-z0-9](\\.[a-z][a-z0-9]{0,8}){0,3}(:[1-9][0-9]{0,3})?",
            "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.(1[0-9][0-9]|[1-9]?[0-9])\\.(1[0-9][0-9]|[1-9]?[0-9])\\.[1-9](:[1-9][0-9]{0,3})?",
        ]
        .prop_filter_map("valid server name", |s| s.parse().ok())
        .boxed()
    }
}

impl Arbitrary for UserId {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        (any::<PublicKey>(), any::<ServerName>())
            .prop_map(|(k, s)| UserId::new(k, s))
            .boxed()
    }
}

impl Arbitrary for ChannelId {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        (1..=u64::MAX, any::<ServerName>())
            .prop_filter_map("non-zero", |(n, s)| ChannelId::new(n, s).ok())
            .boxed()
    }
}

impl Arbitrary for MessageId {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        (1..=u64::MAX)
            .prop_filter_map("non-zero", |n| MessageId::new(n).ok())
            .boxed()
    }
}

/// Any known error code.
pub fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL)
}
