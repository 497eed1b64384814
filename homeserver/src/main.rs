//! The `mobium` binary: `mobium serve` runs a homeserver (zero configuration: SQLite in
//! `./data/`, clients on 127.0.0.1:8443); `mobium client …` is an end-to-end encrypted
//! command-line client ([`cli`]).

mod cli;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mobium_homeserver::{config, server};

#[derive(Parser)]
#[command(
    name = "mobium",
    version,
    about = "Mobium: federated, end-to-end encrypted community chat"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a homeserver. Settings: defaults, then the TOML file, then SC_* environment variables.
    #[command(after_help = config::settings::help())]
    Serve {
        /// TOML configuration file (or set SC_CONFIG).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// An end-to-end encrypted command-line client (identity, DMs, channels, invites, presence).
    Client(cli::ClientArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Client(args) => cli::run(args),
    }
}

fn serve(file: Option<PathBuf>) -> ExitCode {
    // Variables that are not valid UTF-8 cannot be Mobium settings; skip them instead of panicking.
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let file = file.or_else(|| {
        env.iter()
            .find(|(k, _)| k == config::CONFIG_FILE_ENV)
            .map(|(_, v)| PathBuf::from(v))
    });
    let config = match config::load(file.as_deref(), env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mobium: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, not in log files or journald.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mobium: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match server::start(config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("mobium: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "mobium: serving {} (server key {}) on {}",
            running.app.server_name,
            running.app.keypair.public(),
            running.ws_url()
        );
        if let Some(admin) = running.admin_addr {
            println!("mobium: metrics and admin API on http://{admin}");
        }
        let trigger = running.shutdown_trigger();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested; draining connections");
            let _ = trigger.send(true);
        });
        match running.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mobium: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
