//! Anthropic's messages API.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Map, Value};

use crate::http;
use crate::{ChatMessage, ChatRequest, ChatResponse, FinishReason, LlmError, LlmProvider, Role, ToolCall, Usage};

/// The `anthropic-version` header sent with every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Settings of an [`AnthropicProvider`].
#[derive(Clone)]
pub struct AnthropicConfig {
    /// The API root, without `/v1` (requests go to `{base_url}/v1/messages`).
    /// Default [`AnthropicConfig::DEFAULT_BASE_URL`].
    pub base_url: String,
    /// Sent as `x-api-key`; required.
    pub api_key: String,
    /// The model name, e.g. `claude-sonnet-4-5`.
    pub model: String,
    /// `max_tokens` of requests that set none (Anthropic requires one).
    /// Default [`AnthropicConfig::DEFAULT_MAX_TOKENS`].
    pub max_tokens: u32,
    /// Limit on a whole exchange (connect, send, wait, read).
    pub timeout: Duration,
}

impl AnthropicConfig {
    /// The public Anthropic API root.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com";
    /// The default [`max_tokens`](Self::max_tokens).
    pub const DEFAULT_MAX_TOKENS: u32 = 4096;
    /// The default [`timeout`](Self::timeout).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

    /// Settings for `model` with `api_key` and the defaults for the rest.
    pub fn new(api_key: impl Into<String>, model: impl Into<String>) -> Self {
        AnthropicConfig {
            base_url: Self::DEFAULT_BASE_URL.to_owned(),
            api_key: api_key.into(),
            model: model.into(),
            max_tokens: Self::DEFAULT_MAX_TOKENS,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The same settings with another API root.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }
}

impl fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &http::redact(Some(&self.api_key)))
            .field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A provider speaking Anthropic's messages API: `POST {base_url}/v1/messages`.
///
/// Mapping of the neutral types:
/// - system messages are joined (blank line between) into the top-level `system`;
/// - an assistant message becomes a `text` block (when it has non-empty text)
///   followed by one `tool_use` block per tool call, whose `input` is the
///   call's arguments parsed as JSON. Arguments that are empty become `{}`;
///   arguments that are not a JSON object (invalid JSON, or an array, ...)
///   are sent as `{"_raw": "<the raw text>"}` rather than failing the request;
/// - a tool message becomes a `tool_result` block in a user message;
/// - consecutive messages that map to the same role (e.g. several tool
///   results, or tool results then a user message) are merged into one
///   message, because Anthropic requires user and assistant to alternate;
/// - empty text blocks are left out (Anthropic rejects them).
pub struct AnthropicProvider {
    client: reqwest::Client,
    url: String,
    api_key: String,
    model: String,
    max_tokens: u32,
    timeout: Duration,
}

