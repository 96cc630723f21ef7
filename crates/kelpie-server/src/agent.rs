//! The actors behind the API: agents, standalone blocks and tools.
//!
//! Every API mutation is one invocation of one of these actors, so it is
//! journaled (with an idempotency key), fenced, and atomic: the actor's
//! state, its other keys and the shared records it touches commit in one
//! transaction or not at all. A handler validates before it changes
//! anything, and reports a failure as a [`Failure`] reply with the state
//! untouched, so a failed request leaves nothing behind.
//!
//! The agent loop is one invocation per step ([`StepCommand`]): the step's
//! LLM call, its tool calls' effects (memory edits, archival inserts) and
//! its messages commit together, before anything of the step is shown.

use std::ops::Bound;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kelpie_llm::{ChatMessage, ChatRequest, EmbeddingProvider, LlmError, LlmProvider, ToolCall, ToolSpec};
use kelpie_memory::{CoreMemory, Embedder, HashingEmbedder, MemoryError, Passage};
use kelpie_runtime::runtime::{Actor, ActorContext, HandlerError};
use kelpie_storage::StorageError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::records::{
    message_id, message_key, passage_key, AgentRecord, AgentSlot, MessageBody, StoredBlock, StoredCall, StoredMessage,
    StoredTool, AGENTS, BLOCKS, MESSAGE_KEYS_END, MESSAGE_SEQ_MAX, PASSAGE_KEYS_END, PASSAGE_KEYS_START, TOOLS,
    TOOL_KEYS,
};
use crate::render::{self, LlmInfo, MessageView};
use crate::tools::{self, truncate_return};

/// Messages of history sent to the model with each step.
pub const HISTORY_MESSAGES: u64 = 100;
/// Passages an archival search considers at most.
pub const ARCHIVAL_SCAN_MAX: usize = 100_000;

/// A request failure with the HTTP status Letta uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// 404, 409, 422, ...
    pub status: u16,
    /// `{"detail": ...}`.
    pub detail: String,
}

impl Failure {
    /// 404.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self {
            status: 404,
            detail: format!("{what} not found"),
        }
    }

    /// 422.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self {
            status: 422,
            detail: detail.into(),
        }
    }

    /// 409.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self {
            status: 409,
            detail: detail.into(),
        }
    }
}

impl From<MemoryError> for Failure {
    fn from(error: MemoryError) -> Self {
        Failure::invalid(error.to_string())
    }
}

/// What every actor receives: a command and the fingerprint of the request
/// that sent it (so a reused idempotency key with another request is told
/// apart from a retry).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope<C> {
    /// SHA-256 of method, path and body.
    pub fingerprint: String,
    /// Wall-clock time of the request, Unix milliseconds.
    pub now_ms: i64,
    /// What to do.
    pub command: C,
}

/// What every actor answers: the response body, or a failure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reply {
    /// The fingerprint of the request that ran (a retry with the same
    /// idempotency key gets the first request's).
    pub fingerprint: String,
    /// The response body.
    pub result: Result<Value, Failure>,
}

/// Changes to an agent (`None`: unchanged).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AgentPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New system prompt.
    pub system: Option<String>,
    /// New tags (replace the list).
    pub tags: Option<Vec<String>>,
    /// New metadata.
    pub metadata: Option<Value>,
    /// New model handle.
    pub model: Option<String>,
    /// New embedding handle.
    pub embedding: Option<String>,
    /// New block list.
    pub block_ids: Option<Vec<String>>,
    /// New tool list.
    pub tool_ids: Option<Vec<String>>,
}

/// Changes to a block (`None`: unchanged).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BlockPatch {
    /// New value.
    pub value: Option<String>,
    /// New limit.
    pub limit: Option<usize>,
    /// New label.
    pub label: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New read-only flag.
    pub read_only: Option<bool>,
    /// New metadata.
    pub metadata: Option<Value>,
}

/// One user input of a step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Input {
    /// The text.
    pub text: String,
    /// Client-supplied offline id.
    pub otid: Option<String>,
}

/// One step of the agent loop.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepCommand {
    /// The run (one sent message) this step belongs to.
    pub run_id: String,
    /// 0-based step number within the run.
    pub step: u32,
    /// The user's messages (first step only).
    pub input: Vec<Input>,
    /// The run's step budget: the step numbered `max_steps - 1` is the last.
    pub max_steps: u32,
    /// How to render the step's messages.
    pub use_assistant_message: bool,
}

/// What a step produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepOutcome {
    /// The step's new messages, as wire messages (the input excluded).
    pub messages: Vec<Value>,
    /// Why the run stops after this step (`None`: it continues).
    pub stop_reason: Option<String>,
    /// Prompt tokens of the step.
    pub prompt_tokens: u64,
    /// Completion tokens of the step.
    pub completion_tokens: u64,
    /// What went wrong, when the stop reason is an error.
    pub error: Option<String>,
}

/// What the agent actor does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AgentCommand {
    /// Create the agent with its new blocks (atomically: never an agent
    /// without its blocks).
    Create {
        /// The agent (its `block_ids` include the new blocks' ids).
        agent: AgentRecord,
        /// Blocks created with it.
        new_blocks: Vec<StoredBlock>,
    },
    /// Change the agent.
    Update(AgentPatch),
    /// Delete the agent (its id is never reused).
    Delete,
    /// Change one of the agent's blocks, found by label.
    UpdateBlock {
        /// The block's label.
        label: String,
        /// The changes.
        patch: BlockPatch,
    },
    /// Attach an existing block.
    AttachBlock(String),
    /// Detach a block.
    DetachBlock(String),
    /// Attach a tool.
    AttachTool(String),
    /// Detach a tool.
    DetachTool(String),
    /// Store a passage in archival memory.
    InsertPassage(Passage),
    /// Delete a passage.
    DeletePassage(String),
    /// Run one step of the agent loop.
    Step(StepCommand),
    /// Set a working-memory entry (`ttl_ms`: `None` keeps it until
    /// removed).
    SetWorking {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Time to live, milliseconds.
        ttl_ms: Option<u64>,
    },
    /// Remove a working-memory entry.
    RemoveWorking(String),
}

