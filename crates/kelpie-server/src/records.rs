//! What the server stores, and where.
//!
//! Every agent is an actor (`agent:<agent id>`). Its keyspace holds:
//! - the runtime's state key: the [`AgentRecord`] (`None` until created);
//! - `m/<seq>`: its messages ([`StoredMessage`]), one record per Letta
//!   message, in order;
//! - `p/<passage id>`: its archival passages ([`kelpie_memory::Passage`]).
//!
//! Records that are not one agent's live in shared keyspaces, written only
//! inside an actor's transaction (so atomically with it, and fenced by it):
//! - [`AGENTS`]: `<agent id>` → `""`, the index that lists agents;
//! - [`BLOCKS`]: `<block id>` → [`StoredBlock`] (an agent's memory blocks
//!   are records here too, since a block may be attached to several agents);
//! - [`TOOLS`]: `<tool id>` → [`StoredTool`] (custom tools; the built-in
//!   ones are not stored).
//!
//! Blocks and tools are written by their own actors (`block:<id>`,
//! `tool:<id>`) or by an agent's actor (an agent created with blocks, a
//! memory tool editing a block).

use std::sync::LazyLock;

use kelpie_runtime::runtime::SharedSpace;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The shared keyspace indexing agents.
pub static AGENTS: LazyLock<SharedSpace> = LazyLock::new(|| shared("agents"));
/// The shared keyspace of blocks.
pub static BLOCKS: LazyLock<SharedSpace> = LazyLock::new(|| shared("blocks"));
/// The shared keyspace of custom tools.
pub static TOOLS: LazyLock<SharedSpace> = LazyLock::new(|| shared("tools"));
/// The shared keyspace recording which request (fingerprint) each scoped
/// idempotency key created a custom tool for.
pub static TOOL_KEYS: LazyLock<SharedSpace> = LazyLock::new(|| shared("tool-keys"));

fn shared(name: &str) -> SharedSpace {
    match SharedSpace::new(name) {
        Ok(space) => space,
        // The names above are constants that are valid actor keys.
        Err(error) => unreachable!("shared keyspace name {name:?} is invalid: {error}"),
    }
}

/// The actor-id namespace of agents.
pub const AGENT_NAMESPACE: &str = "agent";
/// The actor-id namespace of standalone blocks.
pub const BLOCK_NAMESPACE: &str = "block";
/// The actor-id namespace of tools.
pub const TOOL_NAMESPACE: &str = "tool";

/// The key of message `seq` in its agent's keyspace.
pub fn message_key(seq: u64) -> Vec<u8> {
    format!("m/{seq:020}").into_bytes()
}

/// The first key after every message key.
pub const MESSAGE_KEYS_END: &[u8] = b"m0";

/// The key of passage `id` in its agent's keyspace.
pub fn passage_key(id: &str) -> Vec<u8> {
    format!("p/{id}").into_bytes()
}

/// The first key of passages.
pub const PASSAGE_KEYS_START: &[u8] = b"p/";
/// The first key after every passage key.
pub const PASSAGE_KEYS_END: &[u8] = b"p0";

/// An agent, as its actor stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// `agent-<uuid>`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The system prompt (persona and instructions; memory is appended).
    pub system: String,
    /// Letta's agent type, echoed back.
    pub agent_type: String,
    /// Tags, for filtering lists.
    pub tags: Vec<String>,
    /// Arbitrary client metadata.
    pub metadata: Option<Value>,
    /// The model handle the client asked for (informational: the server's
    /// configured provider answers).
    pub model: Option<String>,
    /// The embedding handle the client asked for (informational).
    pub embedding: Option<String>,
    /// Attached blocks, in order (records in [`BLOCKS`]).
    pub block_ids: Vec<String>,
    /// Attached tools, in order (built-in or in [`TOOLS`]).
    pub tool_ids: Vec<String>,
    /// The next message's sequence number.
    pub next_message_seq: u64,
    /// Passages stored.
    pub passage_count: u64,
    /// Short-lived entries with TTLs (a Kelpie extension; shown to the
    /// model while live; expired ones never count toward the capacity).
    #[serde(default = "working_memory")]
    pub working_memory: kelpie_memory::WorkingMemory,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last change, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// Bytes of working memory per agent (keys plus values of live entries).
pub const WORKING_MEMORY_BYTES: usize = 64 * 1024;

/// An empty working memory of [`WORKING_MEMORY_BYTES`].
pub fn working_memory() -> kelpie_memory::WorkingMemory {
    kelpie_memory::WorkingMemory::new(WORKING_MEMORY_BYTES)
}

/// An agent actor's state: the record, or `None` before creation and after
/// deletion.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentSlot {
    /// The agent, while it exists.
    pub agent: Option<AgentRecord>,
    /// Set once the agent is deleted: its id is never reused.
    pub deleted: bool,
}

