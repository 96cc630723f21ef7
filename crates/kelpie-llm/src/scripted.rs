//! A deterministic provider for tests and benchmarks: replays a script, then
//! echoes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::json;

use crate::{ChatRequest, ChatResponse, FinishReason, LlmError, LlmProvider, Role, ToolCall, Usage};

/// The model name of the scripted provider and of its echo replies.
pub const SCRIPTED_MODEL: &str = "scripted";

/// The tool the echo behaviour calls when a request offers it.
pub const SEND_MESSAGE_TOOL: &str = "send_message";

/// One step of a [`ScriptedProvider`]'s script.
#[derive(Clone, Debug, PartialEq)]
pub enum ScriptStep {
    /// Answer this response, as is.
    Reply(ChatResponse),
    /// Fail with this error.
    Fail(LlmError),
}

/// What a [`ScriptedProvider`] does once its script is used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WhenExhausted {
    Echo,
    Fail,
}

/// A deterministic provider: answers the steps of its script in order, then
/// falls back to the echo behaviour (or, when [`strict`](Self::strict), fails
/// with [`LlmError::Scripted`]).
///
/// Echo behaviour, for a request:
/// 1. if the last message is a tool result ([`Role::Tool`]): content `"done"`,
///    no tool calls, `Stop`;
/// 2. else, with `<text>` the content of the last user message (empty when
///    there is none): if the request offers a tool named `send_message`, one
///    tool call `send_message` with arguments `{"message":"Echo: <text>"}`
///    (serde_json, compact, properly escaped) and id `call_<n>`, where `n`
///    counts this provider's echo tool calls from 1, finish `ToolCalls`, no
///    content; otherwise content `"Echo: <text>"`, `Stop`.
///
/// Usage of echo replies: `prompt_tokens` = characters (Unicode scalar
/// values) of all message contents / 4; `completion_tokens` = characters of
/// the reply (the content, or the tool call's arguments) / 4. Model
/// `"scripted"`.
#[derive(Debug)]
pub struct ScriptedProvider {
    steps: Mutex<VecDeque<ScriptStep>>,
    requests: Mutex<Vec<ChatRequest>>,
    calls: AtomicU64,
    when_exhausted: WhenExhausted,
}

impl ScriptedProvider {
    /// A provider replaying `steps`, then echoing.
    pub fn new(steps: Vec<ScriptStep>) -> Self {
        ScriptedProvider {
            steps: Mutex::new(steps.into()),
            requests: Mutex::new(Vec::new()),
            calls: AtomicU64::new(0),
            when_exhausted: WhenExhausted::Echo,
        }
    }

    /// A provider that only echoes.
    pub fn echo() -> Self {
        Self::new(Vec::new())
    }

    /// A provider replaying `steps`, then failing every request with
    /// [`LlmError::Scripted`] (for tests that must not go past the script).
    pub fn strict(steps: Vec<ScriptStep>) -> Self {
        ScriptedProvider {
            when_exhausted: WhenExhausted::Fail,
            ..Self::new(steps)
        }
    }

    /// Appends `step` to the script.
    pub fn push(&self, step: ScriptStep) {
        lock(&self.steps).push_back(step);
    }

    /// How many script steps are left.
    pub fn remaining(&self) -> usize {
        lock(&self.steps).len()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        lock(&self.requests).clone()
    }

    fn answer(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let step = lock(&self.steps).pop_front();
        let answer = match step {
            Some(ScriptStep::Reply(response)) => Ok(response),
            Some(ScriptStep::Fail(error)) => Err(error),
            None => match self.when_exhausted {
                WhenExhausted::Echo => Ok(echo_response(&request, SCRIPTED_MODEL, &self.calls)),
                WhenExhausted::Fail => Err(LlmError::Scripted {
                    reason: format!(
                        "the script is exhausted (request {} has no step)",
                        lock(&self.requests).len() + 1
                    ),
                }),
            },
        };
        lock(&self.requests).push(request);
        answer
    }
}

impl LlmProvider for ScriptedProvider {
    fn name(&self) -> &str {
        "scripted"
    }

    fn model(&self) -> &str {
        SCRIPTED_MODEL
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, LlmError>> {
        futures::future::ready(self.answer(request)).boxed()
    }
}

/// Locks `mutex`, ignoring poisoning (the data stays consistent: every
/// critical section is a single push/pop/clone).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn chars(text: &str) -> u64 {
    u64::try_from(text.chars().count()).unwrap_or(u64::MAX)
}

/// The echo reply to `request` (see [`ScriptedProvider`]); `calls` numbers
/// the tool calls.
pub(crate) fn echo_response(request: &ChatRequest, model: &str, calls: &AtomicU64) -> ChatResponse {
    let prompt_chars: u64 = request
        .messages
        .iter()
        .filter_map(|m| m.content.as_deref())
        .map(chars)
        .sum();
    let usage = |reply: &str| Usage {
        prompt_tokens: prompt_chars / 4,
        completion_tokens: chars(reply) / 4,
    };
    if request.messages.last().map(|m| m.role) == Some(Role::Tool) {
        return ChatResponse {
            content: Some("done".to_owned()),
            tool_calls: Vec::new(),
            usage: usage("done"),
            finish_reason: FinishReason::Stop,
            model: model.to_owned(),
        };
    }
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .and_then(|m| m.content.as_deref())
        .unwrap_or("");
    let reply = format!("Echo: {last_user}");
    if request.tools.iter().any(|t| t.name == SEND_MESSAGE_TOOL) {
        let n = calls.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let arguments = json!({ "message": reply }).to_string();
        ChatResponse {
            content: None,
            usage: usage(&arguments),
            tool_calls: vec![ToolCall {
                id: format!("call_{n}"),
                name: SEND_MESSAGE_TOOL.to_owned(),
                arguments,
            }],
            finish_reason: FinishReason::ToolCalls,
            model: model.to_owned(),
        }
    } else {
        ChatResponse {
            usage: usage(&reply),
            content: Some(reply),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            model: model.to_owned(),
        }
    }
}
