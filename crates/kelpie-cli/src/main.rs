//! `kelpie`: the command-line entry point.
//!
//! - `kelpie` or `kelpie config [--config FILE]`: print the version and the
//!   validated configuration (file, then `KELPIE_*` variables).
//! - `kelpie dst --seed N`: run the heartbeat simulation with seed `N` and
//!   print the seed, steps, virtual time, fault effect counts and trace hash.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kelpie_core::KelpieConfig;
use kelpie_dst::scenarios::heartbeat::HeartbeatScenario;
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version and the validated configuration.
    Config,
    /// Run a deterministic simulation of the heartbeat service.
    Dst {
        /// The seed; the same seed gives the same run and trace hash.
        #[arg(long)]
        seed: u64,
        /// Number of simulated nodes (3..=64).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(3..=64))]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Config) => print_config(cli.config.as_deref()),
        Some(Command::Dst {
            seed,
            nodes,
            virtual_secs,
            max_steps,
            no_faults,
        }) => {
            let scenario = HeartbeatScenario {
                nodes: usize::from(nodes),
                faults: if no_faults {
                    FaultConfig::none()
                } else {
                    FaultConfig::all_moderate()
                },
                max_virtual_time: Duration::from_secs(virtual_secs),
                max_steps,
                ..HeartbeatScenario::default()
            };
            match scenario.run(seed) {
                Ok((report, coverage)) => {
                    println!("scenario: heartbeat, {nodes} nodes");
                    println!("{report}");
                    println!(
                        "coverage: suspicions={} restarts={} registration_conflicts={}",
                        coverage.suspicions, coverage.restarts, coverage.registration_conflicts
                    );
                    ExitCode::SUCCESS
                }
                Err(failure) => {
                    eprintln!("{failure}");
                    println!("trace hash: {}", failure.trace_hash);
                    ExitCode::from(1)
                }
            }
        }
    }
}
