//! Stored records → Letta's wire shapes (see `LETTA_API.md`).

use serde_json::{json, Value};

use crate::records::{AgentRecord, MessageBody, StoredBlock, StoredMessage, StoredTool};
use crate::tools;

/// What the agent's `llm_config` reports: the server's configured model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmInfo {
    /// Model name.
    pub model: String,
    /// Letta's `model_endpoint_type` (`openai`, `anthropic`, ...).
    pub endpoint_type: String,
    /// The API base URL, if any.
    pub endpoint: Option<String>,
    /// Context window in tokens.
    pub context_window: u64,
}

/// Unix milliseconds as an ISO-8601 UTC timestamp
/// (`2025-01-01T00:00:00.000Z`).
pub fn iso(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let millis = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// A block as `BlockResponse` (and as the `Block` inside an agent).
pub fn block(block: &StoredBlock) -> Value {
    json!({
        "id": block.id,
        "label": block.label,
        "value": block.value,
        "limit": block.limit,
        "description": block.description,
        "read_only": block.read_only,
        "metadata": block.metadata.clone().unwrap_or_else(|| json!({})),
        "is_template": block.is_template,
        "tags": [],
        "created_at": iso(block.created_at_ms),
        "updated_at": iso(block.updated_at_ms),
    })
}

/// A tool as Letta's `Tool`.
pub fn tool(tool: &StoredTool) -> Value {
    let tool_type = match tool.name.as_str() {
        _ if tools::builtin_by_id(&tool.id).is_none() => "custom",
        tools::CORE_MEMORY_APPEND | tools::CORE_MEMORY_REPLACE => "letta_memory_core",
        _ => "letta_core",
    };
    json!({
        "id": tool.id,
        "name": tool.name,
        "description": tool.description,
        "tool_type": tool_type,
        "tags": tool.tags,
        "source_type": tool.source_type,
        "source_code": tool.source_code,
        "json_schema": tool.json_schema,
        "return_char_limit": tool.return_char_limit,
        "metadata_": {},
    })
}

/// An agent as Letta's `AgentState`.
pub fn agent(
    agent: &AgentRecord,
    blocks: &[StoredBlock],
    tools: &[StoredTool],
    llm: &LlmInfo,
    embedding_config: Value,
) -> Value {
    let blocks: Vec<Value> = blocks.iter().map(block).collect();
    let tools: Vec<Value> = tools.iter().map(tool).collect();
    json!({
        "id": agent.id,
        "name": agent.name,
        "description": agent.description,
        "agent_type": agent.agent_type,
        "system": agent.system,
        "tags": agent.tags,
        "metadata": agent.metadata.clone().unwrap_or_else(|| json!({})),
        "blocks": blocks,
        "memory": {"blocks": blocks, "agent_type": agent.agent_type},
        "tools": tools,
        "sources": [],
        "tool_rules": [],
        "message_ids": [],
        "model": agent.model,
        "embedding": agent.embedding,
        "llm_config": {
            "model": llm.model,
            "model_endpoint_type": llm.endpoint_type,
            "model_endpoint": llm.endpoint,
            "context_window": llm.context_window,
        },
        "embedding_config": embedding_config,
        "created_at": iso(agent.created_at_ms),
        "updated_at": iso(agent.updated_at_ms),
    })
}

/// How messages are shown (Letta's `use_assistant_message` options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageView {
    /// Show `send_message` calls as `assistant_message` (and hide their
    /// returns); otherwise as tool calls and returns.
    pub use_assistant_message: bool,
    /// Only these `message_type`s (`None`: all).
    pub include_types: Option<Vec<String>>,
}

impl Default for MessageView {
    fn default() -> Self {
        Self {
            use_assistant_message: true,
            include_types: None,
        }
    }
}

