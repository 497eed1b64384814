//! The event task of a [`super::Messenger`]: decrypts to-device and channel messages, stores
//! shared session keys and retries what waited for them, answers key requests, rotates on
//! membership changes, tops up one-time keys — then saves the state, and only then
//! acknowledges the to-device messages it processed and reports the events
//! (spec `client/direct.md`: acknowledge once what is needed is stored).

use std::sync::Arc;

use mobium_spec::client::{ChannelMessage, DirectMessage, Event};
use mobium_spec::{ErrorCode, MessageId};
use tokio::sync::{mpsc, watch};

use super::events::{ClientEvent, Decryption, DirectText};
use super::payload::{self, Content, ToDevicePayload};
use super::shared::{Shared, now_ms};
use super::state::{CryptoState, hex_lower};
use crate::sdk::{Notice, Notices, SdkError};

/// Notices handled before one save and one acknowledgement.
const BATCH: usize = 256;

/// Per-connection bookkeeping: how many queued messages are still to come. A message that
/// arrived while the queue was counted comes twice (live and queued), so ids are counted once.
struct Sync {
    remaining: u64,
    done: bool,
    ids: std::collections::HashSet<MessageId>,
}

/// Runs until the client is closed.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut notices: Notices,
    events: mpsc::UnboundedSender<ClientEvent>,
    synced: watch::Sender<u64>,
) {
    let mut sync = Sync {
        remaining: 0,
        done: true,
        ids: Default::default(),
    };
    while let Some(first) = notices.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match notices.try_recv() {
                Ok(n) => batch.push(n),
                Err(_) => break,
            }
        }
        let mut out = Vec::new();
        let mut acks: Vec<MessageId> = Vec::new();
        {
            let mut state = shared.state.lock().await;
            for notice in batch {
                match notice {
                    Notice::Connected(authed) => {
                        sync = Sync {
                            remaining: u64::from(authed.queued),
                            done: false,
                            ids: Default::default(),
                        };
                        shared.forget_members(None);
                        out.push(ClientEvent::Connected {
                            user_id: authed.user_id,
                        });
                        replenish(&shared, &mut state).await;
                    }
                    Notice::Disconnected(reason) => out.push(ClientEvent::Disconnected { reason }),
                    Notice::Event(Event::Direct(d)) => {
                        if !sync.done && sync.ids.insert(d.id) {
                            sync.remaining = sync.remaining.saturating_sub(1);
                        }
                        acks.push(d.id);
                        if state.first_time_direct(d.id) {
                            handle_direct(&shared, &mut state, d, &mut out).await;
                        }
                    }
                    Notice::Event(Event::DirectFailed(f)) => {
                        acks.push(f.id);
                        if state.first_time_direct(f.id) {
                            out.push(ClientEvent::DirectFailed {
                                id: f.id,
                                to: f.to,
                                error: f.error,
                            });
                        }
                    }
                    Notice::Event(event) => {
                        handle_event(&shared, &mut state, event, &mut out).await
                    }
                }
            }
            // Someone started a session with the fallback key: publish a new one now.
            if state.fallback_used {
                replenish(&shared, &mut state).await;
            }
            if let Err(e) = shared.persist(&state) {
                // Without a saved state nothing may be acknowledged: the messages come again.
                tracing::error!(error = %e, "could not save the profile");
                acks.clear();
            }
        }
        // Saved: report now, then acknowledge.
        for e in out {
            let _ = events.send(e);
        }
        if !acks.is_empty() {
            for chunk in acks.chunks(mobium_spec::client::MAX_ACK_IDS) {
                if let Err(e) = shared.client.direct_ack(chunk.to_vec()).await {
                    // They come again after the next authentication and are skipped as seen.
                    tracing::debug!(error = %e, "acknowledgement failed");
                }
            }
        }
        if !sync.done && sync.remaining == 0 {
            sync.done = true;
            sync.ids.clear();
            synced.send_modify(|n| *n += 1);
        }
    }
}