/// What the standalone block actor does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum BlockCommand {
    /// Create the block.
    Create(StoredBlock),
    /// Change it.
    Update(BlockPatch),
    /// Delete it.
    Delete,
}

/// Changes to a custom tool (`None`: unchanged).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ToolPatch {
    /// New description.
    pub description: Option<String>,
    /// New tags.
    pub tags: Option<Vec<String>>,
    /// New return limit.
    pub return_char_limit: Option<usize>,
    /// New source.
    pub source_code: Option<String>,
    /// New schema (its `name` must stay the tool's name).
    pub json_schema: Option<Value>,
}

/// What the tool actor does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ToolCommand {
    /// Create the tool; 409 if one with its name exists. With the
    /// request's scoped idempotency key, which must not have created
    /// another tool (the tool's actor comes from its name, so a reused key
    /// with another name reaches another actor: the key's record tells).
    Create {
        /// The tool.
        tool: StoredTool,
        /// The request's scoped idempotency key.
        key: Option<String>,
    },
    /// Create or replace the tool.
    Upsert(StoredTool),
    /// Change the tool.
    Update(ToolPatch),
    /// Delete it.
    Delete,
}

fn storage(error: StorageError) -> HandlerError {
    HandlerError::new(format!("storage: {error}"))
}

fn json_error(error: serde_json::Error) -> HandlerError {
    HandlerError::new(format!("stored record is not valid JSON: {error}"))
}

/// Reads a shared block.
pub fn read_block(ctx: &mut ActorContext<'_>, id: &str) -> Result<Option<StoredBlock>, HandlerError> {
    if !crate::ids::is_valid("block", id) {
        return Ok(None);
    }
    match ctx.shared_get(&BLOCKS, id.as_bytes()).map_err(storage)? {
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(json_error),
        None => Ok(None),
    }
}

fn write_block(ctx: &mut ActorContext<'_>, block: &StoredBlock) -> Result<(), HandlerError> {
    let bytes = serde_json::to_vec(block).map_err(json_error)?;
    ctx.shared_put(&BLOCKS, block.id.as_bytes(), bytes).map_err(storage)
}

fn read_tool(ctx: &mut ActorContext<'_>, id: &str) -> Result<Option<StoredTool>, HandlerError> {
    if let Some(builtin) = tools::builtin_by_id(id) {
        return Ok(Some(builtin.clone()));
    }
    if !crate::ids::is_valid("tool", id) {
        return Ok(None);
    }
    match ctx.shared_get(&TOOLS, id.as_bytes()).map_err(storage)? {
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(json_error),
        None => Ok(None),
    }
}

/// Applies `patch` to `block`, validating the result.
pub fn patch_block(block: &StoredBlock, patch: &BlockPatch, now_ms: i64) -> Result<StoredBlock, Failure> {
    let mut next = block.clone();
    if let Some(value) = &patch.value {
        next.value = value.clone();
    }
    if let Some(limit) = patch.limit {
        next.limit = limit;
    }
    if let Some(label) = &patch.label {
        next.label = label.clone();
    }
    if let Some(description) = &patch.description {
        next.description = Some(description.clone());
    }
    if let Some(read_only) = patch.read_only {
        next.read_only = read_only;
    }
    if let Some(metadata) = &patch.metadata {
        next.metadata = Some(metadata.clone());
    }
    next.updated_at_ms = now_ms;
    next.to_memory().validate()?;
    Ok(next)
}

/// The embedder of archival memory: the deterministic local one (the
/// default), or an OpenAI-compatible `/embeddings` provider.
#[derive(Clone)]
pub enum ArchivalEmbedder {
    /// [`HashingEmbedder`]: no service needed, same vectors everywhere.
    Hashing(HashingEmbedder),
    /// A remote provider.
    Remote {
        /// The provider.
        provider: Arc<dyn EmbeddingProvider>,
        /// Its model, as agents report it.
        model: String,
    },
}

impl ArchivalEmbedder {
    /// The vector of `text`; a provider failure is a 502 naming it.
    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, Failure> {
        match self {
            ArchivalEmbedder::Hashing(hashing) => Ok(hashing.embed(text)?),
            ArchivalEmbedder::Remote { provider, .. } => {
                let texts = [text.to_string()];
                let vectors = provider.embed(&texts).await.map_err(|error| Failure {
                    status: 502,
                    detail: format!("embedding provider failed: {error}"),
                })?;
                vectors.into_iter().next().ok_or_else(|| Failure {
                    status: 502,
                    detail: "embedding provider returned no vector".to_string(),
                })
            }
        }
    }

    /// Dimensions of every vector.
    pub fn dimensions(&self) -> usize {
        match self {
            ArchivalEmbedder::Hashing(hashing) => hashing.dimensions(),
            ArchivalEmbedder::Remote { provider, .. } => provider.dimensions(),
        }
    }

    /// Letta's `embedding_config` for this embedder.
    pub fn config(&self) -> Value {
        match self {
            ArchivalEmbedder::Hashing(hashing) => json!({
                "embedding_model": "kelpie-hashing",
                "embedding_endpoint_type": "hugging-face",
                "embedding_dim": hashing.dimensions(),
            }),
            ArchivalEmbedder::Remote { provider, model } => json!({
                "embedding_model": model,
                "embedding_endpoint_type": "openai",
                "embedding_dim": provider.dimensions(),
            }),
        }
    }
}

impl Default for ArchivalEmbedder {
    fn default() -> Self {
        ArchivalEmbedder::Hashing(HashingEmbedder::default())
    }
}

/// The agent actor: one per agent.
pub struct AgentActor {
    llm: Option<Arc<dyn LlmProvider>>,
    llm_info: LlmInfo,
    embedder: ArchivalEmbedder,
}

impl AgentActor {
    /// An agent actor that calls `llm` (none: sending messages fails) and
    /// embeds archival passages with `embedder`.
    pub fn new(llm: Option<Arc<dyn LlmProvider>>, llm_info: LlmInfo, embedder: ArchivalEmbedder) -> Self {
        Self {
            llm,
            llm_info,
            embedder,
        }
    }