/// A stored message as its wire message, or `None` if this view hides it.
pub fn message(message: &StoredMessage, view: &MessageView) -> Option<Value> {
    let (message_type, fields) = match &message.body {
        MessageBody::User { text } => ("user_message", json!({"content": text})),
        MessageBody::Reasoning { text } => (
            "reasoning_message",
            json!({"reasoning": text, "source": "non_reasoner_model"}),
        ),
        MessageBody::Assistant { text, call } => match (call, view.use_assistant_message) {
            (Some(call), false) => ("tool_call_message", tool_call(call)),
            _ => ("assistant_message", json!({"content": text})),
        },
        MessageBody::ToolCall { call } => ("tool_call_message", tool_call(call)),
        MessageBody::ToolReturn {
            call_id,
            name,
            text,
            ok,
        } => {
            if view.use_assistant_message && name == tools::SEND_MESSAGE {
                return None;
            }
            (
                "tool_return_message",
                json!({
                    "tool_return": text,
                    "status": if *ok { "success" } else { "error" },
                    "tool_call_id": call_id,
                    "name": name,
                    "stdout": null,
                    "stderr": null,
                }),
            )
        }
    };
    if let Some(types) = &view.include_types {
        if !types.iter().any(|wanted| wanted == message_type) {
            return None;
        }
    }
    let mut value = json!({
        "id": message.id,
        "message_type": message_type,
        "date": iso(message.created_at_ms),
        "run_id": message.run_id,
        "otid": message.otid,
        "seq_id": message.seq,
    });
    if let (Value::Object(map), Value::Object(extra)) = (&mut value, fields) {
        map.extend(extra);
    }
    Some(value)
}

fn tool_call(call: &crate::records::StoredCall) -> Value {
    let call = json!({"name": call.name, "arguments": call.arguments, "tool_call_id": call.id});
    json!({"tool_call": call, "tool_calls": [call]})
}

/// A passage as Letta's `Passage`.
pub fn passage(passage: &kelpie_memory::Passage, agent_id: &str) -> Value {
    json!({
        "id": passage.id,
        "text": passage.text,
        "agent_id": agent_id,
        "tags": passage.tags,
        "metadata": {},
        "created_at": iso(i64::try_from(passage.created_at_ms).unwrap_or(i64::MAX)),
    })
}

/// A passage as one result of an archival search.
pub fn search_result(passage: &kelpie_memory::Passage, score: f32) -> Value {
    json!({
        "id": passage.id,
        "content": passage.text,
        "timestamp": iso(i64::try_from(passage.created_at_ms).unwrap_or(i64::MAX)),
        "tags": passage.tags,
        "score": score,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_timestamps_are_exact() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_735_689_600_000), "2025-01-01T00:00:00.000Z");
        assert_eq!(iso(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn send_message_is_an_assistant_message_and_its_return_is_hidden() {
        let call = crate::records::StoredCall {
            id: "call_1".to_string(),
            name: "send_message".to_string(),
            arguments: "{\"message\":\"hi\"}".to_string(),
        };
        let said = StoredMessage {
            id: "message-1".to_string(),
            seq: 1,
            body: MessageBody::Assistant {
                text: "hi".to_string(),
                call: Some(call.clone()),
            },
            run_id: None,
            step: 0,
            otid: None,
            created_at_ms: 0,
        };
        let shown = message(&said, &MessageView::default()).expect("shown");
        assert_eq!(shown["message_type"], "assistant_message");
        assert_eq!(shown["content"], "hi");
        let raw = MessageView {
            use_assistant_message: false,
            include_types: None,
        };
        let shown = message(&said, &raw).expect("shown");
        assert_eq!(shown["message_type"], "tool_call_message");
        assert_eq!(shown["tool_call"]["arguments"], "{\"message\":\"hi\"}");
        let returned = StoredMessage {
            body: MessageBody::ToolReturn {
                call_id: "call_1".to_string(),
                name: "send_message".to_string(),
                text: "Sent message successfully.".to_string(),
                ok: true,
            },
            ..said
        };
        assert_eq!(message(&returned, &MessageView::default()), None);
        assert_eq!(message(&returned, &raw).expect("shown")["status"], "success");
    }
}
