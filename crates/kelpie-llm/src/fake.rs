//! Fake OpenAI and Anthropic servers over real HTTP, for tests, benchmarks
//! and the conformance suite (feature `fake`).
//!
//! A fake server binds `127.0.0.1:0` (or a given address) and runs on its
//! own thread with its own Tokio runtime, so it works from synchronous code
//! and from any async runtime alike; it stops when dropped (or on
//! `shutdown()`), cutting open connections.
//!
//! Every fake serves all of these routes (only the base URL differs between
//! [`FakeOpenAi`] and [`FakeAnthropic`]):
//! - `POST /v1/chat/completions`: OpenAI wire format;
//! - `POST /v1/messages`: Anthropic wire format (requires `x-api-key` and
//!   `anthropic-version`, and user/assistant alternation starting with user);
//! - `POST /v1/embeddings`: [`FAKE_EMBEDDING_DIMENSIONS`]-sized vectors from
//!   [`HashingEmbeddings`](crate::HashingEmbeddings);
//! - `GET /v1/models`: one model, [`FAKE_MODEL`].
//!
//! The two chat routes answer the next [`FakeReply`] of the script; once it
//! is used up they echo as [`ScriptedProvider`](crate::ScriptedProvider)
//! does (computed from the request JSON), with the requested model's name.
//! Malformed requests get a 400 naming the problem.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::anthropic::tool_input;
use crate::embeddings::hash_embedding;
use crate::scripted::{echo_response, lock};
use crate::{ChatMessage, ChatRequest, ChatResponse, FinishReason, Role, ToolCall, ToolSpec};

/// Size of the fake's embedding vectors.
pub const FAKE_EMBEDDING_DIMENSIONS: usize = 64;

/// The model `GET /v1/models` lists (and echo replies name when the request
/// names none).
pub const FAKE_MODEL: &str = "fake-model";

/// One entry of a fake server's chat script.
#[derive(Clone, Debug, PartialEq)]
pub enum FakeReply {
    /// Answer 200 with this response in the route's wire format.
    Reply(ChatResponse),
    /// Answer this status (e.g. 500, 429, 400) with this body.
    Status {
        /// The HTTP status.
        status: u16,
        /// The body, sent as `application/json`.
        body: String,
    },
    /// Answer 200 with this body verbatim (garbage, or hand-written JSON).
    Raw(String),
    /// Never answer (until the server stops): for client timeouts.
    Hang,
}

impl FakeReply {
    /// Answer `status` with a provider-style JSON error body.
    pub fn status(status: u16) -> Self {
        FakeReply::Status {
            status,
            body: json!({
                "error": { "message": format!("fake error {status}"), "type": "fake_error", "code": status }
            })
            .to_string(),
        }
    }
}

impl From<ChatResponse> for FakeReply {
    fn from(response: ChatResponse) -> Self {
        FakeReply::Reply(response)
    }
}

/// One request a fake server received.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The headers, names lowercase (repeated headers: the last one).
    pub headers: BTreeMap<String, String>,
    /// The body as JSON; `Null` when empty, a JSON string when not JSON.
    pub body: Value,
}

struct Shared {
    script: Mutex<VecDeque<FakeReply>>,
    recorded: Mutex<Vec<RecordedRequest>>,
    /// Numbers echo tool calls (`call_<n>`).
    calls: AtomicU64,
    /// Numbers answers (`chatcmpl-fake-<n>`, `msg_fake_<n>`).
    answers: AtomicU64,
}