    fn render_agent(&self, ctx: &mut ActorContext<'_>, agent: &AgentRecord) -> Result<Value, HandlerError> {
        let blocks = load_blocks(ctx, &agent.block_ids)?;
        let mut tools = Vec::new();
        for id in &agent.tool_ids {
            if let Some(tool) = read_tool(ctx, id)? {
                tools.push(tool);
            }
        }
        Ok(render::agent(
            agent,
            &blocks,
            &tools,
            &self.llm_info,
            self.embedder.config(),
        ))
    }

    async fn run(
        &self,
        ctx: &mut ActorContext<'_>,
        slot: &mut AgentSlot,
        now_ms: i64,
        command: AgentCommand,
    ) -> Result<Result<Value, Failure>, HandlerError> {
        if let AgentCommand::Create { agent, new_blocks } = command {
            return self.create(ctx, slot, agent, new_blocks);
        }
        let Some(current) = slot.agent.clone() else {
            return Ok(Err(Failure::not_found(format!("Agent {}", ctx.actor().key()))));
        };
        let mut agent = current;
        match command {
            AgentCommand::Create { .. } => Ok(Err(Failure::conflict("agent already exists"))),
            AgentCommand::Update(patch) => {
                if let Some(ids) = &patch.block_ids {
                    if let Some(failure) = check_blocks(ctx, ids)? {
                        return Ok(Err(failure));
                    }
                }
                if let Some(ids) = &patch.tool_ids {
                    for id in ids {
                        if read_tool(ctx, id)?.is_none() {
                            return Ok(Err(Failure::not_found(format!("Tool {id}"))));
                        }
                    }
                }
                apply_agent_patch(&mut agent, patch);
                // One entry per tool: model APIs reject duplicate tool names.
                let mut seen = std::collections::BTreeSet::new();
                agent.tool_ids.retain(|id| seen.insert(id.clone()));
                agent.updated_at_ms = now_ms;
                self.commit_agent(ctx, slot, agent)
            }
            AgentCommand::Delete => {
                ctx.shared_delete(&AGENTS, agent.id.as_bytes()).map_err(storage)?;
                slot.agent = None;
                slot.deleted = true;
                Ok(Ok(
                    json!({"message": format!("Agent id={} successfully deleted", agent.id)}),
                ))
            }
            AgentCommand::UpdateBlock { label, patch } => {
                let blocks = load_blocks(ctx, &agent.block_ids)?;
                // By label, as Letta's route names it, or by the block's id.
                let Some(block) = blocks
                    .iter()
                    .find(|block| block.label == label)
                    .or_else(|| blocks.iter().find(|block| block.id == label))
                else {
                    return Ok(Err(Failure::not_found(format!(
                        "Block with label {label:?} of agent {}",
                        agent.id
                    ))));
                };
                let next = match patch_block(block, &patch, now_ms) {
                    Ok(next) => next,
                    Err(failure) => return Ok(Err(failure)),
                };
                if next.label != block.label && blocks.iter().any(|other| other.label == next.label) {
                    return Ok(Err(Failure::conflict(format!(
                        "agent {} already has a block labelled {:?}",
                        agent.id, next.label
                    ))));
                }
                write_block(ctx, &next)?;
                Ok(Ok(render::block(&next)))
            }
            AgentCommand::AttachBlock(id) => {
                let Some(block) = read_block(ctx, &id)? else {
                    return Ok(Err(Failure::not_found(format!("Block {id}"))));
                };
                if !agent.block_ids.contains(&id) {
                    let blocks = load_blocks(ctx, &agent.block_ids)?;
                    if blocks.iter().any(|other| other.label == block.label) {
                        return Ok(Err(Failure::conflict(format!(
                            "agent {} already has a block labelled {:?}",
                            agent.id, block.label
                        ))));
                    }
                    agent.block_ids.push(id);
                }
                agent.updated_at_ms = now_ms;
                self.commit_agent(ctx, slot, agent)
            }
            AgentCommand::DetachBlock(id) => {
                if !agent.block_ids.contains(&id) {
                    return Ok(Err(Failure::not_found(format!(
                        "Block {id} attached to agent {}",
                        agent.id
                    ))));
                }
                agent.block_ids.retain(|attached| *attached != id);
                agent.updated_at_ms = now_ms;
                self.commit_agent(ctx, slot, agent)
            }
            AgentCommand::AttachTool(id) => {
                if read_tool(ctx, &id)?.is_none() {
                    return Ok(Err(Failure::not_found(format!("Tool {id}"))));
                }
                if !agent.tool_ids.contains(&id) {
                    agent.tool_ids.push(id);
                }
                agent.updated_at_ms = now_ms;
                self.commit_agent(ctx, slot, agent)
            }
            AgentCommand::DetachTool(id) => {
                if !agent.tool_ids.contains(&id) {
                    return Ok(Err(Failure::not_found(format!(
                        "Tool {id} attached to agent {}",
                        agent.id
                    ))));
                }
                agent.tool_ids.retain(|attached| *attached != id);
                agent.updated_at_ms = now_ms;
                self.commit_agent(ctx, slot, agent)
            }
            AgentCommand::InsertPassage(passage) => {
                let key = passage_key(&passage.id);
                let bytes = serde_json::to_vec(&passage).map_err(json_error)?;
                ctx.put(&key, bytes).map_err(storage)?;
                agent.passage_count = agent.passage_count.saturating_add(1);
                slot.agent = Some(agent.clone());
                Ok(Ok(json!([render::passage(&passage, &agent.id)])))
            }
            AgentCommand::DeletePassage(id) => {
                let key = passage_key(&id);
                if ctx.get(&key).map_err(storage)?.is_none() {
                    return Ok(Err(Failure::not_found(format!("Passage {id}"))));
                }
                ctx.delete(&key).map_err(storage)?;
                agent.passage_count = agent.passage_count.saturating_sub(1);
                slot.agent = Some(agent);
                Ok(Ok(json!({"message": format!("Passage id={id} successfully deleted")})))
            }
            AgentCommand::SetWorking { key, value, ttl_ms } => {
                let now = u64::try_from(now_ms).unwrap_or(0);
                if let Err(error) = agent.working_memory.set(&key, &value, ttl_ms, now) {
                    return Ok(Err(error.into()));
                }
                let shown = working_entries(&agent.working_memory, now);
                slot.agent = Some(agent);
                Ok(Ok(shown))
            }
            AgentCommand::RemoveWorking(key) => {
                let now = u64::try_from(now_ms).unwrap_or(0);
                if agent.working_memory.remove(&key, now).is_none() {
                    return Ok(Err(Failure::not_found(format!("Working-memory entry {key:?}"))));
                }
                let shown = working_entries(&agent.working_memory, now);
                slot.agent = Some(agent);
                Ok(Ok(shown))
            }
            AgentCommand::Step(step) => {
                let outcome = self.step(ctx, &mut agent, now_ms, step).await?;
                slot.agent = Some(agent);
                Ok(Ok(serde_json::to_value(outcome).map_err(json_error)?))
            }
        }
    }

