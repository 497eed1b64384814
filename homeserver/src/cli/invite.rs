//! `mobium client invite create|redeem`: channel invite links (`code@server`).

use clap::{Args, Subcommand};
use serde_json::json;

use super::{CliError, Ctx, parse_channel};

#[derive(Subcommand, Debug)]
pub(crate) enum InviteCommand {
    /// Create an invite to a channel.
    Create(CreateArgs),
    /// Join a channel with an invite (`code` or `code@server`).
    Redeem {
        /// The invite.
        #[arg(allow_hyphen_values = true)]
        code: String,
    },
}

#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    /// Channel id (#number@server).
    channel: String,
    /// Uses before the invite is exhausted (default: unlimited).
    #[arg(long)]
    max_uses: Option<u32>,
    /// Seconds until it expires (default: never).
    #[arg(long)]
    expires_in: Option<u64>,
}

pub(crate) async fn run(ctx: &Ctx, cmd: InviteCommand) -> Result<(), CliError> {
    let (m, _events) = ctx.connect().await?;
    let result = match cmd {
        InviteCommand::Create(a) => match parse_channel(&a.channel) {
            Ok(channel) => m
                .client()
                .invite_create(&channel, a.max_uses, a.expires_in)
                .await
                .map_err(CliError::from)
                .map(|inv| {
                    let shared = format!("{}@{}", inv.code, inv.channel.host);
                    ctx.out.print(
                        json!({
                            "code": inv.code,
                            "invite": shared,
                            "channel": inv.channel.to_string(),
                            "max_uses": inv.max_uses,
                            "expires_at": inv.expires_at,
                        }),
                        || shared.clone(),
                    );
                }),
            Err(e) => Err(e),
        },
        InviteCommand::Redeem { code } => m.join(&code).await.map_err(CliError::from).map(|info| {
            ctx.out.print(
                json!({"channel": info.channel.to_string(), "member_count": info.member_count}),
                || format!("joined {} ({} members)", info.channel, info.member_count),
            );
        }),
    };
    m.close();
    result
}
