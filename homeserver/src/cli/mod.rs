//! `mobium client …`: a command-line client with end-to-end encryption, built on the SDK's
//! [`Messenger`] (crate `mobium-client-api`).
//!
//! Every command opens the profile directory (`--profile`, default `./mobium-profile`), unlocks
//! it with the passphrase from `MOBIUM_PASSPHRASE` or `--passphrase-file`, connects to the
//! profile's home server (which first processes the queued to-device messages: key shares, DMs),
//! does its work, saves the profile and exits. With `--json` every command prints one JSON
//! document (`listen`: one per line), for scripts and tests. One file per command group.

mod channel;
mod dm;
mod identity;
mod invite;
mod listen;
mod presence;
mod server;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mobium_client_api::sdk::e2ee::{CryptoState, E2eeError, Messenger, MessengerEvents};
use mobium_client_api::sdk::profile::{Profile, ProfileError};
use mobium_client_api::sdk::{ConnectOptions, SdkError};
use serde_json::{Value, json};

/// Environment variable holding the profile passphrase.
pub const PASSPHRASE_ENV: &str = "MOBIUM_PASSPHRASE";

/// `mobium client`: options shared by every command, and the command.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Profile directory (the identity, sessions and keys live here).
    #[arg(long, global = true, default_value = "./mobium-profile")]
    profile: PathBuf,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Read the profile passphrase from this file (first line) instead of MOBIUM_PASSPHRASE.
    #[arg(long, global = true)]
    passphrase_file: Option<PathBuf>,
    /// Seconds to wait for each server answer.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
    /// Also trust this root certificate (PEM or DER) for `wss://`: a server with its own CA.
    #[arg(long, global = true)]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Subcommand, Debug)]
enum ClientCommand {
    /// Create or show this profile's identity.
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
    /// Register with a homeserver (it becomes the profile's home server).
    Register(identity::RegisterArgs),
    /// Send and receive end-to-end encrypted direct messages.
    #[command(subcommand)]
    Dm(dm::DmCommand),
    /// Create channels, send to them, page through their history.
    #[command(subcommand)]
    Channel(channel::ChannelCommand),
    /// Create and redeem channel invites.
    #[command(subcommand)]
    Invite(invite::InviteCommand),
    /// Set presence.
    #[command(subcommand)]
    Presence(presence::PresenceCommand),
    /// Stream decrypted events until interrupted (or --count / --timeout).
    Listen(listen::ListenArgs),
    /// List the profile's servers, or repoint it when a server moves to a new address.
    #[command(subcommand)]
    Server(server::ServerCommand),
}

/// What a command failed with, shown as one line (or a JSON `error` object).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The profile could not be opened or saved.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Encryption, the server or the connection failed.
    #[error(transparent)]
    E2ee(#[from] E2eeError),
    /// Bad input.
    #[error("{0}")]
    Usage(String),
}

impl From<SdkError> for CliError {
    fn from(e: SdkError) -> Self {
        CliError::E2ee(E2eeError::Sdk(e))
    }
}

impl CliError {
    /// A stable machine-readable kind.
    fn kind(&self) -> String {
        match self {
            CliError::Profile(p) | CliError::E2ee(E2eeError::Profile(p)) => profile_kind(p).into(),
            CliError::E2ee(E2eeError::Sdk(SdkError::Server(e))) => e.code.to_string(),
            CliError::E2ee(E2eeError::NotRegistered) => "not_registered".into(),
            CliError::E2ee(E2eeError::Sdk(_)) => "connection".into(),
            CliError::E2ee(_) => "crypto".into(),
            CliError::Usage(_) => "usage".into(),
        }
    }
}

fn profile_kind(e: &ProfileError) -> &'static str {
    match e {
        ProfileError::Locked(_) => "locked",
        ProfileError::Corrupt(_) => "corrupt",
        ProfileError::NotFound(_) => "no_profile",
        ProfileError::AlreadyExists(_) => "profile_exists",
        ProfileError::InUse(_) => "in_use",
        ProfileError::Io(_) => "io",
    }
}

/// Prints results as JSON or as text.
pub(crate) struct Out {
    json: bool,
}

impl Out {
    /// Prints `value` with `--json`, else `text`.
    pub(crate) fn print(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", text());
        }
    }
}

