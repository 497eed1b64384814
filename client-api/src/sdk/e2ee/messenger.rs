//! [`Messenger`]: a persistent [`Client`] with end-to-end encryption. It sends DMs over Olm and
//! channel messages over Megolm (sharing and rotating session keys as spec `e2ee.md` requires),
//! decrypts what arrives, and keeps its state in a [`Profile`] — written before anything that
//! depends on it leaves the process, and before a to-device message is acknowledged.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use mobium_spec::client::{ChannelInfo, ChannelMessage, DirectSent, History, MessageSent};
use mobium_spec::{ChannelId, MessageId, UserId, encoding};
use tokio::sync::{Mutex, mpsc, watch};

use super::events::{ClientEvent, DecryptedMessage, Decryption, DecryptionFailure};
use super::megolm::GroupFailure;
use super::payload::{self, ChannelMeta, Content, MetadataEnvelope, ToDevicePayload};
use super::state::{CryptoState, hex_lower};
use super::{E2eeError, process};
use crate::sdk::profile::Profile;
use crate::sdk::{Client, ConnectOptions};

/// Decrypted events of a [`Messenger`], in order.
pub type MessengerEvents = mpsc::UnboundedReceiver<ClientEvent>;

/// Current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the event task and the public methods share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<CryptoState>,
    profile: Option<Profile>,
    pub(crate) me: UserId,
    pub(crate) client: Client,
    /// Channel members as last fetched; dropped on membership events and reconnects, so a
    /// send costs no extra round trip while nothing changes.
    pub(crate) members: std::sync::Mutex<HashMap<ChannelId, BTreeSet<UserId>>>,
}

impl Shared {
    /// Forgets the cached members of `channel` (all channels when `None`).
    pub(crate) fn forget_members(&self, channel: Option<&ChannelId>) {
        let mut cache = self.members.lock().unwrap_or_else(|p| p.into_inner());
        match channel {
            Some(c) => {
                cache.remove(c);
            }
            None => cache.clear(),
        }
    }

