//! Letta's built-in tools: their schemas (what the model sees) and ids.
//! Their effects are in [`crate::agent`].

use std::sync::LazyLock;

use serde_json::{json, Value};

use crate::ids::derived_id;
use crate::records::StoredTool;

/// Tool returns longer than this many characters are truncated.
pub const RETURN_CHAR_LIMIT_DEFAULT: usize = 6_000;

/// The tool that speaks to the user.
pub const SEND_MESSAGE: &str = "send_message";
/// Appends to a core memory block.
pub const CORE_MEMORY_APPEND: &str = "core_memory_append";
/// Replaces text in a core memory block.
pub const CORE_MEMORY_REPLACE: &str = "core_memory_replace";
/// Stores a passage in archival memory.
pub const ARCHIVAL_MEMORY_INSERT: &str = "archival_memory_insert";
/// Searches archival memory.
pub const ARCHIVAL_MEMORY_SEARCH: &str = "archival_memory_search";
/// Searches the agent's past messages.
pub const CONVERSATION_SEARCH: &str = "conversation_search";

/// The built-in tools, in the order agents get them.
pub const BUILTIN_NAMES: [&str; 6] = [
    SEND_MESSAGE,
    CORE_MEMORY_APPEND,
    CORE_MEMORY_REPLACE,
    ARCHIVAL_MEMORY_INSERT,
    ARCHIVAL_MEMORY_SEARCH,
    CONVERSATION_SEARCH,
];

/// The built-in tools as records (fixed ids, never stored).
pub static BUILTINS: LazyLock<Vec<StoredTool>> =
    LazyLock::new(|| BUILTIN_NAMES.iter().map(|name| builtin(name)).collect());

/// The built-in tool named `name`.
pub fn builtin_by_name(name: &str) -> Option<&'static StoredTool> {
    BUILTINS.iter().find(|tool| tool.name == name)
}

/// The built-in tool with id `id`.
pub fn builtin_by_id(id: &str) -> Option<&'static StoredTool> {
    BUILTINS.iter().find(|tool| tool.id == id)
}

fn heartbeat() -> Value {
    json!({
        "type": "boolean",
        "description": "Request an immediate heartbeat after the function runs: set true to keep going (chain another step), false to end your turn."
    })
}

fn builtin(name: &str) -> StoredTool {
    let (description, properties, required): (&str, Value, Vec<&str>) = match name {
        SEND_MESSAGE => (
            "Sends a message to the human user.",
            json!({"message": {"type": "string", "description": "Message contents. All unicode (including emojis) are supported."}}),
            vec!["message"],
        ),
        CORE_MEMORY_APPEND => (
            "Append to the contents of core memory.",
            json!({
                "label": {"type": "string", "description": "Section of the memory to be edited."},
                "content": {"type": "string", "description": "Content to write to the memory. All unicode (including emojis) are supported."},
                "request_heartbeat": heartbeat(),
            }),
            vec!["label", "content"],
        ),
        CORE_MEMORY_REPLACE => (
            "Replace the contents of core memory. To delete memories, use an empty string for new_content.",
            json!({
                "label": {"type": "string", "description": "Section of the memory to be edited."},
                "old_content": {"type": "string", "description": "String to replace. Must be an exact match."},
                "new_content": {"type": "string", "description": "Content to write to the memory."},
                "request_heartbeat": heartbeat(),
            }),
            vec!["label", "old_content", "new_content"],
        ),
        ARCHIVAL_MEMORY_INSERT => (
            "Add to archival memory. Make sure to phrase the memory contents such that it can be easily queried later.",
            json!({
                "content": {"type": "string", "description": "Content to write to the memory."},
                "request_heartbeat": heartbeat(),
            }),
            vec!["content"],
        ),
        ARCHIVAL_MEMORY_SEARCH => (
            "Search archival memory using semantic (embedding-based) search.",
            json!({
                "query": {"type": "string", "description": "String to search for."},
                "top_k": {"type": "integer", "description": "How many results to return (default 5)."},
                "request_heartbeat": heartbeat(),
            }),
            vec!["query"],
        ),
        _ => (
            "Search prior conversation history using case-insensitive string matching.",
            json!({
                "query": {"type": "string", "description": "String to search for."},
                "limit": {"type": "integer", "description": "How many results to return (default 10)."},
                "request_heartbeat": heartbeat(),
            }),
            vec!["query"],
        ),
    };
    StoredTool {
        id: derived_id("tool", format!("builtin:{name}").as_bytes()),
        name: name.to_string(),
        description: Some(description.to_string()),
        source_code: None,
        source_type: Some("python".to_string()),
        json_schema: json!({
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        }),
        tags: vec!["letta_core".to_string()],
        return_char_limit: RETURN_CHAR_LIMIT_DEFAULT,
        created_at_ms: 0,
    }
}

/// Truncates a tool return to `limit` characters, saying so.
pub fn truncate_return(text: String, limit: usize) -> String {
    let total = text.chars().count();
    if total <= limit {
        return text;
    }
    let kept: String = text.chars().take(limit).collect();
    format!("{kept}... [truncated: {total} characters, limit {limit}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_have_stable_distinct_ids_and_schemas() {
        let ids: std::collections::BTreeSet<&str> = BUILTINS.iter().map(|tool| tool.id.as_str()).collect();
        assert_eq!(ids.len(), 6);
        let send = builtin_by_name(SEND_MESSAGE).expect("send_message");
        assert_eq!(
            builtin_by_id(&send.id).map(|tool| tool.name.as_str()),
            Some(SEND_MESSAGE)
        );
        assert_eq!(send.json_schema["parameters"]["required"], json!(["message"]));
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_return("héllo".to_string(), 5), "héllo");
        assert_eq!(
            truncate_return("héllo!".to_string(), 5),
            "héllo... [truncated: 6 characters, limit 5]"
        );
    }
}