struct FakeServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<futures::channel::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(addr: SocketAddr, script: Vec<FakeReply>) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            recorded: Mutex::new(Vec::new()),
            calls: AtomicU64::new(0),
            answers: AtomicU64::new(0),
        });
        let router = router(shared.clone());
        let (stop, stopped) = futures::channel::oneshot::channel::<()>();
        // The fake runs on its own thread and runtime so that it serves
        // whatever (or no) runtime the test uses, and so that dropping it
        // cuts every connection at once (a `Hang` reply included).
        let thread = std::thread::Builder::new()
            .name(format!("fake-llm-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let serve = std::future::IntoFuture::into_future(axum::serve(listener, router));
                    futures::future::select(Box::pin(serve), stopped).await;
                });
                runtime.shutdown_background();
            })?;
        Ok(FakeServer {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn requests(&self) -> Vec<Value> {
        lock(&self.shared.recorded)
            .iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.body.clone())
            .collect()
    }

    fn recorded(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.recorded).clone()
    }

    fn push(&self, reply: FakeReply) {
        lock(&self.shared.script).push_back(reply);
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The server thread may already be gone; nothing to stop then.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread has already been reported there.
            let _ = thread.join();
        }
    }

    fn serve_forever(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop();
    }
}

macro_rules! fake_api {
    ($ty:ident, $base_doc:literal, $suffix:literal) => {
        impl $ty {
            /// Starts a fake on `127.0.0.1:0` answering `script`, then echoing.
            pub fn start(script: Vec<FakeReply>) -> io::Result<Self> {
                Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), script)
            }

            /// Starts a fake that only echoes, on `127.0.0.1:0`.
            pub fn echo() -> io::Result<Self> {
                Self::start(Vec::new())
            }

            /// Starts a fake on `addr` (port 0: any free port).
            pub fn start_on(addr: SocketAddr, script: Vec<FakeReply>) -> io::Result<Self> {
                Ok($ty {
                    server: FakeServer::start(addr, script)?,
                })
            }

            /// The address it listens on.
            pub fn addr(&self) -> SocketAddr {
                self.server.addr
            }

            #[doc = $base_doc]
            pub fn base_url(&self) -> String {
                format!("http://{}{}", self.server.addr, $suffix)
            }

            /// Every POST body received (chat and embeddings), in order.
            pub fn requests(&self) -> Vec<Value> {
                self.server.requests()
            }

            /// Every request received (method, path, headers, body), in order.
            pub fn recorded(&self) -> Vec<RecordedRequest> {
                self.server.recorded()
            }

            /// Appends `reply` to the chat script.
            pub fn push(&self, reply: FakeReply) {
                self.server.push(reply)
            }

            /// Stops serving (as dropping does).
            pub fn shutdown(mut self) {
                self.server.stop()
            }

            /// Serves until the process is killed.
            pub fn serve_forever(self) {
                self.server.serve_forever()
            }
        }
    };
}

/// A fake OpenAI-compatible server; see the [module docs](self).
pub struct FakeOpenAi {
    server: FakeServer,
}

fake_api!(
    FakeOpenAi,
    "The base URL for an OpenAI-compatible client: `http://127.0.0.1:<port>/v1`.",
    "/v1"
);

/// A fake Anthropic server; see the [module docs](self).
pub struct FakeAnthropic {
    server: FakeServer,
}

fake_api!(
    FakeAnthropic,
    "The base URL for an Anthropic client: `http://127.0.0.1:<port>` (no `/v1`).",
    ""
);

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .fallback(not_found)
        .with_state(shared)
}

impl Shared {
    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Value {
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        };
        let headers = headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        lock(&self.recorded).push(RecordedRequest {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            headers,
            body: json.clone(),
        });
        json
    }

    fn next_reply(&self) -> Option<FakeReply> {
        lock(&self.script).pop_front()
    }

    fn answer_number(&self) -> u64 {
        self.answers.fetch_add(1, Ordering::Relaxed).saturating_add(1)
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn bad_request(message: String) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({ "error": { "message": message, "type": "invalid_request_error" } }).to_string(),
    )
}

/// The next answer of the script: `Ok(response)` to encode in the route's
/// wire format, or `Err(raw)` to send as is. `None` when the script is used up.
async fn next_scripted(shared: &Shared) -> Option<Result<ChatResponse, Response>> {
    Some(match shared.next_reply()? {
        FakeReply::Reply(response) => Ok(response),
        FakeReply::Status { status, body } => Err(json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )),
        FakeReply::Raw(body) => Err(json_response(StatusCode::OK, body)),
        FakeReply::Hang => futures::future::pending().await,
    })
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = shared.record(&method, &uri, &headers, &body);
    answer(&shared, &json, openai_request(&json), openai_answer).await
}

