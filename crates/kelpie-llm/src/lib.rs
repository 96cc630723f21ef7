//! LLM providers for Kelpie agents.
//!
//! One provider-neutral conversation model ([`ChatMessage`], [`ChatRequest`],
//! [`ChatResponse`]) and one trait, [`LlmProvider`], implemented by:
//! - [`OpenAiProvider`]: the OpenAI chat-completions API, also spoken by
//!   llama.cpp, vLLM, Ollama and most local servers;
//! - [`AnthropicProvider`]: Anthropic's messages API;
//! - [`ScriptedProvider`]: a deterministic script-then-echo provider for tests
//!   and benchmarks.
//!
//! Embeddings: [`EmbeddingProvider`], implemented by [`OpenAiEmbeddings`]
//! and the local [`HashingEmbeddings`].
//!
//! Every failure is an [`LlmError`]; [`LlmError::is_retryable`] tells
//! whether trying again may help. With the `fake` feature, [`fake`] holds
//! fake OpenAI and Anthropic HTTP servers (and the `fake-llm` binary serves
//! one).

mod anthropic;
mod embeddings;
mod error;
mod http;
mod openai;
mod scripted;
mod types;

#[cfg(feature = "fake")]
pub mod fake;

use futures::future::BoxFuture;

pub use anthropic::{AnthropicConfig, AnthropicProvider, ANTHROPIC_VERSION};
pub use embeddings::{EmbeddingProvider, HashingEmbeddings, OpenAiEmbeddings};
pub use error::{LlmError, MAX_ERROR_BODY_BYTES};
pub use openai::{OpenAiConfig, OpenAiProvider};
pub use scripted::{ScriptStep, ScriptedProvider, SCRIPTED_MODEL, SEND_MESSAGE_TOOL};
pub use types::{ChatMessage, ChatRequest, ChatResponse, FinishReason, Role, ToolCall, ToolSpec, Usage};

/// A chat model behind some API.
pub trait LlmProvider: Send + Sync {
    /// The provider kind: `"openai"`, `"anthropic"` or `"scripted"`.
    fn name(&self) -> &str;

    /// The model requests are sent to.
    fn model(&self) -> &str;

    /// One completion of `request`. Never retries by itself: see
    /// [`LlmError::is_retryable`].
    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, LlmError>>;
}