/// Publishes keys so the server holds enough one-time keys and a fallback key. The count is
/// asked afresh: `keys_low` events queue up behind each other, and acting on their (older)
/// counts would publish more keys than the account can keep private halves for.
async fn replenish(shared: &Shared, state: &mut CryptoState) {
    let count = match shared.client.keys_count().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "keys_count failed");
            return;
        }
    };
    let with_identity = !state.identity_published;
    let new_fallback = state.fallback_used;
    let Some(upload) = state
        .account
        .prepare_upload(count, with_identity, new_fallback)
    else {
        return;
    };
    // Keep the private halves before the public ones leave.
    if let Err(e) = shared.persist(state) {
        tracing::error!(error = %e, "could not save the profile; keys not published");
        return;
    }
    let fallback = upload.fallback_key.as_ref().map(|k| hex_lower(&k.key));
    match shared.client.keys_upload(upload).await {
        Ok(_) => {}
        // Published by an earlier run that stopped before saving: they are there.
        Err(SdkError::Server(e)) if e.code == ErrorCode::Conflict => {}
        Err(e) => {
            tracing::warn!(error = %e, "keys_upload failed");
            return;
        }
    }
    state.account.mark_published();
    state.identity_published = true;
    if fallback.is_some() {
        state.published_fallback = fallback;
        state.fallback_used = false;
    }
}

async fn handle_direct(
    shared: &Shared,
    state: &mut CryptoState,
    d: DirectMessage,
    out: &mut Vec<ClientEvent>,
) {
    let decrypted = {
        let CryptoState { account, olm, .. } = &mut *state;
        olm.decrypt(account, &shared.me, &d.from, &d.ciphertext, now_ms())
    };
    let text = |decryption: Decryption| {
        ClientEvent::Direct(DirectText {
            id: d.id,
            from: d.from.clone(),
            sent_at: d.sent_at,
            decryption,
        })
    };
    let dec = match decrypted {
        Ok(dec) => dec,
        Err(failure) => {
            out.push(text(Decryption::Failed { failure }));
            return;
        }
    };
    if let Some(used) = dec.used_key
        && state.published_fallback.as_deref() == Some(hex_lower(&used).as_str())
    {
        state.fallback_used = true;
    }
    // A session created from this message was checked against this key (olm.rs).
    if dec.used_key.is_some()
        && let Some(identity) = &dec.payload.sender_identity
    {
        state.note_contact(&d.from, &identity.key, now_ms());
    }
    let p = dec.payload;
    match p.kind.as_str() {
        payload::MEGOLM_SESSION => receive_key(shared, state, &p, out).await,
        payload::MEGOLM_REQUEST => answer_request(shared, state, &p).await,
        payload::MEGOLM_FORWARD => receive_forward(state, &p, out),
        payload::TEXT => out.push(text(Decryption::Ok {
            content: Content::text(p.body.unwrap_or_default()),
        })),
        other => out.push(text(Decryption::Ok {
            content: Content {
                kind: other.to_owned(),
                body: String::new(),
            },
        })),
    }
}

/// Stores a shared session key and decrypts what waited for it.
async fn receive_key(
    shared: &Shared,
    state: &mut CryptoState,
    p: &ToDevicePayload,
    out: &mut Vec<ClientEvent>,
) {
    let (Some(channel), Some(session_id), Some(key)) = (&p.channel, &p.session_id, &p.session_key)
    else {
        tracing::warn!(sender = %p.sender, "malformed megolm_session ignored");
        return;
    };
    match state
        .groups
        .add_inbound(channel, &p.sender, session_id, key)
    {
        Ok(true) => out.push(ClientEvent::KeyReceived {
            channel: channel.clone(),
            sender: p.sender.clone(),
            session_id: session_id.clone(),
        }),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, sender = %p.sender, "session key refused");
            return;
        }
    }
    state
        .requested
        .remove(&(channel.clone(), p.sender.clone(), session_id.clone()));
    for pending in state.take_pending(channel, &p.sender, session_id) {
        let d = shared
            .decrypt_channel(state, &pending.message, pending.edited)
            .await;
        out.push(if pending.edited {
            ClientEvent::MessageEdited(d)
        } else {
            ClientEvent::Message(d)
        });
    }
}

