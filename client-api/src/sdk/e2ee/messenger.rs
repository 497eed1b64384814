//! [`Messenger`]: a persistent [`Client`] with end-to-end encryption. It sends DMs over Olm and
//! channel messages over Megolm (sharing and rotating session keys as spec `e2ee.md` requires),
//! decrypts what arrives, and keeps its state in a [`Profile`] — written before anything that
//! depends on it leaves the process, and before a to-device message is acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mobium_spec::client::{ChannelInfo, ChannelMessage, DirectSent, History, MessageSent};
use mobium_spec::{ChannelId, MessageId, UserId};
use tokio::sync::{Mutex, mpsc, watch};

use super::events::{ClientEvent, DecryptedMessage, DecryptionFailure};
use super::payload::{self, ChannelMeta, Content, ToDevicePayload};
use super::shared::{Shared, now_ms};
use super::state::{CryptoState, hex_lower};
use super::{E2eeError, process};
use crate::sdk::profile::Profile;
use crate::sdk::{Client, ConnectOptions};

/// Decrypted events of a [`Messenger`], in order.
pub type MessengerEvents = mpsc::UnboundedReceiver<ClientEvent>;

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