    fn create(
        &self,
        ctx: &mut ActorContext<'_>,
        slot: &mut AgentSlot,
        agent: AgentRecord,
        new_blocks: Vec<StoredBlock>,
    ) -> Result<Result<Value, Failure>, HandlerError> {
        if slot.deleted || slot.agent.is_some() {
            return Ok(Err(Failure::conflict(format!("agent {} already exists", agent.id))));
        }
        let mut labels = std::collections::BTreeSet::new();
        let mut all = Vec::new();
        for id in &agent.block_ids {
            let block = match new_blocks.iter().find(|block| block.id == *id) {
                Some(block) => block.clone(),
                None => match read_block(ctx, id)? {
                    Some(block) => block,
                    None => return Ok(Err(Failure::not_found(format!("Block {id}")))),
                },
            };
            if !labels.insert(block.label.clone()) {
                return Ok(Err(Failure::invalid(format!(
                    "two blocks are labelled {:?}; labels must be unique within an agent",
                    block.label
                ))));
            }
            if let Err(error) = block.to_memory().validate() {
                return Ok(Err(error.into()));
            }
            all.push(block);
        }
        for id in &agent.tool_ids {
            if read_tool(ctx, id)?.is_none() {
                return Ok(Err(Failure::not_found(format!("Tool {id}"))));
            }
        }
        for block in &new_blocks {
            write_block(ctx, block)?;
        }
        ctx.shared_put(&AGENTS, agent.id.as_bytes(), Vec::new())
            .map_err(storage)?;
        self.commit_agent(ctx, slot, agent)
    }

    /// Makes `agent` the slot's record and renders it.
    fn commit_agent(
        &self,
        ctx: &mut ActorContext<'_>,
        slot: &mut AgentSlot,
        agent: AgentRecord,
    ) -> Result<Result<Value, Failure>, HandlerError> {
        let rendered = self.render_agent(ctx, &agent)?;
        slot.agent = Some(agent);
        Ok(Ok(rendered))
    }

