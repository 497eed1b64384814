//! Megolm group sessions for channels (spec `e2ee.md` §Channels): one outbound session per
//! channel that rotates on every membership change, after 100 messages and after 7 days; the
//! inbound sessions received from each member, keyed by (channel, sender, session id); replay
//! detection by message index; and the separate metadata session that encrypts a channel's
//! name and topic (§Channel metadata).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mobium_spec::{ChannelId, MessageId, UserId, encoding};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use vodozemac::megolm::{
    DecryptionError, ExportedSessionKey, GroupSession, GroupSessionPickle, InboundGroupSession,
    InboundGroupSessionPickle, MegolmMessage, SessionConfig, SessionKey,
};

use super::E2eeError;
use super::events::DecryptionFailure;
use super::payload::{ChannelEnvelope, ChannelMeta, Content, MetadataEnvelope};

/// Messages one outbound session encrypts before it is replaced.
pub const ROTATE_AFTER_MESSAGES: u32 = 100;
/// Age after which an outbound session is replaced (7 days), in milliseconds.
pub const ROTATE_AFTER_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Old outbound sessions kept to answer key requests.
const ARCHIVE_LIMIT: usize = 256;

struct Outbound {
    session: GroupSession,
    created_at: u64,
    /// Set by a membership event: replace before the next message.
    rotate: bool,
}

/// What is kept of every outbound session, to answer `megolm_request`s.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Shared {
    channel: ChannelId,
    session_key: ByteBuf,
    /// The other members at creation: the only ones a request is answered for.
    shared_with: BTreeSet<UserId>,
    created_at: u64,
    /// A metadata session: every current member may have it, whenever they joined.
    #[serde(default)]
    metadata: bool,
}

struct Inbound {
    session: InboundGroupSession,
    /// Message index → the message id it was first seen on.
    seen: BTreeMap<u32, u64>,
    /// It decrypted the channel's metadata: a member who lacks it may be given it
    /// (`megolm_forward`), since every member may read the metadata.
    metadata: bool,
    /// Forwarded by another member, not shared by its owner: it decrypts metadata only, never
    /// messages (which a member may read only if the sender shared its session with them).
    forwarded: bool,
}

impl Inbound {
    fn new(session: InboundGroupSession, forwarded: bool) -> Self {
        Inbound {
            session,
            seen: BTreeMap::new(),
            metadata: forwarded,
            forwarded,
        }
    }
}

/// Why a channel message did not decrypt.
#[derive(Debug)]
pub enum GroupFailure {
    /// No inbound session `session_id` from the sender yet.
    MissingKey {
        /// The session to ask the sender for.
        session_id: String,
    },
    /// Any other failure.
    Failed(DecryptionFailure),
}

/// A freshly created outbound session that must be shared before use.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Its id.
    pub session_id: String,
    /// `SessionKey::to_bytes()` at creation.
    pub session_key: Vec<u8>,
    /// Who to share it with (the other members).
    pub recipients: BTreeSet<UserId>,
}

/// Every group session of this account.
#[derive(Default)]
pub struct GroupSessions {
    outbound: HashMap<ChannelId, Outbound>,
    /// Metadata sessions by channel (their `rotate` is set when a member leaves).
    metadata: HashMap<ChannelId, Outbound>,
    archive: HashMap<String, Shared>,
    inbound: HashMap<(ChannelId, UserId, String), Inbound>,
}

impl GroupSessions {
    /// Whether the next message in `channel` needs a new session: none yet, a membership event
    /// asked for one, the members differ from those it was shared with, or its message or time
    /// budget is spent.
    pub fn needs_rotation(&self, channel: &ChannelId, others: &BTreeSet<UserId>, now: u64) -> bool {
        let Some(out) = self.outbound.get(channel) else {
            return true;
        };
        let shared_with = self
            .archive
            .get(&out.session.session_id())
            .map(|s| &s.shared_with);
        out.rotate
            || shared_with != Some(others)
            || out.session.message_index() >= ROTATE_AFTER_MESSAGES
            || now.saturating_sub(out.created_at) >= ROTATE_AFTER_MS
    }

    /// Replaces the outbound session of `channel`, remembers whom it is for, and keeps an
    /// inbound copy so that `me` can read its own messages in history.
    pub fn rotate(
        &mut self,
        channel: &ChannelId,
        me: &UserId,
        others: BTreeSet<UserId>,
        now: u64,
    ) -> NewSession {
        let session = GroupSession::new(SessionConfig::version_1());
        let key = session.session_key();
        let session_id = session.session_id();
        self.inbound.insert(
            (channel.clone(), me.clone(), session_id.clone()),
            Inbound::new(
                InboundGroupSession::new(&key, SessionConfig::version_1()),
                false,
            ),
        );
        let session_key = key.to_bytes();
        self.remember(
            session_id.clone(),
            Shared {
                channel: channel.clone(),
                session_key: ByteBuf::from(session_key.clone()),
                shared_with: others.clone(),
                created_at: now,
                metadata: false,
            },
        );
        self.outbound.insert(
            channel.clone(),
            Outbound {
                session,
                created_at: now,
                rotate: false,
            },
        );
        NewSession {
            session_id,
            session_key,
            recipients: others,
        }
    }

