//! The client's whole local state — account, Olm sessions, group sessions, contacts, servers,
//! de-duplication and retry bookkeeping — and its persisted form ([`StateFile`]), which
//! [`crate::sdk::profile`] encrypts at rest.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use mobium_spec::client::ChannelMessage;
use mobium_spec::{ChannelId, MessageId, PublicKey, ServerName, Signer, UserId};
use serde::{Deserialize, Serialize};
use vodozemac::olm::AccountPickle;

use super::E2eeError;
use super::account::UserAccount;
use super::megolm::{GroupPickle, GroupSessions};
use super::olm::{EntryPickle, OlmSessions};
use crate::sdk::profile::{Profile, ProfileError};

/// Version of [`StateFile`].
const STATE_VERSION: u32 = 1;
/// Processed to-device ids remembered for de-duplication.
const SEEN_DIRECT_LIMIT: usize = 4096;
/// Undecryptable channel messages kept for a retry when their key arrives.
const PENDING_LIMIT: usize = 1000;

/// A homeserver this profile has registered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEntry {
    /// WebSocket URL, e.g. `ws://127.0.0.1:8443/v1/ws`.
    pub url: String,
    /// The server's name, as in user ids.
    pub name: ServerName,
    /// When this profile first authenticated there, Unix milliseconds.
    pub registered_at: u64,
    /// Extra certificates (DER, hex) this server's TLS certificate was trusted with (a private
    /// CA, or its own self-signed certificate), so later connections need not be told again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_certs: Vec<String>,
}

impl ServerEntry {
    /// [`trusted_certs`](Self::trusted_certs) as DER; entries that are not hex are skipped.
    pub fn trusted_cert_ders(&self) -> Vec<Vec<u8>> {
        self.trusted_certs
            .iter()
            .filter_map(|h| hex::decode(h).ok())
            .collect()
    }
}

/// Someone this profile has exchanged keys with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Their Curve25519 identity key (hex), as first verified against their user id.
    pub curve25519: String,
    /// A local nickname.
    #[serde(default)]
    pub nickname: Option<String>,
    /// When first seen, Unix milliseconds.
    pub first_seen: u64,
}

/// A channel message waiting for its Megolm key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PendingMessage {
    pub(crate) message: ChannelMessage,
    pub(crate) session_id: String,
    /// Delivered as an edit rather than a new message.
    pub(crate) edited: bool,
}

/// Everything a client keeps between runs.
pub struct CryptoState {
    /// The Olm account (the user's identity).
    pub account: UserAccount,
    /// Olm sessions by peer.
    pub olm: OlmSessions,
    /// Megolm sessions.
    pub groups: GroupSessions,
    /// Known peers.
    pub contacts: BTreeMap<UserId, Contact>,
    /// Registered servers; the first is home.
    pub servers: Vec<ServerEntry>,
    pub(crate) seen_direct: VecDeque<u64>,
    pub(crate) pending: Vec<PendingMessage>,
    /// Sessions already asked for (channel, sender, session id), not to ask on every message.
    pub(crate) requested: BTreeSet<(ChannelId, UserId, String)>,
    /// Own join time per channel, Unix milliseconds.
    pub(crate) joined_at: BTreeMap<ChannelId, u64>,
    /// The fallback key last published (its Curve25519 bytes, hex).
    pub(crate) published_fallback: Option<String>,
    /// The published fallback key was used: publish a new one.
    pub(crate) fallback_used: bool,
    /// The identity key is published on the home server.
    pub(crate) identity_published: bool,
}

/// The persisted form of [`CryptoState`] (JSON inside the profile).
#[derive(Serialize, Deserialize)]
pub struct StateFile {
    version: u32,
    user: PublicKey,
    account: AccountPickle,
    olm: Vec<EntryPickle>,
    groups: GroupPickle,
    #[serde(default)]
    contacts: BTreeMap<UserId, Contact>,
    #[serde(default)]
    servers: Vec<ServerEntry>,
    #[serde(default)]
    seen_direct: VecDeque<u64>,
    #[serde(default)]
    pending: Vec<PendingMessage>,
    #[serde(default)]
    requested: BTreeSet<(ChannelId, UserId, String)>,
    #[serde(default)]
    joined_at: BTreeMap<ChannelId, u64>,
    #[serde(default)]
    published_fallback: Option<String>,
    #[serde(default)]
    fallback_used: bool,
    #[serde(default)]
    identity_published: bool,
}

impl CryptoState {
    /// A new identity with no sessions.
    pub fn generate() -> Result<Self, E2eeError> {
        Ok(Self::with_account(UserAccount::generate()?))
    }

    fn with_account(account: UserAccount) -> Self {
        CryptoState {
            account,
            olm: OlmSessions::default(),
            groups: GroupSessions::default(),
            contacts: BTreeMap::new(),
            servers: Vec::new(),
            seen_direct: VecDeque::new(),
            pending: Vec::new(),
            requested: BTreeSet::new(),
            joined_at: BTreeMap::new(),
            published_fallback: None,
            fallback_used: false,
            identity_published: false,
        }
    }

    /// The user's public key.
    pub fn public_key(&self) -> PublicKey {
        self.account.public_key()
    }

    /// The user id on the home server, once registered.
    pub fn user_id(&self) -> Option<UserId> {
        self.servers
            .first()
            .map(|s| UserId::new(self.public_key(), s.name.clone()))
    }

