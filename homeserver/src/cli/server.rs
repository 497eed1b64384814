//! `mobium client server list|move`: the servers a profile knows, and repointing the profile
//! when a server moves to a new address (another host or port, a reverse proxy, TLS) under
//! the same name.
//!
//! Nothing is sent: the next command connects to the new address, and the connection is
//! refused there unless the server at it proves the same server name.

use clap::Subcommand;
use serde_json::json;

use super::{CliError, Ctx};

#[derive(Subcommand, Debug)]
pub(crate) enum ServerCommand {
    /// List the servers this profile is registered with (the first is its home server).
    List,
    /// Point the profile at a server's new WebSocket URL; the server keeps its name.
    Move {
        /// The server's old URL (as `server list` shows it) or its name.
        old: String,
        /// The new URL, e.g. wss://chat.example.org/v1/ws.
        new: String,
    },
}

pub(crate) async fn run(ctx: &Ctx, cmd: ServerCommand) -> Result<(), CliError> {
    match cmd {
        ServerCommand::List => list(ctx),
        ServerCommand::Move { old, new } => move_server(ctx, &old, &new),
    }
}

fn list(ctx: &Ctx) -> Result<(), CliError> {
    let (_profile, state) = ctx.open()?;
    let servers: Vec<_> = state
        .servers
        .iter()
        .map(|s| json!({"name": s.name.to_string(), "url": s.url}))
        .collect();
    ctx.out.print(json!({ "servers": servers }), || {
        state
            .servers
            .iter()
            .map(|s| format!("{}  {}", s.name, s.url))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

fn move_server(ctx: &Ctx, old: &str, new: &str) -> Result<(), CliError> {
    if !(new.starts_with("ws://") || new.starts_with("wss://")) {
        return Err(CliError::Usage(format!(
            "the new address must be a ws:// or wss:// URL, e.g. wss://chat.example.org/v1/ws, \
             got {new:?}"
        )));
    }
    let (profile, mut state) = ctx.open()?;
    let Some(entry) = state
        .servers
        .iter_mut()
        .find(|s| s.url == old || s.name.to_string() == old)
    else {
        let known: Vec<String> = state.servers.iter().map(|s| s.url.clone()).collect();
        return Err(CliError::Usage(format!(
            "this profile knows no server at {old:?} (known: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    let from = std::mem::replace(&mut entry.url, new.to_owned());
    let name = entry.name.to_string();
    profile.write(&state.to_bytes()?)?;
    ctx.out
        .print(json!({"server": name, "old_url": from, "url": new}), || {
            format!("{name} now at {new} (was {from})")
        });
    Ok(())
}