impl fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("url", &self.url)
            .field("api_key", &http::redact(Some(&self.api_key)))
            .field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AnthropicProvider {
    /// A provider with `config`; `NotConfigured` when the key or the model is
    /// empty, the base URL is not an http(s) URL, or `max_tokens` is 0.
    pub fn new(config: AnthropicConfig) -> Result<Self, LlmError> {
        let base = http::normalise_base_url(&config.base_url, "Anthropic base_url")?;
        if config.api_key.trim().is_empty() {
            return Err(LlmError::not_configured(
                "Anthropic api_key is empty: set the API key (e.g. from ANTHROPIC_API_KEY)",
            ));
        }
        if config.model.trim().is_empty() {
            return Err(LlmError::not_configured(
                "Anthropic model is empty: set the model name (e.g. claude-sonnet-4-5)",
            ));
        }
        if config.max_tokens == 0 {
            return Err(LlmError::not_configured(
                "Anthropic max_tokens is 0: set it to at least 1 (default 4096)",
            ));
        }
        Ok(AnthropicProvider {
            client: http::client(config.timeout)?,
            url: format!("{base}/v1/messages"),
            api_key: config.api_key,
            model: config.model,
            max_tokens: config.max_tokens,
            timeout: config.timeout,
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn complete_inner(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = request_body(&self.model, self.max_tokens, &request);
        let builder = self
            .client
            .post(&self.url)
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&body);
        tracing::debug!(url = %self.url, model = %self.model, messages = request.messages.len(), "anthropic message");
        let answer = http::send_json(builder, &self.url, self.timeout).await?;
        parse_response(&answer, &self.model)
    }
}

impl LlmProvider for AnthropicProvider {
    fn name(&self) -> &str {
        "anthropic"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, LlmError>> {
        self.complete_inner(request).boxed()
    }
}

/// The tool-use `input` for raw `arguments` (see [`AnthropicProvider`]).
pub(crate) fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => json!({ "_raw": arguments }),
    }
}

/// The Anthropic wire form of `request`.
pub(crate) fn request_body(model: &str, default_max_tokens: u32, request: &ChatRequest) -> Value {
    let mut system = Vec::new();
    // (role, blocks) of the messages so far, same-role neighbours merged.
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let (role, blocks) = match message.role {
            Role::System => {
                if let Some(text) = message.content.as_deref().filter(|t| !t.is_empty()) {
                    system.push(text);
                }
                continue;
            }
            Role::User => ("user", text_blocks(message)),
            Role::Assistant => {
                let mut blocks = text_blocks(message);
                blocks.extend(message.tool_calls.iter().map(|call| {
                    json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": tool_input(&call.arguments),
                    })
                }));
                ("assistant", blocks)
            }
            Role::Tool => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id.as_deref().unwrap_or(""),
                    "content": message.content.as_deref().unwrap_or(""),
                })],
            ),
        };
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "max_tokens".into(),
        json!(request.max_tokens.unwrap_or(default_max_tokens)),
    );
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert(
        "messages".into(),
        Value::Array(
            messages
                .into_iter()
                .map(|(role, content)| json!({ "role": role, "content": content }))
                .collect(),
        ),
    );
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.parameters,
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    Value::Object(body)
}

fn text_blocks(message: &ChatMessage) -> Vec<Value> {
    match message.content.as_deref() {
        Some(text) if !text.is_empty() => vec![json!({ "type": "text", "text": text })],
        _ => Vec::new(),
    }
}

/// The [`ChatResponse`] in an Anthropic messages answer. `model` stands in
/// when the answer names none.
pub(crate) fn parse_response(answer: &Value, model: &str) -> Result<ChatResponse, LlmError> {
    let blocks = answer
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| LlmError::decode("the answer has no `content` array"))?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let part = block
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| LlmError::decode(format!("content block {index} (text) has no `text`")))?;
                text.get_or_insert_with(String::new).push_str(part);
            }
            Some("tool_use") => {
                let field = |name: &str| {
                    block
                        .get(name)
                        .and_then(Value::as_str)
                        .ok_or_else(|| LlmError::decode(format!("content block {index} (tool_use) has no `{name}`")))
                };
                let arguments = match block.get("input") {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(input) => input.to_string(),
                };
                tool_calls.push(ToolCall {
                    id: field("id")?.to_owned(),
                    name: field("name")?.to_owned(),
                    arguments,
                });
            }
            // thinking, redacted_thinking, server tool blocks...: not ours.
            _ => {}
        }
    }
    let finish_reason = match answer.get("stop_reason").and_then(Value::as_str) {
        Some("end_turn") | Some("stop_sequence") => FinishReason::Stop,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("max_tokens") => FinishReason::Length,
        Some(other) => FinishReason::Other(other.to_owned()),
        None if !tool_calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    let usage = answer.get("usage");
    let field = |name: &str| usage.and_then(|u| u.get(name)).and_then(Value::as_u64).unwrap_or(0);
    Ok(ChatResponse {
        content: text,
        tool_calls,
        usage: Usage {
            // Cached prompt tokens are reported apart from `input_tokens`.
            prompt_tokens: field("input_tokens")
                .saturating_add(field("cache_creation_input_tokens"))
                .saturating_add(field("cache_read_input_tokens")),
            completion_tokens: field("output_tokens"),
        },
        finish_reason,
        model: answer
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .unwrap_or(model)
            .to_owned(),
    })
}