    async fn step(
        &self,
        ctx: &mut ActorContext<'_>,
        agent: &mut AgentRecord,
        now_ms: i64,
        command: StepCommand,
    ) -> Result<StepOutcome, HandlerError> {
        let Some(llm) = self.llm.clone() else {
            return Ok(StepOutcome {
                messages: Vec::new(),
                stop_reason: Some("llm_api_error".to_string()),
                prompt_tokens: 0,
                completion_tokens: 0,
                error: Some(NO_LLM.to_string()),
            });
        };
        // Work on copies; nothing is written unless the step succeeds.
        let mut next = agent.clone();
        let mut written: Vec<StoredMessage> = Vec::new();
        let run_id = command.run_id.clone();
        let step_no = command.step;
        let push = |written: &mut Vec<StoredMessage>,
                    next: &mut AgentRecord,
                    body: MessageBody,
                    otid: Option<String>|
         -> Result<(), HandlerError> {
            let seq = next.next_message_seq;
            if seq >= MESSAGE_SEQ_MAX {
                return Err(HandlerError::new("the agent's message history is full"));
            }
            next.next_message_seq = seq + 1;
            written.push(StoredMessage {
                id: message_id(&next.id, seq),
                seq,
                body,
                run_id: Some(run_id.clone()),
                step: step_no,
                otid,
                created_at_ms: now_ms,
            });
            Ok(())
        };
        for input in &command.input {
            push(
                &mut written,
                &mut next,
                MessageBody::User {
                    text: input.text.clone(),
                },
                input.otid.clone(),
            )?;
        }
        let mut blocks = load_blocks(ctx, &next.block_ids)?;
        // A shared block renamed through another agent or the blocks API can
        // give this agent two blocks with one label: the first attached one
        // is its memory under that label (the model could not tell them
        // apart), the others wait until the clash is resolved.
        let mut labels = std::collections::BTreeSet::new();
        blocks.retain(|block| labels.insert(block.label.clone()));
        let mut memory = CoreMemory::new();
        for block in &blocks {
            // Stored blocks were validated when written; one that no longer
            // validates (a limit lowered below its value) is left out of the
            // prompt rather than failing every message.
            if let Err(error) = memory.insert(block.to_memory()) {
                tracing::warn!(block = %block.id, %error, "block left out of the agent's memory");
            }
        }
        let mut agent_tools = Vec::new();
        for id in &next.tool_ids {
            if let Some(tool) = read_tool(ctx, id)? {
                agent_tools.push(tool);
            }
        }
        // Expired entries leave the state (and the prompt) as time passes.
        let now = u64::try_from(now_ms).unwrap_or(0);
        next.working_memory.expire(now);
        let system = system_prompt(&next, &memory, now);
        // Roughly 3 characters per token, a quarter of the window kept for
        // the reply and the tools.
        let budget = usize::try_from(self.llm_info.context_window.saturating_mul(9) / 4)
            .unwrap_or(usize::MAX)
            .saturating_sub(system.chars().count());
        let history = load_history(ctx, agent.next_message_seq, budget)?;
        let mut conversation = vec![ChatMessage::system(system)];
        conversation.extend(to_chat(history.iter().chain(written.iter())));
        let request = ChatRequest::new(conversation).with_tools(agent_tools.iter().map(tool_spec).collect());
        let response = match llm.complete(request).await {
            Ok(response) => response,
            Err(error) => return Ok(llm_failure(&error)),
        };
        let mut stop_reason = None;
        let mut heartbeat = false;
        let calls = response.tool_calls.clone();
        let content = response.content.clone().filter(|text| !text.trim().is_empty());
        if calls.is_empty() {
            push(
                &mut written,
                &mut next,
                MessageBody::Assistant {
                    text: content.unwrap_or_default(),
                    call: None,
                },
                None,
            )?;
            stop_reason = Some("end_turn".to_string());
        } else if let Some(text) = content {
            push(&mut written, &mut next, MessageBody::Reasoning { text }, None)?;
        }
        let mut blocks_changed = false;
        let mut passages = Vec::new();
        for call in &calls {
            let stored = StoredCall {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            };
            let tool = agent_tools.iter().find(|tool| tool.name == call.name);
            let arguments: Option<serde_json::Map<String, Value>> = serde_json::from_str(&call.arguments).ok();
            let (Some(tool), Some(arguments)) = (tool, arguments) else {
                let why = if tool.is_none() {
                    format!("unknown tool {:?}", call.name)
                } else {
                    format!("arguments of {} are not a JSON object", call.name)
                };
                push(&mut written, &mut next, MessageBody::ToolCall { call: stored }, None)?;
                push(
                    &mut written,
                    &mut next,
                    tool_return(call, format!("Error: {why}"), false),
                    None,
                )?;
                stop_reason = Some("invalid_tool_call".to_string());
                break;
            };
            if call.name == tools::SEND_MESSAGE {
                let text = arguments
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                push(
                    &mut written,
                    &mut next,
                    MessageBody::Assistant {
                        text,
                        call: Some(stored),
                    },
                    None,
                )?;
                push(
                    &mut written,
                    &mut next,
                    tool_return(call, "Sent message successfully.".to_string(), true),
                    None,
                )?;
                heartbeat |= arguments
                    .get("request_heartbeat")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                continue;
            }
            push(&mut written, &mut next, MessageBody::ToolCall { call: stored }, None)?;
            let result = self
                .run_tool(ctx, &next, &mut memory, &mut passages, &tool.name, &arguments, now_ms)
                .await?;
            if result.is_ok()
                && matches!(
                    tool.name.as_str(),
                    tools::CORE_MEMORY_APPEND | tools::CORE_MEMORY_REPLACE
                )
            {
                blocks_changed = true;
            }
            let (text, ok) = match result {
                Ok(text) => (text, true),
                Err(text) => (format!("Error: {text}"), false),
            };
            let text = truncate_return(text, tool.return_char_limit.max(1));
            push(&mut written, &mut next, tool_return(call, text, ok), None)?;
            heartbeat |= arguments
                .get("request_heartbeat")
                .and_then(Value::as_bool)
                .unwrap_or(true);
        }
        if stop_reason.is_none() {
            if !heartbeat {
                stop_reason = Some("end_turn".to_string());
            } else if command.step.saturating_add(1) >= command.max_steps {
                stop_reason = Some("max_steps".to_string());
            }
        }
        // Commit the step: blocks, passages, messages, the record.
        if blocks_changed {
            for block in &blocks {
                if let Some(changed) = memory.get_by_id(&block.id) {
                    if changed.value != block.value {
                        let mut updated = block.clone();
                        updated.value = changed.value.clone();
                        updated.updated_at_ms = now_ms;
                        write_block(ctx, &updated)?;
                    }
                }
            }
        }
        for passage in &passages {
            let bytes = serde_json::to_vec(passage).map_err(json_error)?;
            ctx.put(&passage_key(&passage.id), bytes).map_err(storage)?;
            next.passage_count = next.passage_count.saturating_add(1);
        }
        for message in &written {
            let bytes = serde_json::to_vec(message).map_err(json_error)?;
            ctx.put(&message_key(message.seq), bytes).map_err(storage)?;
        }
        next.updated_at_ms = now_ms;
        *agent = next;
        let view = MessageView {
            use_assistant_message: command.use_assistant_message,
            include_types: None,
        };
        Ok(StepOutcome {
            messages: written
                .iter()
                .filter(|message| !matches!(message.body, MessageBody::User { .. }))
                .filter_map(|message| render::message(message, &view))
                .collect(),
            stop_reason,
            prompt_tokens: response.usage.prompt_tokens,
            completion_tokens: response.usage.completion_tokens,
            error: None,
        })
    }

    /// Runs a built-in tool other than `send_message` (custom tools have no
    /// sandbox here: they fail with a message saying so). `Err` is a tool
    /// failure the model sees, not a request failure.
    #[allow(clippy::too_many_arguments)]
    async fn run_tool(
        &self,
        ctx: &mut ActorContext<'_>,
        agent: &AgentRecord,
        memory: &mut CoreMemory,
        passages: &mut Vec<Passage>,
        name: &str,
        arguments: &serde_json::Map<String, Value>,
        now_ms: i64,
    ) -> Result<Result<String, String>, HandlerError> {
        let text = |key: &str| -> Result<String, String> {
            arguments
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("missing string argument {key:?}"))
        };
        let count = |key: &str, default: usize| -> usize {
            arguments
                .get(key)
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(default)
                .clamp(1, 100)
        };
        Ok(match name {
            tools::CORE_MEMORY_APPEND => (|| {
                let label = text("label")?;
                memory
                    .append(&label, &text("content")?)
                    .map_err(|error| error.to_string())?;
                Ok(format!("Appended to block {label:?}."))
            })(),
            tools::CORE_MEMORY_REPLACE => (|| {
                let label = text("label")?;
                memory
                    .replace(&label, &text("old_content")?, &text("new_content")?)
                    .map_err(|error| error.to_string())?;
                Ok(format!("Replaced text in block {label:?}."))
            })(),
            tools::ARCHIVAL_MEMORY_INSERT => match text("content") {
                Ok(content) => {
                    let seq = agent.passage_count.saturating_add(passages.len() as u64);
                    let id = crate::ids::derived_id("passage", format!("{}:{seq}:{now_ms}", agent.id).as_bytes());
                    match self.embedder.embed(&content).await {
                        Ok(embedding) => {
                            passages.push(Passage {
                                id: id.clone(),
                                text: content,
                                embedding,
                                created_at_ms: u64::try_from(now_ms).unwrap_or(0),
                                tags: Vec::new(),
                            });
                            Ok(format!("Inserted passage {id}."))
                        }
                        Err(failure) => Err(failure.detail),
                    }
                }
                Err(error) => Err(error),
            },
            tools::ARCHIVAL_MEMORY_SEARCH => match text("query") {
                Ok(query) => {
                    let mut all = load_passages(ctx)?;
                    all.extend(passages.iter().cloned());
                    match search_passages(&self.embedder, &all, &query, count("top_k", 5)).await {
                        Ok(results) => {
                            let shown: Vec<Value> = results
                                .iter()
                                .map(|(passage, _)| json!({"content": passage.text, "timestamp": render::iso(i64::try_from(passage.created_at_ms).unwrap_or(0))}))
                                .collect();
                            Ok(Value::Array(shown).to_string())
                        }
                        Err(failure) => Err(failure.detail),
                    }
                }
                Err(error) => Err(error),
            },
            tools::CONVERSATION_SEARCH => match text("query") {
                Ok(query) => {
                    let found = search_conversation(ctx, agent.next_message_seq, &query, count("limit", 10))?;
                    Ok(Value::Array(found).to_string())
                }
                Err(error) => Err(error),
            },
            other => Err(format!(
                "tool {other:?} cannot run: this server has no sandbox for custom tools"
            )),
        })
    }
}