    fn remember(&mut self, session_id: String, shared: Shared) {
        if self.archive.len() >= ARCHIVE_LIMIT
            && let Some(oldest) = self
                .archive
                .iter()
                .min_by_key(|(_, s)| s.created_at)
                .map(|(id, _)| id.clone())
        {
            self.archive.remove(&oldest);
        }
        self.archive.insert(session_id, shared);
    }

    /// The metadata session of `channel` to encrypt with, created (and kept for reading,
    /// like [`GroupSessions::rotate`]) when there is none or a member left since. Returns its
    /// id and key, and whether it is new.
    pub fn metadata_session(
        &mut self,
        channel: &ChannelId,
        me: &UserId,
        now: u64,
    ) -> (String, Vec<u8>, bool) {
        if let Some(out) = self.metadata.get(channel)
            && !out.rotate
        {
            let id = out.session.session_id();
            let key = self
                .archive
                .get(&id)
                .map(|s| s.session_key.to_vec())
                .unwrap_or_else(|| out.session.session_key().to_bytes());
            return (id, key, false);
        }
        let session = GroupSession::new(SessionConfig::version_1());
        let key = session.session_key();
        let session_id = session.session_id();
        self.inbound.insert(
            (channel.clone(), me.clone(), session_id.clone()),
            Inbound::new(
                InboundGroupSession::new(&key, SessionConfig::version_1()),
                false,
            ),
        );
        let session_key = key.to_bytes();
        self.remember(
            session_id.clone(),
            Shared {
                channel: channel.clone(),
                session_key: ByteBuf::from(session_key.clone()),
                shared_with: BTreeSet::new(),
                created_at: now,
                metadata: true,
            },
        );
        self.metadata.insert(
            channel.clone(),
            Outbound {
                session,
                created_at: now,
                rotate: false,
            },
        );
        (session_id, session_key, true)
    }

    /// The current metadata session of `channel` (id and key) and which of `members` do not
    /// have it yet; `None` when this user holds no metadata session there.
    pub fn metadata_unshared(
        &self,
        channel: &ChannelId,
        members: &BTreeSet<UserId>,
    ) -> Option<(String, Vec<u8>, Vec<UserId>)> {
        let id = self.metadata.get(channel)?.session.session_id();
        let shared = self.archive.get(&id)?;
        let missing = members
            .iter()
            .filter(|m| !shared.shared_with.contains(*m))
            .cloned()
            .collect();
        Some((id, shared.session_key.to_vec(), missing))
    }

    /// Notes that `members` were sent the metadata session `session_id`.
    pub fn mark_metadata_shared(&mut self, session_id: &str, members: &[UserId]) {
        if let Some(s) = self.archive.get_mut(session_id) {
            s.shared_with.extend(members.iter().cloned());
        }
    }

    /// Encrypts channel metadata with the channel's metadata session (see
    /// [`GroupSessions::metadata_session`]); returns the [`MetadataEnvelope`] bytes.
    pub fn encrypt_metadata(
        &mut self,
        channel: &ChannelId,
        me: &UserId,
        meta: &ChannelMeta,
    ) -> Result<Vec<u8>, E2eeError> {
        let out = self.metadata.get_mut(channel).ok_or(E2eeError::NoSession)?;
        let message = out.session.encrypt(encoding::encode(meta));
        Ok(encoding::encode(&MetadataEnvelope {
            sender: me.clone(),
            session_id: out.session.session_id(),
            body: ByteBuf::from(message.to_bytes()),
        }))
    }

    /// Decrypts a channel's `metadata` blob. Empty metadata is "no metadata".
    pub fn decrypt_metadata(
        &mut self,
        channel: &ChannelId,
        blob: &[u8],
    ) -> Result<Option<(UserId, ChannelMeta)>, GroupFailure> {
        if blob.is_empty() {
            return Ok(None);
        }
        let corrupt =
            |e: &dyn std::fmt::Display| GroupFailure::Failed(DecryptionFailure::corrupt(e));
        let envelope: MetadataEnvelope = encoding::decode(blob).map_err(|e| corrupt(&e))?;
        let k = (
            channel.clone(),
            envelope.sender.clone(),
            envelope.session_id.clone(),
        );
        let Some(inbound) = self.inbound.get_mut(&k) else {
            return Err(GroupFailure::MissingKey {
                session_id: envelope.session_id,
            });
        };
        let message = MegolmMessage::from_bytes(&envelope.body).map_err(|e| corrupt(&e))?;
        let plain = inbound.session.decrypt(&message).map_err(|e| corrupt(&e))?;
        let meta = encoding::decode::<ChannelMeta>(&plain.plaintext).map_err(|e| corrupt(&e))?;
        inbound.metadata = true;
        Ok(Some((envelope.sender, meta)))
    }