/// Answers a parsed chat request: the script's next reply, else an echo of
/// the prompt, encoded in the route's wire format by `encode`; a request
/// that did not parse gets a 400 naming the problem.
async fn answer(
    shared: &Shared,
    json: &Value,
    request: Result<ChatRequest, String>,
    encode: fn(&ChatResponse, u64) -> Value,
) -> Response {
    let request = match request {
        Ok(request) => request,
        Err(problem) => return bad_request(problem),
    };
    let model = json.get("model").and_then(Value::as_str).unwrap_or(FAKE_MODEL);
    let response = match next_scripted(shared).await {
        Some(Ok(response)) => response,
        Some(Err(raw)) => return raw,
        None => echo_response(&request, model, &shared.calls),
    };
    json_response(StatusCode::OK, encode(&response, shared.answer_number()).to_string())
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = shared.record(&method, &uri, &headers, &body);
    let has = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.is_empty())
    };
    if !has("x-api-key") {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({ "type": "error", "error": { "type": "authentication_error", "message": "x-api-key header is required" } }).to_string(),
        );
    }
    if !has("anthropic-version") {
        return bad_request("anthropic-version header is required".to_owned());
    }
    answer(&shared, &json, anthropic_request(&json), anthropic_answer).await
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = shared.record(&method, &uri, &headers, &body);
    let inputs: Vec<String> = match json.get("input") {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => {
            match items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
            {
                Some(texts) => texts,
                None => return bad_request("`input` must be a string or an array of strings".into()),
            }
        }
        _ => return bad_request("`input` must be a string or an array of strings".into()),
    };
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({
                "object": "embedding",
                "index": index,
                "embedding": hash_embedding(text, FAKE_EMBEDDING_DIMENSIONS),
            })
        })
        .collect();
    let model = json.get("model").and_then(Value::as_str).unwrap_or(FAKE_MODEL);
    json_response(
        StatusCode::OK,
        json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
        })
        .to_string(),
    )
}

async fn models(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record(&method, &uri, &headers, &body);
    json_response(
        StatusCode::OK,
        json!({
            "object": "list",
            "data": [{ "id": FAKE_MODEL, "object": "model", "created": 0, "owned_by": "kelpie" }],
        })
        .to_string(),
    )
}

async fn not_found(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record(&method, &uri, &headers, &body);
    json_response(
        StatusCode::NOT_FOUND,
        json!({ "error": { "message": format!("no route {method} {}", uri.path()), "type": "not_found" } }).to_string(),
    )
}

// ---- OpenAI wire format -------------------------------------------------

fn openai_answer(response: &ChatResponse, number: u64) -> Value {
    let mut message = json!({ "role": "assistant", "content": response.content });
    if !response.tool_calls.is_empty() {
        message["tool_calls"] = response
            .tool_calls
            .iter()
            .map(|call| {
                json!({
                    "id": call.id,
                    "type": "function",
                    "function": { "name": call.name, "arguments": call.arguments },
                })
            })
            .collect();
    }
    json!({
        "id": format!("chatcmpl-fake-{number}"),
        "object": "chat.completion",
        "created": 0,
        "model": response.model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": response.finish_reason.as_str(),
        }],
        "usage": {
            "prompt_tokens": response.usage.prompt_tokens,
            "completion_tokens": response.usage.completion_tokens,
            "total_tokens": response.usage.total_tokens(),
        },
    })
}

fn str_field<'a>(value: &'a Value, name: &str, what: &str) -> Result<&'a str, String> {
    value
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what}: `{name}` must be a string"))
}

/// Text of a `content` that is a string, null, or an array of text parts.
fn openai_text(content: Option<&Value>, what: &str) -> Result<Option<String>, String> {
    match content {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Array(parts)) => Ok(Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        )),
        Some(_) => Err(format!("{what}: `content` must be a string, null or an array")),
    }
}

