//! `mobium client presence set STATUS`: presence lasts as long as a connection does, so this
//! sets it and keeps the connection for `--hold` seconds (`listen --status` keeps it while
//! listening).

use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use mobium_spec::client::PresenceStatus;
use serde_json::json;

use super::{CliError, Ctx};

#[derive(Subcommand, Debug)]
pub(crate) enum PresenceCommand {
    /// Set your status.
    Set {
        /// online, idle, dnd, invisible or offline.
        status: Status,
        /// Stay connected this many seconds (presence ends with the last connection).
        #[arg(long, default_value_t = 0)]
        hold: u64,
    },
}

/// A presence status, as typed on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Status {
    Online,
    Idle,
    Dnd,
    Invisible,
    Offline,
}

impl From<Status> for PresenceStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Online => PresenceStatus::Online,
            Status::Idle => PresenceStatus::Idle,
            Status::Dnd => PresenceStatus::Dnd,
            Status::Invisible => PresenceStatus::Invisible,
            Status::Offline => PresenceStatus::Offline,
        }
    }
}

pub(crate) async fn run(ctx: &Ctx, cmd: PresenceCommand) -> Result<(), CliError> {
    let PresenceCommand::Set { status, hold } = cmd;
    let (m, _events) = ctx.connect().await?;
    let status = PresenceStatus::from(status);
    let result = m.client().presence_set(status).await;
    if result.is_ok() && hold > 0 {
        tokio::time::sleep(Duration::from_secs(hold)).await;
    }
    m.close();
    result?;
    let value = serde_json::to_value(status).unwrap_or_default();
    ctx.out.print(json!({"status": value}), || {
        format!("status set to {value}")
    });
    Ok(())
}
