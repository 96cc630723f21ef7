//! API operations that do not depend on HTTP, so the simulator drives the
//! same code as the server.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::agent::AgentCommand;
use crate::app::{ApiError, App, RequestMeta};
use crate::ids::{derived_id, new_id};
use crate::records::{AgentRecord, StoredBlock};
use crate::routes::{BLOCK_LIMIT_DEFAULT, SYSTEM_PROMPT_DEFAULT};
use crate::tools::{self, BUILTINS};

/// A block in a create request.
#[derive(Debug, Default, Deserialize)]
pub struct CreateBlockBody {
    /// Label, unique within an agent.
    pub label: String,
    /// Contents.
    pub value: String,
    /// Character limit (default 20,000).
    pub limit: Option<usize>,
    /// What it is for.
    pub description: Option<String>,
    /// Whether memory tools may edit it.
    pub read_only: Option<bool>,
    /// Client metadata.
    pub metadata: Option<Value>,
    /// Whether it is a template.
    pub is_template: Option<bool>,
}

/// `POST /v1/agents/`.
#[derive(Debug, Default, Deserialize)]
pub struct CreateAgentBody {
    /// Display name (default derived from the id).
    pub name: Option<String>,
    /// What it is for.
    pub description: Option<String>,
    /// System prompt (default: Kelpie's).
    pub system: Option<String>,
    /// Letta agent type, echoed back.
    pub agent_type: Option<String>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Client metadata.
    pub metadata: Option<Value>,
    /// Model handle (informational).
    pub model: Option<String>,
    /// Embedding handle (informational).
    pub embedding: Option<String>,
    /// Blocks created with the agent.
    pub memory_blocks: Option<Vec<CreateBlockBody>>,
    /// Existing blocks to attach.
    pub block_ids: Option<Vec<String>>,
    /// Tools to attach, by id.
    pub tool_ids: Option<Vec<String>>,
    /// Tools to attach, by name.
    pub tools: Option<Vec<String>>,
    /// Attach the built-in tools (default true).
    pub include_base_tools: Option<bool>,
}

/// A new block from a create request, validated (422 over its limit).
pub fn new_block(id: String, body: CreateBlockBody, now_ms: i64) -> Result<StoredBlock, ApiError> {
    let block = StoredBlock {
        id,
        label: body.label,
        value: body.value,
        limit: body.limit.unwrap_or(BLOCK_LIMIT_DEFAULT),
        description: body.description,
        read_only: body.read_only.unwrap_or(false),
        metadata: body.metadata,
        is_template: body.is_template.unwrap_or(false),
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    block
        .to_memory()
        .validate()
        .map_err(|error| ApiError::new(422, error.to_string()))?;
    Ok(block)
}

/// The id of the custom tool named `name` (one tool per name).
pub fn custom_tool_id(name: &str) -> String {
    derived_id("tool", format!("custom:{name}").as_bytes())
}

/// Creates an agent with its blocks in one invocation of its actor (so
/// there is no moment when the agent exists without its blocks), named by
/// the request's idempotency key when it has one (so a retry reaches the
/// same actor, whose journal answers with the first response).
pub async fn create_agent(app: &Arc<App>, request: CreateAgentBody, meta: &RequestMeta) -> Result<Value, ApiError> {
    let now_ms = app.now_ms();
    // A retry with the same Idempotency-Key names the same agent, so
    // the journal answers it with the first response.
    let id = match &meta.key {
        Some(key) if !cfg!(feature = "bug-server-ignore-idempotency-key") => derived_id("agent", key.as_bytes()),
        _ => new_id("agent", now_ms, app.random(), app.random()),
    };
    // The bug switch forgets the key: every attempt is a new request.
    let unkeyed;
    let meta = if cfg!(feature = "bug-server-ignore-idempotency-key") {
        unkeyed = RequestMeta {
            key: None,
            ..meta.clone()
        };
        &unkeyed
    } else {
        meta
    };
    let mut new_blocks: Vec<StoredBlock> = Vec::new();
    let mut block_ids = Vec::new();
    for (index, block) in request.memory_blocks.unwrap_or_default().into_iter().enumerate() {
        let block = new_block(derived_id("block", format!("{id}:{index}").as_bytes()), block, now_ms)?;
        block_ids.push(block.id.clone());
        new_blocks.push(block);
    }
    block_ids.extend(request.block_ids.unwrap_or_default());
    let mut tool_ids: Vec<String> = Vec::new();
    if request.include_base_tools.unwrap_or(true) {
        tool_ids.extend(BUILTINS.iter().map(|tool| tool.id.clone()));
    }
    for name in request.tools.unwrap_or_default() {
        let id = tools::builtin_by_name(&name).map_or_else(|| custom_tool_id(&name), |tool| tool.id.clone());
        tool_ids.push(id);
    }
    tool_ids.extend(request.tool_ids.unwrap_or_default());
    let mut seen = std::collections::BTreeSet::new();
    tool_ids.retain(|id| seen.insert(id.clone()));
    let name = request.name.unwrap_or_else(|| format!("agent-{}", &id[id.len() - 8..]));
    if name.trim().is_empty() || name.chars().count() > 256 {
        return Err(ApiError::new(422, "name must be 1 to 256 characters"));
    }
    let agent = AgentRecord {
        id: id.clone(),
        name,
        description: request.description,
        system: request.system.unwrap_or_else(|| SYSTEM_PROMPT_DEFAULT.to_string()),
        agent_type: request.agent_type.unwrap_or_else(|| "memgpt_v2_agent".to_string()),
        tags: request.tags.unwrap_or_default(),
        metadata: request.metadata,
        model: request.model,
        embedding: request.embedding,
        block_ids,
        tool_ids,
        next_message_seq: 0,
        passage_count: 0,
        working_memory: crate::records::working_memory(),
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    let _guard = app.hold_key(meta)?;
    if cfg!(feature = "bug-server-nonatomic-create") {
        // The defect (BUG-001): the agent is created first and its blocks
        // in later, separate writes, so a crash in between leaves an agent
        // without its memory.
        let blocks = std::mem::take(&mut new_blocks);
        let mut bare = agent;
        bare.block_ids.retain(|id| !blocks.iter().any(|block| block.id == *id));
        app.invoke_agent(
            &id,
            AgentCommand::Create {
                agent: bare,
                new_blocks: Vec::new(),
            },
            meta,
            "",
        )
        .await?;
        let mut last = Value::Null;
        for (index, block) in blocks.into_iter().enumerate() {
            let block_id = block.id.clone();
            app.invoke_block(&block_id, crate::agent::BlockCommand::Create(block), meta)
                .await?;
            last = app
                .invoke_agent(
                    &id,
                    AgentCommand::AttachBlock(block_id),
                    meta,
                    &format!("/attach{index}"),
                )
                .await?;
        }
        if last.is_null() {
            let mut txn = app.snapshot()?;
            let agent = crate::app::read_agent(&mut txn, &id)?;
            return crate::routes::render_agent(app, &mut txn, &agent);
        }
        return Ok(last);
    }
    app.invoke_agent(&id, AgentCommand::Create { agent, new_blocks }, meta, "")
        .await
}
