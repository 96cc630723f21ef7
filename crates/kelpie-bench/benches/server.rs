//! The agent server over real HTTP, as a separate process with its durable
//! embedded store and the deterministic scripted model (so the figures are
//! the server's, not an LLM's): agent creations per second, message round
//! trips per second (plain and streaming) at 1 and 64 concurrent clients,
//! p50/p99 latency, and resident memory per stored and per active agent.
//!
//! Run: `cargo build --release -p kelpie-server && cargo bench -p kelpie-bench --bench server`.
//! `KELPIE_SERVER_BIN` overrides the binary; `SERVER_BENCH_SCALE` (default
//! 1) multiplies the request counts.

#![allow(clippy::disallowed_methods)] // a benchmark measures wall time and spawns client tasks

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_bin() -> PathBuf {
    std::env::var_os("KELPIE_SERVER_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/kelpie-server"),
        PathBuf::from,
    )
}

fn start(data_dir: &std::path::Path) -> Server {
    let bin = server_bin();
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release -p kelpie-server` first",
        bin.display()
    );
    let mut child = Command::new(&bin)
        .args(["--port", "0", "--llm-provider", "scripted", "--data-dir"])
        .arg(data_dir)
        .env("KELPIE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kelpie-server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let address = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_string();
    Server {
        child,
        url: format!("http://{address}"),
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

struct Measured {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `total` calls of `call(i)` from `clients` concurrent clients.
async fn measure<F, Fut>(clients: usize, total: usize, call: F) -> Measured
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = client;
            while i < total {
                let t = Instant::now();
                call(i).await;
                latencies.push(t.elapsed());
                i += clients;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    let elapsed = started.elapsed();
    all.sort();
    Measured {
        per_second: total as f64 / elapsed.as_secs_f64(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
    }
}

async fn create_agent(client: &reqwest::Client, url: &str, name: String) -> String {
    let response: Value = client
        .post(format!("{url}/v1/agents/"))
        .json(&json!({
            "name": name,
            "memory_blocks": [
                {"label": "persona", "value": "I am a benchmark agent."},
                {"label": "human", "value": "Name: bench"}
            ]
        }))
        .send()
        .await
        .expect("create")
        .error_for_status()
        .expect("create status")
        .json()
        .await
        .expect("create body");
    response["id"].as_str().expect("id").to_string()
}

async fn send(client: &reqwest::Client, url: &str, agent: &str, streaming: bool) {
    let response = client
        .post(format!("{url}/v1/agents/{agent}/messages"))
        .json(&json!({"messages": [{"role": "user", "content": "hello"}], "streaming": streaming}))
        .send()
        .await
        .expect("send")
        .error_for_status()
        .expect("send status");
    let body = response.text().await.expect("body");
    assert!(body.contains("Echo: hello"), "unexpected reply: {body}");
}

fn row(what: &str, clients: usize, measured: &Measured) {
    println!(
        "| {what} | {clients} | {:.0}/s | {:.2} ms | {:.2} ms |",
        measured.per_second,
        measured.p50.as_secs_f64() * 1e3,
        measured.p99.as_secs_f64() * 1e3
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we ignore.
    let scale: usize = std::env::var("SERVER_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::Builder::new()
        .prefix("kelpie-bench-server-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let server = start(dir.path());
    let url = server.url.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .expect("client");
    println!("| operation | clients | throughput | p50 | p99 |");
    println!("|---|---|---|---|---|");
    runtime.block_on(async {
        for clients in [1usize, 64] {
            let total = 300 * scale * if clients == 1 { 1 } else { 4 };
            let (c, u) = (client.clone(), url.clone());
            let measured = measure(clients, total, move |i| {
                let (c, u) = (c.clone(), u.clone());
                async move {
                    create_agent(&c, &u, format!("create-{clients}-{i}")).await;
                }
            })
            .await;
            row("create agent (2 blocks)", clients, &measured);
        }
        for streaming in [false, true] {
            for clients in [1usize, 64] {
                let mut agents = Vec::new();
                for i in 0..clients {
                    agents.push(create_agent(&client, &url, format!("chat-{streaming}-{clients}-{i}")).await);
                }
                let agents = Arc::new(agents);
                let total = 200 * scale * if clients == 1 { 1 } else { 4 };
                let (c, u) = (client.clone(), url.clone());
                let measured = measure(clients, total, move |i| {
                    let (c, u, agents) = (c.clone(), u.clone(), agents.clone());
                    async move {
                        send(&c, &u, &agents[i % agents.len()], streaming).await;
                    }
                })
                .await;
                let what = if streaming {
                    "message round trip, SSE"
                } else {
                    "message round trip"
                };
                row(what, clients, &measured);
            }
        }
    });
    // Memory: per active agent (created, so activated, and idle), then per
    // stored agent (a restarted server with the same data, nothing active).
    let agents = 2_000 * scale;
    let pid = server.child.id();
    let before = rss_bytes(pid);
    runtime.block_on(async {
        let (c, u) = (client.clone(), url.clone());
        measure(16, agents, move |i| {
            let (c, u) = (c.clone(), u.clone());
            async move {
                create_agent(&c, &u, format!("rss-{i}")).await;
            }
        })
        .await;
    });
    let active = rss_bytes(pid).saturating_sub(before) / agents as u64;
    drop(server);
    let empty_dir = tempfile::Builder::new()
        .prefix("kelpie-bench-server-empty-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let empty = start(empty_dir.path());
    runtime.block_on(async {
        client
            .get(format!("{}/v1/agents/count", empty.url))
            .send()
            .await
            .expect("count");
    });
    let baseline = rss_bytes(empty.child.id());
    drop(empty);
    let restarted = start(dir.path());
    let count: u64 = runtime.block_on(async {
        client
            .get(format!("{}/v1/agents/count", restarted.url))
            .send()
            .await
            .expect("count")
            .json()
            .await
            .expect("count body")
    });
    let stored_total = rss_bytes(restarted.child.id()).saturating_sub(baseline);
    println!();
    println!("| memory | bytes per agent |");
    println!("|---|---|");
    println!("| active (activated, idle) | {active} |");
    println!(
        "| stored ({count} agents, none active) | {} |",
        stored_total / count.max(1)
    );
}