    /// The other members of `channel`, from the cache or the server.
    async fn other_members(&self, channel: &ChannelId) -> Result<BTreeSet<UserId>, E2eeError> {
        let cached = self
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned();
        if let Some(m) = cached {
            return Ok(m);
        }
        let others: BTreeSet<UserId> = self
            .client
            .channel_members(channel)
            .await?
            .into_iter()
            .map(|m| m.user)
            .filter(|u| *u != self.me)
            .collect();
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.clone(), others.clone());
        Ok(others)
    }

    /// Writes the state to the profile (a no-op for an in-memory messenger).
    pub(crate) fn persist(&self, state: &CryptoState) -> Result<(), E2eeError> {
        if let Some(p) = &self.profile {
            state.save(p)?;
        }
        Ok(())
    }

    /// Olm-encrypts `payload` for `to` (starting a session from a claimed bundle if there is
    /// none), persists the advanced ratchet, then sends it.
    pub(crate) async fn send_to_device(
        &self,
        state: &mut CryptoState,
        to: &UserId,
        mut payload: ToDevicePayload,
    ) -> Result<DirectSent, E2eeError> {
        if !state.olm.has_session(to) {
            let bundle = self.client.keys_claim(to).await?;
            state
                .olm
                .create_outbound(&state.account, to, &bundle, now_ms())?;
            state.note_contact(to, &bundle.identity_key.key, now_ms());
        }
        payload.sender_identity = Some(state.account.identity_prekey());
        let ciphertext = state.olm.encrypt(to, &payload)?;
        self.persist(state)?;
        Ok(self.client.direct_send(to, ciphertext).await?)
    }

    /// Own join time in `channel`, fetched once (`None` if this user is not a member).
    async fn joined_at(&self, state: &mut CryptoState, channel: &ChannelId) -> Option<u64> {
        if let Some(t) = state.joined_at.get(channel) {
            return Some(*t);
        }
        let members = self.client.channel_members(channel).await.ok()?;
        let t = members.iter().find(|m| m.user == self.me)?.joined_at;
        state.joined_at.insert(channel.clone(), t);
        Some(t)
    }

    /// Decrypts a channel message; on a missing key, keeps the message for a retry and asks
    /// the sender for the key once (spec `e2ee.md` §Receiving).
    pub(crate) async fn decrypt_channel(
        &self,
        state: &mut CryptoState,
        message: &ChannelMessage,
        edited: bool,
    ) -> DecryptedMessage {
        let result = state.groups.decrypt(
            &message.channel,
            &message.sender,
            message.id,
            &message.ciphertext,
        );
        let decryption = match result {
            Ok(content) => Decryption::Ok { content },
            Err(GroupFailure::Failed(failure)) => Decryption::Failed { failure },
            Err(GroupFailure::MissingKey { session_id }) => {
                let failure = match self.joined_at(state, &message.channel).await {
                    Some(joined) if message.sent_at < joined => DecryptionFailure::NotAMemberThen,
                    _ => {
                        self.request_key(state, message, session_id, edited).await;
                        DecryptionFailure::MissingKey
                    }
                };
                Decryption::Failed { failure }
            }
        };
        DecryptedMessage {
            channel: message.channel.clone(),
            id: message.id,
            sender: message.sender.clone(),
            sent_at: message.sent_at,
            edited_at: message.edited_at,
            reply_to: message.reply_to,
            decryption,
        }
    }

    async fn request_key(
        &self,
        state: &mut CryptoState,
        message: &ChannelMessage,
        session_id: String,
        edited: bool,
    ) {
        state.keep_pending(message.clone(), session_id.clone(), edited);
        self.ask_for_session(state, &message.channel, &message.sender, session_id)
            .await;
    }

    /// Sends `sender` one `megolm_request` for its session (not again until the key came).
    pub(crate) async fn ask_for_session(
        &self,
        state: &mut CryptoState,
        channel: &ChannelId,
        sender: &UserId,
        session_id: String,
    ) {
        let key = (channel.clone(), sender.clone(), session_id.clone());
        if *sender == self.me || !state.requested.insert(key) {
            return;
        }
        let mut req =
            ToDevicePayload::new(payload::MEGOLM_REQUEST, self.me.clone(), sender.clone());
        req.channel = Some(channel.clone());
        req.session_id = Some(session_id);
        if let Err(e) = self.send_to_device(state, sender, req).await {
            tracing::warn!(error = %e, %sender, "could not request a session key");
        }
    }

    /// Shares one of our sessions of `channel` with `member` (`megolm_session`).
    pub(crate) async fn share_session(
        &self,
        state: &mut CryptoState,
        channel: &ChannelId,
        member: &UserId,
        session_id: &str,
        session_key: &[u8],
    ) {
        let mut share =
            ToDevicePayload::new(payload::MEGOLM_SESSION, self.me.clone(), member.clone());
        share.channel = Some(channel.clone());
        share.session_id = Some(session_id.to_owned());
        share.session_key = Some(serde_bytes::ByteBuf::from(session_key.to_vec()));
        // A member we cannot reach now can ask for the key later.
        if let Err(e) = self.send_to_device(state, member, share).await {
            tracing::warn!(error = %e, %member, "could not share a session key");
        }
    }

    /// Gives every member in `members` who lacks it this user's metadata session of `channel`.
    pub(crate) async fn share_metadata(
        &self,
        state: &mut CryptoState,
        channel: &ChannelId,
        members: &BTreeSet<UserId>,
    ) {
        let Some((id, key, missing)) = state.groups.metadata_unshared(channel, members) else {
            return;
        };
        for member in &missing {
            self.share_session(state, channel, member, &id, &key).await;
        }
        state.groups.mark_metadata_shared(&id, &missing);
    }

    /// Decrypts a channel's metadata blob; a missing key is asked for.
    pub(crate) async fn decrypt_metadata(
        &self,
        state: &mut CryptoState,
        channel: &ChannelId,
        blob: &[u8],
    ) -> Result<Option<ChannelMeta>, DecryptionFailure> {
        match state.groups.decrypt_metadata(channel, blob) {
            Ok(m) => Ok(m.map(|(_, meta)| meta)),
            Err(GroupFailure::Failed(f)) => Err(f),
            Err(GroupFailure::MissingKey { session_id }) => {
                let sender = match encoding::decode::<MetadataEnvelope>(blob) {
                    Ok(e) => e.sender,
                    Err(e) => return Err(DecryptionFailure::corrupt(e)),
                };
                self.ask_for_session(state, channel, &sender, session_id)
                    .await;
                Err(DecryptionFailure::MissingKey)
            }
        }
    }
}

