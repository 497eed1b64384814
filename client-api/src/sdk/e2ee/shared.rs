//! The state a [`Messenger`](super::Messenger)'s public methods and its event task
//! (`process.rs`) share: the crypto state behind one lock, the profile it is saved to, the
//! client connection and a cache of channel members — and the operations both sides need
//! (encrypting and sending to devices, sharing Megolm sessions, decrypting, saving).
//!
//! Both `messenger.rs` and `process.rs` import this module; neither imports the other.

use std::collections::{BTreeSet, HashMap};

use mobium_spec::client::{ChannelMessage, DirectSent};
use mobium_spec::{ChannelId, UserId, encoding};
use tokio::sync::Mutex;

use super::E2eeError;
use super::events::{DecryptedMessage, Decryption, DecryptionFailure};
use super::megolm::GroupFailure;
use super::payload::{self, ChannelMeta, MetadataEnvelope, ToDevicePayload};
use super::state::CryptoState;
use crate::sdk::Client;
use crate::sdk::profile::Profile;

/// Current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How many members besides its owner a client asks for a channel's metadata session.
pub(crate) const METADATA_HELPERS: usize = 3;

/// What the event task and the public methods share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<CryptoState>,
    pub(crate) profile: Option<Profile>,
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
    pub(crate) async fn other_members(
        &self,
        channel: &ChannelId,
    ) -> Result<BTreeSet<UserId>, E2eeError> {
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
    pub(crate) async fn joined_at(
        &self,
        state: &mut CryptoState,
        channel: &ChannelId,
    ) -> Option<u64> {
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
            origin_id: message.origin_id,
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

    /// Asks up to [`METADATA_HELPERS`] of the longest-standing other members of `channel` (not
    /// `owner`, who is asked anyway) to forward `owner`'s metadata session `session_id`.
    async fn ask_members_for_metadata(
        &self,
        state: &mut CryptoState,
        channel: &ChannelId,
        owner: &UserId,
        session_id: String,
    ) {
        let mut members = match self.client.channel_members(channel).await {
            Ok(m) => m,
            Err(e) => {
                tracing::info!(error = %e, %channel, "no member list to ask for the metadata key");
                return;
            }
        };
        members.retain(|m| m.user != self.me && m.user != *owner);
        members.sort_by_key(|m| m.joined_at);
        for m in members.into_iter().take(METADATA_HELPERS) {
            self.ask_for_session(state, channel, &m.user, session_id.clone())
                .await;
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
                let first_ask = !state.requested.contains(&(
                    channel.clone(),
                    sender.clone(),
                    session_id.clone(),
                ));
                self.ask_for_session(state, channel, &sender, session_id.clone())
                    .await;
                // The setter may be offline for long: members who read the metadata can
                // forward it (spec `e2ee.md` §Channel metadata).
                if first_ask {
                    self.ask_members_for_metadata(state, channel, &sender, session_id)
                        .await;
                }
                Err(DecryptionFailure::MissingKey)
            }
        }
    }
}
