//! The `mobium` binary: `mobium serve` runs a homeserver (zero configuration: SQLite in
//! `./data/`, clients on 127.0.0.1:8443); `mobium client …` is an end-to-end encrypted
//! command-line client ([`cli`]); `mobium health` asks a running server's `/health`
//! ([`health`], the container image's health check); `mobium backup` and `mobium restore`
//! ([`operate`]) copy a server's key and database to one file and back; `mobium doctor` checks
//! a server's setup.

mod cli;
mod health;
mod logging;
mod operate;
mod systemd;

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
    /// Ask a running server's GET /health (plain HTTP); exit 0 only for a 200 answer.
    Health {
        /// TOML configuration file (or set SC_CONFIG), read to find the client port.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Ask this ip:port instead of the configured client address.
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
    },
    /// Write a consistent backup (server key, SQLite database, manifest) to one file while the
    /// server runs. With PostgreSQL the file holds the key only: use pg_dump for the database.
    Backup {
        /// The backup file to write (replaced if it exists); it holds the server's secret key.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// TOML configuration file (or set SC_CONFIG): where the key and the database are.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Restore a backup into an empty (or new) data directory, checking every checksum.
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The data directory to restore into; default: the configured SC_DATA_DIR.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// TOML configuration file (or set SC_CONFIG), read for the default data directory.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check the configuration, the data directory, the server key, the database and the
    /// federation DNS records; print ok/FAIL per check with what to fix; exit 1 on any FAIL.
    Doctor {
        /// TOML configuration file (or set SC_CONFIG).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the configuration reference (Markdown; deploy/CONFIG.md is this output).
    ConfigReference,
    /// An end-to-end encrypted command-line client (identity, DMs, channels, invites, presence).
    Client(cli::ClientArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Health { config, addr } => health(config, addr),
        Command::Backup { to, config } => match load_config(config) {
            Ok(c) => operate::backup(c, &to),
            Err(e) => settings_error("backup", &e),
        },
        Command::Restore {
            from,
            data_dir,
            config,
        } => match data_dir {
            Some(dir) => operate::restore(&from, dir),
            None => match load_config(config) {
                Ok(c) => operate::restore(&from, c.data_dir),
                Err(e) => settings_error("restore", &e),
            },
        },
        Command::Doctor { config } => operate::doctor(load_config(config)),
        Command::ConfigReference => {
            print!("{}", config::reference::markdown());
            ExitCode::SUCCESS
        }
        Command::Client(args) => cli::run(args),
    }
}

/// Settings that do not load: exit 2, as `mobium serve` does.
fn settings_error(command: &str, e: &config::ConfigError) -> ExitCode {
    eprintln!("mobium {command}: {e}");
    ExitCode::from(2)
}

/// The settings `mobium serve` would run with: defaults, the file (`--config` or
/// `SC_CONFIG`), then the `SC_*` variables.
fn load_config(file: Option<PathBuf>) -> Result<config::Config, config::ConfigError> {
    // Variables that are not valid UTF-8 cannot be Mobium settings; skip them instead of panicking.
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let file = file.or_else(|| {
        env.iter()
            .find(|(k, _)| k == config::CONFIG_FILE_ENV)
            .map(|(_, v)| PathBuf::from(v))
    });
    config::load(file.as_deref(), env)
}

/// `mobium health`: 0 when the server answers 200, 1 when it does not, 2 for bad settings.
fn health(file: Option<PathBuf>, addr: Option<std::net::SocketAddr>) -> ExitCode {
    let addr = match addr {
        Some(a) => a,
        None => match load_config(file).map_err(anyhow::Error::from) {
            Ok(c) => match health::default_addr(&c) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("mobium health: {e:#}");
                    return ExitCode::from(2);
                }
            },
            Err(e) => {
                eprintln!("mobium health: {e:#}");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mobium health: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(health::check(addr)) {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mobium health: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(file: Option<PathBuf>) -> ExitCode {
    let config = match load_config(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mobium: {e}");
            return ExitCode::from(2);
        }
    };
    let format = config.log_format;
    logging::init(&config.log, format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            logging::fatal(format, &format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match server::start(config).await {
            Ok(r) => r,
            Err(e) => {
                logging::fatal(format, &format!("{e:#}"));
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
        // Every listener is bound: units ordered after this one may connect now.
        systemd::ready(&format!(
            "serving {} on {}",
            running.app.server_name,
            running.ws_url()
        ));
        let trigger = running.shutdown_trigger();
        if let Some(every) = systemd::spawn_watchdog(trigger.subscribe()) {
            tracing::info!(
                interval_ms = every.as_millis() as u64,
                "systemd watchdog pings on"
            );
        }
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested; draining connections");
            systemd::stopping();
            let _ = trigger.send(true);
        });
        match running.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                logging::fatal(format, &format!("{e:#}"));
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