/// The live entries of a working memory, as the API shows them.
pub fn working_entries(memory: &kelpie_memory::WorkingMemory, now_ms: u64) -> Value {
    Value::Array(
        memory
            .iter(now_ms)
            .map(|(key, value)| {
                let expires = memory.expires_at_ms(key, now_ms).flatten();
                json!({
                    "key": key,
                    "value": value,
                    "expires_at": expires.map(|ms| render::iso(i64::try_from(ms).unwrap_or(i64::MAX))),
                })
            })
            .collect(),
    )
}

/// The error of sending a message with no LLM configured.
pub const NO_LLM: &str = "no LLM is configured: start kelpie-server with --llm-base-url (KELPIE_LLM_BASE_URL) \
and --llm-api-key (KELPIE_LLM_API_KEY) for an OpenAI-compatible API, or --llm-provider anthropic with an API key";

fn llm_failure(error: &LlmError) -> StepOutcome {
    StepOutcome {
        messages: Vec::new(),
        stop_reason: Some("llm_api_error".to_string()),
        prompt_tokens: 0,
        completion_tokens: 0,
        error: Some(error.to_string()),
    }
}

fn tool_return(call: &ToolCall, text: String, ok: bool) -> MessageBody {
    MessageBody::ToolReturn {
        call_id: call.id.clone(),
        name: call.name.clone(),
        text,
        ok,
    }
}

fn apply_agent_patch(agent: &mut AgentRecord, patch: AgentPatch) {
    let AgentPatch {
        name,
        description,
        system,
        tags,
        metadata,
        model,
        embedding,
        block_ids,
        tool_ids,
    } = patch;
    agent.name = name.unwrap_or(std::mem::take(&mut agent.name));
    if description.is_some() {
        agent.description = description;
    }
    agent.system = system.unwrap_or(std::mem::take(&mut agent.system));
    agent.tags = tags.unwrap_or(std::mem::take(&mut agent.tags));
    if metadata.is_some() {
        agent.metadata = metadata;
    }
    if model.is_some() {
        agent.model = model;
    }
    if embedding.is_some() {
        agent.embedding = embedding;
    }
    agent.block_ids = block_ids.unwrap_or(std::mem::take(&mut agent.block_ids));
    agent.tool_ids = tool_ids.unwrap_or(std::mem::take(&mut agent.tool_ids));
}

/// `None` if every block exists and their labels are distinct.
fn check_blocks(ctx: &mut ActorContext<'_>, ids: &[String]) -> Result<Option<Failure>, HandlerError> {
    let mut labels = std::collections::BTreeSet::new();
    for id in ids {
        match read_block(ctx, id)? {
            None => return Ok(Some(Failure::not_found(format!("Block {id}")))),
            Some(block) => {
                if !labels.insert(block.label.clone()) {
                    return Ok(Some(Failure::conflict(format!(
                        "two blocks are labelled {:?}",
                        block.label
                    ))));
                }
            }
        }
    }
    Ok(None)
}

/// The agent's blocks, in order (deleted ones skipped).
pub fn load_blocks(ctx: &mut ActorContext<'_>, ids: &[String]) -> Result<Vec<StoredBlock>, HandlerError> {
    let mut blocks = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(block) = read_block(ctx, id)? {
            blocks.push(block);
        }
    }
    Ok(blocks)
}

/// The newest messages (at most [`HISTORY_MESSAGES`], within `budget`
/// characters) to send with a step.
fn load_history(ctx: &mut ActorContext<'_>, next_seq: u64, budget: usize) -> Result<Vec<StoredMessage>, HandlerError> {
    let start = message_key(next_seq.saturating_sub(HISTORY_MESSAGES));
    let entries = ctx
        .scan(
            Bound::Included(&start),
            Bound::Excluded(MESSAGE_KEYS_END),
            usize::try_from(HISTORY_MESSAGES).unwrap_or(100),
        )
        .map_err(storage)?;
    let mut history: Vec<StoredMessage> = entries
        .iter()
        .map(|(_, bytes)| serde_json::from_slice(bytes).map_err(json_error))
        .collect::<Result<_, _>>()?;
    // Keep the newest messages that fit the budget.
    let mut used = 0usize;
    let mut keep = history.len();
    for message in history.iter().rev() {
        used = used.saturating_add(message_chars(message));
        if used > budget {
            break;
        }
        keep -= 1;
    }
    history.drain(..keep);
    // A tool return whose call fell out of the window would be rejected by
    // the model's API: start after it.
    let orphans = history
        .iter()
        .take_while(|message| matches!(message.body, MessageBody::ToolReturn { .. }))
        .count();
    history.drain(..orphans);
    Ok(history)
}

