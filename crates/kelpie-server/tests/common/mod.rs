//! Shared helpers of the `kelpie-server` integration tests: the real
//! binary as a child process, an HTTP client, SSE parsing.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// How long a server may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A test's directory: the data dir and the servers' stderr logs.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A fresh temporary directory.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The data directory servers of this test use.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

/// A running `kelpie-server` child; killed (SIGKILL) on drop.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The port it listens on.
    pub port: u16,
    stderr_path: PathBuf,
}

/// A child that failed to start (no `listening on` line).
pub struct Failed {
    /// Its exit status, if it exited.
    pub status: Option<ExitStatus>,
    /// Its stderr.
    pub stderr: String,
    /// How long it took to exit, in polls of 10 ms (bounded).
    pub polls: u32,
}

fn command(test_dir: &TestDir, args: &[&str], log_name: &str) -> (Command, PathBuf) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kelpie-server"));
    for (key, _) in std::env::vars() {
        if key.starts_with("KELPIE_") {
            command.env_remove(key);
        }
    }
    let stderr_path = test_dir.path().join(log_name);
    let stderr = File::create(&stderr_path).expect("stderr log");
    command
        .args(["--port", "0", "--data-dir"])
        .arg(test_dir.data_dir())
        .args(args)
        .env("KELPIE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
    (command, stderr_path)
}

fn unique_log_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("server-{}.stderr", NEXT.fetch_add(1, Ordering::SeqCst))
}

/// Reads the first stdout line of `child` on a helper thread, so the wait
/// is bounded; the thread then drains stdout until the child exits.
fn first_line(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("server-stdout".to_string())
        .spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) > 0 {
                let _ = sender.send(line);
            }
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
        })
        .expect("stdout reader thread");
    receiver
}

impl Server {
    /// Starts the server with `--port 0 --data-dir <dir>/data` and `args`,
    /// waiting for its `listening on 127.0.0.1:<port>` line.
    pub fn start(test_dir: &TestDir, args: &[&str]) -> Server {
        match Self::try_start(test_dir, args) {
            Ok(server) => server,
            Err(failed) => panic!(
                "kelpie-server did not start (status {:?}):\n{}",
                failed.status, failed.stderr
            ),
        }
    }

    /// The built-in echo model.
    pub fn scripted(test_dir: &TestDir) -> Server {
        Self::start(test_dir, &["--llm-provider", "scripted"])
    }

    /// An OpenAI-compatible LLM at `base_url` (the fake).
    pub fn with_llm(test_dir: &TestDir, base_url: &str, extra: &[&str]) -> Server {
        let mut args = vec!["--llm-base-url", base_url, "--llm-model", "fake"];
        args.extend_from_slice(extra);
        Self::start(test_dir, &args)
    }

