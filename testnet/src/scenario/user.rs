//! A scenario's user: one account on one node, driven through the end-to-end encrypting SDK
//! ([`Messenger`]): DMs are Olm-encrypted, channel messages Megolm-encrypted, and what the
//! scenario reads is what the SDK decrypted. The servers only ever see ciphertext.
//!
//! The messenger keeps its connection up by itself (reconnecting with a short backoff when its
//! server restarts); [`User::reconnect`] just waits for that. Its state stays in memory: a
//! scenario's users live as long as the scenario.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, bail};
use mobium_client_api::sdk::e2ee::{ClientEvent, CryptoState, Messenger, MessengerEvents};
use mobium_client_api::sdk::{Backoff, ConnectOptions};
use mobium_spec::client::History;
use mobium_spec::{ChannelId, MessageId, UserId};

use crate::info::NodeInfo;

/// What a user received in a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The host-assigned message id (the channel's order).
    pub id: MessageId,
    /// Who sent it.
    pub sender: UserId,
    /// The decrypted text, or `<undecryptable: reason>`.
    pub text: String,
    /// Whether it was decrypted.
    pub decrypted: bool,
}

/// A connected user.
pub struct User {
    /// A name for reports (`alice@node1`).
    pub label: String,
    messenger: Messenger,
    events: MessengerEvents,
    /// Events read while looking for something else.
    pending: VecDeque<ClientEvent>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("label", &self.label).finish()
    }
}

fn options() -> ConnectOptions {
    ConnectOptions {
        request_timeout: Duration::from_secs(30),
        backoff: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        },
        ..ConnectOptions::default()
    }
}

impl User {
    /// Creates an identity, registers it on `node`, publishes its keys and connects.
    pub async fn connect(node: &NodeInfo, name: &str) -> anyhow::Result<User> {
        let label = format!("{name}@{}", node.short_name());
        let state = CryptoState::generate().context("cannot create an identity")?;
        let (messenger, events) = Messenger::start(state, None, &node.ws_url, options())
            .await
            .with_context(|| format!("{label} cannot connect to {}", node.ws_url))?;
        Ok(User {
            label,
            messenger,
            events,
            pending: VecDeque::new(),
        })
    }

    /// Waits until the user is connected again after its server restarted (the messenger
    /// reconnects by itself).
    pub async fn reconnect(&mut self, _node: &NodeInfo) -> anyhow::Result<()> {
        let found = self
            .next_event(Duration::from_secs(30), |e| {
                matches!(e, ClientEvent::Connected { .. })
            })
            .await?;
        if found.is_none() {
            bail!("{} did not reconnect within 30 s", self.label);
        }
        Ok(())
    }

    /// The user's id.
    pub fn id(&self) -> &UserId {
        self.messenger.user_id()
    }

    /// Sends an Olm-encrypted direct message.
    pub async fn send_dm(&self, to: &UserId, text: &str) -> anyhow::Result<()> {
        self.messenger
            .send_dm(to, text)
            .await
            .with_context(|| format!("{} could not send a DM", self.label))?;
        Ok(())
    }

    /// The next direct message (sender and decrypted text); `None` after `timeout`.
    pub async fn next_dm(&mut self, timeout: Duration) -> anyhow::Result<Option<(UserId, String)>> {
        let found = self
            .next_event(timeout, |e| matches!(e, ClientEvent::Direct(_)))
            .await?;
        Ok(match found {
            Some(ClientEvent::Direct(d)) => Some((d.from, text_of(&d.decryption))),
            _ => None,
        })
    }

    /// Creates a channel hosted by this user's server.
    pub async fn create_channel(&self) -> anyhow::Result<ChannelId> {
        Ok(self.messenger.create_channel().await?)
    }

    /// An invite code for `channel`, in the `code@server` form other servers' users can use.
    pub async fn invite(&self, channel: &ChannelId) -> anyhow::Result<String> {
        let invite = self
            .messenger
            .client()
            .invite_create(channel, None, None)
            .await?;
        Ok(format!("{}@{}", invite.code, self.id().server))
    }

    /// Joins a channel with an invite code.
    pub async fn join(&self, code: &str) -> anyhow::Result<()> {
        self.messenger
            .join(code)
            .await
            .with_context(|| format!("{} could not join", self.label))?;
        Ok(())
    }

