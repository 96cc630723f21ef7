//! The HTTP API: Letta's routes (see `LETTA_API.md`), `/metrics`, and the
//! admission layer that answers 503 while draining.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::Router;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use kelpie_memory::Passage;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::agent::{
    AgentCommand, AgentPatch, BlockCommand, BlockPatch, Input, StepCommand, StepOutcome, ToolCommand, ToolPatch, NO_LLM,
};
use crate::app::{decode_all, read_agent, read_json, scan_all, space, ApiError, App, RequestMeta};
use crate::ids::{derived_id, is_valid, new_id};
use crate::ops::{custom_tool_id, new_block, CreateBlockBody};
use crate::records::{
    message_key, message_seq, AgentRecord, StoredBlock, StoredMessage, StoredTool, AGENTS, BLOCKS, PASSAGE_KEYS_END,
    PASSAGE_KEYS_START, TOOLS,
};
use crate::render::{self, MessageView};
use crate::tools::{self, BUILTINS, RETURN_CHAR_LIMIT_DEFAULT};

/// The default character limit of a block created through the API
/// (Letta's `CORE_MEMORY_BLOCK_CHAR_LIMIT`).
pub const BLOCK_LIMIT_DEFAULT: usize = 20_000;
/// The largest page a list returns.
pub const PAGE_LIMIT_MAX: usize = 1_000;
/// The system prompt of an agent created without one.
pub const SYSTEM_PROMPT_DEFAULT: &str = "You are a helpful agent with persistent memory, running on Kelpie. \
Your core memory blocks are shown below and are always in context; edit them with core_memory_append and \
core_memory_replace when you learn something worth keeping. Store longer facts with archival_memory_insert and \
find them with archival_memory_search; find earlier conversation with conversation_search. \
Always answer the user by calling send_message.";

type Result<T, E = ApiError> = std::result::Result<T, E>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(json!({"detail": self.detail}))).into_response();
        match self.retry_after {
            Some(seconds) => {
                response.headers_mut().insert("retry-after", HeaderValue::from(seconds));
            }
            // The Letta SDK retries 409 and 5xx by default: a conflict that
            // is not "still running" and a server error will not change on
            // retry.
            None if status == StatusCode::CONFLICT && !self.detail.contains("retry when") => {
                response
                    .headers_mut()
                    .insert("x-should-retry", HeaderValue::from_static("false"));
            }
            None if status.is_server_error() => {
                response
                    .headers_mut()
                    .insert("x-should-retry", HeaderValue::from_static("false"));
            }
            None => {}
        }
        response
    }
}

fn ok(value: Value) -> Response {
    axum::Json(value).into_response()
}

fn respond(result: Result<Value>) -> Response {
    match result {
        Ok(value) => ok(value),
        Err(error) => error.into_response(),
    }
}

/// The whole API over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/agents", post(create_agent).get(list_agents))
        .route("/v1/agents/count", get(count_agents))
        .route(
            "/v1/agents/{agent_id}",
            get(get_agent).patch(update_agent).delete(delete_agent),
        )
        .route("/v1/agents/{agent_id}/core-memory/blocks", get(list_agent_blocks))
        .route(
            "/v1/agents/{agent_id}/core-memory/blocks/{label}",
            get(get_agent_block).patch(update_agent_block),
        )
        .route(
            "/v1/agents/{agent_id}/core-memory/blocks/attach/{block_id}",
            patch(attach_block),
        )
        .route(
            "/v1/agents/{agent_id}/core-memory/blocks/detach/{block_id}",
            patch(detach_block),
        )
        .route("/v1/agents/{agent_id}/tools", get(list_agent_tools))
        .route("/v1/agents/{agent_id}/tools/attach/{tool_id}", patch(attach_tool))
        .route("/v1/agents/{agent_id}/tools/detach/{tool_id}", patch(detach_tool))
        .route("/v1/agents/{agent_id}/messages", post(send_message).get(list_messages))
        .route("/v1/agents/{agent_id}/messages/stream", post(stream_message))
        .route(
            "/v1/agents/{agent_id}/archival-memory",
            post(insert_passage).get(list_passages),
        )
        .route("/v1/agents/{agent_id}/archival-memory/search", get(search_passages))
        .route("/v1/agents/{agent_id}/working-memory", get(list_working))
        .route(
            "/v1/agents/{agent_id}/working-memory/{key}",
            axum::routing::put(set_working).delete(remove_working),
        )
        .route(
            "/v1/agents/{agent_id}/archival-memory/{passage_id}",
            axum::routing::delete(delete_passage),
        )
        .route("/v1/blocks", post(create_block).get(list_blocks))
        .route(
            "/v1/blocks/{block_id}",
            get(get_block).patch(update_block).delete(delete_block),
        )
        .route("/v1/tools", post(create_tool).put(upsert_tool).get(list_tools))
        .route(
            "/v1/tools/{tool_id}",
            get(get_tool).patch(update_tool).delete(delete_tool),
        )
        .fallback(|| async { ApiError::not_found("route") })
        .layer(middleware::from_fn_with_state(app.clone(), admission))
        .with_state(app)
}

/// Admits requests (503 with `Retry-After` once draining started) and
/// records their metrics.
async fn admission(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(admitted) = app.admit() else {
        return ApiError::unavailable("server is shutting down; retry on another node or after restart")
            .into_response();
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let method = request.method().to_string();
    let clock = app.env.clock.clone();
    let started = clock.now_monotonic();
    app.metrics.in_flight.inc();
    let response = next.run(request).await;
    app.metrics.in_flight.dec();
    let elapsed = clock.now_monotonic().saturating_duration_since(started);
    tracing::info!(
        target: "kelpie_server::http",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    app.metrics
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            method,
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    app.metrics
        .latency
        .get_or_create(&crate::metrics::RouteLabels { route })
        .observe(elapsed.as_secs_f64());
    drop(admitted);
    response
}

async fn health() -> Response {
    ok(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    for (kind, active, stats) in app.runtime_stats() {
        let labels = crate::metrics::KindLabels { kind: kind.to_string() };
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        app.metrics
            .active_actors
            .get_or_create(&labels)
            .set(gauge(active as u64));
        app.metrics.invocations.get_or_create(&labels).set(gauge(stats.handled));
        app.metrics
            .journal_replayed
            .get_or_create(&labels)
            .set(gauge(stats.replayed));
        app.metrics
            .journal_depth
            .get_or_create(&labels)
            .set(gauge(stats.accepted.saturating_sub(stats.answered)));
        app.metrics.panics.get_or_create(&labels).set(gauge(stats.panics));
    }
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        app.metrics.encode(),
    )
        .into_response()
}

// ---------------------------------------------------------------- helpers

fn parse_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|error| ApiError::new(422, format!("invalid request body: {error}")))
}