/// A memory block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredBlock {
    /// `block-<uuid>`.
    pub id: String,
    /// Label, unique within an agent's memory.
    pub label: String,
    /// Contents.
    pub value: String,
    /// Character limit of `value`.
    pub limit: usize,
    /// What the block is for (shown to the model).
    pub description: Option<String>,
    /// Whether the agent's memory tools may edit it.
    pub read_only: bool,
    /// Arbitrary client metadata.
    pub metadata: Option<Value>,
    /// Whether the block was created as a template.
    pub is_template: bool,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last change, Unix milliseconds.
    pub updated_at_ms: i64,
}

impl StoredBlock {
    /// The block as the memory tier sees it.
    pub fn to_memory(&self) -> kelpie_memory::Block {
        kelpie_memory::Block {
            id: self.id.clone(),
            label: self.label.clone(),
            value: self.value.clone(),
            limit: self.limit,
            description: self.description.clone(),
            read_only: self.read_only,
        }
    }
}

/// A custom tool (the built-in ones are in [`crate::tools`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredTool {
    /// `tool-<uuid>`.
    pub id: String,
    /// Function name the model calls.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// Source code, as given.
    pub source_code: Option<String>,
    /// Language of the source.
    pub source_type: Option<String>,
    /// The function's JSON schema (`name`, `description`, `parameters`).
    pub json_schema: Value,
    /// Tags.
    pub tags: Vec<String>,
    /// Truncate returns to this many characters.
    pub return_char_limit: usize,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

/// What a stored message is. One record is one Letta message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MessageBody {
    /// From the user.
    User {
        /// The text.
        text: String,
    },
    /// The model's text that accompanied tool calls.
    Reasoning {
        /// The text.
        text: String,
    },
    /// What the agent said: a `send_message` call, or plain text from a
    /// model that called no tool (`call` is then `None`).
    Assistant {
        /// The text.
        text: String,
        /// The `send_message` call it came from.
        call: Option<StoredCall>,
    },
    /// A call of any other tool.
    ToolCall {
        /// The call.
        call: StoredCall,
    },
    /// A tool's result.
    ToolReturn {
        /// The call's id.
        call_id: String,
        /// The tool.
        name: String,
        /// The (truncated) result.
        text: String,
        /// Whether the tool succeeded.
        ok: bool,
    },
}

/// A tool call as the model made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredCall {
    /// The model's call id.
    pub id: String,
    /// The tool.
    pub name: String,
    /// The arguments, as the model wrote them (JSON text).
    pub arguments: String,
}

/// One message in an agent's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// `message-<uuid>`, derived from the agent and `seq`.
    pub id: String,
    /// Position in the agent's history.
    pub seq: u64,
    /// What it is.
    pub body: MessageBody,
    /// The run (one sent message and its steps) it belongs to.
    pub run_id: Option<String>,
    /// The step of the run that produced it.
    pub step: u32,
    /// Client-supplied offline id, echoed back.
    pub otid: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

/// The largest message sequence number (48 bits, the last UUID group).
pub const MESSAGE_SEQ_MAX: u64 = (1 << 48) - 1;

/// The id of an agent's message `seq`: a UUID whose first two groups are
/// the last (random) 12 hex digits of the agent's id and whose last group is
/// `seq`, so one agent's ids sort like its messages and differ from other
/// agents' ids. Deterministic, so a replayed step makes the same ids.
pub fn message_id(agent_id: &str, seq: u64) -> String {
    let tail = agent_id
        .len()
        .checked_sub(12)
        .and_then(|start| agent_id.get(start..))
        .filter(|tail| tail.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .unwrap_or("000000000000");
    let (first, second) = tail.split_at(8);
    format!("message-{first}-{second}-4000-8000-{:012x}", seq & MESSAGE_SEQ_MAX)
}

/// The sequence number in a message id made by [`message_id`] for
/// `agent_id`, or `None` if it is not one of that agent's ids.
pub fn message_seq(agent_id: &str, id: &str) -> Option<u64> {
    let expected = message_id(agent_id, 0);
    let (head, _) = expected.split_at(expected.len() - 12);
    let tail = id.strip_prefix(head)?;
    if tail.len() != 12 {
        return None;
    }
    u64::from_str_radix(tail, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip_and_reject_other_agents() {
        let agent = "agent-0190a1b2-c3d4-7000-8000-1234abcd5678";
        let id = message_id(agent, 42);
        assert_eq!(id, "message-1234abcd-5678-4000-8000-00000000002a");
        assert_eq!(message_seq(agent, &id), Some(42));
        assert_eq!(message_seq("agent-0190a1b2-c3d4-7000-8000-ffffabcd5678", &id), None);
        assert_eq!(message_seq(agent, "message-nonsense"), None);
    }

    #[test]
    fn message_keys_sort_by_sequence() {
        assert!(message_key(9) < message_key(10));
        assert!(message_key(u64::MAX).as_slice() < MESSAGE_KEYS_END);
    }
}
