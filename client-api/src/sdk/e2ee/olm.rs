//! Pairwise Olm sessions for to-device messages (spec `e2ee.md` §Direct messages): starting a
//! session from a claimed, signature-checked key bundle, encrypting with the session that last
//! worked, and decrypting normal and pre-key messages with the checks that bind a session to a
//! user id.

use std::collections::HashMap;

use mobium_spec::client::{KeyBundle, PrekeyKind};
use mobium_spec::{UserId, encoding};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{OlmMessage, Session, SessionConfig, SessionPickle};

use super::E2eeError;
use super::account::UserAccount;
use super::events::DecryptionFailure;
use super::payload::{ToDeviceEnvelope, ToDevicePayload};

/// Sessions kept per peer; older ones are dropped.
const MAX_SESSIONS_PER_PEER: usize = 5;

struct Entry {
    session: Session,
    created_at: u64,
    /// When this session last decrypted a message from the peer (0 = never).
    last_received: u64,
}

/// A session as persisted.
#[derive(Serialize, Deserialize)]
pub(crate) struct EntryPickle {
    peer: UserId,
    session: SessionPickle,
    created_at: u64,
    last_received: u64,
}

/// What a successful decryption yields.
#[derive(Debug)]
pub struct Decrypted {
    /// The checked payload.
    pub payload: ToDevicePayload,
    /// For a pre-key message that created a session: the Curve25519 key of ours it used (a
    /// one-time key, or the fallback key).
    pub used_key: Option<[u8; 32]>,
}

/// Every Olm session of this account, by peer.
#[derive(Default)]
pub struct OlmSessions {
    peers: HashMap<UserId, Vec<Entry>>,
}

impl OlmSessions {
    /// Whether a session with `peer` exists.
    pub fn has_session(&self, peer: &UserId) -> bool {
        self.peers.get(peer).is_some_and(|v| !v.is_empty())
    }

    /// Number of sessions with `peer`.
    pub fn session_count(&self, peer: &UserId) -> usize {
        self.peers.get(peer).map_or(0, Vec::len)
    }

    /// Starts a session with `peer` from a claimed bundle, after checking that the bundle is
    /// `peer`'s and that every key in it is signed by `peer`'s Ed25519 key (spec `e2ee.md`
    /// §Starting a session, step 2).
    pub fn create_outbound(
        &mut self,
        account: &UserAccount,
        peer: &UserId,
        bundle: &KeyBundle,
        now: u64,
    ) -> Result<(), E2eeError> {
        if bundle.user != *peer {
            return Err(E2eeError::BadBundle("the bundle is another user's"));
        }
        if !bundle.identity_key.verify(&peer.key, PrekeyKind::Identity) {
            return Err(E2eeError::BadBundle("identity key signature"));
        }
        let otk = match (&bundle.one_time_key, &bundle.fallback_key) {
            (Some(k), _) if k.verify(&peer.key, PrekeyKind::OneTime) => k,
            (None, Some(k)) if k.verify(&peer.key, PrekeyKind::Fallback) => k,
            (None, None) => return Err(E2eeError::BadBundle("no one-time or fallback key")),
            _ => return Err(E2eeError::BadBundle("one-time or fallback key signature")),
        };
        let identity = Curve25519PublicKey::from_slice(&bundle.identity_key.key)
            .map_err(|_| E2eeError::BadBundle("identity key is not a Curve25519 key"))?;
        let otk = Curve25519PublicKey::from_slice(&otk.key)
            .map_err(|_| E2eeError::BadBundle("one-time key is not a Curve25519 key"))?;
        let session = account
            .inner()
            .create_outbound_session(SessionConfig::version_1(), identity, otk)
            .map_err(|e| E2eeError::Olm(e.to_string()))?;
        self.insert(
            peer.clone(),
            Entry {
                session,
                created_at: now,
                last_received: 0,
            },
        );
        Ok(())
    }

    fn insert(&mut self, peer: UserId, entry: Entry) {
        let list = self.peers.entry(peer).or_default();
        list.push(entry);
        if list.len() > MAX_SESSIONS_PER_PEER {
            // Drop the least useful: never received on, oldest first.
            list.sort_by_key(|e| (e.last_received, e.created_at));
            list.remove(0);
        }
    }