fn meta(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<RequestMeta> {
    let key = match headers.get("idempotency-key") {
        Some(value) => {
            let key = value
                .to_str()
                .map_err(|_| ApiError::new(422, "Idempotency-Key must be visible ASCII"))?;
            if key.is_empty() || key.len() > 255 {
                return Err(ApiError::new(422, "Idempotency-Key must be 1 to 255 characters"));
            }
            Some(key)
        }
        None => None,
    };
    Ok(RequestMeta::new(
        method.as_str(),
        uri.path().trim_end_matches('/'),
        body,
        key,
    ))
}

/// A mutating request: its body and its identity for idempotency.
pub struct Mutation {
    meta: RequestMeta,
    body: Bytes,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Mutation {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        let (parts, body) = request.into_parts();
        let (method, uri, headers) = (parts.method.clone(), parts.uri.clone(), parts.headers.clone());
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|error| ApiError::new(422, format!("cannot read the request body: {error}")))?;
        Ok(Self {
            meta: meta(&method, &uri, &headers, &body)?,
            body,
        })
    }
}

/// Query parameters, repeated keys kept.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<String>) -> Self {
        Query(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key || k == &format!("{key}[]"))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some("true") | Some("True") | Some("1") => Ok(Some(true)),
            Some("false") | Some("False") | Some("0") => Ok(Some(false)),
            Some(other) => Err(ApiError::new(
                422,
                format!("query parameter {key}={other:?} is not a boolean"),
            )),
        }
    }

    fn limit(&self, default: usize) -> Result<usize> {
        match self.get("limit") {
            None => Ok(default),
            Some(text) => match text.parse::<usize>() {
                Ok(limit) if (1..=PAGE_LIMIT_MAX).contains(&limit) => Ok(limit),
                _ => Err(ApiError::new(
                    422,
                    format!("limit={text:?} must be an integer in 1..={PAGE_LIMIT_MAX}"),
                )),
            },
        }
    }

    /// `true` for ascending. `order=asc|desc`, or the legacy `ascending`.
    fn ascending(&self, default: bool) -> Result<bool> {
        match self.get("order") {
            Some("asc") => Ok(true),
            Some("desc") => Ok(false),
            Some(other) => Err(ApiError::new(422, format!("order={other:?} must be asc or desc"))),
            None => Ok(self.bool("ascending")?.unwrap_or(default)),
        }
    }
}

/// One page of `items` (in creation order) by Letta's cursor rules:
/// `after`/`before` are ids, excluded, relative to the requested order;
/// with `before`, the `limit` items closest to it.
fn page<T>(mut items: Vec<T>, id: impl Fn(&T) -> &str, query: &Query, ascending: bool, limit: usize) -> Vec<T> {
    if !ascending {
        items.reverse();
    }
    if let Some(after) = query.get("after") {
        match items.iter().position(|item| id(item) == after) {
            Some(position) => {
                items.drain(..=position);
            }
            None => items.clear(),
        }
    }
    if let Some(before) = query.get("before") {
        match items.iter().position(|item| id(item) == before) {
            Some(position) => {
                items.truncate(position);
                let start = items.len().saturating_sub(limit);
                items.drain(..start);
            }
            None => items.clear(),
        }
    }
    items.truncate(limit);
    items
}

/// The block `id`, or `None` (also for an id that cannot be one).
fn read_block(txn: &mut kelpie_storage::Transaction, id: &str) -> Result<Option<StoredBlock>> {
    if !is_valid("block", id) {
        return Ok(None);
    }
    read_json(txn, space(&BLOCKS), id.as_bytes())
}

/// The records `ids` name, in order, skipping deleted ones.
fn resolve<T>(
    txn: &mut kelpie_storage::Transaction,
    ids: &[String],
    read: fn(&mut kelpie_storage::Transaction, &str) -> Result<Option<T>>,
) -> Result<Vec<T>> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(record) = read(txn, id)? {
            found.push(record);
        }
    }
    Ok(found)
}

fn blocks_of(txn: &mut kelpie_storage::Transaction, agent: &AgentRecord) -> Result<Vec<StoredBlock>> {
    resolve(txn, &agent.block_ids, read_block)
}

fn read_tool(txn: &mut kelpie_storage::Transaction, id: &str) -> Result<Option<StoredTool>> {
    if let Some(builtin) = tools::builtin_by_id(id) {
        return Ok(Some(builtin.clone()));
    }
    if !is_valid("tool", id) {
        return Ok(None);
    }
    read_json(txn, space(&TOOLS), id.as_bytes())
}

fn tools_of(txn: &mut kelpie_storage::Transaction, agent: &AgentRecord) -> Result<Vec<StoredTool>> {
    resolve(txn, &agent.tool_ids, read_tool)
}

pub(crate) fn render_agent(app: &App, txn: &mut kelpie_storage::Transaction, agent: &AgentRecord) -> Result<Value> {
    let blocks = blocks_of(txn, agent)?;
    let tools = tools_of(txn, agent)?;
    Ok(render::agent(
        agent,
        &blocks,
        &tools,
        &app.llm_info,
        app.embedder.config(),
    ))
}

// ---------------------------------------------------------------- agents

async fn create_agent(State(app): State<Arc<App>>, request: Mutation) -> Response {
    respond(
        async {
            let meta = request.meta.clone();
            crate::ops::create_agent(&app, parse_body(&request.body)?, &meta).await
        }
        .await,
    )
}

async fn get_agent(State(app): State<Arc<App>>, Path(agent_id): Path<String>) -> Response {
    respond((|| {
        let mut txn = app.snapshot()?;
        let agent = read_agent(&mut txn, &agent_id)?;
        render_agent(&app, &mut txn, &agent)
    })())
}

