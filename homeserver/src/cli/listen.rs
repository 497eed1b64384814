//! `mobium client listen`: streams decrypted events — DMs, channel messages (with the reason
//! when one cannot be decrypted), membership, presence, typing — until interrupted, `--count`
//! messages or `--timeout` seconds. With `--json`, one JSON object per line.

use std::time::Duration;

use clap::Args;
use mobium_client_api::sdk::e2ee::{ClientEvent, MetadataDecryption};
use mobium_spec::client::ErrorBody;
use mobium_spec::{MessageId, UserId};

use super::presence::Status;
use super::{CliError, Ctx};

#[derive(Args, Debug)]
pub(crate) struct ListenArgs {
    /// Stop after this many messages (DMs, refused DMs, channel messages and edits; other events
    /// are printed but not counted).
    #[arg(long)]
    count: Option<usize>,
    /// Stop after this many seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// Set this presence status while listening.
    #[arg(long)]
    status: Option<Status>,
}

pub(crate) async fn run(ctx: &Ctx, a: ListenArgs) -> Result<(), CliError> {
    let (m, mut events) = ctx.connect().await?;
    if let Some(s) = a.status {
        m.client().presence_set(s.into()).await?;
    }
    let deadline = a
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut seen = 0usize;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        if a.count.is_some_and(|c| seen >= c) {
            break;
        }
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, events.recv())
                    .await
                    .ok()
                    .flatten(),
                None => events.recv().await,
            }
        };
        let event = tokio::select! {
            e = next => e,
            _ = &mut interrupted => None,
        };
        let Some(event) = event else { break };
        if matches!(
            event,
            ClientEvent::Direct(_)
                | ClientEvent::DirectFailed { .. }
                | ClientEvent::Message(_)
                | ClientEvent::MessageEdited(_)
        ) {
            seen += 1;
        }
        print(ctx, &event);
    }
    // What the client processes (and so acknowledges) while closing is printed too: nothing
    // acknowledged goes unseen.
    m.close();
    let deadline = tokio::time::Instant::now() + ctx.timeout;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if !matches!(
            event,
            ClientEvent::Connected { .. } | ClientEvent::Disconnected { .. }
        ) {
            print(ctx, &event);
        }
    }
    Ok(())
}

fn print(ctx: &Ctx, event: &ClientEvent) {
    let value = serde_json::to_value(event).unwrap_or_default();
    ctx.out.print(value, || match event {
        ClientEvent::Message(d) => super::channel::line(d),
        ClientEvent::MessageEdited(d) => format!("(edited) {}", super::channel::line(d)),
        ClientEvent::Direct(d) => match d.decryption.text() {
            Some(t) => format!("DM {} {}: {t}", d.id, d.from),
            None => format!(
                "DM {} {}: [undecryptable: {}]",
                d.id,
                d.from,
                d.decryption
                    .failure()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
        },
        ClientEvent::DirectFailed { id, to, error } => refused(*id, to, error),
        ClientEvent::Connected { user_id } => format!("connected as {user_id}"),
        ClientEvent::Disconnected { reason } => format!("disconnected ({reason}); reconnecting"),
        ClientEvent::MessageDeleted {
            channel,
            id,
            deleted_by,
        } => format!("{channel} {id} deleted by {deleted_by}"),
        ClientEvent::KeyReceived {
            channel, sender, ..
        } => format!("{channel} key from {sender}"),
        ClientEvent::MemberJoined { channel, user } => format!("{channel} {user} joined"),
        ClientEvent::MemberLeft {
            channel,
            user,
            reason,
        } => format!("{channel} {user} left ({})", word(reason)),
        ClientEvent::ChannelUpdated { channel, metadata } => match metadata {
            MetadataDecryption::Ok { meta } => {
                let name = meta.as_ref().and_then(|m| m.name.as_deref()).unwrap_or("");
                let topic = meta.as_ref().and_then(|m| m.topic.as_deref()).unwrap_or("");
                format!("{channel} renamed: {name:?}, topic {topic:?}")
            }
            MetadataDecryption::Failed { failure } => {
                format!("{channel} metadata changed [undecryptable: {failure}]")
            }
        },
        ClientEvent::Presence { user, status } => format!("{user} is {}", word(status)),
        ClientEvent::Typing { channel, user } => format!("{channel} {user} is typing"),
        // A kind this build of the CLI does not know yet: its JSON, on one line.
        other => serde_json::to_string(other).unwrap_or_default(),
    });
}

/// A refused direct message, as one line.
pub(crate) fn refused(id: MessageId, to: &UserId, error: &ErrorBody) -> String {
    format!(
        "DM {id} to {to} was refused by their server: {} ({})",
        error.message, error.code
    )
}

/// The wire word of a unit enum (`kicked`, `online`, ...).
fn word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