    /// Records a server (the first becomes home); no-op if known.
    pub fn add_server(&mut self, url: &str, name: ServerName, now: u64) {
        if let Some(s) = self.servers.iter_mut().find(|s| s.name == name) {
            s.url = url.to_owned();
            return;
        }
        self.servers.push(ServerEntry {
            url: url.to_owned(),
            name,
            registered_at: now,
            trusted_certs: Vec::new(),
        });
    }

    /// Remembers `certs` (DER) as trusted for the server named `name`, beside those already
    /// remembered.
    pub fn remember_certs(&mut self, name: &ServerName, certs: &[Vec<u8>]) {
        if let Some(s) = self.servers.iter_mut().find(|s| s.name == *name) {
            for der in certs {
                let h = hex::encode(der);
                if !s.trusted_certs.contains(&h) {
                    s.trusted_certs.push(h);
                }
            }
        }
    }

    /// Records `id` as processed; `false` if it already was (a re-delivery).
    pub(crate) fn first_time_direct(&mut self, id: MessageId) -> bool {
        if self.seen_direct.contains(&id.get()) {
            return false;
        }
        self.seen_direct.push_back(id.get());
        while self.seen_direct.len() > SEEN_DIRECT_LIMIT {
            self.seen_direct.pop_front();
        }
        true
    }

    /// Keeps a message to retry when `session_id` arrives.
    pub(crate) fn keep_pending(
        &mut self,
        message: ChannelMessage,
        session_id: String,
        edited: bool,
    ) {
        if self
            .pending
            .iter()
            .any(|p| p.message.id == message.id && p.message.ciphertext == message.ciphertext)
        {
            return;
        }
        self.pending.push(PendingMessage {
            message,
            session_id,
            edited,
        });
        if self.pending.len() > PENDING_LIMIT {
            self.pending.remove(0);
        }
    }

    /// Takes the messages waiting for `(channel, sender, session_id)`.
    pub(crate) fn take_pending(
        &mut self,
        channel: &ChannelId,
        sender: &UserId,
        session_id: &str,
    ) -> Vec<PendingMessage> {
        let (ready, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| {
                p.message.channel == *channel
                    && p.message.sender == *sender
                    && p.session_id == session_id
            });
        self.pending = rest;
        ready
    }

    /// Records a peer's verified identity key (first one wins).
    pub(crate) fn note_contact(&mut self, peer: &UserId, curve25519: &[u8], now: u64) {
        self.contacts
            .entry(peer.clone())
            .or_insert_with(|| Contact {
                curve25519: hex_lower(curve25519),
                nickname: None,
                first_seen: now,
            });
    }

    /// The Curve25519 fallback key last published (hex), if any.
    pub fn published_fallback(&self) -> Option<&str> {
        self.published_fallback.as_deref()
    }

    /// The persisted form.
    pub fn to_file(&self) -> StateFile {
        StateFile {
            version: STATE_VERSION,
            user: self.public_key(),
            account: self.account.pickle(),
            olm: self.olm.pickle(),
            groups: self.groups.pickle(),
            contacts: self.contacts.clone(),
            servers: self.servers.clone(),
            seen_direct: self.seen_direct.clone(),
            pending: self.pending.clone(),
            requested: self.requested.clone(),
            joined_at: self.joined_at.clone(),
            published_fallback: self.published_fallback.clone(),
            fallback_used: self.fallback_used,
            identity_published: self.identity_published,
        }
    }

    /// Restores the state; refuses a file whose account does not match its user.
    pub fn from_file(f: StateFile) -> Result<Self, E2eeError> {
        if f.version != STATE_VERSION {
            return Err(E2eeError::State(format!(
                "unknown state version {}",
                f.version
            )));
        }
        let account = UserAccount::from_pickle(f.account)?;
        if account.public_key() != f.user {
            return Err(E2eeError::State(
                "account does not match the user key".into(),
            ));
        }
        let mut s = Self::with_account(account);
        s.olm = OlmSessions::from_pickles(f.olm);
        s.groups = GroupSessions::from_pickle(f.groups);
        s.contacts = f.contacts;
        s.servers = f.servers;
        s.seen_direct = f.seen_direct;
        s.pending = f.pending;
        s.requested = f.requested;
        s.joined_at = f.joined_at;
        s.published_fallback = f.published_fallback;
        s.fallback_used = f.fallback_used;
        s.identity_published = f.identity_published;
        Ok(s)
    }

    /// Serialized bytes (JSON) for the profile.
    pub fn to_bytes(&self) -> Result<Vec<u8>, E2eeError> {
        serde_json::to_vec(&self.to_file()).map_err(|e| E2eeError::State(e.to_string()))
    }

    /// Parses bytes written by [`CryptoState::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, E2eeError> {
        let f: StateFile =
            serde_json::from_slice(bytes).map_err(|e| E2eeError::State(e.to_string()))?;
        Self::from_file(f)
    }

    /// Loads the state of an unlocked profile.
    pub fn load(profile: &Profile) -> Result<Self, ProfileError> {
        let bytes = profile.read()?;
        Self::from_bytes(&bytes).map_err(|e| ProfileError::Corrupt(e.to_string()))
    }

    /// Writes the state into `profile` (atomically).
    pub fn save(&self, profile: &Profile) -> Result<(), ProfileError> {
        let bytes = self
            .to_bytes()
            .map_err(|e| ProfileError::Corrupt(e.to_string()))?;
        profile.write(&bytes)
    }
}

/// Lowercase hex.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
