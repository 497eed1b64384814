//! The operator's commands as the binary runs them: `mobium backup`, `mobium restore` (the
//! work is in [`mobium_homeserver::backup`]) and `mobium doctor` ([`mobium_homeserver::doctor`]).
//! Backup and restore print one line per outcome and exit 0 on success, 1 when the work failed
//! and 2 for settings that do not load; doctor exits 1 on any failed check, the settings
//! included.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mobium_homeserver::backup::{self, archive::Backend};
use mobium_homeserver::config::{Config, ConfigError};
use mobium_homeserver::doctor::{self, Status};

/// A current-thread runtime for one command, or the exit code for a failure to make one.
fn runtime(command: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("mobium {command}: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// `mobium backup --to FILE`.
pub fn backup(config: Config, to: &Path) -> ExitCode {
    let runtime = match runtime("backup") {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(backup::create(&config, to)) {
        Ok(manifest) => {
            let size = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
            let name = manifest
                .server_name
                .as_deref()
                .unwrap_or("(no name pinned yet)");
            let what = match manifest.backend {
                Backend::Sqlite => "the server key and the SQLite database",
                Backend::Postgres => "the server key (not the database)",
            };
            println!(
                "mobium backup: wrote {} ({size} bytes): {what} of {name}, as of {}",
                to.display(),
                manifest.created_at
            );
            if manifest.backend == Backend::Postgres {
                println!(
                    "mobium backup: the messages are in PostgreSQL: back them up with pg_dump \
                     (deploy/README.md, \"Backup and restore\")"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mobium backup: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `mobium restore --from FILE --data-dir DIR`.
pub fn restore(from: &Path, data_dir: PathBuf) -> ExitCode {
    let runtime = match runtime("restore") {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(backup::restore(from, &data_dir)) {
        Ok(manifest) => {
            let dir = data_dir.display();
            println!(
                "mobium restore: restored the backup of {} made {} into {dir}",
                manifest
                    .server_name
                    .as_deref()
                    .unwrap_or("(no name pinned)"),
                manifest.created_at
            );
            if let Some(name) = &manifest.server_name {
                println!(
                    "mobium restore: start it with SC_DATA_DIR={dir} and SC_SERVER_NAME={name} \
                     (the database refuses any other name)"
                );
            }
            if manifest.backend == Backend::Postgres {
                println!(
                    "mobium restore: only the server key was in the file: restore the database \
                     with pg_restore (deploy/README.md) and point SC_DATABASE_URL at it"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mobium restore: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `mobium doctor`.
pub fn doctor(config: Result<Config, ConfigError>) -> ExitCode {
    let config = match config {
        Ok(c) => {
            println!("ok    config: loaded (defaults, the file if any, then SC_* variables)");
            c
        }
        Err(e) => {
            println!("FAIL  config: {e}");
            println!("      fix: correct the setting named above (mobium serve --help lists them)");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime("doctor") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let checks = runtime.block_on(doctor::run(&config));
    print!("{}", doctor::render(&checks));
    match checks.iter().any(|c| c.status == Status::Fail) {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    }
}
