//! `mobium client dm send|receive`: Olm-encrypted direct messages.

use std::time::Duration;

use clap::{Args, Subcommand};
use mobium_client_api::sdk::e2ee::{ClientEvent, DirectText};
use serde_json::json;

use super::{CliError, Ctx, parse_user};

#[derive(Subcommand, Debug)]
pub(crate) enum DmCommand {
    /// Send a direct message.
    Send(SendArgs),
    /// Print the direct messages waiting on the server (and process key shares).
    Receive(ReceiveArgs),
}

#[derive(Args, Debug)]
pub(crate) struct SendArgs {
    /// Recipient, pubkey@server.
    to: String,
    /// The text.
    #[arg(allow_hyphen_values = true)]
    text: String,
}

#[derive(Args, Debug)]
pub(crate) struct ReceiveArgs {
    /// If nothing is waiting, wait this many seconds for a first message.
    #[arg(long, default_value_t = 0)]
    wait: u64,
}

pub(crate) async fn run(ctx: &Ctx, cmd: DmCommand) -> Result<(), CliError> {
    match cmd {
        DmCommand::Send(a) => {
            let to = parse_user(&a.to)?;
            let (m, _events) = ctx.connect().await?;
            let sent = m.send_dm(&to, &a.text).await;
            m.close();
            let sent = sent?;
            ctx.out.print(
                json!({"to": to.to_string(), "id": sent.id, "sent_at": sent.sent_at}),
                || format!("sent to {to} (id {})", sent.id),
            );
            Ok(())
        }
        DmCommand::Receive(a) => {
            let (m, mut events) = ctx.connect().await?;
            let mut got: Vec<DirectText> = Vec::new();
            let mut refused: Vec<ClientEvent> = Vec::new();
            let mut take = |e: ClientEvent, got: &mut Vec<DirectText>| match e {
                ClientEvent::Direct(d) => {
                    got.push(d);
                    true
                }
                e @ ClientEvent::DirectFailed { .. } => {
                    refused.push(e);
                    false
                }
                _ => false,
            };
            while let Ok(e) = events.try_recv() {
                take(e, &mut got);
            }
            if got.is_empty() && a.wait > 0 {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(a.wait);
                while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.recv()).await {
                    if take(e, &mut got) {
                        break;
                    }
                }
                // Whatever else arrived together with it.
                while let Ok(e) = events.try_recv() {
                    take(e, &mut got);
                }
            }
            // Whatever the client still processes (and acknowledges) after this is reported
            // too: nothing acknowledged goes unseen.
            m.close();
            let deadline = tokio::time::Instant::now() + ctx.timeout;
            while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.recv()).await {
                take(e, &mut got);
            }
            ctx.out
                .print(json!({"messages": got, "refused": refused}), || {
                    let refusals = refused.iter().filter_map(|e| match e {
                        ClientEvent::DirectFailed { id, to, error } => {
                            Some(super::listen::refused(*id, to, error))
                        }
                        _ => None,
                    });
                    if got.is_empty() && refused.is_empty() {
                        return "no direct messages".to_owned();
                    }
                    got.iter()
                        .map(|d| match d.decryption.text() {
                            Some(t) => format!("{} {}: {t}", d.id, d.from),
                            None => format!(
                                "{} {}: [undecryptable: {}]",
                                d.id,
                                d.from,
                                d.decryption
                                    .failure()
                                    .map(ToString::to_string)
                                    .unwrap_or_default()
                            ),
                        })
                        .chain(refusals)
                        .collect::<Vec<_>>()
                        .join("\n")
                });
            Ok(())
        }
    }
}
