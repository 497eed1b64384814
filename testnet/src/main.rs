//! `testnet`: runs a local multi-node Mobium federation (homeservers, a DNS zone, relays),
//! breaks it on purpose, runs scripted scenarios and benchmarks against it. See the
//! `mobium_testnet` crate documentation for the design and the README's "Run a local testnet".

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mobium_testnet::network::node_alive;
use mobium_testnet::{DaemonMode, Network, UpOptions, bench, daemon, ports, scenario};

#[derive(Parser)]
#[command(
    name = "testnet",
    version,
    about = "A local Mobium federation: homeservers, DNS, chaos, scenarios, benchmarks"
)]
struct Cli {
    /// The testnet directory: node data, logs, testnet.json.
    #[arg(long, short, global = true, default_value = "./testnet-data")]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start N homeservers, the DNS server and the relays; wait until they federate.
    Up {
        /// Number of homeservers.
        #[arg(long, short, default_value_t = 3)]
        nodes: usize,
        /// Also a managed peer, cloud.mobium.test, of this many instances (PostgreSQL at
        /// TESTNET_POSTGRES_URL, NATS at TESTNET_NATS_URL).
        #[arg(long, default_value_t = 0)]
        managed: usize,
        /// First port of the layout (DNS on P, control on P+1, node i on P+10i..P+10i+2).
        #[arg(long, default_value_t = ports::DEFAULT_BASE_PORT)]
        base_port: u16,
        /// Skip the cross-node message check at the end (debugging only).
        #[arg(long)]
        no_federation_check: bool,
    },
    /// Show the nodes, their health, the daemon and any partitions.
    Status,
    /// Stop every process of the testnet (data is kept unless --wipe).
    Down {
        /// Also delete the nodes' data directories and logs.
        #[arg(long)]
        wipe: bool,
    },
    /// Print a node's log (stdout and stderr of its `mobium serve`).
    Logs {
        /// The node: node2, node2.mobium.test or 2.
        node: String,
        /// Only the last N lines.
        #[arg(long, short = 'n')]
        lines: Option<usize>,
    },
    /// Kill a node at once (SIGKILL), as a crash would.
    Kill {
        /// The node.
        node: String,
    },
    /// Start a node again with the same data, ports and key (stopping it first if it runs).
    Restart {
        /// The node.
        node: String,
    },
    /// Cut federation traffic between two nodes.
    Partition {
        /// One node.
        a: String,
        /// The other node.
        b: String,
    },
    /// Restore federation traffic between two nodes (or every link with --all).
    Heal {
        /// One node.
        a: Option<String>,
        /// The other node.
        b: Option<String>,
        /// Heal every partition.
        #[arg(long)]
        all: bool,
    },
    /// Run a scripted scenario: dm, channel, outage, partition, managed (or all).
    Scenario {
        /// The scenario's name.
        name: String,
    },
    /// Run the benchmark suite; prints a table and writes bench-TIMESTAMP.json into the testnet directory.
    Bench {
        /// Shorter runs (for a quick look; the figures are noisier).
        #[arg(long)]
        quick: bool,
    },
    /// The background process behind `up` (DNS, relays, control channel). Not for direct use.
    #[command(hide = true)]
    Daemon {
        /// The plan written by `up`.
        #[arg(long)]
        plan: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = if matches!(cli.command, Command::Daemon { .. }) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESTNET_CLI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("testnet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("testnet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let dir = cli.dir;
    match cli.command {
        Command::Up {
            nodes,
            managed,
            base_port,
            no_federation_check,
        } => {
            let opts = UpOptions {
                nodes,
                managed,
                base_port: Some(base_port),
                dir: dir.clone(),
                daemon: DaemonMode::Detached {
                    testnet_exe: daemon::current_exe()?,
                },
                mobium: None,
                reach_timeout: if no_federation_check {
                    Duration::ZERO
                } else {
                    Duration::from_secs(90)
                },
            };
            match managed {
                0 => eprintln!("testnet: starting {nodes} nodes in {}…", dir.display()),
                m => eprintln!(
                    "testnet: starting {nodes} nodes and a managed peer of {m} instances in {}…",
                    dir.display()
                ),
            }
            let net = Network::up(opts).await?;
            let info = net.info();
            print!("{}", info.table(|n| node_alive(info, n)));
            println!();
            println!("DNS (zone {}): {}", info.zone, info.dns_addr);
            println!(
                "described in {}",
                mobium_testnet::TestnetInfo::path(&info.dir).display()
            );
            println!("try: testnet scenario dm    stop: testnet down");
        }
        Command::Status => {
            let mut net = Network::attach(&dir)?;
            let status = net.status().await;
            print!(
                "{}",
                status.info.table(|n| {
                    status
                        .nodes
                        .iter()
                        .any(|s| s.node.index == n.index && s.alive)
                })
            );
            for s in &status.nodes {
                if s.alive && !s.healthy {
                    println!(
                        "warning: {} runs but /health does not answer 200",
                        s.node.name
                    );
                }
            }
            match &status.daemon {
                Ok(d) => {
                    println!("daemon: pid {}, DNS {}", d.pid, status.info.dns_addr);
                    for r in &d.relays {
                        println!(
                            "  relay node{}: {} -> {}  forwarded {}  dropped {}",
                            r.node, r.listen, r.upstream, r.forwarded, r.dropped
                        );
                    }
                    if d.partitions.is_empty() {
                        println!("partitions: none");
                    } else {
                        let pairs: Vec<String> = d
                            .partitions
                            .iter()
                            .map(|(a, b)| format!("node{a} <-/-> node{b}"))
                            .collect();
                        println!("partitions: {}", pairs.join(", "));
                    }
                }
                Err(e) => println!("daemon: not answering ({e})"),
            }
        }
        Command::Down { wipe } => {
            let net = Network::attach(&dir)?;
            net.down(wipe).await?;
            println!(
                "testnet stopped{}",
                if wipe {
                    "; data deleted"
                } else {
                    "; data kept"
                }
            );
        }
        Command::Logs { node, lines } => {
            let net = Network::attach(&dir)?;
            let log = &net.node(&node)?.log;
            let text = std::fs::read_to_string(log)
                .with_context(|| format!("cannot read {}", log.display()))?;
            match lines {
                Some(n) => println!("{}", mobium_testnet::process::tail(log, n)),
                None => print!("{text}"),
            }
        }
        Command::Kill { node } => {
            let mut net = Network::attach(&dir)?;
            net.kill(&node).await?;
            println!("{} killed", net.node(&node)?.name);
        }
        Command::Restart { node } => {
            let mut net = Network::attach(&dir)?;
            net.restart(&node).await?;
            let n = net.node(&node)?;
            println!("{} restarted (pid {})", n.name, n.pid.unwrap_or(0));
        }
        Command::Partition { a, b } => {
            let net = Network::attach(&dir)?;
            let r = net.partition(&a, &b).await?;
            let (a, b) = (&net.node(&a)?.name, &net.node(&b)?.name);
            if r.changed {
                println!("federation between {a} and {b} is cut");
            } else {
                println!("federation between {a} and {b} was already cut");
            }
        }
        Command::Heal { a, b, all } => {
            let net = Network::attach(&dir)?;
            match (a, b, all) {
                (None, None, true) => {
                    net.heal_all().await?;
                    println!("every link restored");
                }
                (Some(a), Some(b), false) => {
                    let r = net.heal(&a, &b).await?;
                    let (a, b) = (&net.node(&a)?.name, &net.node(&b)?.name);
                    if r.changed {
                        println!("federation between {a} and {b} is restored");
                    } else {
                        println!("{a} and {b} were not partitioned");
                    }
                }
                _ => anyhow::bail!("name two nodes (`testnet heal node1 node2`) or use --all"),
            }
        }
        Command::Scenario { name } => {
            let passed = scenario::run_cli(&name, &dir).await?;
            return Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Bench { quick } => {
            bench::run_cli(&dir, quick).await?;
        }
        Command::Daemon { plan } => daemon::main(&plan).await?,
    }
    Ok(ExitCode::SUCCESS)
}