    /// Encrypts `content` with the channel's outbound session; returns the
    /// [`ChannelEnvelope`] bytes, the `ciphertext` of `message_send`.
    pub fn encrypt(
        &mut self,
        channel: &ChannelId,
        content: &Content,
    ) -> Result<Vec<u8>, E2eeError> {
        let out = self.outbound.get_mut(channel).ok_or(E2eeError::NoSession)?;
        let message = out.session.encrypt(encoding::encode(content));
        Ok(encoding::encode(&ChannelEnvelope {
            session_id: out.session.session_id(),
            body: ByteBuf::from(message.to_bytes()),
        }))
    }

    /// A membership change: the next message in `channel` uses a new session; after a
    /// departure (`left`), the next metadata update too.
    pub fn mark_rotation(&mut self, channel: &ChannelId, left: bool) {
        if let Some(out) = self.outbound.get_mut(channel) {
            out.rotate = true;
        }
        if left && let Some(out) = self.metadata.get_mut(channel) {
            out.rotate = true;
        }
    }

    /// This user left `channel`: never use its outbound sessions again.
    pub fn forget_outbound(&mut self, channel: &ChannelId) {
        self.outbound.remove(channel);
        self.metadata.remove(channel);
    }

    /// The current outbound session id of `channel`, if any.
    pub fn outbound_session_id(&self, channel: &ChannelId) -> Option<String> {
        self.outbound.get(channel).map(|o| o.session.session_id())
    }

    /// Stores a session key `sender` shared for `channel`. Returns `false` if it was already
    /// known. The key must produce the announced session id.
    pub fn add_inbound(
        &mut self,
        channel: &ChannelId,
        sender: &UserId,
        session_id: &str,
        session_key: &[u8],
    ) -> Result<bool, E2eeError> {
        let key =
            SessionKey::from_bytes(session_key).map_err(|e| E2eeError::Megolm(e.to_string()))?;
        let session = InboundGroupSession::new(&key, SessionConfig::version_1());
        if session.session_id() != session_id {
            return Err(E2eeError::Megolm(
                "session id does not match the key".into(),
            ));
        }
        let k = (channel.clone(), sender.clone(), session_id.to_owned());
        match self.inbound.get(&k) {
            // The owner's own share replaces a forwarded copy (it may decrypt messages too).
            Some(i) if i.forwarded => {}
            Some(_) => return Ok(false),
            None => {}
        }
        self.inbound.insert(k, Inbound::new(session, false));
        Ok(true)
    }

    /// Stores `owner`'s metadata session of `channel` as another member forwarded it
    /// (`megolm_forward`, an export of their inbound session). Returns `false` if it was already
    /// known. It is used for the channel's metadata only (see [`Inbound::forwarded`]); a
    /// forged key cannot pass, as the Megolm MAC and the owner's signature on the metadata
    /// blob are checked when it is decrypted.
    pub fn add_forwarded(
        &mut self,
        channel: &ChannelId,
        owner: &UserId,
        session_id: &str,
        exported_key: &[u8],
    ) -> Result<bool, E2eeError> {
        let key = ExportedSessionKey::from_bytes(exported_key)
            .map_err(|e| E2eeError::Megolm(e.to_string()))?;
        let session = InboundGroupSession::import(&key, SessionConfig::version_1());
        if session.session_id() != session_id {
            return Err(E2eeError::Megolm(
                "session id does not match the key".into(),
            ));
        }
        let k = (channel.clone(), owner.clone(), session_id.to_owned());
        if self.inbound.contains_key(&k) {
            return Ok(false);
        }
        self.inbound.insert(k, Inbound::new(session, true));
        Ok(true)
    }

    /// For a member's `megolm_request` of a metadata session someone else owns: the owner and
    /// an export of our copy, if we hold it and it decrypted the channel's metadata.
    pub fn forward_for_request(
        &self,
        channel: &ChannelId,
        session_id: &str,
    ) -> Option<(UserId, Vec<u8>)> {
        self.inbound
            .iter()
            .find(|((c, _, id), i)| c == channel && id == session_id && i.metadata)
            .map(|((_, owner, _), i)| {
                (
                    owner.clone(),
                    i.session.export_at_first_known_index().to_bytes(),
                )
            })
    }

