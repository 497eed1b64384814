//! `testnet`: runs a local multi-node Mobium federation (homeservers, a DNS zone, scenarios,
//! chaos and benchmarks). The network itself lands with the testnet issue, after federation;
//! until then the command says so instead of pretending.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "testnet: not available yet — it needs federation between homeservers, which is still being built"
    );
    ExitCode::from(2)
}
