//! Golden vectors (`spec/vectors/*.json`): inputs are read from the files, outputs recomputed and
//! compared. Run with `MOBIUM_BLESS_VECTORS=1` to rewrite the files after a deliberate change
//! (which is a protocol change: bump the version and say so in `spec/versioning.md`).

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::client::*;
use crate::encoding::{decode, encode};
use crate::federation::*;
use crate::*;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("vectors")
        .join(name)
}

fn bless() -> bool {
    std::env::var_os("MOBIUM_BLESS_VECTORS").is_some()
}

/// Compares `generated` with the stored file (or writes it when blessing).
fn check_file(name: &str, generated: &Value) -> Value {
    let p = path(name);
    if bless() {
        let text = serde_json::to_string_pretty(generated).expect("json") + "\n";
        std::fs::write(&p, text).expect("write vectors");
    }
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with MOBIUM_BLESS_VECTORS=1 once)",
            p.display()
        )
    });
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn seed(hex_text: &str) -> Keypair {
    let bytes: [u8; 32] = hex::decode(hex_text)
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    Keypair::from_seed(bytes)
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("missing {k}"))
        .to_owned()
}

const USER_SEED: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const SERVER_SEED: &str = "0202020202020202020202020202020202020202020202020202020202020202";

#[test]
fn key_vectors() {
    let generated = json!(
        [
            USER_SEED,
            SERVER_SEED,
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
        ]
        .iter()
        .map(|s| json!({"seed": s, "public_key": seed(s).public().to_string()}))
        .collect::<Vec<_>>()
    );
    let stored = check_file("keys.json", &generated);
    for case in stored.as_array().expect("array") {
        assert_eq!(
            seed(&s(case, "seed")).public().to_string(),
            s(case, "public_key")
        );
    }
    // RFC 8032 test 1: the third seed must give the published public key.
    assert_eq!(
        stored[2]["public_key"],
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
}

#[test]
fn id_vectors() {
    let user = seed(USER_SEED).public();
    let generated = json!({
        "server_name": {
            "valid": ["example.org", "example.org:8448", "node1.mobium.test:7101", "192.0.2.1", "[2001:db8::1]:7101", "localhost"],
            "invalid": ["", "Example.org", "example.org.", "a..b", "-a.org", "a-.org", "example.org:0",
                        "example.org:65536", "example.org:08448", "example.org:", "::1", "[::0001]", "01.2.3.4", "1.2.3", "caf\u{e9}.org"]
        },
        "user_id": {
            "valid": [format!("{user}@example.org"), format!("{user}@node1.mobium.test:7101")],
            "invalid": [user.to_string(), format!("{}@example.org", user.to_string().to_uppercase()),
                        format!("{}@example.org", &user.to_string()[..63]), format!("{user}@"), format!("{user}@Example.org"),
                        format!("0100000000000000000000000000000000000000000000000000000000000000@example.org")]
        },
        "channel_id": {
            "valid": ["#1@example.org", "#18446744073709551615@alpha.test:7101"],
            "invalid": ["1@example.org", "#0@example.org", "#01@example.org", "#-1@example.org", "#1", "#18446744073709551616@a.org", "#1@"]
        },
        "message_id": {
            "valid": ["1", "18446744073709551615"],
            "invalid": ["0", "01", "-1", "+1", "", "1.0", "18446744073709551616"]
        }
    });
    let stored = check_file("ids.json", &generated);
    fn check<T: std::str::FromStr + std::fmt::Display>(v: &Value) {
        for ok in v["valid"].as_array().expect("valid") {
            let text = ok.as_str().expect("str");
            let parsed: T = text.parse().unwrap_or_else(|_| panic!("rejected {text}"));
            assert_eq!(parsed.to_string(), text);
        }
        for bad in v["invalid"].as_array().expect("invalid") {
            let text = bad.as_str().expect("str");
            assert!(text.parse::<T>().is_err(), "accepted {text:?}");
        }
    }
    check::<ServerName>(&stored["server_name"]);
    check::<UserId>(&stored["user_id"]);
    check::<ChannelId>(&stored["channel_id"]);
    check::<MessageId>(&stored["message_id"]);
}

#[test]
fn message_id_vectors() {
    let calls = [
        (7u16, MOBIUM_EPOCH_MS + 1),
        (7, MOBIUM_EPOCH_MS + 1),
        (7, MOBIUM_EPOCH_MS + 86_400_000),
        (7, MOBIUM_EPOCH_MS + 86_400_000 - 5),
    ];
    let mut g = MessageIdGenerator::new(7);
    let generated = json!({
        "node": 7,
        "calls": calls.iter().map(|(_, ms)| json!({"unix_ms": ms, "id": g.next(*ms).get().to_string()})).collect::<Vec<_>>()
    });
    let stored = check_file("message_ids.json", &generated);
    let node = u16::try_from(stored["node"].as_u64().expect("node")).expect("u16");
    let mut g = MessageIdGenerator::new(node);
    for call in stored["calls"].as_array().expect("calls") {
        let id = g.next(call["unix_ms"].as_u64().expect("ms"));
        assert_eq!(id.get().to_string(), s(call, "id"));
    }
}

fn signature_case(name: &str, domain: Domain, key: &Keypair, bytes: &[u8]) -> Value {
    json!({
        "name": name,
        "domain": domain.as_str(),
        "signer_seed": hex::encode(key.secret_bytes()),
        "signer_public_key": key.public().to_string(),
        "canonical_hex": hex::encode(bytes),
        "signing_input_hex": hex::encode(domain.signing_input(bytes)),
        "signature_hex": key.sign(domain, bytes).to_hex(),
    })
}

fn domain_named(name: &str) -> Domain {
    [
        Domain::ClientAuth,
        Domain::Prekey,
        Domain::FederationFrame,
        Domain::UsernameBinding,
    ]
    .into_iter()
    .find(|d| d.as_str() == name)
    .unwrap_or_else(|| panic!("unknown domain {name}"))
}

fn sample_fed_request() -> FedRequest {
    let user = UserId::new(
        seed(USER_SEED).public(),
        "alpha.test:7101".parse().expect("name"),
    );
    FedRequest {
        origin: "alpha.test:7101".parse().expect("name"),
        destination: "beta.test:7102".parse().expect("name"),
        txn_id: 1,
        ts: MOBIUM_EPOCH_MS + 1000,
        body: FedBody::Transaction(Transaction {
            events: vec![FedEvent::Direct(FedDirect {
                id: MessageId::new(4_194_304_001).expect("id"),
                from: user.clone(),
                to: UserId::new(
                    seed(SERVER_SEED).public(),
                    "beta.test:7102".parse().expect("name"),
                ),
                ciphertext: b"olm ciphertext".to_vec(),
                sent_at: MOBIUM_EPOCH_MS + 999,
            })],
            ephemeral: vec![Ephemeral::Presence {
                user,
                status: PresenceStatus::Online,
            }],
        }),
    }
}

/// The answer to [`sample_fed_request`]: an ack that defers its event (the recipient's queue is
/// full), signed by the responder.
fn sample_fed_response() -> FedResponse {
    FedResponse {
        origin: "beta.test:7102".parse().expect("name"),
        destination: "alpha.test:7101".parse().expect("name"),
        txn_id: 1,
        ts: MOBIUM_EPOCH_MS + 1001,
        body: FedResponseBody::Ack(Ack {
            rejected: Vec::new(),
            deferred: vec![Rejected {
                index: 0,
                error: ErrorBody {
                    code: ErrorCode::QueueFull,
                    message: "the recipient's offline queue is full; send again later".into(),
                    retry_after_ms: Some(250),
                },
            }],
        }),
    }
}

#[test]
fn signature_vectors() {
    let user = seed(USER_SEED);
    let server = seed(SERVER_SEED);
    let proof = AuthProof {
        nonce: (0u8..32).collect(),
        server: "example.org".parse().expect("name"),
        user: user.public(),
    };
    let statement = PrekeyStatement {
        key: &[0x11; 32],
        key_id: "AAAAAQ",
        kind: PrekeyKind::OneTime,
        user: user.public(),
    };
    let envelope = SignedEnvelope::sign(Domain::FederationFrame, &sample_fed_request(), &server);
    let answer = SignedEnvelope::sign(Domain::FederationFrame, &sample_fed_response(), &user);
    let generated = json!([
        signature_case(
            "auth_proof",
            Domain::ClientAuth,
            &user,
            &canonical_bytes(&proof)
        ),
        signature_case(
            "prekey_one_time",
            Domain::Prekey,
            &user,
            &canonical_bytes(&statement)
        ),
        signature_case(
            "federation_frame",
            Domain::FederationFrame,
            &server,
            &envelope.payload
        ),
        signature_case(
            "federation_answer_deferred",
            Domain::FederationFrame,
            &user,
            &answer.payload
        ),
    ]);
    let stored = check_file("signatures.json", &generated);
    for case in stored.as_array().expect("array") {
        let key = seed(&s(case, "signer_seed"));
        assert_eq!(key.public().to_string(), s(case, "signer_public_key"));
        let domain = domain_named(&s(case, "domain"));
        let bytes = hex::decode(s(case, "canonical_hex")).expect("hex");
        assert_eq!(
            hex::encode(domain.signing_input(&bytes)),
            s(case, "signing_input_hex")
        );
        let sig = Signature::from_hex(&s(case, "signature_hex")).expect("sig");
        assert_eq!(key.sign(domain, &bytes), sig, "{}", s(case, "name"));
        assert!(key.public().verify(domain, &bytes, &sig));
    }
    // The stored bytes are what this implementation produces for the same values.
    assert_eq!(
        stored[0]["canonical_hex"],
        hex::encode(canonical_bytes(&proof))
    );
    assert_eq!(
        stored[1]["canonical_hex"],
        hex::encode(canonical_bytes(&statement))
    );
    let fed: FedRequest =
        decode(&hex::decode(s(&stored[2], "canonical_hex")).expect("hex")).expect("decodes");
    assert_eq!(fed, sample_fed_request());
    let back: FedResponse =
        decode(&hex::decode(s(&stored[3], "canonical_hex")).expect("hex")).expect("decodes");
    assert_eq!(back, sample_fed_response());
    assert!(
        AuthProof { ..proof }
            .verify(&Signature::from_hex(&s(&stored[0], "signature_hex")).expect("sig"))
    );
}

#[test]
fn frame_vectors() {
    let user = UserId::new(
        seed(USER_SEED).public(),
        "example.org".parse().expect("name"),
    );
    let channel: ChannelId = "#4194304001@example.org".parse().expect("channel");
    let frames: Vec<(&str, Value, Vec<u8>)> = vec![
        {
            let v = ClientFrame {
                id: 1,
                body: Request::Ping,
            };
            (
                "client_ping",
                serde_json::to_value(&v).expect("json"),
                encode(&v),
            )
        },
        {
            let v = ClientFrame {
                id: 2,
                body: Request::MessageSend(MessageSend {
                    channel: channel.clone(),
                    ciphertext: vec![1, 2, 3],
                    reply_to: None,
                    txn: None,
                }),
            };
            (
                "client_message_send",
                serde_json::to_value(&v).expect("json"),
                encode(&v),
            )
        },
        {
            let v = ClientFrame {
                id: 5,
                body: Request::MessageSend(MessageSend {
                    channel: channel.clone(),
                    ciphertext: vec![1, 2, 3],
                    reply_to: None,
                    txn: Some("4f1c2a9b0e7d4c3a8b6f5e4d3c2b1a09".into()),
                }),
            };
            (
                "client_message_send_txn",
                serde_json::to_value(&v).expect("json"),
                encode(&v),
            )
        },
        {
            let v = ServerFrame::Event {
                body: Event::DirectFailed(DirectFailed {
                    id: MessageId::new(4_194_304_003).expect("id"),
                    to: user.clone(),
                    error: ErrorBody::new(ErrorCode::NotFound, "no such user on this server"),
                }),
            };
            (
                "server_direct_failed",
                serde_json::to_value(&v).expect("json"),
                encode(&v),
            )
        },
        {
            let v = ServerFrame::Response {
                id: 2,
                body: Response::MessageSent(MessageSent {
                    channel: channel.clone(),
                    id: MessageId::new(4_194_304_002).expect("id"),
                    sent_at: MOBIUM_EPOCH_MS + 1,
                }),
            };
            (
                "server_message_sent",
                serde_json::to_value(&v).expect("json"),
                encode(&v),
            )
        },
        {
            let v = ServerFrame::Error {
                id: Some(3),
                error: ErrorBody {
                    code: ErrorCode::RateLimited,
                    message: "slow down".into(),
                    retry_after_ms: Some(250),
                },
            };
            (
                "server_rate_limited",
                serde_json::to_value(&v).expect("json"),
                encode(&v),
            )
        },
        {
            let v = ServerFrame::Event {
                body: Event::Presence(PresenceEntry {
                    user,
                    status: PresenceStatus::Dnd,
                }),
            };
            (
                "server_presence_event",
                serde_json::to_value(&v).expect("json"),
                encode(&v),
            )
        },
    ];
    let mut generated: Vec<Value> = frames
        .iter()
        .map(
            |(name, j, bytes)| json!({"name": name, "value": j, "msgpack_hex": hex::encode(bytes)}),
        )
        .collect();
    generated.extend(malformed_frames().into_iter().map(|(name, why, bytes)| {
        json!({"name": name, "malformed": why, "msgpack_hex": hex::encode(bytes)})
    }));
    let stored = check_file("frames.json", &json!(generated));
    for case in stored.as_array().expect("array") {
        let bytes = hex::decode(s(case, "msgpack_hex")).expect("hex");
        let name = s(case, "name");
        if case.get("malformed").is_some() {
            assert!(
                matches!(
                    decode::<ClientFrame>(&bytes),
                    Err(crate::encoding::DecodeError::Malformed(_))
                ),
                "{name} must be refused"
            );
            continue;
        }
        let (json_value, reencoded) = if name.starts_with("client_") {
            let v: ClientFrame = decode(&bytes).expect("decodes");
            (serde_json::to_value(&v).expect("json"), encode(&v))
        } else {
            let v: ServerFrame = decode(&bytes).expect("decodes");
            (serde_json::to_value(&v).expect("json"), encode(&v))
        };
        assert_eq!(json_value, case["value"], "{name}");
        assert_eq!(reencoded, bytes, "{name}");
    }
}

/// Client frames every decoder must refuse as `malformed` (spec `encoding.md`), with why.
fn malformed_frames() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use super::strict::*;
    let mut positional_frame = vec![0x92, 105, 0x81];
    put_str(&mut positional_frame, "op");
    put_str(&mut positional_frame, "ping");
    let mut positional_body = vec![0x91];
    put_str(&mut positional_body, "ping");
    vec![
        (
            "client_malformed_bin_as_str",
            "message_send.ciphertext is the str \"x\", not bin",
            frame_with_body(30, &message_send_with_ciphertext(&[0xa1, b'x'])),
        ),
        (
            "client_malformed_bin_as_integers",
            "message_send.ciphertext is the array [1, 2, 3], not bin",
            frame_with_body(31, &message_send_with_ciphertext(&[0x93, 1, 2, 3])),
        ),
        (
            "client_malformed_positional_frame",
            "the frame is the array [105, {\"op\": \"ping\"}], not a map",
            positional_frame,
        ),
        (
            "client_malformed_positional_body",
            "the body is the array [\"ping\"], not a map",
            frame_with_body(106, &positional_body),
        ),
        (
            "client_malformed_repeated_key",
            "the body {\"op\": \"ping\", \"x\": 1, \"x\": 1} repeats the key \"x\"",
            frame_with_body(107, &ping_with_repeated_key(2)),
        ),
        (
            "client_malformed_too_deep",
            "33 levels of nesting (an ignored key holds 31 nested arrays)",
            frame_with_body(108, &ping_nested(crate::encoding::MAX_DEPTH + 1)),
        ),
    ]
}