fn agent_ids(txn: &mut kelpie_storage::Transaction) -> Result<Vec<String>> {
    Ok(scan_all(txn, space(&AGENTS), b"", None)?
        .into_iter()
        .map(|(key, _)| String::from_utf8_lossy(&key).into_owned())
        .collect())
}

async fn list_agents(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Response {
    respond((|| {
        let query = Query::parse(raw);
        let limit = query.limit(50)?;
        let ascending = query.ascending(false)?;
        let name = query.get("name").map(str::to_string);
        let tags = query.all("tags");
        let match_all = query.bool("match_all_tags")?.unwrap_or(false);
        let mut txn = app.snapshot()?;
        let mut agents = Vec::new();
        for id in agent_ids(&mut txn)? {
            // The index and the records change in one transaction, so an
            // indexed agent's record is in the same snapshot.
            let agent = read_agent(&mut txn, &id)?;
            if name.as_ref().is_some_and(|name| *name != agent.name) {
                continue;
            }
            if !tags.is_empty() {
                let has = |tag: &String| agent.tags.contains(tag);
                if (match_all && !tags.iter().all(has)) || (!match_all && !tags.iter().any(has)) {
                    continue;
                }
            }
            agents.push(agent);
        }
        // Ids made from an Idempotency-Key are not time-ordered: list by
        // creation time, then id.
        agents.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        let agents = page(agents, |agent| agent.id.as_str(), &query, ascending, limit);
        let rendered = agents
            .iter()
            .map(|agent| render_agent(&app, &mut txn, agent))
            .collect::<Result<Vec<_>>>()?;
        Ok(Value::Array(rendered))
    })())
}

async fn count_agents(State(app): State<Arc<App>>) -> Response {
    respond((|| {
        let mut txn = app.snapshot()?;
        Ok(json!(agent_ids(&mut txn)?.len()))
    })())
}

#[derive(Debug, Default, Deserialize)]
struct UpdateAgentBody {
    name: Option<String>,
    description: Option<String>,
    system: Option<String>,
    tags: Option<Vec<String>>,
    metadata: Option<Value>,
    model: Option<String>,
    embedding: Option<String>,
    block_ids: Option<Vec<String>>,
    tool_ids: Option<Vec<String>>,
}

/// Runs a mutation of agent `agent_id` built by `command` from the body.
async fn mutate_agent<B: DeserializeOwned + Default>(
    app: &Arc<App>,
    agent_id: &str,
    request: &Mutation,
    command: impl FnOnce(B) -> Result<AgentCommand>,
) -> Result<Value> {
    if !is_valid("agent", agent_id) {
        return Err(ApiError::not_found(format!("Agent {agent_id}")));
    }
    let command = command(parse_body(&request.body)?)?;
    invoke_agent(app, agent_id, request, command).await
}

/// Runs `command` on agent `agent_id` for `request` (whose body, if any,
/// was already read).
async fn invoke_agent(app: &Arc<App>, agent_id: &str, request: &Mutation, command: AgentCommand) -> Result<Value> {
    // An unknown agent is a 404 without activating an actor for it (the
    // actor checks again: the agent may be deleted in between). A keyed
    // request goes to the actor regardless: its journal holds the first
    // response (a retried DELETE answers 200 again, not 404).
    if request.meta.key.is_none() {
        read_agent(&mut app.snapshot()?, agent_id)?;
    }
    let _guard = app.hold_key(&request.meta)?;
    app.invoke_agent(agent_id, command, &request.meta, "").await
}

async fn update_agent(State(app): State<Arc<App>>, Path(agent_id): Path<String>, request: Mutation) -> Response {
    respond(
        mutate_agent(&app, &agent_id, &request, |request: UpdateAgentBody| {
            if request.name.as_ref().is_some_and(|name| name.trim().is_empty()) {
                return Err(ApiError::new(422, "name must not be empty"));
            }
            Ok(AgentCommand::Update(AgentPatch {
                name: request.name,
                description: request.description,
                system: request.system,
                tags: request.tags,
                metadata: request.metadata,
                model: request.model,
                embedding: request.embedding,
                block_ids: request.block_ids,
                tool_ids: request.tool_ids,
            }))
        })
        .await,
    )
}

async fn delete_agent(State(app): State<Arc<App>>, Path(agent_id): Path<String>, request: Mutation) -> Response {
    respond(invoke_agent(&app, &agent_id, &request, AgentCommand::Delete).await)
}

// ---------------------------------------------------------------- agent blocks

async fn list_agent_blocks(
    State(app): State<Arc<App>>,
    Path(agent_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    respond((|| {
        let query = Query::parse(raw);
        let mut txn = app.snapshot()?;
        let agent = read_agent(&mut txn, &agent_id)?;
        let blocks = blocks_of(&mut txn, &agent)?;
        let limit = query.limit(50)?;
        let blocks = page(blocks, |block| block.id.as_str(), &query, query.ascending(true)?, limit);
        Ok(Value::Array(blocks.iter().map(render::block).collect()))
    })())
}

async fn get_agent_block(State(app): State<Arc<App>>, Path((agent_id, label)): Path<(String, String)>) -> Response {
    respond((|| {
        let mut txn = app.snapshot()?;
        let agent = read_agent(&mut txn, &agent_id)?;
        let blocks = blocks_of(&mut txn, &agent)?;
        blocks
            .iter()
            .find(|block| block.label == label)
            .or_else(|| blocks.iter().find(|block| block.id == label))
            .map(render::block)
            .ok_or_else(|| ApiError::not_found(format!("Block with label {label:?} of agent {agent_id}")))
    })())
}

#[derive(Debug, Default, Deserialize)]
struct UpdateBlockBody {
    value: Option<String>,
    limit: Option<usize>,
    label: Option<String>,
    description: Option<String>,
    read_only: Option<bool>,
    metadata: Option<Value>,
}

impl From<UpdateBlockBody> for BlockPatch {
    fn from(body: UpdateBlockBody) -> Self {
        BlockPatch {
            value: body.value,
            limit: body.limit,
            label: body.label,
            description: body.description,
            read_only: body.read_only,
            metadata: body.metadata,
        }
    }
}

async fn update_agent_block(
    State(app): State<Arc<App>>,
    Path((agent_id, label)): Path<(String, String)>,
    request: Mutation,
) -> Response {
    respond(
        mutate_agent(&app, &agent_id, &request, |request: UpdateBlockBody| {
            Ok(AgentCommand::UpdateBlock {
                label,
                patch: request.into(),
            })
        })
        .await,
    )
}

macro_rules! attach_route {
    ($name:ident, $variant:ident) => {
        async fn $name(
            State(app): State<Arc<App>>,
            Path((agent_id, other)): Path<(String, String)>,
            request: Mutation,
        ) -> Response {
            respond(invoke_agent(&app, &agent_id, &request, AgentCommand::$variant(other)).await)
        }
    };
}

attach_route!(attach_block, AttachBlock);
attach_route!(detach_block, DetachBlock);
attach_route!(attach_tool, AttachTool);
attach_route!(detach_tool, DetachTool);

async fn list_agent_tools(
    State(app): State<Arc<App>>,
    Path(agent_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    respond((|| {
        let query = Query::parse(raw);
        let mut txn = app.snapshot()?;
        let agent = read_agent(&mut txn, &agent_id)?;
        let found = tools_of(&mut txn, &agent)?;
        let limit = query.limit(50)?;
        let found = page(found, |tool| tool.id.as_str(), &query, query.ascending(true)?, limit);
        Ok(Value::Array(found.iter().map(render::tool).collect()))
    })())
}

// ---------------------------------------------------------------- messages

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Value>),
}

impl Content {
    fn text(&self) -> Result<String> {
        match self {
            Content::Text(text) => Ok(text.clone()),
            Content::Parts(parts) => {
                let mut texts = Vec::new();
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            texts.push(part.get("text").and_then(Value::as_str).unwrap_or_default().to_string())
                        }
                        Some(other) => {
                            return Err(ApiError::new(
                                422,
                                format!("message content of type {other:?} is not supported"),
                            ))
                        }
                        None => return Err(ApiError::new(422, "message content part has no type")),
                    }
                }
                Ok(texts.join("\n"))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct InputMessage {
    role: Option<String>,
    content: Content,
    otid: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SendBody {
    messages: Option<Vec<InputMessage>>,
    input: Option<Content>,
    max_steps: Option<u32>,
    use_assistant_message: Option<bool>,
    include_return_message_types: Option<Vec<String>>,
    streaming: Option<bool>,
}

/// A validated send request.
struct Run {
    agent_id: String,
    run_id: String,
    input: Vec<Input>,
    max_steps: u32,
    use_assistant_message: bool,
    include: Option<Vec<String>>,
    meta: RequestMeta,
}

fn prepare_run(app: &App, agent_id: &str, meta: RequestMeta, request: SendBody) -> Result<Run> {
    let mut input = Vec::new();
    for message in request.messages.unwrap_or_default() {
        match message.role.as_deref().unwrap_or("user") {
            "user" | "system" => input.push(Input {
                text: message.content.text()?,
                otid: message.otid,
            }),
            other => {
                return Err(ApiError::new(
                    422,
                    format!("messages of role {other:?} cannot be sent (send role \"user\" or \"system\")"),
                ))
            }
        }
    }
    if let Some(content) = request.input {
        input.push(Input {
            text: content.text()?,
            otid: None,
        });
    }
    if input.is_empty() {
        return Err(ApiError::new(422, "send at least one message (messages or input)"));
    }
    if !app.llm_configured {
        return Err(ApiError::new(400, NO_LLM));
    }
    let max_steps = request.max_steps.unwrap_or(app.max_steps);
    if !(1..=crate::config::MAX_STEPS_MAX).contains(&max_steps) {
        return Err(ApiError::new(
            422,
            format!("max_steps={max_steps} is outside 1..={}", crate::config::MAX_STEPS_MAX),
        ));
    }
    let mut txn = app.snapshot()?;
    read_agent(&mut txn, agent_id)?;
    let run_id = match &meta.key {
        Some(key) => derived_id("run", key.as_bytes()),
        None => new_id("run", app.now_ms(), app.random(), app.random()),
    };
    Ok(Run {
        agent_id: agent_id.to_string(),
        run_id,
        input,
        max_steps,
        use_assistant_message: request.use_assistant_message.unwrap_or(true),
        include: request.include_return_message_types,
        meta,
    })
}

/// Runs the agent loop, calling `emit` with each step's outcome after it
/// committed. Returns the total usage and the stop reason.
async fn run_loop(
    app: &App,
    run: &Run,
    mut emit: impl FnMut(&StepOutcome) -> futures::future::BoxFuture<'static, ()>,
) -> Result<(Usage, String, Option<String>)> {
    let mut usage = Usage::default();
    for step in 0..run.max_steps {
        let command = StepCommand {
            run_id: run.run_id.clone(),
            step,
            input: if step == 0 { run.input.clone() } else { Vec::new() },
            max_steps: run.max_steps,
            use_assistant_message: run.use_assistant_message,
        };
        let reply = app
            .invoke_agent(
                &run.agent_id,
                AgentCommand::Step(command),
                &run.meta,
                &format!("/step{step}"),
            )
            .await?;
        let mut outcome: StepOutcome = serde_json::from_value(reply)
            .map_err(|error| ApiError::new(500, format!("step outcome is malformed: {error}")))?;
        app.metrics.agent_steps.inc();
        if let Some(include) = &run.include {
            outcome.messages.retain(|message| {
                message
                    .get("message_type")
                    .and_then(Value::as_str)
                    .is_some_and(|kind| include.iter().any(|wanted| wanted == kind))
            });
        }
        usage.prompt_tokens += outcome.prompt_tokens;
        usage.completion_tokens += outcome.completion_tokens;
        usage.steps += 1;
        emit(&outcome).await;
        if let Some(reason) = outcome.stop_reason {
            return Ok((usage, reason, outcome.error));
        }
        // Shutting down: stop at this step boundary (every step so far is
        // committed) rather than be cut off by the drain timeout.
        if app.is_draining() {
            return Ok((usage, "cancelled".to_string(), None));
        }
    }
    Ok((usage, "max_steps".to_string(), None))
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    steps: u64,
}

impl Usage {
    fn to_json(self) -> Value {
        json!({
            "message_type": "usage_statistics",
            "completion_tokens": self.completion_tokens,
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "step_count": self.steps,
        })
    }
}

fn stop_json(reason: &str, error: Option<&str>) -> Value {
    match error {
        Some(detail) => json!({"message_type": "stop_reason", "stop_reason": reason, "detail": detail}),
        None => json!({"message_type": "stop_reason", "stop_reason": reason}),
    }
}

async fn send_message(State(app): State<Arc<App>>, Path(agent_id): Path<String>, request: Mutation) -> Response {
    let prepared = (|| {
        let meta = request.meta.clone();
        let request: SendBody = parse_body(&request.body)?;
        let streaming = request.streaming.unwrap_or(false);
        Ok::<_, ApiError>((prepare_run(&app, &agent_id, meta, request)?, streaming))
    })();
    let (run, streaming) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return error.into_response(),
    };
    if streaming {
        return stream_run(app, run).await;
    }
    respond(
        async {
            let _guard = app.hold_key(&run.meta)?;
            let _run = app.hold_run(&run.agent_id).await?;
            let mut messages = Vec::new();
            let collected = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = collected.clone();
            let (usage, reason, error) = run_loop(&app, &run, move |outcome| {
                sink.lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .extend(outcome.messages.iter().cloned());
                Box::pin(async {})
            })
            .await?;
            messages.extend(
                collected
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .drain(..),
            );
            if let Some(error) = &error {
                tracing::warn!(agent = %run.agent_id, %error, "agent run stopped on an error");
            }
            Ok(json!({
                "messages": messages,
                "stop_reason": stop_json(&reason, error.as_deref()),
                "usage": usage.to_json(),
            }))
        }
        .await,
    )
}

async fn stream_message(State(app): State<Arc<App>>, Path(agent_id): Path<String>, request: Mutation) -> Response {
    let prepared = (|| {
        let meta = request.meta.clone();
        let request: SendBody = parse_body(&request.body)?;
        prepare_run(&app, &agent_id, meta, request)
    })();
    match prepared {
        Ok(run) => stream_run(app, run).await,
        Err(error) => error.into_response(),
    }
}

/// Streams a run over SSE: each committed step's messages as `data:`
/// events, then the stop reason, the usage and `[DONE]`; a failure as
/// `event: error`. The run holds its own admission, so a drain waits for it.
async fn stream_run(app: Arc<App>, run: Run) -> Response {
    let Some(admission) = app.admit() else {
        return ApiError::unavailable("server is shutting down").into_response();
    };
    let guard = match app.hold_key(&run.meta) {
        Ok(guard) => guard,
        Err(error) => return error.into_response(),
    };
    // Wait for the agent's previous run before answering, so a run refused
    // because the server began draining meanwhile is a plain 503.
    let run_guard = match app.hold_run(&run.agent_id).await {
        Ok(guard) => guard,
        Err(error) => return error.into_response(),
    };
    let (sender, receiver) = mpsc::channel::<Event>(64);
    let task_app = app.clone();
    let _task = app.env.spawner.spawn(
        "sse-run",
        Box::pin(async move {
            let _admission = admission;
            let _guard = guard;
            let _run_guard = run_guard;
            let mut events = sender.clone();
            let step_sender = sender.clone();
            let result = run_loop(&task_app, &run, move |outcome| {
                let mut sender = step_sender.clone();
                let events: Vec<Event> = outcome
                    .messages
                    .iter()
                    .map(|message| Event::default().data(message.to_string()))
                    .collect();
                Box::pin(async move {
                    for event in events {
                        // A client that went away stops listening; the run
                        // still completes and commits.
                        let _ = sender.send(event).await;
                    }
                })
            })
            .await;
            match result {
                Ok((usage, reason, error)) => {
                    let stop = stop_json(&reason, error.as_deref());
                    let _ = events.send(Event::default().data(stop.to_string())).await;
                    let _ = events.send(Event::default().data(usage.to_json().to_string())).await;
                    let _ = events.send(Event::default().data("[DONE]")).await;
                }
                Err(error) => {
                    let body = json!({
                        "message_type": "error_message",
                        "run_id": run.run_id,
                        "error_type": "internal_error",
                        "message": error.detail,
                        "detail": error.detail,
                        "status": error.status,
                    });
                    let _ = events
                        .send(Event::default().event("error").data(body.to_string()))
                        .await;
                }
            }
        }),
    );
    Sse::new(receiver.map(Ok::<_, std::convert::Infallible>))
        .keep_alive(KeepAlive::new().text("ping"))
        .into_response()
}

async fn list_messages(State(app): State<Arc<App>>, Path(agent_id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    respond((|| {
        let query = Query::parse(raw);
        let limit = query.limit(100)?;
        let ascending = query.ascending(false)?;
        let include = query.all("include_return_message_types");
        let view = MessageView {
            use_assistant_message: query.bool("use_assistant_message")?.unwrap_or(true),
            include_types: (!include.is_empty()).then_some(include),
        };
        let mut txn = app.snapshot()?;
        let agent = read_agent(&mut txn, &agent_id)?;
        let cursor = |name: &str| -> Result<Option<u64>> {
            match query.get(name) {
                None => Ok(None),
                Some(id) => message_seq(&agent.id, id)
                    .map(Some)
                    .ok_or_else(|| ApiError::not_found(format!("Message {id} of agent {}", agent.id))),
            }
        };
        let (after, before) = (cursor("after")?, cursor("before")?);
        // Walk the history in the requested order from the cursor,
        // rendering until the page is full (hidden messages skipped).
        let mut shown = Vec::new();
        let end = agent.next_message_seq;
        let chunk: u64 = 256;
        // Seqs to visit, as [low, high) ranges read in chunks.
        let (mut low, mut high) = (0u64, end);
        let backwards = match (ascending, after, before) {
            (true, Some(after), _) => {
                low = after.saturating_add(1);
                false
            }
            (true, None, Some(before)) => {
                high = before.min(end);
                true
            }
            (true, None, None) => false,
            (false, Some(after), _) => {
                high = after.min(end);
                true
            }
            (false, None, Some(before)) => {
                low = before.saturating_add(1);
                false
            }
            (false, None, None) => true,
        };
        while shown.len() < limit && low < high {
            let (from, to) = if backwards {
                (high.saturating_sub(chunk).max(low), high)
            } else {
                (low, low.saturating_add(chunk).min(high))
            };
            let entries = txn.scan(
                &crate::app::actor_id(crate::records::AGENT_NAMESPACE, &agent.id)?,
                std::ops::Bound::Included(message_key(from).as_slice()),
                std::ops::Bound::Excluded(message_key(to).as_slice()),
                usize::try_from(chunk).unwrap_or(256),
            )?;
            let mut messages: Vec<StoredMessage> = decode_all(&entries, "message")?;
            if backwards {
                messages.reverse();
                high = from;
            } else {
                low = to;
            }
            for message in &messages {
                if shown.len() == limit {
                    break;
                }
                if let Some(value) = render::message(message, &view) {
                    shown.push(value);
                }
            }
        }
        // `before` walks away from the cursor; the page is listed in the
        // requested order.
        let reversed_walk = backwards == ascending;
        if reversed_walk {
            shown.reverse();
        }
        Ok(Value::Array(shown))
    })())
}

// ---------------------------------------------------------------- archival memory

#[derive(Debug, Default, Deserialize)]
struct PassageBody {
    text: String,
    tags: Option<Vec<String>>,
}

fn passages_of(txn: &mut kelpie_storage::Transaction, agent: &AgentRecord) -> Result<Vec<Passage>> {
    let actor = crate::app::actor_id(crate::records::AGENT_NAMESPACE, &agent.id)?;
    decode_all(
        &scan_all(txn, &actor, PASSAGE_KEYS_START, Some(PASSAGE_KEYS_END))?,
        "passage",
    )
}

async fn insert_passage(State(app): State<Arc<App>>, Path(agent_id): Path<String>, request: Mutation) -> Response {
    let now_ms = app.now_ms();
    // A retry with the same Idempotency-Key makes the same passage.
    let id = match &request.meta.key {
        Some(key) => derived_id("passage", format!("{agent_id}:{key}").as_bytes()),
        None => new_id("passage", now_ms, app.random(), app.random()),
    };
    respond(
        async {
            let body: PassageBody = parse_body(&request.body)?;
            if body.text.trim().is_empty() {
                return Err(ApiError::new(422, "text must not be empty"));
            }
            let embedding = app.embedder.embed(&body.text).await?;
            let passage = Passage {
                id,
                text: body.text,
                embedding,
                created_at_ms: u64::try_from(now_ms).unwrap_or(0),
                tags: body.tags.unwrap_or_default(),
            };
            invoke_agent(&app, &agent_id, &request, AgentCommand::InsertPassage(passage)).await
        }
        .await,
    )
}

async fn list_passages(State(app): State<Arc<App>>, Path(agent_id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    respond((|| {
        let query = Query::parse(raw);
        let mut txn = app.snapshot()?;
        let agent = read_agent(&mut txn, &agent_id)?;
        let mut passages = passages_of(&mut txn, &agent)?;
        // Ids made from a key (or by the agent's own inserts) are not
        // time-ordered: list by creation time.
        passages.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        if let Some(search) = query.get("search") {
            let needle = search.to_lowercase();
            passages.retain(|passage| passage.text.to_lowercase().contains(&needle));
        }
        let limit = query.limit(100)?;
        let passages = page(
            passages,
            |passage| passage.id.as_str(),
            &query,
            query.ascending(true)?,
            limit,
        );
        Ok(Value::Array(
            passages
                .iter()
                .map(|passage| render::passage(passage, &agent.id))
                .collect(),
        ))
    })())
}

async fn search_passages(
    State(app): State<Arc<App>>,
    Path(agent_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    respond(
        async {
            let query = Query::parse(raw);
            let text = query
                .get("query")
                .ok_or_else(|| ApiError::new(422, "query parameter `query` is required"))?
                .to_string();
            let top_k = match query.get("top_k") {
                None => 10,
                Some(k) => k
                    .parse::<usize>()
                    .ok()
                    .filter(|k| (1..=PAGE_LIMIT_MAX).contains(k))
                    .ok_or_else(|| {
                        ApiError::new(422, format!("top_k={k:?} must be an integer in 1..={PAGE_LIMIT_MAX}"))
                    })?,
            };
            let tags = query.all("tags");
            let match_all = query.get("tag_match_mode") == Some("all");
            let mut txn = app.snapshot()?;
            let agent = read_agent(&mut txn, &agent_id)?;
            let mut passages = passages_of(&mut txn, &agent)?;
            if !tags.is_empty() {
                passages.retain(|passage| {
                    let has = |tag: &String| passage.tags.contains(tag);
                    if match_all {
                        tags.iter().all(has)
                    } else {
                        tags.iter().any(has)
                    }
                });
            }
            let results = crate::agent::search_passages(&app.embedder, &passages, &text, top_k)
                .await
                .map_err(ApiError::from)?;
            let results: Vec<Value> = results
                .iter()
                .map(|(passage, score)| render::search_result(passage, *score))
                .collect();
            Ok(json!({"count": results.len(), "results": results}))
        }
        .await,
    )
}

async fn delete_passage(
    State(app): State<Arc<App>>,
    Path((agent_id, passage_id)): Path<(String, String)>,
    request: Mutation,
) -> Response {
    if !is_valid("passage", &passage_id) {
        return ApiError::not_found(format!("Passage {passage_id}")).into_response();
    }
    respond(invoke_agent(&app, &agent_id, &request, AgentCommand::DeletePassage(passage_id)).await)
}

// ---------------------------------------------------------------- working memory (Kelpie extension)

#[derive(Debug, Default, Deserialize)]
struct WorkingBody {
    value: String,
    ttl_ms: Option<u64>,
}

async fn list_working(State(app): State<Arc<App>>, Path(agent_id): Path<String>) -> Response {
    respond((|| {
        let mut txn = app.snapshot()?;
        let agent = read_agent(&mut txn, &agent_id)?;
        let now = u64::try_from(app.now_ms()).unwrap_or(0);
        Ok(crate::agent::working_entries(&agent.working_memory, now))
    })())
}

async fn set_working(
    State(app): State<Arc<App>>,
    Path((agent_id, key)): Path<(String, String)>,
    request: Mutation,
) -> Response {
    respond(
        mutate_agent(&app, &agent_id, &request, |body: WorkingBody| {
            if key.is_empty() || key.len() > 256 {
                return Err(ApiError::new(422, "working-memory key must be 1 to 256 bytes"));
            }
            Ok(AgentCommand::SetWorking {
                key,
                value: body.value,
                ttl_ms: body.ttl_ms,
            })
        })
        .await,
    )
}

async fn remove_working(
    State(app): State<Arc<App>>,
    Path((agent_id, key)): Path<(String, String)>,
    request: Mutation,
) -> Response {
    respond(invoke_agent(&app, &agent_id, &request, AgentCommand::RemoveWorking(key)).await)
}

// ---------------------------------------------------------------- blocks

async fn create_block(State(app): State<Arc<App>>, request: Mutation) -> Response {
    respond(
        async {
            let meta = request.meta.clone();
            let request: CreateBlockBody = parse_body(&request.body)?;
            let now_ms = app.now_ms();
            let id = match &meta.key {
                Some(key) => derived_id("block", key.as_bytes()),
                None => new_id("block", now_ms, app.random(), app.random()),
            };
            let block = new_block(id.clone(), request, now_ms)?;
            let _guard = app.hold_key(&meta)?;
            app.invoke_block(&id, BlockCommand::Create(block), &meta).await
        }
        .await,
    )
}

async fn get_block(State(app): State<Arc<App>>, Path(block_id): Path<String>) -> Response {
    respond((|| {
        let mut txn = app.snapshot()?;
        read_block(&mut txn, &block_id)?
            .map(|block| render::block(&block))
            .ok_or_else(|| ApiError::not_found(format!("Block {block_id}")))
    })())
}

async fn list_blocks(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Response {
    respond((|| {
        let query = Query::parse(raw);
        let limit = query.limit(50)?;
        let ascending = query.ascending(true)?;
        let label = query.get("label").map(str::to_string);
        let templates_only = query.bool("templates_only")?.unwrap_or(false);
        let mut txn = app.snapshot()?;
        let mut blocks: Vec<StoredBlock> = decode_all(&scan_all(&mut txn, space(&BLOCKS), b"", None)?, "block")?;
        blocks.retain(|block| {
            label.as_ref().is_none_or(|label| *label == block.label) && (!templates_only || block.is_template)
        });
        blocks.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        let blocks = page(blocks, |block| block.id.as_str(), &query, ascending, limit);
        Ok(Value::Array(blocks.iter().map(render::block).collect()))
    })())
}

async fn mutate_block<B: DeserializeOwned + Default>(
    app: &Arc<App>,
    block_id: &str,
    request: &Mutation,
    command: impl FnOnce(B) -> BlockCommand,
) -> Result<Value> {
    let meta = &request.meta;
    if !is_valid("block", block_id) {
        return Err(ApiError::not_found(format!("Block {block_id}")));
    }
    let command = command(parse_body(&request.body)?);
    let _guard = app.hold_key(meta)?;
    app.invoke_block(block_id, command, meta).await
}

async fn update_block(State(app): State<Arc<App>>, Path(block_id): Path<String>, request: Mutation) -> Response {
    respond(
        mutate_block(&app, &block_id, &request, |request: UpdateBlockBody| {
            BlockCommand::Update(request.into())
        })
        .await,
    )
}

async fn delete_block(State(app): State<Arc<App>>, Path(block_id): Path<String>, request: Mutation) -> Response {
    respond(
        async {
            if !is_valid("block", &block_id) {
                return Err(ApiError::not_found(format!("Block {block_id}")));
            }
            let _guard = app.hold_key(&request.meta)?;
            app.invoke_block(&block_id, BlockCommand::Delete, &request.meta).await
        }
        .await,
    )
}

// ---------------------------------------------------------------- tools

#[derive(Debug, Default, Deserialize)]
struct ToolBody {
    source_code: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    json_schema: Option<Value>,
    source_type: Option<String>,
    return_char_limit: Option<usize>,
}

/// A Python function's name, parameters (name, JSON type) and docstring
/// summary.
type PySignature = (String, Vec<(String, String)>, Option<String>);

/// The function name, parameters and docstring summary of Python source's
/// first `def`.
fn python_signature(source: &str) -> Option<PySignature> {
    let start = source.find("def ")? + 4;
    let rest = &source[start..];
    let open = rest.find('(')?;
    let name = rest[..open].trim().to_string();
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let close = rest[open..].find(')')? + open;
    let mut params = Vec::new();
    for param in rest[open + 1..close].split(',') {
        let param = param.split('=').next().unwrap_or_default();
        let (name, annotation) = match param.split_once(':') {
            Some((name, annotation)) => (name.trim(), annotation.trim()),
            None => (param.trim(), ""),
        };
        if name.is_empty() || name == "self" || name.starts_with('*') {
            continue;
        }
        let kind = match annotation {
            "int" => "integer",
            "float" => "number",
            "bool" => "boolean",
            "list" => "array",
            "dict" => "object",
            _ => "string",
        };
        params.push((name.to_string(), kind.to_string()));
    }
    let body = &rest[close..];
    let doc = ["\"\"\"", "'''"].iter().find_map(|quote| {
        let begin = body.find(quote)? + 3;
        let end = body[begin..].find(quote)? + begin;
        body[begin..end]
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(str::to_string)
    });
    Some((name, params, doc))
}

fn tool_from(request: ToolBody, now_ms: i64) -> Result<StoredTool> {
    let source = request
        .source_code
        .ok_or_else(|| ApiError::new(422, "source_code is required"))?;
    let (name, params, doc) = match &request.json_schema {
        Some(schema) => (
            schema
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::new(422, "json_schema has no name"))?
                .to_string(),
            Vec::new(),
            schema.get("description").and_then(Value::as_str).map(str::to_string),
        ),
        None => python_signature(&source).ok_or_else(|| {
            ApiError::new(
                422,
                "source_code has no `def name(...)` function to derive the tool from",
            )
        })?,
    };
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApiError::new(
            422,
            format!("tool name {name:?} must be 1 to 64 characters of letters, digits, '_' and '-' (model APIs accept no others)"),
        ));
    }
    if tools::builtin_by_name(&name).is_some() {
        return Err(ApiError::new(409, format!("tool name {name:?} is a built-in tool")));
    }
    let description = request.description.or(doc);
    let json_schema = request.json_schema.unwrap_or_else(|| {
        let properties: serde_json::Map<String, Value> = params
            .iter()
            .map(|(param, kind)| (param.clone(), json!({"type": kind})))
            .collect();
        let required: Vec<&String> = params.iter().map(|(param, _)| param).collect();
        json!({
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        })
    });
    Ok(StoredTool {
        id: custom_tool_id(&name),
        name,
        description,
        source_code: Some(source),
        source_type: Some(request.source_type.unwrap_or_else(|| "python".to_string())),
        json_schema,
        tags: request.tags.unwrap_or_default(),
        return_char_limit: request.return_char_limit.unwrap_or(RETURN_CHAR_LIMIT_DEFAULT).max(1),
        created_at_ms: now_ms,
    })
}

async fn put_tool(app: Arc<App>, request: Mutation, upsert: bool) -> Response {
    respond(
        async {
            let meta = request.meta.clone();
            let tool = tool_from(parse_body(&request.body)?, app.now_ms())?;
            let _guard = app.hold_key(&meta)?;
            let id = tool.id.clone();
            let command = if upsert {
                ToolCommand::Upsert(tool)
            } else {
                ToolCommand::Create {
                    tool,
                    key: meta.key.clone(),
                }
            };
            app.invoke_tool(&id, command, &meta).await
        }
        .await,
    )
}

async fn create_tool(State(app): State<Arc<App>>, request: Mutation) -> Response {
    put_tool(app, request, false).await
}

async fn upsert_tool(State(app): State<Arc<App>>, request: Mutation) -> Response {
    put_tool(app, request, true).await
}

async fn get_tool(State(app): State<Arc<App>>, Path(tool_id): Path<String>) -> Response {
    respond((|| {
        let mut txn = app.snapshot()?;
        read_tool(&mut txn, &tool_id)?
            .map(|tool| render::tool(&tool))
            .ok_or_else(|| ApiError::not_found(format!("Tool {tool_id}")))
    })())
}

async fn list_tools(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Response {
    respond((|| {
        let query = Query::parse(raw);
        let limit = query.limit(50)?;
        let ascending = query.ascending(true)?;
        let mut txn = app.snapshot()?;
        let mut custom: Vec<StoredTool> = decode_all(&scan_all(&mut txn, space(&TOOLS), b"", None)?, "tool")?;
        // Custom tool ids come from their names: list by creation time.
        custom.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        let mut all: Vec<StoredTool> = BUILTINS.clone();
        all.extend(custom);
        if let Some(name) = query.get("name") {
            all.retain(|tool| tool.name == name);
        }
        let names = query.all("names");
        if !names.is_empty() {
            all.retain(|tool| names.contains(&tool.name));
        }
        let found = page(all, |tool| tool.id.as_str(), &query, ascending, limit);
        Ok(Value::Array(found.iter().map(render::tool).collect()))
    })())
}

async fn update_tool(State(app): State<Arc<App>>, Path(tool_id): Path<String>, request: Mutation) -> Response {
    respond(
        async {
            let meta = request.meta.clone();
            let body: ToolBody = parse_body(&request.body)?;
            if tools::builtin_by_id(&tool_id).is_some() {
                return Err(ApiError::new(409, "built-in tools cannot be changed"));
            }
            if !is_valid("tool", &tool_id) {
                return Err(ApiError::not_found(format!("Tool {tool_id}")));
            }
            let patch = ToolPatch {
                description: body.description,
                tags: body.tags,
                return_char_limit: body.return_char_limit,
                source_code: body.source_code,
                json_schema: body.json_schema,
            };
            let _guard = app.hold_key(&meta)?;
            app.invoke_tool(&tool_id, ToolCommand::Update(patch), &meta).await
        }
        .await,
    )
}

async fn delete_tool(State(app): State<Arc<App>>, Path(tool_id): Path<String>, request: Mutation) -> Response {
    respond(
        async {
            let meta = request.meta.clone();
            if tools::builtin_by_id(&tool_id).is_some() {
                return Err(ApiError::new(409, "built-in tools cannot be deleted"));
            }
            if !is_valid("tool", &tool_id) {
                return Err(ApiError::not_found(format!("Tool {tool_id}")));
            }
            let _guard = app.hold_key(&meta)?;
            app.invoke_tool(&tool_id, ToolCommand::Delete, &meta).await
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_signatures_become_schemas() {
        let (name, params, doc) = python_signature(
            "def roll_dice(sides: int, label: str = \"d\") -> str:\n    \"\"\"Roll a die.\n\n    More.\n    \"\"\"\n    return 'x'\n",
        )
        .expect("parsed");
        assert_eq!(name, "roll_dice");
        assert_eq!(
            params,
            vec![
                ("sides".to_string(), "integer".to_string()),
                ("label".to_string(), "string".to_string())
            ]
        );
        assert_eq!(doc.as_deref(), Some("Roll a die."));
        assert_eq!(python_signature("x = 1"), None);
    }

    #[test]
    fn pages_follow_letta_cursor_rules() {
        let items: Vec<String> = (1..=5).map(|i| i.to_string()).collect();
        let query = |pairs: &[(&str, &str)]| Query(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        #[allow(clippy::ptr_arg)] // the item type of the list under test
        fn id(item: &String) -> &str {
            item.as_str()
        }
        assert_eq!(page(items.clone(), id, &query(&[]), true, 2), vec!["1", "2"]);
        assert_eq!(
            page(items.clone(), id, &query(&[("after", "2")]), true, 2),
            vec!["3", "4"]
        );
        assert_eq!(
            page(items.clone(), id, &query(&[("after", "5")]), true, 2),
            Vec::<String>::new()
        );
        assert_eq!(page(items.clone(), id, &query(&[]), false, 2), vec!["5", "4"]);
        assert_eq!(
            page(items.clone(), id, &query(&[("after", "4")]), false, 2),
            vec!["3", "2"]
        );
        assert_eq!(
            page(items.clone(), id, &query(&[("before", "4")]), true, 2),
            vec!["2", "3"]
        );
        assert_eq!(page(items, id, &query(&[("before", "2")]), false, 2), vec!["4", "3"]);
    }
}