    /// Encrypts `payload` for `peer` with the session that most recently decrypted a message
    /// from them, or else the newest (spec `e2ee.md` §Session reuse). Returns the
    /// [`ToDeviceEnvelope`] bytes, the `ciphertext` of `direct_send`.
    pub fn encrypt(
        &mut self,
        peer: &UserId,
        payload: &ToDevicePayload,
    ) -> Result<Vec<u8>, E2eeError> {
        let entry = self
            .peers
            .get_mut(peer)
            .and_then(|v| v.iter_mut().max_by_key(|e| (e.last_received, e.created_at)))
            .ok_or(E2eeError::NoSession)?;
        let message = entry
            .session
            .encrypt(payload.encode())
            .map_err(|e| E2eeError::Olm(e.to_string()))?;
        let (kind, body) = message.to_parts();
        Ok(encoding::encode(&ToDeviceEnvelope {
            kind: u8::try_from(kind).unwrap_or(u8::MAX),
            body: ByteBuf::from(body),
        }))
    }

    /// Decrypts a to-device `ciphertext` that the server says comes from `from`, addressed to
    /// `me` (spec `e2ee.md` §Receiving). A pre-key message no session accepts creates an
    /// inbound session, kept only if the payload proves it belongs to `from`.
    pub fn decrypt(
        &mut self,
        account: &mut UserAccount,
        me: &UserId,
        from: &UserId,
        ciphertext: &[u8],
        now: u64,
    ) -> Result<Decrypted, DecryptionFailure> {
        let envelope: ToDeviceEnvelope =
            encoding::decode(ciphertext).map_err(DecryptionFailure::corrupt)?;
        let message = OlmMessage::from_parts(usize::from(envelope.kind), &envelope.body)
            .map_err(DecryptionFailure::corrupt)?;
        // Existing sessions first, the most recently useful first.
        if let Some(list) = self.peers.get_mut(from) {
            list.sort_by_key(|e| std::cmp::Reverse((e.last_received, e.created_at)));
            for entry in list.iter_mut() {
                if let OlmMessage::PreKey(m) = &message
                    && m.session_id() != entry.session.session_id()
                {
                    continue;
                }
                if let Ok(plain) = entry.session.decrypt(&message) {
                    entry.last_received = now;
                    let payload = check_payload(&plain, me, from)?;
                    return Ok(Decrypted {
                        payload,
                        used_key: None,
                    });
                }
            }
        }
        let OlmMessage::PreKey(pre_key) = &message else {
            return Err(DecryptionFailure::corrupt(
                "no session with the sender decrypts this message",
            ));
        };
        let created = account
            .inner_mut()
            .create_inbound_session(SessionConfig::version_1(), pre_key.identity_key(), pre_key)
            .map_err(DecryptionFailure::corrupt)?;
        let payload = check_payload(&created.plaintext, me, from)?;
        // Bind the new session to the user id: the sender's identity key, signed by the
        // Ed25519 key in `from`, must be the key the session was made with.
        let bound = payload.sender_identity.as_ref().is_some_and(|p| {
            p.verify(&from.key, PrekeyKind::Identity)
                && p.key.as_slice() == pre_key.identity_key().as_bytes()
        });
        if !bound {
            return Err(DecryptionFailure::SenderMismatch);
        }
        self.insert(
            from.clone(),
            Entry {
                session: created.session,
                created_at: now,
                last_received: now,
            },
        );
        Ok(Decrypted {
            payload,
            used_key: Some(pre_key.one_time_key().to_bytes()),
        })
    }

    /// The sessions as persisted.
    pub(crate) fn pickle(&self) -> Vec<EntryPickle> {
        self.peers
            .iter()
            .flat_map(|(peer, list)| {
                list.iter().map(move |e| EntryPickle {
                    peer: peer.clone(),
                    session: e.session.pickle(),
                    created_at: e.created_at,
                    last_received: e.last_received,
                })
            })
            .collect()
    }

    /// Restores persisted sessions.
    pub(crate) fn from_pickles(pickles: Vec<EntryPickle>) -> Self {
        let mut peers: HashMap<UserId, Vec<Entry>> = HashMap::new();
        for p in pickles {
            peers.entry(p.peer).or_default().push(Entry {
                session: Session::from_pickle(p.session),
                created_at: p.created_at,
                last_received: p.last_received,
            });
        }
        OlmSessions { peers }
    }
}

/// Decodes the plaintext and checks `sender` and `recipient` against what the server says.
fn check_payload(
    plain: &[u8],
    me: &UserId,
    from: &UserId,
) -> Result<ToDevicePayload, DecryptionFailure> {
    let payload: ToDevicePayload = encoding::decode(plain).map_err(DecryptionFailure::corrupt)?;
    if payload.sender != *from || payload.recipient != *me {
        return Err(DecryptionFailure::SenderMismatch);
    }
    Ok(payload)
}
