//! A scenario's user: one account on one node, driven through the client SDK.
//!
//! TEMPORARY TRANSPORT-ONLY VERSION: the end-to-end encrypting SDK (`sdk::e2ee::Messenger`) has
//! not landed in this build yet, so this user sends its text as the message's opaque bytes,
//! unencrypted. The scenarios `dm` and `channel` check what the servers relay and store, find
//! the text there, and fail: they exercise delivery across servers honestly but cannot pass
//! until the encrypting user replaces this one.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, bail};
use mobium_client_api::sdk::{Client, Events};
use mobium_spec::client::{
    ChannelCreate, ChannelJoin, DirectAck, DirectSend, Event, History, InviteCreate, MessageSend,
    Request, Response,
};
use mobium_spec::{ChannelId, Keypair, MessageId, UserId};

use crate::info::NodeInfo;

/// What a user received in a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The host-assigned message id (the channel's order).
    pub id: MessageId,
    /// Who sent it.
    pub sender: UserId,
    /// The decrypted text.
    pub text: String,
    /// Whether it was decrypted (`text` says why not otherwise).
    pub decrypted: bool,
}

/// A connected user.
pub struct User {
    /// A name for reports (`alice@node1`).
    pub label: String,
    key: Keypair,
    client: Client,
    events: Events,
    /// Events read while looking for something else.
    pending: VecDeque<Event>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("label", &self.label).finish()
    }
}

impl User {
    /// Registers a new account on `node` and connects it.
    pub async fn connect(node: &NodeInfo, name: &str) -> anyhow::Result<User> {
        let key = Keypair::generate();
        let (client, events) = crate::probe::connect(&node.ws_url, &key).await?;
        Ok(User {
            label: format!("{name}@{}", node.short_name()),
            key,
            client,
            events,
            pending: VecDeque::new(),
        })
    }

    /// Connects again to `node` (after its server restarted), keeping the account.
    pub async fn reconnect(&mut self, node: &NodeInfo) -> anyhow::Result<()> {
        self.client.close();
        let (client, events) = crate::probe::connect(&node.ws_url, &self.key).await?;
        self.client = client;
        self.events = events;
        self.pending.clear();
        Ok(())
    }

    /// The user's id.
    pub fn id(&self) -> &UserId {
        self.client.user_id()
    }

    /// Sends a direct message.
    pub async fn send_dm(&self, to: &UserId, text: &str) -> anyhow::Result<()> {
        self.client
            .request(Request::DirectSend(DirectSend {
                to: to.clone(),
                ciphertext: text.as_bytes().to_vec(),
            }))
            .await
            .with_context(|| format!("{} could not send a DM", self.label))?;
        Ok(())
    }

    /// The next direct message (sender and text), acknowledged; `None` after `timeout`.
    pub async fn next_dm(&mut self, timeout: Duration) -> anyhow::Result<Option<(UserId, String)>> {
        let Some(Event::Direct(d)) = self
            .next_event(timeout, |e| matches!(e, Event::Direct(_)))
            .await?
        else {
            return Ok(None);
        };
        self.client
            .request(Request::DirectAck(DirectAck { ids: vec![d.id] }))
            .await
            .with_context(|| format!("{} could not acknowledge a DM", self.label))?;
        Ok(Some((
            d.from,
            String::from_utf8_lossy(&d.ciphertext).into_owned(),
        )))
    }

    /// Creates a channel hosted by this user's server.
    pub async fn create_channel(&self) -> anyhow::Result<ChannelId> {
        match self
            .client
            .request(Request::ChannelCreate(ChannelCreate {
                metadata: Vec::new(),
            }))
            .await?
        {
            Response::ChannelCreated(c) => Ok(c.channel),
            other => bail!("unexpected answer to channel_create: {other:?}"),
        }
    }

    /// An invite code for `channel`, in the `code@server` form other servers' users can use.
    pub async fn invite(&self, channel: &ChannelId) -> anyhow::Result<String> {
        match self
            .client
            .request(Request::InviteCreate(InviteCreate {
                channel: channel.clone(),
                max_uses: None,
                expires_in_secs: None,
            }))
            .await?
        {
            Response::Invite(i) => Ok(format!("{}@{}", i.code, self.id().server)),
            other => bail!("unexpected answer to invite_create: {other:?}"),
        }
    }

    /// Joins a channel with an invite code.
    pub async fn join(&self, code: &str) -> anyhow::Result<()> {
        self.client
            .request(Request::ChannelJoin(ChannelJoin {
                code: code.to_owned(),
            }))
            .await
            .with_context(|| format!("{} could not join", self.label))?;
        Ok(())
    }

    /// Sends `text` to `channel`.
    pub async fn send_text(&self, channel: &ChannelId, text: &str) -> anyhow::Result<MessageId> {
        match self
            .client
            .request(Request::MessageSend(MessageSend {
                channel: channel.clone(),
                ciphertext: text.as_bytes().to_vec(),
                reply_to: None,
            }))
            .await
            .with_context(|| format!("{} could not send to the channel", self.label))?
        {
            Response::MessageSent(s) => Ok(s.id),
            other => bail!("unexpected answer to message_send: {other:?}"),
        }
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
                move |e| matches!(e, Event::Message(m) if m.channel == ch),
            )
            .await?;
        Ok(match found {
            Some(Event::Message(m)) => Some(Received {
                id: m.id,
                sender: m.sender,
                text: String::from_utf8_lossy(&m.ciphertext).into_owned(),
                decrypted: true,
            }),
            _ => None,
        })
    }

    /// The channel's stored messages as the server holds them, oldest first: evidence of what
    /// the servers see.
    pub async fn stored_ciphertexts(&self, channel: &ChannelId) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut before = None;
        loop {
            let page = match self
                .client
                .request(Request::History(History {
                    channel: channel.clone(),
                    before,
                    after: None,
                    limit: None,
                }))
                .await?
            {
                Response::Messages(m) => m,
                other => bail!("unexpected answer to history: {other:?}"),
            };
            before = page.messages.iter().map(|m| m.id).min();
            out.extend(page.messages.into_iter().map(|m| m.ciphertext));
            if !page.has_more || before.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// What the server would receive for a DM of `text` to `to` (here: the text itself).
    pub async fn dm_ciphertext(&self, _to: &UserId, text: &str) -> anyhow::Result<Vec<u8>> {
        Ok(text.as_bytes().to_vec())
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.client.close();
    }

    async fn next_event(
        &mut self,
        timeout: Duration,
        want: impl Fn(&Event) -> bool,
    ) -> anyhow::Result<Option<Event>> {
        if let Some(i) = self.pending.iter().position(&want) {
            return Ok(self.pending.remove(i));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Ok(None),
                Ok(None) => bail!("{}: the connection closed", self.label),
                Ok(Some(e)) if want(&e) => return Ok(Some(e)),
                Ok(Some(e)) => {
                    // Keep what a later call may look for; drop the rest (presence and such).
                    if matches!(e, Event::Direct(_) | Event::Message(_)) {
                        self.pending.push_back(e);
                    }
                }
            }
        }
    }
}

/// Whether `needle` occurs in `haystack` (plaintext leaking into a ciphertext).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
