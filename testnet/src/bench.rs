//! Benchmarks over real processes (filled in below).

use std::path::Path;

/// `testnet bench`.
pub async fn run_cli(_dir: &Path, _quick: bool) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
