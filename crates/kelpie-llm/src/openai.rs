//! OpenAI-compatible chat completions (OpenAI, llama.cpp, vLLM, Ollama, ...).

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Map, Value};

use crate::http;
use crate::{ChatMessage, ChatRequest, ChatResponse, FinishReason, LlmError, LlmProvider, Role, ToolCall, Usage};

/// Settings of an [`OpenAiProvider`].
#[derive(Clone)]
pub struct OpenAiConfig {
    /// The API root, ending in `/v1`: `https://api.openai.com/v1`, or a local
    /// server such as `http://127.0.0.1:8080/v1`. Trailing slashes are ignored.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>` when set (local servers usually
    /// need none).
    pub api_key: Option<String>,
    /// The model name sent with every request, e.g. `gpt-4o-mini`.
    pub model: String,
    /// Limit on a whole exchange (connect, send, wait, read).
    pub timeout: Duration,
}

impl OpenAiConfig {
    /// The public OpenAI API root.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";
    /// The default [`timeout`](Self::timeout).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

    /// Settings for `model` at `base_url`, without a key, with the default timeout.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The same settings with `api_key`.
    pub fn with_api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(api_key.into());
        self
    }
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &http::redact(self.api_key.as_deref()))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A provider speaking the OpenAI chat-completions API:
/// `POST {base_url}/chat/completions`.
pub struct OpenAiProvider {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    timeout: Duration,
}

impl fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("url", &self.url)
            .field("api_key", &http::redact(self.api_key.as_deref()))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OpenAiProvider {
    /// A provider with `config`; `NotConfigured` when the base URL is not an
    /// http(s) URL or the model is empty. An empty key counts as no key.
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        let base = http::normalise_base_url(&config.base_url, "OpenAI base_url")?;
        if config.model.trim().is_empty() {
            return Err(LlmError::not_configured(
                "OpenAI model is empty: set the model name (e.g. gpt-4o-mini)",
            ));
        }
        Ok(OpenAiProvider {
            client: http::client(config.timeout)?,
            url: format!("{base}/chat/completions"),
            api_key: config.api_key.filter(|key| !key.is_empty()),
            model: config.model,
            timeout: config.timeout,
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn complete_inner(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = request_body(&self.model, &request);
        let mut builder = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        tracing::debug!(url = %self.url, model = %self.model, messages = request.messages.len(), "chat completion");
        let answer = http::send_json(builder, &self.url, self.timeout).await?;
        parse_response(&answer, &self.model)
    }
}

impl LlmProvider for OpenAiProvider {
    fn name(&self) -> &str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, LlmError>> {
        self.complete_inner(request).boxed()
    }
}

/// The OpenAI wire form of `request` for `model`.
pub(crate) fn request_body(model: &str, request: &ChatRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "messages".into(),
        Value::Array(request.messages.iter().map(message_json).collect()),
    );
    // llama.cpp and vLLM reject `tools: []`, so an empty list is omitted.
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    }
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        body.insert("tool_choice".into(), json!("auto"));
    }
    if let Some(max_tokens) = request.max_tokens {
        body.insert("max_tokens".into(), json!(max_tokens));
    }
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    Value::Object(body)
}

fn message_json(message: &ChatMessage) -> Value {
    let mut out = Map::new();
    out.insert("role".into(), json!(message.role.as_str()));
    match message.role {
        Role::Tool => {
            out.insert("content".into(), json!(message.content.as_deref().unwrap_or("")));
            out.insert(
                "tool_call_id".into(),
                json!(message.tool_call_id.as_deref().unwrap_or("")),
            );
        }
        Role::Assistant => {
            let content = match &message.content {
                Some(text) => json!(text),
                // OpenAI accepts a null content only next to tool calls.
                None if !message.tool_calls.is_empty() => Value::Null,
                None => json!(""),
            };
            out.insert("content".into(), content);
            if !message.tool_calls.is_empty() {
                let calls = message
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
                out.insert("tool_calls".into(), Value::Array(calls));
            }
            if let Some(name) = &message.name {
                out.insert("name".into(), json!(name));
            }
        }
        Role::System | Role::User => {
            out.insert("content".into(), json!(message.content.as_deref().unwrap_or("")));
            if let Some(name) = &message.name {
                out.insert("name".into(), json!(name));
            }
        }
    }
    Value::Object(out)
}

/// The [`ChatResponse`] in an OpenAI chat-completion answer. `model` stands in
/// when the answer names none.
pub(crate) fn parse_response(answer: &Value, model: &str) -> Result<ChatResponse, LlmError> {
    let choice = answer
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .ok_or_else(|| LlmError::decode("the answer has no `choices[0]`"))?;
    let message = choice
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| LlmError::decode("`choices[0]` has no `message` object"))?;
    let content = text_content(message.get("content"))?;
    let tool_calls = match message.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => calls
            .iter()
            .enumerate()
            .map(|(index, call)| parse_tool_call(index, call))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(LlmError::decode(format!(
                "`choices[0].message.tool_calls` is not an array: {other}"
            )))
        }
    };
    let finish_reason = match choice.get("finish_reason").and_then(Value::as_str) {
        Some("stop") => FinishReason::Stop,
        Some("tool_calls") | Some("function_call") => FinishReason::ToolCalls,
        Some("length") => FinishReason::Length,
        Some(other) => FinishReason::Other(other.to_owned()),
        None if !tool_calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    Ok(ChatResponse {
        content,
        tool_calls,
        usage: parse_usage(answer.get("usage")),
        finish_reason,
        model: answer
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .unwrap_or(model)
            .to_owned(),
    })
}

/// `content` as a string: null/absent is `None`; an array of parts (some
/// servers) is the concatenation of its text parts.
fn text_content(content: Option<&Value>) -> Result<Option<String>, LlmError> {
    match content {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Array(parts)) => Ok(Some(
            parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect(),
        )),
        Some(other) => Err(LlmError::decode(format!(
            "`choices[0].message.content` is neither text nor null: {other}"
        ))),
    }
}

fn parse_tool_call(index: usize, call: &Value) -> Result<ToolCall, LlmError> {
    let function = call
        .get("function")
        .filter(|f| f.is_object())
        .ok_or_else(|| LlmError::decode(format!("tool call {index} has no `function` object")))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| LlmError::decode(format!("tool call {index} has no `function.name`")))?;
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(raw)) => raw.clone(),
        // Some servers send the arguments as a JSON object.
        Some(other) => other.to_string(),
    };
    // Some servers omit the id; the tool result still needs one to refer to.
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("call_{index}"));
    Ok(ToolCall {
        id,
        name: name.to_owned(),
        arguments,
    })
}

/// `usage`, with zeros for whatever is missing (llama.cpp sometimes omits it).
fn parse_usage(usage: Option<&Value>) -> Usage {
    let field = |name: &str| usage.and_then(|u| u.get(name)).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        prompt_tokens: field("prompt_tokens"),
        completion_tokens: field("completion_tokens"),
    }
}
