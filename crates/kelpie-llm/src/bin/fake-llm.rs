//! `fake-llm`: a fake OpenAI-compatible (and Anthropic) LLM server that
//! echoes, for the conformance suite and local experiments.
//!
//! `fake-llm --port <p>` (0: any free port) binds `127.0.0.1:<p>`, prints
//! exactly one line `listening on 127.0.0.1:<port>` to stdout, then serves
//! until killed. Point an OpenAI client at `http://127.0.0.1:<port>/v1`.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;
use kelpie_llm::fake::FakeOpenAi;

/// Fake OpenAI-compatible (and Anthropic) LLM server that echoes, for tests.
#[derive(Debug, Parser)]
#[command(name = "fake-llm", version)]
struct Args {
    /// Port to listen on, on 127.0.0.1 (0: any free port).
    #[arg(long, env = "FAKE_LLM_PORT", default_value_t = 0)]
    port: u16,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let server = match FakeOpenAi::start_on(addr, Vec::new()) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("fake-llm: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "listening on {}", server.addr())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        eprintln!("fake-llm: cannot write to stdout");
        return ExitCode::FAILURE;
    }
    drop(stdout);
    server.serve_forever();
    ExitCode::SUCCESS
}
