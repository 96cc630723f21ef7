//! `kelpie`: the command-line entry point.
//!
//! - `kelpie` or `kelpie config [--config FILE]`: print the version and the
//!   validated configuration (file, then `KELPIE_*` variables).
//! - `kelpie dst --seed N [--scenario heartbeat|storage|ownership|runtime|agent-server]`: run a simulation
//!   with seed `N` and print the seed, steps, virtual time, fault effect
//!   counts and trace hash.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kelpie_core::KelpieConfig;
use kelpie_dst::scenarios::agent_server::AgentServerScenario;
use kelpie_dst::scenarios::heartbeat::HeartbeatScenario;
use kelpie_dst::scenarios::ownership::OwnershipScenario;
use kelpie_dst::scenarios::runtime::RuntimeScenario;
use kelpie_dst::scenarios::storage::StorageScenario;
use kelpie_dst::FaultConfig;

/// Kelpie: a virtual-actor runtime for AI agents.
#[derive(Debug, Parser)]
#[command(name = "kelpie", version, about)]
struct Cli {
    /// Configuration file (TOML). Also `KELPIE_CONFIG`.
    #[arg(long, global = true, env = "KELPIE_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Scenario {
    /// Heartbeat service: membership and failure detection (3+ nodes).
    Heartbeat,
    /// Embedded storage, store and journal under disk faults and crashes.
    Storage,
    /// The ownership protocol (single activation) on 3+ nodes.
    Ownership,
    /// The actor runtime on 3+ nodes with retrying clients.
    Runtime,
    /// The agent server on 2+ nodes: agents created with blocks and
    /// idempotency keys, retried across crashes.
    AgentServer,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version and the validated configuration.
    Config,
    /// Run a deterministic simulation (same seed, same run and trace hash).
    Dst {
        /// The seed; the same seed gives the same run and trace hash.
        #[arg(long)]
        seed: u64,
        /// What to simulate.
        #[arg(long, value_enum, default_value_t = Scenario::Heartbeat)]
        scenario: Scenario,
        /// Number of simulated nodes (3..=64 for heartbeat, 1..=64 for storage).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
        nodes: u16,
        /// Virtual seconds to simulate.
        #[arg(long, default_value_t = 20)]
        virtual_secs: u64,
        /// Step bound.
        #[arg(long, default_value_t = 1_000_000)]
        max_steps: u64,
        /// Run without faults.
        #[arg(long)]
        no_faults: bool,
    },
}

fn print_config(path: Option<&std::path::Path>) -> ExitCode {
    println!("kelpie {}", env!("CARGO_PKG_VERSION"));
    match KelpieConfig::load_from_process_env(path) {
        Ok(config) => {
            println!("{config}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: invalid configuration: {error}");
            ExitCode::from(2)
        }
    }
}

/// The options of `kelpie dst`.
struct DstOptions {
    seed: u64,
    scenario: Scenario,
    nodes: usize,
    max_virtual_time: Duration,
    max_steps: u64,
    no_faults: bool,
}

fn run_dst(options: DstOptions) -> ExitCode {
    let DstOptions {
        seed,
        scenario,
        nodes,
        max_virtual_time,
        max_steps,
        no_faults,
    } = options;
    let outcome = match scenario {
        Scenario::Heartbeat => {
            if nodes < 3 {
                eprintln!("error: --nodes must be at least 3 for the heartbeat scenario");
                return ExitCode::from(2);
            }
            let mut run = HeartbeatScenario {
                nodes,
                max_virtual_time,
                max_steps,
                ..HeartbeatScenario::default()
            };
            if no_faults {
                run.faults = FaultConfig::none();
            }
            run.run(seed).map(|(report, coverage)| {
                let coverage = format!(
                    "coverage: suspicions={} restarts={} registration_conflicts={} crashed_pairs_checked={}",
                    coverage.suspicions,
                    coverage.restarts,
                    coverage.registration_conflicts,
                    coverage.crashed_pairs_checked
                );
                (report, Some(coverage))
            })
        }
        Scenario::Ownership | Scenario::Runtime if nodes < 3 => {
            eprintln!("error: --nodes must be at least 3 for the {scenario:?} scenario");
            return ExitCode::from(2);
        }
        Scenario::Ownership => {
            let mut run = OwnershipScenario {
                nodes,
                max_virtual_time,
                ..OwnershipScenario::default()
            };
            if no_faults {
                run.faults = FaultConfig::none();
            }
            run.run(seed)
                .map(|(report, coverage)| (report, Some(format!("coverage: commits={}", coverage.commits))))
        }
        Scenario::Runtime => {
            let mut run = RuntimeScenario {
                nodes,
                max_virtual_time,
                ..RuntimeScenario::default()
            };
            if no_faults {
                run.faults = FaultConfig::none();
            }
            run.run(seed).map(|(report, coverage)| {
                let line = format!(
                    "coverage: acknowledged={} actors_served_after_faults={}",
                    coverage.acknowledged, coverage.served_after_quiet
                );
                (report, Some(line))
            })
        }
        Scenario::AgentServer if nodes < 2 => {
            eprintln!("error: --nodes must be at least 2 for the agent-server scenario");
            return ExitCode::from(2);
        }
        Scenario::AgentServer => {
            let mut run = AgentServerScenario {
                nodes,
                max_virtual_time,
                ..AgentServerScenario::default()
            };
            if no_faults {
                run.faults = FaultConfig::none();
            }
            run.run(seed).map(|(report, coverage)| {
                let line = format!(
                    "coverage: requests={} acknowledged={} acknowledged_after_retry={} agents_committed={}",
                    coverage.requests,
                    coverage.acknowledged,
                    coverage.acknowledged_after_retry,
                    coverage.agents_committed
                );
                (report, Some(line))
            })
        }
        Scenario::Storage => {
            let mut run = StorageScenario {
                nodes,
                max_virtual_time,
                max_steps,
                ..StorageScenario::default()
            };
            if no_faults {
                run.faults = FaultConfig::none();
            }
            run.run(seed).map(|report| (report, None))
        }
    };
    match outcome {
        Ok((report, coverage)) => {
            println!("scenario: {scenario:?}, {nodes} nodes");
            println!("{report}");
            if let Some(coverage) = coverage {
                println!("{coverage}");
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            println!("trace hash: {}", failure.trace_hash);
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Config) => print_config(cli.config.as_deref()),
        Some(Command::Dst {
            seed,
            scenario,
            nodes,
            virtual_secs,
            max_steps,
            no_faults,
        }) => run_dst(DstOptions {
            seed,
            scenario,
            nodes: usize::from(nodes),
            max_virtual_time: Duration::from_secs(virtual_secs),
            max_steps,
            no_faults,
        }),
    }
}