    /// Decrypts a channel message `id` from `sender` (spec `e2ee.md` §Receiving). Only a session
    /// received from `sender` for `channel` is tried.
    pub fn decrypt(
        &mut self,
        channel: &ChannelId,
        sender: &UserId,
        id: MessageId,
        ciphertext: &[u8],
    ) -> Result<Content, GroupFailure> {
        let corrupt =
            |e: &dyn std::fmt::Display| GroupFailure::Failed(DecryptionFailure::corrupt(e));
        let envelope: ChannelEnvelope = encoding::decode(ciphertext).map_err(|e| corrupt(&e))?;
        let k = (channel.clone(), sender.clone(), envelope.session_id.clone());
        let Some(inbound) = self.inbound.get_mut(&k).filter(|i| !i.forwarded) else {
            return Err(GroupFailure::MissingKey {
                session_id: envelope.session_id,
            });
        };
        let message = MegolmMessage::from_bytes(&envelope.body).map_err(|e| corrupt(&e))?;
        let plain = match inbound.session.decrypt(&message) {
            Ok(p) => p,
            Err(DecryptionError::UnknownMessageIndex(..)) => {
                return Err(GroupFailure::Failed(DecryptionFailure::NotAMemberThen));
            }
            Err(e) => return Err(corrupt(&e)),
        };
        match inbound.seen.get(&plain.message_index) {
            Some(first) if *first != id.get() => {
                return Err(GroupFailure::Failed(DecryptionFailure::Replayed));
            }
            Some(_) => {}
            None => {
                inbound.seen.insert(plain.message_index, id.get());
            }
        }
        encoding::decode::<Content>(&plain.plaintext).map_err(|e| corrupt(&e))
    }

    /// The original session key of one of our sessions, for answering `requester`'s
    /// `megolm_request`: only if the session is of `channel` and was shared with `requester`
    /// at creation (the caller checks current membership).
    pub fn key_for_request(
        &self,
        channel: &ChannelId,
        session_id: &str,
        requester: &UserId,
    ) -> Option<Vec<u8>> {
        let shared = self.archive.get(session_id)?;
        (shared.channel == *channel && (shared.metadata || shared.shared_with.contains(requester)))
            .then(|| shared.session_key.to_vec())
    }

    pub(crate) fn pickle(&self) -> GroupPickle {
        GroupPickle {
            outbound: self
                .outbound
                .iter()
                .map(|(c, o)| OutboundPickle {
                    channel: c.clone(),
                    session: o.session.pickle(),
                    created_at: o.created_at,
                    rotate: o.rotate,
                })
                .collect(),
            metadata: self
                .metadata
                .iter()
                .map(|(c, o)| OutboundPickle {
                    channel: c.clone(),
                    session: o.session.pickle(),
                    created_at: o.created_at,
                    rotate: o.rotate,
                })
                .collect(),
            archive: self.archive.clone(),
            inbound: self
                .inbound
                .iter()
                .map(|((channel, sender, _), i)| InboundPickle {
                    channel: channel.clone(),
                    sender: sender.clone(),
                    session: i.session.pickle(),
                    seen: i.seen.clone(),
                    metadata: i.metadata,
                    forwarded: i.forwarded,
                })
                .collect(),
        }
    }

    pub(crate) fn from_pickle(p: GroupPickle) -> Self {
        GroupSessions {
            outbound: p
                .outbound
                .into_iter()
                .map(|o| {
                    (
                        o.channel,
                        Outbound {
                            session: GroupSession::from_pickle(o.session),
                            created_at: o.created_at,
                            rotate: o.rotate,
                        },
                    )
                })
                .collect(),
            metadata: p
                .metadata
                .into_iter()
                .map(|o| {
                    (
                        o.channel,
                        Outbound {
                            session: GroupSession::from_pickle(o.session),
                            created_at: o.created_at,
                            rotate: o.rotate,
                        },
                    )
                })
                .collect(),
            archive: p.archive,
            inbound: p
                .inbound
                .into_iter()
                .map(|i| {
                    let session = InboundGroupSession::from_pickle(i.session);
                    (
                        (i.channel, i.sender, session.session_id()),
                        Inbound {
                            session,
                            seen: i.seen,
                            metadata: i.metadata,
                            forwarded: i.forwarded,
                        },
                    )
                })
                .collect(),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct OutboundPickle {
    channel: ChannelId,
    session: GroupSessionPickle,
    created_at: u64,
    rotate: bool,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct InboundPickle {
    channel: ChannelId,
    sender: UserId,
    session: InboundGroupSessionPickle,
    seen: BTreeMap<u32, u64>,
    #[serde(default)]
    metadata: bool,
    #[serde(default)]
    forwarded: bool,
}

/// The group sessions as persisted.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct GroupPickle {
    outbound: Vec<OutboundPickle>,
    #[serde(default)]
    metadata: Vec<OutboundPickle>,
    archive: HashMap<String, Shared>,
    inbound: Vec<InboundPickle>,
}