    /// Sends `text` to `channel`, Megolm-encrypted.
    pub async fn send_text(&self, channel: &ChannelId, text: &str) -> anyhow::Result<MessageId> {
        let sent = self
            .messenger
            .send_text(channel, text, None)
            .await
            .with_context(|| format!("{} could not send to the channel", self.label))?;
        Ok(sent.id)
    }

    /// The next message in `channel`, decrypted; `None` after `timeout`.
    pub async fn next_message(
        &mut self,
        channel: &ChannelId,
        timeout: Duration,
    ) -> anyhow::Result<Option<Received>> {
        let ch = channel.clone();
        let found = self
            .next_event(
                timeout,
                move |e| matches!(e, ClientEvent::Message(m) if m.channel == ch),
            )
            .await?;
        Ok(match found {
            Some(ClientEvent::Message(m)) => Some(Received {
                id: m.id,
                sender: m.sender,
                text: text_of(&m.decryption),
                decrypted: m.decryption.text().is_some(),
            }),
            _ => None,
        })
    }

    /// The channel's newest `n` messages from history, decrypted, oldest first: what a client
    /// reads for the time it was not connected (live events only reach open connections).
    pub async fn recent_messages(
        &self,
        channel: &ChannelId,
        n: usize,
    ) -> anyhow::Result<Vec<Received>> {
        let mut out: Vec<Received> = Vec::new();
        let mut before = None;
        while out.len() < n {
            let (page, more) = self
                .messenger
                .history(History {
                    channel: channel.clone(),
                    before,
                    after: None,
                    limit: None,
                })
                .await?;
            before = page.iter().map(|m| m.id).min();
            let mut page: Vec<Received> = page
                .into_iter()
                .map(|m| Received {
                    id: m.id,
                    sender: m.sender,
                    text: text_of(&m.decryption),
                    decrypted: m.decryption.text().is_some(),
                })
                .collect();
            page.append(&mut out);
            out = page;
            if !more || before.is_none() {
                break;
            }
        }
        let skip = out.len().saturating_sub(n);
        Ok(out.split_off(skip))
    }

    /// The channel's stored messages as the server holds them (raw ciphertext), oldest first:
    /// evidence of what the servers see.
    pub async fn stored_ciphertexts(&self, channel: &ChannelId) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut before = None;
        loop {
            let page = self
                .messenger
                .client()
                .history(History {
                    channel: channel.clone(),
                    before,
                    after: None,
                    limit: None,
                })
                .await?;
            before = page.messages.iter().map(|m| m.id).min();
            out.extend(page.messages.into_iter().map(|m| m.ciphertext));
            if !page.has_more || before.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// An Olm ciphertext of `text` for `to`, as the server would receive it (not sent).
    pub async fn dm_ciphertext(&self, to: &UserId, text: &str) -> anyhow::Result<Vec<u8>> {
        Ok(self.messenger.encrypt_dm(to, text).await?)
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.messenger.close();
    }

    async fn next_event(
        &mut self,
        timeout: Duration,
        want: impl Fn(&ClientEvent) -> bool,
    ) -> anyhow::Result<Option<ClientEvent>> {
        if let Some(i) = self.pending.iter().position(&want) {
            return Ok(self.pending.remove(i));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Ok(None),
                Ok(None) => bail!("{}: the messenger stopped", self.label),
                Ok(Some(e)) if want(&e) => return Ok(Some(e)),
                Ok(Some(e)) => {
                    // Keep what a later call may look for; drop the rest (presence and such).
                    if matches!(e, ClientEvent::Direct(_) | ClientEvent::Message(_)) {
                        self.pending.push_back(e);
                    }
                }
            }
        }
    }
}

/// The decrypted text, or a marker saying why there is none (so a failure shows in reports).
fn text_of(d: &mobium_client_api::sdk::e2ee::Decryption) -> String {
    match d.text() {
        Some(t) => t.to_owned(),
        None => format!("<undecryptable: {d:?}>"),
    }
}

/// Whether `needle` occurs in `haystack` (plaintext leaking into a ciphertext).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
