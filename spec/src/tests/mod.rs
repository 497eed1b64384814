//! Crate-level tests: a proptest round-trip for every wire type, forward compatibility, canonical
//! field order of signed structs, and the golden vectors in `spec/vectors/`.

mod strict;
mod vectors;

use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::*;
use crate::encoding::{decode, encode};
use crate::federation::*;
use crate::*;

fn round_trip<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = encode(value);
    let back: T = decode(&bytes).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

macro_rules! round_trips {
    ($($name:ident: $ty:ty,)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            $(
                #[test]
                fn $name(value in any::<$ty>()) {
                    round_trip(&value)?;
                }
            )*
        }
    };
}

round_trips! {
    rt_public_key: PublicKey,
    rt_signature: Signature,
    rt_server_name: ServerName,
    rt_user_id: UserId,
    rt_channel_id: ChannelId,
    rt_message_id: MessageId,
    rt_permissions: permissions::Permissions,
    rt_override: permissions::Override,
    rt_client_frame: ClientFrame,
    rt_request: Request,
    rt_server_frame: ServerFrame,
    rt_response: Response,
    rt_event: Event,
    rt_error_body: ErrorBody,
    rt_challenge: Challenge,
    rt_auth: Auth,
    rt_authed: Authed,
    rt_prekey: Prekey,
    rt_prekey_kind: PrekeyKind,
    rt_keys_upload: KeysUpload,
    rt_keys_count: KeysCount,
    rt_keys_claim: KeysClaim,
    rt_key_bundle: KeyBundle,
    rt_direct_send: DirectSend,
    rt_direct_sent: DirectSent,
    rt_direct_message: DirectMessage,
    rt_direct_ack: DirectAck,
    rt_direct_acked: DirectAcked,
    rt_channel_ref: ChannelRef,
    rt_member_ref: MemberRef,
    rt_channel_create: ChannelCreate,
    rt_channel_created: ChannelCreated,
    rt_channel_update: ChannelUpdate,
    rt_channel_info: ChannelInfo,
    rt_channels: Channels,
    rt_invite_create: InviteCreate,
    rt_invite_info: InviteInfo,
    rt_invites: Invites,
    rt_invite_revoke: InviteRevoke,
    rt_channel_join: ChannelJoin,
    rt_member: Member,
    rt_members: Members,
    rt_member_event: MemberEvent,
    rt_leave_reason: LeaveReason,
    rt_member_left: MemberLeft,
    rt_role: Role,
    rt_roles: Roles,
    rt_role_create: RoleCreate,
    rt_role_update: RoleUpdate,
    rt_role_ref: RoleRef,
    rt_role_grant: RoleGrant,
    rt_override_target: OverrideTarget,
    rt_override_set: OverrideSet,
    rt_override_clear: OverrideClear,
    rt_effective_permissions: EffectivePermissions,
    rt_message_send: MessageSend,
    rt_message_sent: MessageSent,
    rt_channel_message: ChannelMessage,
    rt_history: History,
    rt_messages: Messages,
    rt_message_edit: MessageEdit,
    rt_message_ref: MessageRef,
    rt_message_edited: MessageEdited,
    rt_message_deleted: MessageDeleted,
    rt_presence_status: PresenceStatus,
    rt_presence_set: PresenceSet,
    rt_presence_entry: PresenceEntry,
    rt_presences: Presences,
    rt_typing_event: TypingEvent,
    rt_fed_request: FedRequest,
    rt_fed_body: FedBody,
    rt_transaction: Transaction,
    rt_fed_response: FedResponse,
    rt_fed_response_body: FedResponseBody,
    rt_ack: Ack,
    rt_rejected: Rejected,
    rt_fed_event: FedEvent,
    rt_fed_direct: FedDirect,
    rt_channel_send: ChannelSend,
    rt_channel_edit: ChannelEdit,
    rt_channel_delete: ChannelDelete,
    rt_channel_leave: ChannelLeave,
    rt_hosted_event: HostedEvent,
    rt_hosted_body: HostedBody,
    rt_ephemeral: Ephemeral,
    rt_query: Query,
    rt_query_result: QueryResult,
}

