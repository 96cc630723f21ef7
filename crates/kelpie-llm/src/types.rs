//! Provider-neutral chat types: what the agent server builds and what every
//! provider returns.

use serde::{Deserialize, Serialize};

/// Who wrote a [`ChatMessage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model (OpenAI `system`, Anthropic top-level `system`).
    System,
    /// The human (or the agent's caller).
    User,
    /// The model.
    Assistant,
    /// The result of a tool call the model asked for.
    Tool,
}

impl Role {
    /// The lowercase wire name (`"system"`, `"user"`, `"assistant"`, `"tool"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A call of a tool the model asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id of the call; the tool result refers to it.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as raw JSON text, exactly as the model produced it (it
    /// may be invalid JSON: models make mistakes).
    pub arguments: String,
}

impl ToolCall {
    /// A tool call.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text, if any (an assistant message that only calls tools has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The tool calls of an assistant message (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For a [`Role::Tool`] message: the tool's name; for others an optional
    /// participant name (sent to OpenAI for user/system/assistant messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::System,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::User,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// An assistant message: text and/or tool calls.
    pub fn assistant(content: Option<String>, tool_calls: Vec<ToolCall>) -> Self {
        ChatMessage {
            role: Role::Assistant,
            content,
            tool_calls,
            tool_call_id: None,
            name: None,
        }
    }

    /// The result of the tool call `tool_call_id` of tool `name`.
    pub fn tool(tool_call_id: impl Into<String>, name: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Tool,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: Some(tool_call_id.into()),
            name: Some(name.into()),
        }
    }

    /// The assistant message that records `response` in the conversation
    /// (its content and tool calls).
    pub fn from_response(response: &ChatResponse) -> Self {
        ChatMessage::assistant(response.content.clone(), response.tool_calls.clone())
    }
}

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The tool's name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// Its arguments, as a JSON Schema object.
    pub parameters: serde_json::Value,
}

impl ToolSpec {
    /// A tool.
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: serde_json::Value) -> Self {
        ToolSpec {
            name: name.into(),
            description: description.into(),
            parameters,
        }
    }
}

/// One completion request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// The tools offered (none: the model can only answer with text).
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Cap on the completion's tokens (Anthropic: the provider's configured
    /// `max_tokens` when `None`, since Anthropic requires one).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature (the provider's default when `None`).
    #[serde(default)]
    pub temperature: Option<f32>,
}

impl ChatRequest {
    /// A request with these messages, no tools and provider defaults.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        ChatRequest {
            messages,
            ..ChatRequest::default()
        }
    }

    /// The same request offering `tools`.
    pub fn with_tools(mut self, tools: Vec<ToolSpec>) -> Self {
        self.tools = tools;
        self
    }
}

/// Token accounting of one completion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt (Anthropic: `input_tokens`).
    pub prompt_tokens: u64,
    /// Tokens of the completion (Anthropic: `output_tokens`).
    pub completion_tokens: u64,
}

impl Usage {
    /// Prompt plus completion tokens (saturating).
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// Why the model stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum FinishReason {
    /// It finished its answer (OpenAI `stop`; Anthropic `end_turn`, `stop_sequence`).
    Stop,
    /// It wants tool calls run (OpenAI `tool_calls`/`function_call`; Anthropic `tool_use`).
    ToolCalls,
    /// It hit the token cap (OpenAI `length`; Anthropic `max_tokens`).
    Length,
    /// Anything else, as the provider named it (e.g. `content_filter`).
    Other(String),
}

impl FinishReason {
    /// The OpenAI-style name: `stop`, `tool_calls`, `length` or the other reason.
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::Length => "length",
            FinishReason::Other(other) => other,
        }
    }
}

impl From<String> for FinishReason {
    fn from(value: String) -> Self {
        match value.as_str() {
            "stop" => FinishReason::Stop,
            "tool_calls" => FinishReason::ToolCalls,
            "length" => FinishReason::Length,
            _ => FinishReason::Other(value),
        }
    }
}

impl From<FinishReason> for String {
    fn from(value: FinishReason) -> Self {
        value.as_str().to_owned()
    }
}

/// What the model answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The text, if any.
    pub content: Option<String>,
    /// The tool calls it asks for, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Token accounting (zeros when the provider did not report it).
    pub usage: Usage,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// The model that answered, as the provider named it.
    pub model: String,
}

impl ChatResponse {
    /// A plain text answer (`Stop`, zero usage, model `"scripted"`): handy for scripts.
    pub fn text(content: impl Into<String>) -> Self {
        ChatResponse {
            content: Some(content.into()),
            tool_calls: Vec::new(),
            usage: Usage::default(),
            finish_reason: FinishReason::Stop,
            model: crate::scripted::SCRIPTED_MODEL.to_owned(),
        }
    }

    /// An answer made of tool calls (`ToolCalls`, no text, zero usage, model
    /// `"scripted"`): handy for scripts.
    pub fn tool_calls(tool_calls: Vec<ToolCall>) -> Self {
        ChatResponse {
            content: None,
            tool_calls,
            usage: Usage::default(),
            finish_reason: FinishReason::ToolCalls,
            model: crate::scripted::SCRIPTED_MODEL.to_owned(),
        }
    }
}
