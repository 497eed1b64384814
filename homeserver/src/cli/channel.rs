//! `mobium client channel create|rename|list|members|send|history|kick|leave`: channels, whose
//! messages, names and topics are Megolm-encrypted by the members.

use clap::{Args, Subcommand};
use std::time::Duration;

use mobium_client_api::sdk::e2ee::{
    ChannelMeta, ClientEvent, DecryptedMessage, Messenger, MessengerEvents, MetadataDecryption,
};
use mobium_spec::client::History;
use mobium_spec::{ChannelId, MessageId};
use serde_json::json;

use super::{CliError, Ctx, parse_channel, parse_message_id, parse_user};

#[derive(Subcommand, Debug)]
pub(crate) enum ChannelCommand {
    /// Create a channel on the home server (you are its owner).
    Create {
        /// Its name (encrypted: the server never sees it).
        #[arg(long)]
        name: Option<String>,
        /// Its topic (encrypted too).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Change a channel's name and topic (needs `manage_channel`).
    Rename {
        /// Channel id (#number@server).
        channel: String,
        /// The new name.
        #[arg(allow_hyphen_values = true)]
        name: String,
        /// The new topic.
        #[arg(long)]
        topic: Option<String>,
    },
    /// List your channels.
    List,
    /// List a channel's members.
    Members {
        /// Channel id (#number@server).
        channel: String,
    },
    /// Send a message.
    Send(SendArgs),
    /// Print one page of history, decrypted.
    History(HistoryArgs),
    /// Remove a member (they may rejoin with an invite).
    Kick {
        /// Channel id.
        channel: String,
        /// The member, pubkey@server.
        user: String,
    },
    /// Leave a channel.
    Leave {
        /// Channel id.
        channel: String,
    },
}

#[derive(Args, Debug)]
pub(crate) struct SendArgs {
    /// Channel id (#number@server).
    channel: String,
    /// The text.
    #[arg(allow_hyphen_values = true)]
    text: String,
    /// The id of the message this one answers.
    #[arg(long)]
    reply_to: Option<u64>,
    /// For a channel hosted on another server: seconds to wait for the host's id (0: print only
    /// the provisional id).
    #[arg(long, default_value_t = 5)]
    wait: u64,
}

#[derive(Args, Debug)]
pub(crate) struct HistoryArgs {
    /// Channel id (#number@server).
    channel: String,
    /// Only messages older than this id (page backwards with the first id of a page).
    #[arg(long)]
    before: Option<u64>,
    /// Only messages newer than this id (page forwards with the last id of a page).
    #[arg(long)]
    after: Option<u64>,
    /// Page size, 1 to 100 (default 50).
    #[arg(long)]
    limit: Option<u32>,
}

pub(crate) async fn run(ctx: &Ctx, cmd: ChannelCommand) -> Result<(), CliError> {
    let (m, mut events) = ctx.connect().await?;
    let result = run_connected(ctx, &m, &mut events, cmd).await;
    m.close();
    result
}

async fn run_connected(
    ctx: &Ctx,
    m: &Messenger,
    events: &mut MessengerEvents,
    cmd: ChannelCommand,
) -> Result<(), CliError> {
    match cmd {
        ChannelCommand::Create { name, topic } => {
            let meta = ChannelMeta { name, topic };
            let channel = m.create_channel_with(&meta).await?;
            ctx.out.print(
                json!({"channel": channel.to_string(), "name": meta.name}),
                || format!("created {channel}"),
            );
        }
        ChannelCommand::Rename {
            channel,
            name,
            topic,
        } => {
            let channel = parse_channel(&channel)?;
            let meta = ChannelMeta {
                name: Some(name),
                topic,
            };
            m.set_metadata(&channel, &meta).await?;
            ctx.out.print(
                json!({"channel": channel.to_string(), "name": meta.name, "topic": meta.topic}),
                || format!("renamed {channel}"),
            );
        }
        ChannelCommand::List => {
            let list = m.channels().await?;
            let rows: Vec<_> = list
                .iter()
                .map(|(c, meta)| {
                    json!({
                        "channel": c.channel.to_string(),
                        "owner": c.owner.to_string(),
                        "member_count": c.member_count,
                        "created_at": c.created_at,
                        "metadata": MetadataDecryption::from(meta.clone()),
                    })
                })
                .collect();
            ctx.out.print(json!({"channels": rows}), || {
                list.iter()
                    .map(|(c, meta)| {
                        let name = match meta {
                            Ok(Some(ChannelMeta { name: Some(n), .. })) => n.clone(),
                            Ok(_) => "(no name)".to_owned(),
                            Err(f) => format!("[name unreadable: {f}]"),
                        };
                        format!("{} {name} ({} members)", c.channel, c.member_count)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ChannelCommand::Members { channel } => {
            let channel = parse_channel(&channel)?;
            let members = m.client().channel_members(&channel).await?;
            let rows: Vec<_> = members
                .iter()
                .map(|x| json!({"user": x.user.to_string(), "joined_at": x.joined_at}))
                .collect();
            ctx.out.print(
                json!({"channel": channel.to_string(), "members": rows}),
                || {
                    members
                        .iter()
                        .map(|x| x.user.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        ChannelCommand::Send(a) => {
            let channel = parse_channel(&a.channel)?;
            let reply_to = a.reply_to.map(parse_message_id).transpose()?;
            let sent = m.send_text(&channel, &a.text, reply_to).await?;
            if channel.host == m.client().user_id().server {
                ctx.out.print(
                    json!({"channel": channel.to_string(), "id": sent.id, "sent_at": sent.sent_at}),
                    || format!("sent to {channel} (id {})", sent.id),
                );
            } else {
                let wait = Duration::from_secs(a.wait);
                let host_id = host_id_of(events, &channel, sent.id, wait).await;
                ctx.out.print(
                    json!({
                        "channel": channel.to_string(),
                        "id": host_id,
                        "provisional_id": sent.id,
                        "sent_at": sent.sent_at,
                    }),
                    || match host_id {
                        Some(id) => format!(
                            "sent to {channel} (id {id}; provisional id {} replaced by the host's)",
                            sent.id
                        ),
                        None => format!(
                            "queued for {} (provisional id {}: the host gives the message its own \
                             id, which history shows; it was not seen within {} s)",
                            channel.host, sent.id, a.wait
                        ),
                    },
                );
            }
        }
        ChannelCommand::History(a) => {
            let channel = parse_channel(&a.channel)?;
            let query = History {
                channel: channel.clone(),
                before: a.before.map(parse_message_id).transpose()?,
                after: a.after.map(parse_message_id).transpose()?,
                limit: a.limit,
            };
            let (page, has_more) = m.history(query).await?;
            ctx.out.print(
                json!({"channel": channel.to_string(), "messages": page, "has_more": has_more}),
                || {
                    let mut lines: Vec<String> = page.iter().map(line).collect();
                    if has_more {
                        lines.push("(more before; use --before with the first id)".into());
                    }
                    lines.join("\n")
                },
            );
        }
        ChannelCommand::Kick { channel, user } => {
            let channel = parse_channel(&channel)?;
            let user = parse_user(&user)?;
            m.kick(&channel, &user).await?;
            ctx.out.print(
                json!({"channel": channel.to_string(), "kicked": user.to_string()}),
                || format!("removed {user} from {channel}"),
            );
        }
        ChannelCommand::Leave { channel } => {
            let channel = parse_channel(&channel)?;
            m.client().channel_leave(&channel).await?;
            ctx.out.print(
                json!({"channel": channel.to_string(), "left": true}),
                || format!("left {channel}"),
            );
        }
    }
    Ok(())
}

/// Waits up to `wait` for the host's `message` event naming `provisional` as its `origin_id`
/// (spec `client/messages.md` §Channels hosted elsewhere) and returns the host's id.
async fn host_id_of(
    events: &mut MessengerEvents,
    channel: &ChannelId,
    provisional: MessageId,
    wait: Duration,
) -> Option<MessageId> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ClientEvent::Message(d)))
                if d.channel == *channel && d.origin_id == Some(provisional) =>
            {
                return Some(d.id);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

/// One message as a line of text.
pub(crate) fn line(d: &DecryptedMessage) -> String {
    match d.decryption.text() {
        Some(t) => format!("{} {} {}: {t}", d.channel, d.id, d.sender),
        None => format!(
            "{} {} {}: [undecryptable: {}]",
            d.channel,
            d.id,
            d.sender,
            d.decryption
                .failure()
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
    }
}