/// The [`ChatRequest`] in an OpenAI chat-completions request body.
fn openai_request(body: &Value) -> Result<ChatRequest, String> {
    if !body.is_object() {
        return Err("the body must be a JSON object".into());
    }
    str_field(body, "model", "request")?;
    let raw_messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("`messages` must be a non-empty array")?;
    let mut messages = Vec::with_capacity(raw_messages.len());
    for (i, raw) in raw_messages.iter().enumerate() {
        let what = format!("messages[{i}]");
        let role = match str_field(raw, "role", &what)? {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => return Err(format!("{what}: unknown role {other:?}")),
        };
        let content = openai_text(raw.get("content"), &what)?;
        let mut tool_calls = Vec::new();
        match raw.get("tool_calls") {
            None | Some(Value::Null) => {}
            Some(Value::Array(calls)) if !calls.is_empty() && role == Role::Assistant => {
                for (j, call) in calls.iter().enumerate() {
                    let what = format!("{what}.tool_calls[{j}]");
                    if call.get("type").and_then(Value::as_str) != Some("function") {
                        return Err(format!("{what}: `type` must be \"function\""));
                    }
                    let function = call
                        .get("function")
                        .ok_or_else(|| format!("{what}: `function` is missing"))?;
                    tool_calls.push(ToolCall {
                        id: str_field(call, "id", &what)?.to_owned(),
                        name: str_field(function, "name", &what)?.to_owned(),
                        arguments: str_field(function, "arguments", &what)?.to_owned(),
                    });
                }
            }
            Some(_) => {
                return Err(format!(
                    "{what}: `tool_calls` must be a non-empty array on an assistant message"
                ))
            }
        }
        let tool_call_id = match role {
            Role::Tool => Some(str_field(raw, "tool_call_id", &what)?.to_owned()),
            _ => None,
        };
        if content.is_none() && tool_calls.is_empty() {
            return Err(format!("{what}: `content` is null without tool calls"));
        }
        messages.push(ChatMessage {
            role,
            content,
            tool_calls,
            tool_call_id,
            name: raw.get("name").and_then(Value::as_str).map(str::to_owned),
        });
    }
    let mut tools = Vec::new();
    match body.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(raw_tools)) if !raw_tools.is_empty() => {
            for (i, tool) in raw_tools.iter().enumerate() {
                let what = format!("tools[{i}]");
                if tool.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(format!("{what}: `type` must be \"function\""));
                }
                let function = tool
                    .get("function")
                    .ok_or_else(|| format!("{what}: `function` is missing"))?;
                tools.push(ToolSpec {
                    name: str_field(function, "name", &what)?.to_owned(),
                    description: function
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    parameters: function.get("parameters").cloned().unwrap_or(Value::Null),
                });
            }
        }
        Some(_) => return Err("`tools` must be a non-empty array when present".into()),
    }
    Ok(ChatRequest {
        messages,
        tools,
        max_tokens: body
            .get("max_tokens")
            .and_then(Value::as_u64)
            .and_then(|m| u32::try_from(m).ok()),
        temperature: body.get("temperature").and_then(Value::as_f64).map(|t| t as f32),
    })
}

// ---- Anthropic wire format ----------------------------------------------

fn anthropic_answer(response: &ChatResponse, number: u64) -> Value {
    let mut content = Vec::new();
    if let Some(text) = &response.content {
        content.push(json!({ "type": "text", "text": text }));
    }
    for call in &response.tool_calls {
        content.push(json!({
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": tool_input(&call.arguments),
        }));
    }
    let stop_reason = match &response.finish_reason {
        FinishReason::Stop => "end_turn",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::Length => "max_tokens",
        FinishReason::Other(other) => other,
    };
    json!({
        "id": format!("msg_fake_{number}"),
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {
            "input_tokens": response.usage.prompt_tokens,
            "output_tokens": response.usage.completion_tokens,
        },
    })
}

/// Text of an Anthropic `content`/`system`: a string or an array of text blocks.
fn anthropic_text(value: &Value, what: &str) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| {
                b.get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{what}: only text blocks are supported here"))
            })
            .collect(),
        _ => Err(format!("{what}: must be a string or an array of text blocks")),
    }
}