    /// Like [`Server::start`], but a child that exits instead of listening
    /// is returned as [`Failed`] (after it exited, within ~`START_TIMEOUT`).
    pub fn try_start(test_dir: &TestDir, args: &[&str]) -> Result<Server, Failed> {
        let (mut command, stderr_path) = command(test_dir, args, &unique_log_name());
        let mut child = command.spawn().expect("spawn kelpie-server");
        let lines = first_line(&mut child);
        match lines.recv_timeout(START_TIMEOUT) {
            Ok(line) => {
                let line = line.trim_end();
                let address = line
                    .strip_prefix("listening on ")
                    .unwrap_or_else(|| panic!("unexpected first stdout line {line:?}"));
                let port: u16 = address
                    .strip_prefix("127.0.0.1:")
                    .and_then(|port| port.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected address in {line:?}"));
                Ok(Server {
                    child: Some(child),
                    base: format!("http://127.0.0.1:{port}"),
                    port,
                    stderr_path,
                })
            }
            Err(_) => {
                let (status, polls) = wait_child(&mut child, START_TIMEOUT);
                if status.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                Err(Failed {
                    status,
                    stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
                    polls,
                })
            }
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGKILL (a crash) and reap.
    pub fn crash(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits up to `timeout` for the child to exit; `None` if it did not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("running");
        let (status, _) = wait_child(child, timeout);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Whether the child has exited.
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(child) => child.try_wait().expect("try_wait").is_some(),
        }
    }
}

/// Polls `child` every 10 ms for up to `timeout`.
fn wait_child(child: &mut Child, timeout: Duration) -> (Option<ExitStatus>, u32) {
    let polls_max = u32::try_from(timeout.as_millis() / 10).unwrap_or(u32::MAX).max(1);
    for poll in 0..polls_max {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return (Some(status), poll);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (child.try_wait().expect("try_wait"), polls_max)
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP client that opens a new connection per request (no pooling),
/// so a connection error means the request never reached a live server.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A response: status, headers and body (JSON when it parses, else a
/// JSON string of the text).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON (or a string).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

impl Reply {
    /// The `content-type` header.
    pub fn content_type(&self) -> String {
        self.headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// The `detail` of an error body.
    pub fn detail(&self) -> &str {
        self.body["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("no detail in {}: {}", self.status, self.text))
    }
}

/// Reads a response fully.
pub async fn read(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// A JSON API client bound to one server.
#[derive(Clone)]
pub struct Api {
    /// The client.
    pub http: reqwest::Client,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Api {
    /// A client of `server`.
    pub fn new(server: &Server) -> Self {
        Self {
            http: client(),
            base: server.base.clone(),
        }
    }

    /// A request builder for `method path`.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Reply {
        read(self.request(reqwest::Method::GET, path).send().await.expect("send")).await
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        read(
            self.request(reqwest::Method::POST, path)
                .json(body)
                .send()
                .await
                .expect("send"),
        )
        .await
    }

    /// POST a JSON body with an `Idempotency-Key`.
    pub async fn post_keyed(&self, path: &str, body: &Value, key: &str) -> Reply {
        read(
            self.request(reqwest::Method::POST, path)
                .header("Idempotency-Key", key)
                .json(body)
                .send()
                .await
                .expect("send"),
        )
        .await
    }

    /// PATCH a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        read(
            self.request(reqwest::Method::PATCH, path)
                .json(body)
                .send()
                .await
                .expect("send"),
        )
        .await
    }

    /// PATCH without a body (attach/detach).
    pub async fn patch_empty(&self, path: &str) -> Reply {
        read(self.request(reqwest::Method::PATCH, path).send().await.expect("send")).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Reply {
        read(self.request(reqwest::Method::DELETE, path).send().await.expect("send")).await
    }

    /// GET that must answer 200; its body.
    pub async fn get_ok(&self, path: &str) -> Value {
        let reply = self.get(path).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
        reply.body
    }

    /// POST that must answer 200; its body.
    pub async fn post_ok(&self, path: &str, body: &Value) -> Value {
        let reply = self.post(path, body).await;
        assert_eq!(reply.status, 200, "POST {path} {body}: {}", reply.text);
        reply.body
    }

    /// PATCH that must answer 200; its body.
    pub async fn patch_ok(&self, path: &str, body: &Value) -> Value {
        let reply = self.patch(path, body).await;
        assert_eq!(reply.status, 200, "PATCH {path} {body}: {}", reply.text);
        reply.body
    }

    /// `GET /v1/agents/count`.
    pub async fn count(&self) -> u64 {
        self.get_ok("/v1/agents/count")
            .await
            .as_u64()
            .expect("count is a bare integer")
    }

    /// Creates an agent named `name` with persona and human blocks; its id.
    pub async fn create_agent(&self, name: &str) -> String {
        let agent = self
            .post_ok(
                "/v1/agents/",
                &serde_json::json!({
                    "name": name,
                    "memory_blocks": [
                        {"label": "persona", "value": "I am a test agent."},
                        {"label": "human", "value": "The human is testing."},
                    ],
                }),
            )
            .await;
        agent["id"].as_str().expect("agent id").to_string()
    }

    /// Every message of an agent's history, oldest first, by paging with
    /// `after` (limit 2) until an empty page.
    pub async fn all_messages(&self, agent_id: &str) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..10_000 {
            let mut path = format!("/v1/agents/{agent_id}/messages?order=asc&limit=2");
            if let Some(after) = &after {
                path.push_str(&format!("&after={after}"));
            }
            let page = self.get_ok(&path).await;
            let page = page.as_array().expect("array").clone();
            let Some(last) = page.last() else {
                return all;
            };
            after = Some(last["id"].as_str().expect("id").to_string());
            all.extend(page);
        }
        panic!("message paging did not terminate");
    }
}

/// The `message_type`s of a list of messages.
pub fn types(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|message| message["message_type"].as_str().expect("message_type"))
        .collect()
}

/// One server-sent event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `event:` name, if any.
    pub event: Option<String>,
    /// Its `data:` lines, joined with `\n`.
    pub data: String,
}

/// Parses an SSE body (comment lines ignored).
pub fn parse_sse(body: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut event: Option<String> = None;
    let mut data: Vec<String> = Vec::new();
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if !data.is_empty() || event.is_some() {
                events.push(SseEvent {
                    event: event.take(),
                    data: data.join("\n"),
                });
                data.clear();
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => data.push(value.to_string()),
            "event" => event = Some(value.to_string()),
            _ => {}
        }
    }
    if !data.is_empty() {
        events.push(SseEvent {
            event,
            data: data.join("\n"),
        });
    }
    events
}

/// Lets real time pass (polling an outside process with a bounded number
/// of tries; never used for correctness where a signal exists).
#[allow(clippy::disallowed_methods)] // Tests poll real child processes in real time.
pub async fn pause(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Polls `done` every 10 ms, up to `timeout`; whether it became true.
pub async fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let polls = timeout.as_millis() / 10;
    for _ in 0..polls {
        if done() {
            return true;
        }
        pause(Duration::from_millis(10)).await;
    }
    done()
}
