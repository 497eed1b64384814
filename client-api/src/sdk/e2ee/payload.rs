//! The byte formats inside and around the ciphertexts (spec `e2ee.md` §To-device payload,
//! §Channel payload): MessagePack maps with named fields, unknown keys ignored.
//!
//! - [`ToDeviceEnvelope`] is the `ciphertext` of `direct_send`: an Olm message and its type.
//! - [`ToDevicePayload`] is the Olm plaintext: who sends to whom, optionally the sender's
//!   signed identity key, and by `type` a direct message ([`Content`]), a Megolm key share
//!   (`megolm_session`), a key request (`megolm_request`) or a member's forward of a metadata
//!   session (`megolm_forward`).
//! - [`ChannelEnvelope`] is the `ciphertext` of `message_send`: a Megolm message and its
//!   session id; the Megolm plaintext is a [`Content`].

use mobium_spec::client::Prekey;
use mobium_spec::{ChannelId, UserId, encoding};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// `type` of a key share.
pub const MEGOLM_SESSION: &str = "megolm_session";
/// `type` of a key request.
pub const MEGOLM_REQUEST: &str = "megolm_request";
/// `type` of a metadata session forwarded by a member who is not its owner.
pub const MEGOLM_FORWARD: &str = "megolm_forward";
/// `type` of a text message (a direct message payload or a Megolm plaintext).
pub const TEXT: &str = "text";

/// The `ciphertext` of a to-device message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToDeviceEnvelope {
    /// Olm message type: 0 pre-key, 1 normal.
    #[serde(rename = "type")]
    pub kind: u8,
    /// The Olm message bytes.
    pub body: ByteBuf,
}

/// The Olm plaintext of a to-device message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToDevicePayload {
    /// What the payload is: [`MEGOLM_SESSION`], [`MEGOLM_REQUEST`], or client-defined
    /// ([`TEXT`] for a direct message).
    #[serde(rename = "type")]
    pub kind: String,
    /// The sender; must equal the `from` of the `direct` event.
    pub sender: UserId,
    /// The recipient; must equal the receiving user.
    pub recipient: UserId,
    /// The sender's signed Curve25519 identity prekey (this client always sends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_identity: Option<Prekey>,
    /// Key share and request: the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelId>,
    /// Key share and request: the Megolm session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Key share: `SessionKey::to_bytes()`; forward: `ExportedSessionKey::to_bytes()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<ByteBuf>,
    /// Forward: the session's owner (who set the metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_owner: Option<UserId>,
    /// Text message: its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl ToDevicePayload {
    /// A payload of `kind` with no optional field set.
    pub fn new(kind: &str, sender: UserId, recipient: UserId) -> Self {
        ToDevicePayload {
            kind: kind.to_owned(),
            sender,
            recipient,
            sender_identity: None,
            channel: None,
            session_id: None,
            session_key: None,
            session_owner: None,
            body: None,
        }
    }

    /// MessagePack bytes.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }
}

/// The `ciphertext` of a channel message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelEnvelope {
    /// The Megolm session id.
    pub session_id: String,
    /// `MegolmMessage::to_bytes()`.
    pub body: ByteBuf,
}

/// A channel's `metadata` blob (spec `e2ee.md` §Channel metadata): Megolm ciphertext of the
/// setter's metadata session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataEnvelope {
    /// Who encrypted it (the holder of the metadata session).
    pub sender: UserId,
    /// The metadata session id.
    pub session_id: String,
    /// `MegolmMessage::to_bytes()`.
    pub body: ByteBuf,
}

/// A channel's name and topic: the Megolm plaintext of its metadata (client-defined; this
/// client writes `{"name": …, "topic": …}`, absent fields omitted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMeta {
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// What a user wrote: the Megolm plaintext of a channel message, and the content of a direct
/// message. Client-defined; this client writes `{"type": "text", "body": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// Content type; [`TEXT`] for text. Other types are shown as a placeholder.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    #[serde(default)]
    pub body: String,
}

impl Content {
    /// A text message.
    pub fn text(body: impl Into<String>) -> Self {
        Content {
            kind: TEXT.to_owned(),
            body: body.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_ignores_unknown_keys() {
        let key = mobium_spec::Keypair::from_seed([1; 32]).public();
        let alice = UserId::new(key, "a.test".parse().expect("server name"));
        let mut p = ToDevicePayload::new(TEXT, alice.clone(), alice);
        p.body = Some("hi".into());
        let bytes = p.encode();
        let back: ToDevicePayload = encoding::decode(&bytes).expect("decodes");
        assert_eq!(back, p);

        // A later version's extra field is ignored.
        #[derive(Serialize)]
        struct Later<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            body: &'a str,
            colour: &'a str,
        }
        let c: Content = encoding::decode(&encoding::encode(&Later {
            kind: "text",
            body: "x",
            colour: "red",
        }))
        .expect("decodes");
        assert_eq!(c, Content::text("x"));
    }
}