/// What every command gets.
pub(crate) struct Ctx {
    pub(crate) profile_dir: PathBuf,
    pub(crate) passphrase: Option<String>,
    pub(crate) out: Out,
    pub(crate) timeout: std::time::Duration,
    pub(crate) extra_roots: Vec<Vec<u8>>,
}

impl Ctx {
    /// Opens the profile and its state.
    pub(crate) fn open(&self) -> Result<(Profile, CryptoState), CliError> {
        let profile = Profile::open(&self.profile_dir, self.passphrase.as_deref())?;
        if !profile.is_encrypted() {
            warn_unencrypted(&self.profile_dir);
        }
        let state = CryptoState::load(&profile)?;
        Ok((profile, state))
    }

    /// Connection options for this invocation.
    pub(crate) fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            request_timeout: self.timeout,
            extra_root_certs: self.extra_roots.clone(),
            ..ConnectOptions::default()
        }
    }

    /// Opens the profile and connects to its home server; returns once the queued to-device
    /// messages are processed.
    pub(crate) async fn connect(&self) -> Result<(Messenger, MessengerEvents), CliError> {
        let (profile, state) = self.open()?;
        let url = state
            .servers
            .first()
            .map(|s| s.url.clone())
            .ok_or(E2eeError::NotRegistered)?;
        Ok(Messenger::start(state, Some(profile), &url, self.connect_options()).await?)
    }
}

/// Tells the user that the profile's secrets are only protected by file permissions.
pub(crate) fn warn_unencrypted(dir: &Path) {
    eprintln!(
        "mobium: warning: profile {} is not encrypted (no passphrase); its keys are protected \
         only by file permissions (0600). Set {PASSPHRASE_ENV} or --passphrase-file to encrypt it.",
        dir.display()
    );
}

fn passphrase(file: Option<&Path>) -> Result<Option<String>, CliError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
        let line = text.lines().next().unwrap_or_default().to_owned();
        if line.is_empty() {
            return Err(CliError::Usage(format!(
                "{} holds no passphrase",
                path.display()
            )));
        }
        return Ok(Some(line));
    }
    Ok(std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty()))
}

/// Runs `mobium client …`.
pub fn run(args: ClientArgs) -> ExitCode {
    let filter = std::env::var("MOBIUM_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let json = args.json;
    let result = passphrase(args.passphrase_file.as_deref()).and_then(|passphrase| {
        let extra_roots = match &args.ca_cert {
            Some(path) => mobium_client_api::sdk::load_root_certs(path)?,
            None => Vec::new(),
        };
        let ctx = Ctx {
            extra_roots,
            profile_dir: args.profile,
            passphrase,
            out: Out { json },
            timeout: std::time::Duration::from_secs(args.timeout.max(1)),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| CliError::Usage(format!("cannot start the async runtime: {e}")))?;
        runtime.block_on(dispatch(ctx, args.command))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    json!({"error": {"kind": e.kind(), "message": e.to_string()}})
                );
            }
            eprintln!("mobium: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(ctx: Ctx, command: ClientCommand) -> Result<(), CliError> {
    match command {
        ClientCommand::Identity(c) => identity::run(&ctx, c).await,
        ClientCommand::Register(a) => identity::register(&ctx, a).await,
        ClientCommand::Dm(c) => dm::run(&ctx, c).await,
        ClientCommand::Channel(c) => channel::run(&ctx, c).await,
        ClientCommand::Invite(c) => invite::run(&ctx, c).await,
        ClientCommand::Presence(c) => presence::run(&ctx, c).await,
        ClientCommand::Listen(a) => listen::run(&ctx, a).await,
        ClientCommand::Server(c) => server::run(&ctx, c).await,
    }
}

/// Parses a user id argument.
pub(crate) fn parse_user(s: &str) -> Result<mobium_spec::UserId, CliError> {
    s.parse()
        .map_err(|e| CliError::Usage(format!("not a user id (pubkey@server): {s}: {e}")))
}

/// Parses a channel id argument.
pub(crate) fn parse_channel(s: &str) -> Result<mobium_spec::ChannelId, CliError> {
    s.parse()
        .map_err(|e| CliError::Usage(format!("not a channel id (#number@server): {s}: {e}")))
}

/// Parses a message id argument.
pub(crate) fn parse_message_id(raw: u64) -> Result<mobium_spec::MessageId, CliError> {
    mobium_spec::MessageId::new(raw).map_err(|e| CliError::Usage(format!("message id {raw}: {e}")))
}
