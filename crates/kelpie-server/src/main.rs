//! `kelpie-server`: the Letta-compatible agent server. `--help` lists every
//! option; `README.md` shows a first session with curl.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use kelpie_server::{bind, serve, shutdown_signal, App, Args, ServerConfig};

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("KELPIE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let config = match ServerConfig::resolve(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let app = match App::start(&config) {
            Ok(app) => app,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        };
        let (listener, local) = match bind(&config).await {
            Ok(bound) => bound,
            Err(error) => {
                eprintln!("error: cannot listen on {}: {error}", config.listen);
                return ExitCode::from(2);
            }
        };
        tracing::info!(address = %local, data_dir = %config.data_dir.display(), llm = ?app.llm_info.model, "kelpie-server listening");
        println!("listening on {local}");
        let _ = std::io::stdout().flush();
        match serve(app, listener, shutdown_signal()).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("error: drain timeout: in-flight requests were abandoned (each step they committed stays; the rest was rolled back)");
                ExitCode::FAILURE
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        }
    })
}