proptest! {
    #[test]
    fn ids_display_then_parse_is_identity(user in any::<UserId>(), channel in any::<ChannelId>()) {
        prop_assert_eq!(user.to_string().parse::<UserId>(), Ok(user));
        prop_assert_eq!(channel.to_string().parse::<ChannelId>(), Ok(channel));
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode::<ClientFrame>(&bytes);
        let _ = decode::<ServerFrame>(&bytes);
        let _ = decode::<SignedEnvelope>(&bytes);
        let _ = decode::<FedRequest>(&bytes);
    }

    #[test]
    fn signed_envelopes_verify_only_with_the_signer_key(seed in any::<[u8; 32]>(), other in any::<[u8; 32]>(), flip in any::<usize>()) {
        prop_assume!(seed != other);
        let key = Keypair::from_seed(seed);
        let env = SignedEnvelope::sign(Domain::FederationFrame, &KeysCount { one_time: 3, fallback: true }, &key);
        prop_assert!(env.verify::<KeysCount>(Domain::FederationFrame, &key.public()).is_ok());
        prop_assert!(env.verify::<KeysCount>(Domain::ClientAuth, &key.public()).is_err());
        prop_assert!(env.verify::<KeysCount>(Domain::FederationFrame, &Keypair::from_seed(other).public()).is_err());
        let mut tampered = env.clone();
        let i = flip % tampered.payload.len();
        tampered.payload[i] ^= 1;
        prop_assert!(tampered.verify::<KeysCount>(Domain::FederationFrame, &key.public()).is_err());
    }
}

/// A map-encoded value's top-level keys, in encoded order.
fn map_keys(bytes: &[u8]) -> Vec<String> {
    let mut rd = bytes;
    let len = rmp::decode::read_map_len(&mut rd).unwrap_or(0);
    let mut keys = Vec::new();
    for _ in 0..len {
        let mut buf = vec![0u8; 256];
        let Ok(k) = rmp::decode::read_str(&mut rd, &mut buf) else {
            break;
        };
        keys.push(k.to_owned());
        let mut de = rmp_serde::Deserializer::new(&mut rd);
        let _: serde::de::IgnoredAny =
            serde::Deserialize::deserialize(&mut de).unwrap_or(serde::de::IgnoredAny);
    }
    keys
}

#[test]
fn signed_structs_encode_keys_in_ascending_order() {
    let kp = Keypair::from_seed([1; 32]);
    let proof = AuthProof {
        nonce: vec![0; 32],
        server: "example.org".parse().expect("valid"),
        user: kp.public(),
    };
    let statement = PrekeyStatement {
        key: &[5; 32],
        key_id: "AAAAAQ",
        kind: PrekeyKind::OneTime,
        user: kp.public(),
    };
    for (bytes, expected) in [
        (canonical_bytes(&proof), vec!["nonce", "server", "user"]),
        (
            canonical_bytes(&statement),
            vec!["key", "key_id", "kind", "user"],
        ),
    ] {
        let keys = map_keys(&bytes);
        assert_eq!(keys, expected);
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}

#[test]
fn unknown_ops_events_and_fields_are_tolerated() {
    // A request from a newer client: an unknown op with fields we have never heard of.
    #[derive(Serialize)]
    struct Future<'a> {
        op: &'a str,
        wormhole: u32,
    }
    #[derive(Serialize)]
    struct Frame<B> {
        id: u64,
        body: B,
        extra: bool,
    }
    let bytes = encode(&Frame {
        id: 9,
        body: Future {
            op: "open_wormhole",
            wormhole: 1,
        },
        extra: true,
    });
    let frame: ClientFrame = decode(&bytes).expect("decodes");
    assert_eq!(frame.id, 9);
    assert_eq!(frame.body, Request::Unknown);

    // A known op with an extra field still decodes.
    #[derive(Serialize)]
    struct PingPlus<'a> {
        op: &'a str,
        color: &'a str,
    }
    let bytes = encode(&Frame {
        id: 1,
        body: PingPlus {
            op: "ping",
            color: "blue",
        },
        extra: false,
    });
    assert_eq!(
        decode::<ClientFrame>(&bytes).expect("decodes").body,
        Request::Ping
    );

    #[derive(Serialize)]
    struct FutureEvent<'a> {
        kind: &'a str,
        body: Future<'a>,
    }
    let bytes = encode(&FutureEvent {
        kind: "event",
        body: Future {
            op: "x",
            wormhole: 2,
        },
    });
    // Events are tagged by `type`; a body without a known `type` is Unknown.
    #[derive(Serialize)]
    struct TypedFuture<'a> {
        r#type: &'a str,
    }
    #[derive(Serialize)]
    struct FutureEvent2<'a> {
        kind: &'a str,
        body: TypedFuture<'a>,
    }
    assert!(decode::<ServerFrame>(&bytes).is_err());
    let bytes = encode(&FutureEvent2 {
        kind: "event",
        body: TypedFuture { r#type: "hologram" },
    });
    assert_eq!(
        decode::<ServerFrame>(&bytes).expect("decodes"),
        ServerFrame::Event {
            body: Event::Unknown
        }
    );
}

#[test]
fn trailing_bytes_and_oversize_input_are_rejected() {
    let mut bytes = encode(&ClientFrame {
        id: 1,
        body: Request::Ping,
    });
    assert!(decode::<ClientFrame>(&bytes).is_ok());
    assert!(matches!(
        encoding::decode_limited::<ClientFrame>(&bytes, 3),
        Err(encoding::DecodeError::TooLarge { .. })
    ));
    bytes.push(0xc0);
    assert!(decode::<ClientFrame>(&bytes).is_err());
}