fn message_chars(message: &StoredMessage) -> usize {
    match &message.body {
        MessageBody::User { text } | MessageBody::Reasoning { text } | MessageBody::Assistant { text, call: None } => {
            text.chars().count()
        }
        MessageBody::Assistant { text, call: Some(call) } => text.chars().count() + call.arguments.chars().count(),
        MessageBody::ToolCall { call } => call.arguments.chars().count() + call.name.len(),
        MessageBody::ToolReturn { text, .. } => text.chars().count(),
    }
}

/// Every passage of the agent.
pub fn load_passages(ctx: &mut ActorContext<'_>) -> Result<Vec<Passage>, HandlerError> {
    let mut passages = Vec::new();
    let mut start = PASSAGE_KEYS_START.to_vec();
    let mut inclusive = true;
    loop {
        let bound = if inclusive {
            Bound::Included(start.as_slice())
        } else {
            Bound::Excluded(start.as_slice())
        };
        let page = ctx
            .scan(
                bound,
                Bound::Excluded(PASSAGE_KEYS_END),
                kelpie_core::limits::SCAN_PAGE_ENTRIES_MAX,
            )
            .map_err(storage)?;
        let full = page.len() == kelpie_core::limits::SCAN_PAGE_ENTRIES_MAX;
        for (_, bytes) in &page {
            passages.push(serde_json::from_slice(bytes).map_err(json_error)?);
        }
        match page.last() {
            Some((key, _)) if full && passages.len() < ARCHIVAL_SCAN_MAX => {
                start = key.to_vec();
                inclusive = false;
            }
            _ => return Ok(passages),
        }
    }
}

/// The `k` passages closest to `query`.
pub async fn search_passages<'a>(
    embedder: &ArchivalEmbedder,
    passages: &'a [Passage],
    query: &str,
    k: usize,
) -> Result<Vec<(&'a Passage, f32)>, Failure> {
    let query = embedder.embed(query).await?;
    Ok(kelpie_memory::top_k(&query, passages, k)?)
}

fn search_conversation(
    ctx: &mut ActorContext<'_>,
    next_seq: u64,
    query: &str,
    limit: usize,
) -> Result<Vec<Value>, HandlerError> {
    let needle = query.to_lowercase();
    let mut found = Vec::new();
    // The newest page of messages (a scan returns one page, in key order).
    let window = next_seq.saturating_sub(kelpie_core::limits::SCAN_PAGE_ENTRIES_MAX as u64);
    let entries = ctx
        .scan(
            Bound::Included(&message_key(window)),
            Bound::Excluded(MESSAGE_KEYS_END),
            kelpie_core::limits::SCAN_PAGE_ENTRIES_MAX,
        )
        .map_err(storage)?;
    for (_, bytes) in entries.iter().rev() {
        let message: StoredMessage = serde_json::from_slice(bytes).map_err(json_error)?;
        let (role, text) = match &message.body {
            MessageBody::User { text } => ("user", text),
            MessageBody::Assistant { text, .. } => ("assistant", text),
            _ => continue,
        };
        if text.to_lowercase().contains(&needle) {
            found.push(json!({"role": role, "content": text, "timestamp": render::iso(message.created_at_ms)}));
            if found.len() >= limit {
                break;
            }
        }
    }
    Ok(found)
}

fn system_prompt(agent: &AgentRecord, memory: &CoreMemory, now_ms: u64) -> String {
    let mut working = String::new();
    for (key, value) in agent.working_memory.iter(now_ms) {
        working.push_str(&format!("- {key}: {value}\n"));
    }
    let working = if working.is_empty() {
        String::new()
    } else {
        format!("\n\n<working_memory>\n{working}</working_memory>")
    };
    format!(
        "{}\n\n{}\n\n<memory_metadata>\n- {} previous messages between you and the user are stored in recall memory (use conversation_search to find them)\n- {} passages are stored in archival memory (use archival_memory_search to find them)\n</memory_metadata>{}",
        agent.system,
        memory.compile(),
        agent.next_message_seq,
        agent.passage_count,
        working
    )
}

fn tool_spec(tool: &StoredTool) -> ToolSpec {
    let schema = &tool.json_schema;
    ToolSpec::new(
        tool.name.clone(),
        schema
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| tool.description.clone())
            .unwrap_or_default(),
        schema
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    )
}

/// Stored messages → the model's conversation: one assistant turn per
/// (run, step), with its text and tool calls, then the tool results.
fn to_chat<'a>(messages: impl Iterator<Item = &'a StoredMessage>) -> Vec<ChatMessage> {
    /// One assistant turn being assembled.
    struct Turn {
        key: (Option<String>, u32),
        text: Option<String>,
        calls: Vec<ToolCall>,
    }
    fn flush(chat: &mut Vec<ChatMessage>, turn: &mut Option<Turn>) {
        if let Some(turn) = turn.take() {
            chat.push(ChatMessage::assistant(turn.text, turn.calls));
        }
    }
    let mut chat = Vec::new();
    let mut turn: Option<Turn> = None;
    for message in messages {
        let key = (message.run_id.clone(), message.step);
        let (text, call) = match &message.body {
            MessageBody::User { text } => {
                flush(&mut chat, &mut turn);
                chat.push(ChatMessage::user(text.clone()));
                continue;
            }
            MessageBody::ToolReturn {
                call_id, name, text, ..
            } => {
                flush(&mut chat, &mut turn);
                chat.push(ChatMessage::tool(call_id.clone(), name.clone(), text.clone()));
                continue;
            }
            MessageBody::Reasoning { text } => (Some(text.clone()), None),
            MessageBody::Assistant { text, call: None } => (Some(text.clone()), None),
            MessageBody::Assistant { call: Some(call), .. } | MessageBody::ToolCall { call } => (None, Some(call)),
        };
        if turn.as_ref().is_some_and(|current| current.key != key) {
            flush(&mut chat, &mut turn);
        }
        let entry = turn.get_or_insert_with(|| Turn {
            key,
            text: None,
            calls: Vec::new(),
        });
        if let Some(text) = text {
            entry.text = Some(text);
        }
        if let Some(call) = call {
            entry.calls.push(ToolCall::new(
                call.id.clone(),
                call.name.clone(),
                call.arguments.clone(),
            ));
        }
    }
    flush(&mut chat, &mut turn);
    chat
}

