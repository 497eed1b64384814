//! Helpers shared by the tests.

use std::path::PathBuf;

use mobium_testnet::process::find_mobium;

/// The `mobium` binary, found next to this test executable's directory (`target/<profile>/`),
/// with a clear message if it was not built.
pub fn mobium() -> PathBuf {
    match find_mobium() {
        Ok(path) => path,
        Err(e) => panic!("{e:#}"),
    }
}

/// This crate's `testnet` binary (for the detached daemon).
pub fn testnet_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_testnet"))
}

/// Logs for a test (once per process), at `warn` unless `RUST_LOG` says otherwise.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}
