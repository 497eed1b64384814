//! `mobium client identity create|show` and `mobium client register`: the profile's identity
//! (an Ed25519 key, shown as `pubkey@server` once registered) and its home server.

use clap::{Args, Subcommand};
use mobium_client_api::sdk::e2ee::{CryptoState, Messenger};
use mobium_client_api::sdk::profile::{KdfParams, Profile};
use serde_json::json;

use super::{CliError, Ctx, warn_unencrypted};

#[derive(Subcommand, Debug)]
pub(crate) enum IdentityCommand {
    /// Create a new identity in the profile directory (encrypted if a passphrase is given).
    Create,
    /// Show the identity: public key, user id, servers, contacts.
    Show,
}

#[derive(Args, Debug)]
pub(crate) struct RegisterArgs {
    /// The server's WebSocket URL, e.g. ws://127.0.0.1:8443/v1/ws.
    #[arg(long)]
    server: String,
    /// Registration token or channel invite code, for a server whose registration is `invite`.
    #[arg(long)]
    invite: Option<String>,
}

pub(crate) async fn run(ctx: &Ctx, cmd: IdentityCommand) -> Result<(), CliError> {
    match cmd {
        IdentityCommand::Create => create(ctx),
        IdentityCommand::Show => show(ctx),
    }
}

fn create(ctx: &Ctx) -> Result<(), CliError> {
    let state = CryptoState::generate()?;
    let bytes = state.to_bytes()?;
    let profile = Profile::create(
        &ctx.profile_dir,
        ctx.passphrase.as_deref(),
        KdfParams::default(),
        &bytes,
    )?;
    if !profile.is_encrypted() {
        warn_unencrypted(&ctx.profile_dir);
    }
    let key = state.public_key().to_string();
    ctx.out.print(
        json!({
            "public_key": key,
            "profile": ctx.profile_dir.display().to_string(),
            "encrypted": profile.is_encrypted(),
        }),
        || format!("created identity {key} in {}", ctx.profile_dir.display()),
    );
    Ok(())
}

fn show(ctx: &Ctx) -> Result<(), CliError> {
    let (profile, state) = ctx.open()?;
    let key = state.public_key().to_string();
    let user_id = state.user_id().map(|u| u.to_string());
    let servers: Vec<_> = state
        .servers
        .iter()
        .map(|s| json!({"name": s.name.to_string(), "url": s.url}))
        .collect();
    let contacts: Vec<String> = state.contacts.keys().map(ToString::to_string).collect();
    ctx.out.print(
        json!({
            "public_key": key,
            "user_id": user_id,
            "curve25519": hex::encode(state.account.curve25519()),
            "encrypted": profile.is_encrypted(),
            "servers": servers,
            "contacts": contacts,
        }),
        || match &user_id {
            Some(u) => format!("{u}\n(public key {key}; {} contacts)", contacts.len()),
            None => format!("{key} (not registered with a server yet)"),
        },
    );
    Ok(())
}

pub(crate) async fn register(ctx: &Ctx, args: RegisterArgs) -> Result<(), CliError> {
    let (profile, state) = ctx.open()?;
    if let Some(home) = state.servers.first()
        && home.url != args.server
    {
        return Err(CliError::Usage(format!(
            "this profile is already registered with {} ({})",
            home.name, home.url
        )));
    }
    let mut opts = ctx.connect_options();
    opts.invite = args.invite;
    let (m, _events) = Messenger::start(state, Some(profile), &args.server, opts).await?;
    let registered = m.client().authed().registered;
    let user_id = m.user_id().to_string();
    m.close();
    ctx.out.print(
        json!({"user_id": user_id, "registered": registered, "server": args.server}),
        || {
            if registered {
                format!("registered as {user_id}")
            } else {
                format!("already registered as {user_id}")
            }
        },
    );
    Ok(())
}
