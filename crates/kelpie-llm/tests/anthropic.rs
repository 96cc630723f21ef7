//! The Anthropic provider against the fake Anthropic server, over real HTTP.
#![cfg(feature = "fake")]

use std::time::Duration;

use kelpie_llm::fake::{FakeAnthropic, FakeReply};
use kelpie_llm::{
    AnthropicConfig, AnthropicProvider, ChatMessage, ChatRequest, ChatResponse, FinishReason, LlmError, LlmProvider,
    ToolCall, ToolSpec, Usage, ANTHROPIC_VERSION,
};
use serde_json::json;

fn provider(base_url: String) -> AnthropicProvider {
    let mut config = AnthropicConfig::new("sk-ant-test", "claude-test").with_base_url(base_url);
    config.timeout = Duration::from_secs(10);
    AnthropicProvider::new(config).expect("valid config")
}

fn hello() -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::user("hello")])
}

#[tokio::test]
async fn plain_reply_is_returned_exactly() {
    let scripted = ChatResponse {
        content: Some("Hello there".into()),
        tool_calls: vec![],
        usage: Usage {
            prompt_tokens: 20,
            completion_tokens: 4,
        },
        finish_reason: FinishReason::Stop,
        model: "claude-test-20250101".into(),
    };
    let fake = FakeAnthropic::start(vec![scripted.clone().into()]).unwrap();
    let llm = provider(fake.base_url());
    assert_eq!(llm.name(), "anthropic");
    assert_eq!(llm.model(), "claude-test");
    assert_eq!(llm.complete(hello()).await.unwrap(), scripted);
}