/// A client that encrypts end to end. Cheap to clone.
#[derive(Clone)]
pub struct Messenger {
    shared: Arc<Shared>,
    synced: watch::Receiver<u64>,
}

impl std::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messenger")
            .field("user_id", &self.shared.me)
            .finish()
    }
}

impl Messenger {
    /// Connects to `url` as the account in `state`, registering if the server admits it
    /// (`opts.invite`), publishes keys, processes the queued to-device messages, and returns
    /// once they are processed. The state is saved to `profile` (or kept in memory when
    /// `None`, for benchmarks).
    pub async fn start(
        mut state: CryptoState,
        profile: Option<Profile>,
        url: &str,
        mut opts: ConnectOptions,
    ) -> Result<(Messenger, MessengerEvents), E2eeError> {
        let known = state.servers.iter().find(|s| s.url == url);
        if opts.expected_server.is_none() {
            opts.expected_server = known.map(|s| s.name.clone());
        }
        // Certificates given now are remembered for this server; remembered ones are used.
        let given_certs = opts.extra_root_certs.clone();
        for der in known.map(|s| s.trusted_cert_ders()).unwrap_or_default() {
            if !opts.extra_root_certs.contains(&der) {
                opts.extra_root_certs.push(der);
            }
        }
        let signer = Arc::new(state.account.signer());
        let (client, notices) = Client::connect_persistent(url, signer, opts).await?;
        let me = client.user_id().clone();
        state.add_server(url, me.server.clone(), now_ms());
        state.remember_certs(&me.server, &given_certs);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            profile,
            me,
            client,
            members: std::sync::Mutex::new(HashMap::new()),
        });
        {
            let state = shared.state.lock().await;
            shared.persist(&state)?;
        }
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (synced_tx, synced_rx) = watch::channel(0u64);
        tokio::spawn(process::run(shared.clone(), notices, ev_tx, synced_tx));
        let messenger = Messenger {
            shared,
            synced: synced_rx,
        };
        messenger.wait_synced(Duration::from_secs(30)).await?;
        Ok((messenger, ev_rx))
    }

    /// Waits until the to-device messages queued at the latest authentication are processed.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), E2eeError> {
        let mut rx = self.synced.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|n| *n > 0)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(crate::sdk::SdkError::Closed.into()),
            Err(_) => Err(crate::sdk::SdkError::Timeout.into()),
        }
    }

    /// Own user id.
    pub fn user_id(&self) -> &UserId {
        &self.shared.me
    }

    /// The underlying client, for operations that carry no content (invites, kick, presence…).
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// Runs `f` on the state (for inspection in tests and tools).
    pub async fn with_state<T>(&self, f: impl FnOnce(&CryptoState) -> T) -> T {
        f(&*self.shared.state.lock().await)
    }

    /// Sends a text DM to `to`, Olm-encrypted.
    pub async fn send_dm(&self, to: &UserId, text: &str) -> Result<DirectSent, E2eeError> {
        let mut payload = ToDevicePayload::new(payload::TEXT, self.shared.me.clone(), to.clone());
        payload.body = Some(text.to_owned());
        let mut state = self.shared.state.lock().await;
        self.shared.send_to_device(&mut state, to, payload).await
    }

    /// Olm-encrypts a DM for `to` without sending it (for tools and tests that send it
    /// themselves, e.g. to check that a tampered copy is detected). The ratchet advances.
    pub async fn encrypt_dm(&self, to: &UserId, text: &str) -> Result<Vec<u8>, E2eeError> {
        let mut guard = self.shared.state.lock().await;
        let state = &mut *guard;
        if !state.olm.has_session(to) {
            let bundle = self.shared.client.keys_claim(to).await?;
            state
                .olm
                .create_outbound(&state.account, to, &bundle, now_ms())?;
        }
        let mut payload = ToDevicePayload::new(payload::TEXT, self.shared.me.clone(), to.clone());
        payload.body = Some(text.to_owned());
        payload.sender_identity = Some(state.account.identity_prekey());
        let ct = state.olm.encrypt(to, &payload)?;
        self.shared.persist(state)?;
        Ok(ct)
    }

    /// Sends a text message to `channel`, Megolm-encrypted. First makes sure every other
    /// current member has this user's current session key, rotating the session if the
    /// members changed since it was shared or its budget is spent.
    pub async fn send_text(
        &self,
        channel: &ChannelId,
        text: &str,
        reply_to: Option<MessageId>,
    ) -> Result<MessageSent, E2eeError> {
        let ciphertext = self
            .encrypt_for_channel(channel, &Content::text(text))
            .await?;
        Ok(self
            .shared
            .client
            .message_send(channel, ciphertext, reply_to)
            .await?)
    }

    /// Megolm-encrypts `content` for `channel` (sharing or rotating the session as
    /// [`Messenger::send_text`] does) and returns the `message_send` ciphertext.
    pub async fn encrypt_for_channel(
        &self,
        channel: &ChannelId,
        content: &Content,
    ) -> Result<Vec<u8>, E2eeError> {
        // Under the state lock, so no membership event is handled between reading the
        // members and using them.
        let mut state = self.shared.state.lock().await;
        let others = self.shared.other_members(channel).await?;
        let now = now_ms();
        if state.groups.needs_rotation(channel, &others, now) {
            let new = state.groups.rotate(channel, &self.shared.me, others, now);
            self.shared.persist(&state)?;
            for member in &new.recipients {
                self.shared
                    .share_session(
                        &mut state,
                        channel,
                        member,
                        &new.session_id,
                        &new.session_key,
                    )
                    .await;
            }
            // Members who joined since the name was set get it now too.
            self.shared
                .share_metadata(&mut state, channel, &new.recipients)
                .await;
        }
        let ct = state.groups.encrypt(channel, content)?;
        self.shared.persist(&state)?;
        Ok(ct)
    }

    /// Creates a channel (with empty metadata); this user is its owner and only member.
    pub async fn create_channel(&self) -> Result<ChannelId, E2eeError> {
        let channel = self.shared.client.channel_create(Vec::new()).await?;
        let mut state = self.shared.state.lock().await;
        state.joined_at.insert(channel.clone(), now_ms());
        self.shared.persist(&state)?;
        Ok(channel)
    }

    /// Creates a channel whose name (and topic) are encrypted in its metadata.
    pub async fn create_channel_with(&self, meta: &ChannelMeta) -> Result<ChannelId, E2eeError> {
        let channel = self.create_channel().await?;
        if *meta != ChannelMeta::default() {
            self.set_metadata(&channel, meta).await?;
        }
        Ok(channel)
    }

    /// Encrypts `meta` with this user's metadata session for `channel` (shared with every
    /// member when new; later joiners get it when this client sees them join, or on request)
    /// and stores it with `channel_update`.
    pub async fn set_metadata(
        &self,
        channel: &ChannelId,
        meta: &ChannelMeta,
    ) -> Result<(), E2eeError> {
        let mut state = self.shared.state.lock().await;
        let others = self.shared.other_members(channel).await?;
        let (_, _, new) = state
            .groups
            .metadata_session(channel, &self.shared.me, now_ms());
        if new {
            self.shared.persist(&state)?;
        }
        self.shared
            .share_metadata(&mut state, channel, &others)
            .await;
        let blob = state
            .groups
            .encrypt_metadata(channel, &self.shared.me, meta)?;
        self.shared.persist(&state)?;
        drop(state);
        Ok(self.shared.client.channel_update(channel, blob).await?)
    }

    /// The caller's channels with their decrypted metadata (or why it cannot be read; a missing
    /// key is asked for).
    pub async fn channels(
        &self,
    ) -> Result<Vec<(ChannelInfo, Result<Option<ChannelMeta>, DecryptionFailure>)>, E2eeError> {
        let list = self.shared.client.channel_list().await?;
        let mut state = self.shared.state.lock().await;
        let mut out = Vec::with_capacity(list.len());
        for info in list {
            let meta = self
                .shared
                .decrypt_metadata(&mut state, &info.channel, &info.metadata)
                .await;
            out.push((info, meta));
        }
        self.shared.persist(&state)?;
        Ok(out)
    }

    /// Joins a channel with an invite code and records when.
    pub async fn join(&self, code: &str) -> Result<ChannelInfo, E2eeError> {
        let info = self.shared.client.channel_join(code).await?;
        self.shared.forget_members(Some(&info.channel));
        let mut state = self.shared.state.lock().await;
        state.joined_at.remove(&info.channel);
        let _ = self.shared.joined_at(&mut state, &info.channel).await;
        self.shared.persist(&state)?;
        Ok(info)
    }

    /// Removes `user` from `channel`; the next message uses a session they never get.
    pub async fn kick(&self, channel: &ChannelId, user: &UserId) -> Result<(), E2eeError> {
        self.shared.client.channel_kick(channel, user).await?;
        self.shared.forget_members(Some(channel));
        let mut state = self.shared.state.lock().await;
        state.groups.mark_rotation(channel, true);
        self.shared.persist(&state)?;
        Ok(())
    }

    /// One page of `channel`'s history, decrypted (ascending by id), and whether more lies
    /// beyond it. Missing keys are requested from their senders.
    pub async fn history(
        &self,
        query: History,
    ) -> Result<(Vec<DecryptedMessage>, bool), E2eeError> {
        let page = self.shared.client.history(query).await?;
        let mut state = self.shared.state.lock().await;
        let mut out = Vec::with_capacity(page.messages.len());
        for m in &page.messages {
            out.push(self.shared.decrypt_channel(&mut state, m, false).await);
        }
        self.shared.persist(&state)?;
        Ok((out, page.has_more))
    }

    /// Decrypts one channel message as it would be if it arrived now (for messages obtained
    /// some other way, and for tests of tampering and removal).
    pub async fn decrypt(&self, message: &ChannelMessage) -> DecryptedMessage {
        let mut state = self.shared.state.lock().await;
        let d = self
            .shared
            .decrypt_channel(&mut state, message, false)
            .await;
        if let Err(e) = self.shared.persist(&state) {
            tracing::warn!(error = %e, "could not save the profile");
        }
        d
    }

    /// The id of this user's current outbound Megolm session in `channel`.
    pub async fn outbound_session_id(&self, channel: &ChannelId) -> Option<String> {
        self.shared
            .state
            .lock()
            .await
            .groups
            .outbound_session_id(channel)
    }

    /// The hex Curve25519 identity key of this account.
    pub async fn curve25519_hex(&self) -> String {
        hex_lower(&self.shared.state.lock().await.account.curve25519())
    }

    /// Closes the connection for good. The state is already saved.
    pub fn close(&self) {
        self.shared.client.close();
    }
}