/// The [`ChatRequest`] in an Anthropic messages request body.
fn anthropic_request(body: &Value) -> Result<ChatRequest, String> {
    if !body.is_object() {
        return Err("the body must be a JSON object".into());
    }
    str_field(body, "model", "request")?;
    let max_tokens = body
        .get("max_tokens")
        .and_then(Value::as_u64)
        .filter(|m| *m > 0)
        .ok_or("`max_tokens` must be a positive integer")?;
    let mut messages = Vec::new();
    if let Some(system) = body.get("system") {
        messages.push(ChatMessage::system(anthropic_text(system, "system")?));
    }
    let raw_messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("`messages` must be a non-empty array")?;
    let mut previous_role = None;
    for (i, raw) in raw_messages.iter().enumerate() {
        let what = format!("messages[{i}]");
        let role = str_field(raw, "role", &what)?;
        match (previous_role, role) {
            (None, "user") | (Some("user"), "assistant") | (Some("assistant"), "user") => {}
            (None, _) => return Err(format!("{what}: the first message must be a user message")),
            (_, "user" | "assistant") => {
                return Err(format!("{what}: roles must alternate between user and assistant"))
            }
            _ => return Err(format!("{what}: unknown role {role:?}")),
        }
        previous_role = Some(role);
        let blocks = match raw.get("content") {
            Some(Value::String(text)) => vec![json!({ "type": "text", "text": text })],
            Some(Value::Array(blocks)) if !blocks.is_empty() => blocks.clone(),
            _ => return Err(format!("{what}: `content` must be a string or a non-empty array")),
        };
        let mut text = String::new();
        let mut has_text = false;
        let mut tool_calls = Vec::new();
        for (j, block) in blocks.iter().enumerate() {
            let what = format!("{what}.content[{j}]");
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let part = str_field(block, "text", &what)?;
                    if part.is_empty() {
                        return Err(format!("{what}: text content blocks must be non-empty"));
                    }
                    text.push_str(part);
                    has_text = true;
                }
                Some("tool_use") if role == "assistant" => {
                    let input = block
                        .get("input")
                        .filter(|i| i.is_object())
                        .ok_or_else(|| format!("{what}: `input` must be an object"))?;
                    tool_calls.push(ToolCall {
                        id: str_field(block, "id", &what)?.to_owned(),
                        name: str_field(block, "name", &what)?.to_owned(),
                        arguments: input.to_string(),
                    });
                }
                Some("tool_result") if role == "user" => {
                    let id = str_field(block, "tool_use_id", &what)?;
                    let content = match block.get("content") {
                        None => String::new(),
                        Some(content) => anthropic_text(content, &what)?,
                    };
                    messages.push(ChatMessage {
                        role: Role::Tool,
                        content: Some(content),
                        tool_calls: Vec::new(),
                        tool_call_id: Some(id.to_owned()),
                        name: None,
                    });
                }
                _ => return Err(format!("{what}: unsupported block for a {role} message")),
            }
        }
        let content = has_text.then_some(text);
        if role == "assistant" {
            messages.push(ChatMessage::assistant(content, tool_calls));
        } else if let Some(content) = content {
            messages.push(ChatMessage::user(content));
        }
    }
    let mut tools = Vec::new();
    if let Some(raw_tools) = body.get("tools") {
        let raw_tools = raw_tools.as_array().ok_or("`tools` must be an array")?;
        for (i, tool) in raw_tools.iter().enumerate() {
            let what = format!("tools[{i}]");
            let schema = tool
                .get("input_schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| format!("{what}: `input_schema` must be an object"))?;
            tools.push(ToolSpec {
                name: str_field(tool, "name", &what)?.to_owned(),
                description: tool.get("description").and_then(Value::as_str).unwrap_or("").to_owned(),
                parameters: schema.clone(),
            });
        }
    }
    Ok(ChatRequest {
        messages,
        tools,
        max_tokens: u32::try_from(max_tokens).ok(),
        temperature: body.get("temperature").and_then(Value::as_f64).map(|t| t as f32),
    })
}