#[tokio::test]
async fn tool_use_reply_is_parsed_exactly() {
    let calls = vec![
        ToolCall::new("toolu_1", "get_weather", r#"{"city":"Paris"}"#),
        ToolCall::new("toolu_2", "get_time", "{}"),
    ];
    let mut scripted = ChatResponse::tool_calls(calls.clone());
    scripted.content = Some("Let me check.".into());
    let fake = FakeAnthropic::start(vec![scripted.clone().into()]).unwrap();
    let answer = provider(fake.base_url()).complete(hello()).await.unwrap();
    assert_eq!(answer, scripted);
    assert_eq!(answer.tool_calls, calls);
    assert_eq!(answer.finish_reason, FinishReason::ToolCalls);
}

#[tokio::test]
async fn request_has_the_exact_anthropic_shape() {
    let fake = FakeAnthropic::start(vec![ChatResponse::text("ok").into()]).unwrap();
    let request = ChatRequest {
        messages: vec![
            ChatMessage::system("You are helpful."),
            ChatMessage::system("Be brief."),
            ChatMessage::user("Weather and time in Paris?"),
            ChatMessage::assistant(
                Some("Checking.".into()),
                vec![
                    ToolCall::new("toolu_1", "get_weather", r#"{"city":"Paris"}"#),
                    ToolCall::new("toolu_2", "get_time", ""),
                    ToolCall::new("toolu_3", "broken", "{not json"),
                ],
            ),
            ChatMessage::tool("toolu_1", "get_weather", "sunny"),
            ChatMessage::tool("toolu_2", "get_time", "noon"),
            ChatMessage::tool("toolu_3", "broken", "error: bad arguments"),
            ChatMessage::user("Thanks!"),
        ],
        tools: vec![ToolSpec::new(
            "get_weather",
            "Current weather",
            json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        )],
        max_tokens: None,
        temperature: Some(0.25),
    };
    provider(fake.base_url()).complete(request).await.unwrap();
    assert_eq!(
        fake.requests(),
        vec![json!({
            "model": "claude-test",
            "max_tokens": 4096,
            "system": "You are helpful.\n\nBe brief.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather and time in Paris?"}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
                    {"type": "tool_use", "id": "toolu_3", "name": "broken", "input": {"_raw": "{not json"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "noon"},
                    {"type": "tool_result", "tool_use_id": "toolu_3", "content": "error: bad arguments"},
                    {"type": "text", "text": "Thanks!"},
                ]},
            ],
            "tools": [{
                "name": "get_weather",
                "description": "Current weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }],
            "temperature": 0.25,
        })]
    );
    let recorded = fake.recorded();
    assert_eq!(recorded[0].path, "/v1/messages");
    assert_eq!(
        recorded[0].headers.get("x-api-key").map(String::as_str),
        Some("sk-ant-test")
    );
    assert_eq!(
        recorded[0].headers.get("anthropic-version").map(String::as_str),
        Some(ANTHROPIC_VERSION)
    );
    assert_eq!(recorded[0].headers.get("authorization"), None);
}

#[tokio::test]
async fn request_max_tokens_overrides_the_default_and_no_tools_means_no_tools_field() {
    let fake = FakeAnthropic::echo().unwrap();
    let mut request = hello();
    request.max_tokens = Some(10);
    provider(fake.base_url()).complete(request).await.unwrap();
    assert_eq!(
        fake.requests(),
        vec![json!({
            "model": "claude-test",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
        })]
    );
}

#[tokio::test]
async fn http_errors_map_to_http_with_retryability() {
    let fake = FakeAnthropic::start(vec![
        FakeReply::status(500),
        FakeReply::status(529),
        FakeReply::status(429),
        FakeReply::Status {
            status: 400,
            body: "bad".into(),
        },
    ])
    .unwrap();
    let llm = provider(fake.base_url());
    for (status, retryable) in [(500, true), (529, true), (429, true), (400, false)] {
        let err = llm.complete(hello()).await.unwrap_err();
        assert!(
            matches!(err, LlmError::Http { status: s, .. } if s == status),
            "{err:?}"
        );
        assert_eq!(err.is_retryable(), retryable, "{status}");
    }
}

#[tokio::test]
async fn garbage_body_is_a_decode_error() {
    let fake = FakeAnthropic::start(vec![
        FakeReply::Raw("garbage".into()),
        FakeReply::Raw(r#"{"type": "message"}"#.into()),
    ])
    .unwrap();
    let llm = provider(fake.base_url());
    let err = llm.complete(hello()).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::Decode { reason } if reason.contains("is not JSON")),
        "{err:?}"
    );
    let err = llm.complete(hello()).await.unwrap_err();
    assert_eq!(
        err,
        LlmError::Decode {
            reason: "the answer has no `content` array".into()
        }
    );
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = provider(format!("http://{addr}")).complete(hello()).await.unwrap_err();
    assert!(matches!(err, LlmError::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn text_blocks_are_joined_and_other_blocks_ignored() {
    let body = json!({
        "type": "message", "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "x"},
            {"type": "text", "text": "Hello, "},
            {"type": "text", "text": "world"},
        ],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 2},
    });
    let fake = FakeAnthropic::start(vec![FakeReply::Raw(body.to_string())]).unwrap();
    let answer = provider(fake.base_url()).complete(hello()).await.unwrap();
    assert_eq!(
        answer,
        ChatResponse {
            content: Some("Hello, world".into()),
            tool_calls: vec![],
            usage: Usage {
                prompt_tokens: 105,
                completion_tokens: 2
            },
            finish_reason: FinishReason::Length,
            model: "claude-test".into(),
        }
    );
}

#[tokio::test]
async fn echo_over_http_calls_send_message_then_says_done() {
    let fake = FakeAnthropic::echo().unwrap();
    let llm = provider(fake.base_url());
    let tool = ToolSpec::new("send_message", "Send", json!({"type": "object"}));
    let mut messages = vec![ChatMessage::user("hi there")];
    let first = llm
        .complete(ChatRequest::new(messages.clone()).with_tools(vec![tool.clone()]))
        .await
        .unwrap();
    assert_eq!(first.content, None);
    assert_eq!(
        first.tool_calls,
        vec![ToolCall::new(
            "call_1",
            "send_message",
            r#"{"message":"Echo: hi there"}"#
        )]
    );
    assert_eq!(first.finish_reason, FinishReason::ToolCalls);
    assert_eq!(first.model, "claude-test");
    messages.push(ChatMessage::from_response(&first));
    messages.push(ChatMessage::tool("call_1", "send_message", "sent"));
    let second = llm
        .complete(ChatRequest::new(messages).with_tools(vec![tool]))
        .await
        .unwrap();
    assert_eq!(second.content.as_deref(), Some("done"));
    assert_eq!(second.finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn the_fake_rejects_a_request_without_api_key_or_alternation() {
    let fake = FakeAnthropic::echo().unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/v1/messages", fake.base_url());
    let body = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}]});
    let no_key = client
        .post(&url)
        .header("anthropic-version", ANTHROPIC_VERSION)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status().as_u16(), 401);
    let twice = json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"}]});
    let answer = client
        .post(&url)
        .header("x-api-key", "k")
        .header("anthropic-version", ANTHROPIC_VERSION)
        .json(&twice)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let text = answer.text().await.unwrap();
    assert!(text.contains("roles must alternate"), "{text}");
}

#[test]
fn bad_settings_are_not_configured_errors() {
    let err = |key: &str, model: &str| AnthropicProvider::new(AnthropicConfig::new(key, model)).unwrap_err();
    assert_eq!(
        err("", "m"),
        LlmError::NotConfigured {
            what: "Anthropic api_key is empty: set the API key (e.g. from ANTHROPIC_API_KEY)".into()
        }
    );
    assert!(matches!(err("k", ""), LlmError::NotConfigured { .. }));
    let mut zero = AnthropicConfig::new("k", "m");
    zero.max_tokens = 0;
    assert!(matches!(
        AnthropicProvider::new(zero),
        Err(LlmError::NotConfigured { .. })
    ));
    let ok = AnthropicProvider::new(AnthropicConfig::new("k", "m")).unwrap();
    assert_eq!(ok.url(), "https://api.anthropic.com/v1/messages");
    assert!(!format!("{ok:?}").contains("\"k\""));
}