/// Answers a member's `megolm_request` (spec `e2ee.md` §Receiving, missing key, and §Channel
/// metadata): one of our sessions is shared again if they were a member when it was created
/// (any member, for a metadata session); someone else's metadata session that we hold is
/// forwarded (`megolm_forward`). Either way only to a member of the channel now.
async fn answer_request(shared: &Shared, state: &mut CryptoState, p: &ToDevicePayload) {
    let (Some(channel), Some(session_id)) = (&p.channel, &p.session_id) else {
        return;
    };
    let mut share = if let Some(key) = state.groups.key_for_request(channel, session_id, &p.sender)
    {
        let mut share =
            ToDevicePayload::new(payload::MEGOLM_SESSION, shared.me.clone(), p.sender.clone());
        share.session_key = Some(serde_bytes::ByteBuf::from(key));
        share
    } else if let Some((owner, key)) = state.groups.forward_for_request(channel, session_id) {
        let mut share =
            ToDevicePayload::new(payload::MEGOLM_FORWARD, shared.me.clone(), p.sender.clone());
        share.session_key = Some(serde_bytes::ByteBuf::from(key));
        share.session_owner = Some(owner);
        share
    } else {
        tracing::info!(requester = %p.sender, %channel, "key request refused: not shared with them");
        return;
    };
    let is_member = match shared.client.channel_members(channel).await {
        Ok(members) => members.iter().any(|m| m.user == p.sender),
        Err(_) => false,
    };
    if !is_member {
        tracing::info!(requester = %p.sender, %channel, "key request refused: not a member now");
        return;
    }
    share.channel = Some(channel.clone());
    share.session_id = Some(session_id.clone());
    if let Err(e) = shared.send_to_device(state, &p.sender, share).await {
        tracing::warn!(error = %e, "could not answer a key request");
    }
}

/// Stores a metadata session another member forwarded, if we asked them for it.
fn receive_forward(state: &mut CryptoState, p: &ToDevicePayload, out: &mut Vec<ClientEvent>) {
    let (Some(channel), Some(session_id), Some(key), Some(owner)) =
        (&p.channel, &p.session_id, &p.session_key, &p.session_owner)
    else {
        tracing::warn!(sender = %p.sender, "malformed megolm_forward ignored");
        return;
    };
    // Only an answer to our own request: nobody can push sessions on us unasked.
    if !state
        .requested
        .remove(&(channel.clone(), p.sender.clone(), session_id.clone()))
    {
        tracing::info!(sender = %p.sender, %channel, "unrequested megolm_forward ignored");
        return;
    }
    match state.groups.add_forwarded(channel, owner, session_id, key) {
        Ok(true) => out.push(ClientEvent::KeyReceived {
            channel: channel.clone(),
            sender: owner.clone(),
            session_id: session_id.clone(),
        }),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, sender = %p.sender, "forwarded session refused"),
    }
}

async fn handle_event(
    shared: &Shared,
    state: &mut CryptoState,
    event: Event,
    out: &mut Vec<ClientEvent>,
) {
    match event {
        Event::KeysLow(_) => replenish(shared, state).await,
        Event::Message(m) => {
            let d = shared.decrypt_channel(state, &m, false).await;
            out.push(ClientEvent::Message(d));
        }
        Event::MessageEdited(e) => {
            // The edit is encrypted with the editor's session.
            let m = ChannelMessage {
                channel: e.channel,
                id: e.id,
                sender: e.editor,
                ciphertext: e.ciphertext,
                sent_at: e.edited_at,
                edited_at: Some(e.edited_at),
                reply_to: None,
                origin_id: None,
            };
            let d = shared.decrypt_channel(state, &m, true).await;
            out.push(ClientEvent::MessageEdited(d));
        }
        Event::MessageDeleted(d) => out.push(ClientEvent::MessageDeleted {
            channel: d.channel,
            id: d.id,
            deleted_by: d.deleted_by,
        }),
        Event::MemberJoined(m) => {
            shared.forget_members(Some(&m.channel));
            if m.user == shared.me {
                state.joined_at.remove(&m.channel);
            } else {
                state.groups.mark_rotation(&m.channel, false);
                // Whoever set the metadata gives its key to each new member.
                let newcomer = std::collections::BTreeSet::from([m.user.clone()]);
                shared.share_metadata(state, &m.channel, &newcomer).await;
            }
            out.push(ClientEvent::MemberJoined {
                channel: m.channel,
                user: m.user,
            });
        }
        Event::MemberLeft(m) => {
            shared.forget_members(Some(&m.channel));
            if m.user == shared.me {
                state.groups.forget_outbound(&m.channel);
                state.joined_at.remove(&m.channel);
            } else {
                state.groups.mark_rotation(&m.channel, true);
            }
            out.push(ClientEvent::MemberLeft {
                channel: m.channel,
                user: m.user,
                reason: m.reason,
            });
        }
        Event::ChannelUpdated(u) => {
            let meta = shared
                .decrypt_metadata(state, &u.channel, &u.metadata)
                .await;
            out.push(ClientEvent::ChannelUpdated {
                channel: u.channel,
                metadata: meta.into(),
            });
        }
        Event::Presence(p) => out.push(ClientEvent::Presence {
            user: p.user,
            status: p.status,
        }),
        Event::Typing(t) => out.push(ClientEvent::Typing {
            channel: t.channel,
            user: t.user,
        }),
        _ => {}
    }
}
