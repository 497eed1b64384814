//! Scripted scenarios: multi-user, multi-server conversations driven through the client SDK,
//! each asserting what it claims.
//!
//! | name | what it shows |
//! |---|---|
//! | [`dm`] | an end-to-end encrypted DM between users of two servers, both ways |
//! | [`channel`] | a channel with two users on each of three servers; 100 messages; everyone receives every message once, decrypts it, in the same order |
//! | [`outage`] | a server killed (SIGKILL) mid-conversation and restarted: nothing lost, nothing duplicated |
//! | [`partition`] | messages sent while two servers are partitioned arrive after the heal; a third server is unaffected meanwhile |
//! | [`managed`] | users on two instances of the managed peer and on a community node: DMs both ways and a channel, as with one server (needs `up --managed 2`) |
//!
//! A scenario produces a [`Report`]: a list of named checks, each passed or failed with a
//! detail. A scenario that cannot go on (a request fails, a timeout) records that as a failed
//! check and stops. The CLI prints the report and exits with 0 only if every check passed.
//! Scenarios run against the testnet in the directory if one is up (leaving it as they found
//! it), else against a temporary one ([`crate::target`]).

pub mod channel;
pub mod dm;
pub mod managed;
pub mod outage;
pub mod partition;
pub mod user;

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::network::Network;
use crate::target::Target;

/// Every scenario, in the order `testnet scenario all` runs them.
pub const NAMES: [&str; 4] = ["dm", "channel", "outage", "partition"];

/// Scenarios that need the managed peer (run by name; `all` runs them when the testnet has one).
pub const MANAGED_NAMES: [&str; 1] = ["managed"];

/// One assertion and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What is claimed.
    pub claim: String,
    /// Whether it held.
    pub passed: bool,
    /// Evidence or the reason it failed.
    pub detail: String,
}

/// The outcome of one scenario.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Report {
    fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_owned(),
            checks: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Records a check; returns whether it passed.
    pub fn check(
        &mut self,
        claim: impl Into<String>,
        passed: bool,
        detail: impl Into<String>,
    ) -> bool {
        self.checks.push(Check {
            claim: claim.into(),
            passed,
            detail: detail.into(),
        });
        passed
    }

    /// Records a check that must hold for the scenario to go on: `Err` (stop) if it failed.
    pub fn require(
        &mut self,
        claim: impl Into<String>,
        passed: bool,
        detail: impl Into<String>,
    ) -> Result<(), Stop> {
        if self.check(claim, passed, detail) {
            Ok(())
        } else {
            Err(Stop)
        }
    }

    /// Records the outcome of a step that may fail: the value, or a failed check and `Err`.
    pub fn step<T, E: fmt::Display>(
        &mut self,
        claim: impl Into<String>,
        result: Result<T, E>,
    ) -> Result<T, Stop> {
        match result {
            Ok(v) => {
                self.check(claim, true, "");
                Ok(v)
            }
            Err(e) => {
                self.check(claim, false, e.to_string());
                Err(Stop)
            }
        }
    }

    /// Like [`Report::step`], but records nothing on success (for routine steps).
    pub fn quietly<T, E: fmt::Display>(
        &mut self,
        what: impl Into<String>,
        result: Result<T, E>,
    ) -> Result<T, Stop> {
        result.map_err(|e| {
            self.check(what, false, e.to_string());
            Stop
        })
    }

    /// Whether every check passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario {}", self.scenario)?;
        for c in &self.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            if c.detail.is_empty() {
                writeln!(f, "  {mark} {}", c.claim)?;
            } else {
                writeln!(f, "  {mark} {} ({})", c.claim, c.detail)?;
            }
        }
        let failed = self.checks.iter().filter(|c| !c.passed).count();
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        write!(
            f,
            "{verdict}: {} passed, {failed} failed in {:.1} s",
            self.checks.len() - failed,
            self.elapsed.as_secs_f64()
        )
    }
}

/// A scenario stopped early; the reason is the last check of its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

/// The smallest number of nodes `name` needs.
pub fn min_nodes(name: &str) -> usize {
    match name {
        "channel" | "partition" | "all" | "managed" => 3,
        _ => 2,
    }
}

/// Runs scenario `name` against `net` and returns its report. An unknown name is an error.
pub async fn run(name: &str, net: &mut Network) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut report = Report::new(name);
    let outcome = match name {
        "dm" => dm::run(net, &mut report).await,
        "channel" => channel::run(net, &mut report).await,
        "outage" => outage::run(net, &mut report).await,
        "partition" => partition::run(net, &mut report).await,
        "managed" => managed::run(net, &mut report).await,
        other => anyhow::bail!(
            "no scenario {other:?} (scenarios: {}, all)",
            NAMES.join(", ")
        ),
    };
    if outcome.is_err() && report.checks.iter().all(|c| c.passed) {
        report.check("scenario ran to the end", false, "stopped without a reason");
    }
    if let Err(e) = restore(net).await {
        report.check(
            "the network is restored afterwards",
            false,
            format!("{e:#}"),
        );
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Leaves the network as a scenario found it: every link healed, every node running.
pub async fn restore(net: &mut Network) -> anyhow::Result<()> {
    net.heal_all().await?;
    for n in net.info().nodes.clone() {
        let name = n.short_name();
        if !net.is_alive(&name)? {
            net.restart(&name).await?;
        }
    }
    Ok(())
}

/// `testnet scenario NAME`: runs it (or all of them) against the testnet in `dir` or a
/// temporary one, prints the reports, and returns whether everything passed.
pub async fn run_cli(name: &str, dir: &Path) -> anyhow::Result<bool> {
    let managed = MANAGED_NAMES.contains(&name);
    let mut names: Vec<&str> = if name == "all" {
        NAMES.to_vec()
    } else if NAMES.contains(&name) || managed {
        vec![name]
    } else {
        anyhow::bail!(
            "no scenario {name:?} (scenarios: {}, {}, all)",
            NAMES.join(", "),
            MANAGED_NAMES.join(", ")
        );
    };
    let (nodes, instances) = if managed { (1, 2) } else { (3, 0) };
    let mut target = Target::acquire(dir, min_nodes(name), nodes, instances).await?;
    if name == "all" && !target.net.info().managed().is_empty() {
        names.extend(MANAGED_NAMES);
    }
    let mut all_passed = true;
    for n in names {
        let report = run(n, &mut target.net).await?;
        println!("{report}");
        all_passed &= report.passed();
    }
    target.release().await?;
    Ok(all_passed)
}