impl Actor for AgentActor {
    type State = AgentSlot;
    type Message = Envelope<AgentCommand>;
    type Reply = Reply;

    fn handle<'a>(
        &'a self,
        ctx: &'a mut ActorContext<'_>,
        state: &'a mut AgentSlot,
        message: Envelope<AgentCommand>,
    ) -> BoxFuture<'a, Result<Reply, HandlerError>> {
        async move {
            let mut next = state.clone();
            let result = self.run(ctx, &mut next, message.now_ms, message.command).await?;
            // A failure changes nothing: the handler validated first, and
            // its state copy is dropped.
            if result.is_ok() {
                *state = next;
            }
            Ok(Reply {
                fingerprint: message.fingerprint,
                result,
            })
        }
        .boxed()
    }
}

/// The actor of a standalone block (`block:<id>`).
pub struct BlockActor;

impl Actor for BlockActor {
    type State = ();
    type Message = Envelope<BlockCommand>;
    type Reply = Reply;

    fn handle<'a>(
        &'a self,
        ctx: &'a mut ActorContext<'_>,
        _state: &'a mut (),
        message: Envelope<BlockCommand>,
    ) -> BoxFuture<'a, Result<Reply, HandlerError>> {
        async move {
            let id = ctx.actor().key().to_string();
            let current = read_block(ctx, &id)?;
            let result = match (message.command, current) {
                (BlockCommand::Create(_), Some(_)) => Err(Failure::conflict(format!("block {id} already exists"))),
                (BlockCommand::Create(block), None) => match block.to_memory().validate() {
                    Ok(()) => {
                        write_block(ctx, &block)?;
                        Ok(render::block(&block))
                    }
                    Err(error) => Err(error.into()),
                },
                (_, None) => Err(Failure::not_found(format!("Block {id}"))),
                (BlockCommand::Update(patch), Some(block)) => match patch_block(&block, &patch, message.now_ms) {
                    Ok(next) => {
                        write_block(ctx, &next)?;
                        Ok(render::block(&next))
                    }
                    Err(failure) => Err(failure),
                },
                (BlockCommand::Delete, Some(_)) => {
                    ctx.shared_delete(&BLOCKS, id.as_bytes()).map_err(storage)?;
                    Ok(json!({"message": format!("Block id={id} successfully deleted")}))
                }
            };
            Ok(Reply {
                fingerprint: message.fingerprint,
                result,
            })
        }
        .boxed()
    }
}

/// The actor of a custom tool (`tool:<id>`, the id derived from its name).
pub struct ToolActor;

fn write_tool(ctx: &mut ActorContext<'_>, tool: &StoredTool) -> Result<(), HandlerError> {
    let bytes = serde_json::to_vec(tool).map_err(json_error)?;
    ctx.shared_put(&TOOLS, tool.id.as_bytes(), bytes).map_err(storage)
}

impl ToolActor {
    fn run(
        ctx: &mut ActorContext<'_>,
        fingerprint: &str,
        command: ToolCommand,
    ) -> Result<Result<Value, Failure>, HandlerError> {
        let id = ctx.actor().key().to_string();
        let current = read_tool(ctx, &id)?;
        Ok(match (command, current) {
            (ToolCommand::Create { tool, .. }, Some(_)) => Err(Failure::conflict(format!(
                "a tool named {:?} already exists",
                tool.name
            ))),
            (ToolCommand::Create { tool, key }, None) => {
                if let Some(key) = key {
                    let record = format!("key/{key}");
                    if let Some(first) = ctx.shared_get(&TOOL_KEYS, record.as_bytes()).map_err(storage)? {
                        if first != fingerprint.as_bytes() {
                            return Ok(Err(Failure::invalid(
                                "Idempotency-Key was already used with a different request body",
                            )));
                        }
                    }
                    ctx.shared_put(&TOOL_KEYS, record.as_bytes(), fingerprint.as_bytes().to_vec())
                        .map_err(storage)?;
                }
                write_tool(ctx, &tool)?;
                Ok(render::tool(&tool))
            }
            (ToolCommand::Upsert(tool), _) => {
                write_tool(ctx, &tool)?;
                Ok(render::tool(&tool))
            }
            (_, None) => Err(Failure::not_found(format!("Tool {id}"))),
            (ToolCommand::Update(patch), Some(mut tool)) => {
                if let Some(schema) = &patch.json_schema {
                    if schema.get("name").and_then(Value::as_str) != Some(tool.name.as_str()) {
                        return Ok(Err(Failure::invalid("json_schema.name must stay the tool's name")));
                    }
                }
                if let Some(description) = patch.description {
                    tool.description = Some(description);
                }
                if let Some(tags) = patch.tags {
                    tool.tags = tags;
                }
                if let Some(limit) = patch.return_char_limit {
                    tool.return_char_limit = limit.max(1);
                }
                if let Some(source) = patch.source_code {
                    tool.source_code = Some(source);
                }
                if let Some(schema) = patch.json_schema {
                    tool.json_schema = schema;
                }
                write_tool(ctx, &tool)?;
                Ok(render::tool(&tool))
            }
            (ToolCommand::Delete, Some(_)) => {
                ctx.shared_delete(&TOOLS, id.as_bytes()).map_err(storage)?;
                Ok(json!({"message": format!("Tool id={id} successfully deleted")}))
            }
        })
    }
}

impl Actor for ToolActor {
    type State = ();
    type Message = Envelope<ToolCommand>;
    type Reply = Reply;

    fn handle<'a>(
        &'a self,
        ctx: &'a mut ActorContext<'_>,
        _state: &'a mut (),
        message: Envelope<ToolCommand>,
    ) -> BoxFuture<'a, Result<Reply, HandlerError>> {
        async move {
            let result = ToolActor::run(ctx, &message.fingerprint, message.command)?;
            Ok(Reply {
                fingerprint: message.fingerprint,
                result,
            })
        }
        .boxed()
    }
}
