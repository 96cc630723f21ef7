//! The OpenAI provider against the fake OpenAI server, over real HTTP.
#![cfg(feature = "fake")]

use std::time::Duration;

use kelpie_llm::fake::{FakeOpenAi, FakeReply};
use kelpie_llm::{
    ChatMessage, ChatRequest, ChatResponse, FinishReason, LlmError, LlmProvider, OpenAiConfig, OpenAiProvider,
    ToolCall, ToolSpec, Usage, MAX_ERROR_BODY_BYTES,
};
use serde_json::json;

fn provider(base_url: String, api_key: Option<&str>) -> OpenAiProvider {
    let mut config = OpenAiConfig::new(base_url, "gpt-test");
    config.api_key = api_key.map(str::to_owned);
    config.timeout = Duration::from_secs(10);
    OpenAiProvider::new(config).expect("valid config")
}

fn send_message_tool() -> ToolSpec {
    ToolSpec::new(
        "send_message",
        "Send a message to the user",
        json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}),
    )
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
            prompt_tokens: 12,
            completion_tokens: 3,
        },
        finish_reason: FinishReason::Stop,
        model: "gpt-test-0001".into(),
    };
    let fake = FakeOpenAi::start(vec![FakeReply::Reply(scripted.clone())]).unwrap();
    let llm = provider(fake.base_url(), None);
    assert_eq!(llm.name(), "openai");
    assert_eq!(llm.model(), "gpt-test");
    let answer = llm.complete(hello()).await.unwrap();
    assert_eq!(answer, scripted);
    assert_eq!(answer.usage.total_tokens(), 15);
}

#[tokio::test]
async fn tool_call_reply_is_parsed_exactly() {
    let call = ToolCall::new("call_abc", "get_weather", r#"{"city":"Paris"}"#);
    let fake = FakeOpenAi::start(vec![ChatResponse::tool_calls(vec![call.clone()]).into()]).unwrap();
    let answer = provider(fake.base_url(), None).complete(hello()).await.unwrap();
    assert_eq!(answer.content, None);
    assert_eq!(answer.tool_calls, vec![call]);
    assert_eq!(answer.finish_reason, FinishReason::ToolCalls);
}

#[tokio::test]
async fn request_has_the_exact_openai_shape() {
    let fake = FakeOpenAi::start(vec![ChatResponse::text("ok").into()]).unwrap();
    let llm = provider(format!("{}/", fake.base_url()), Some("sk-test"));
    let request = ChatRequest {
        messages: vec![
            ChatMessage::system("You are helpful."),
            ChatMessage::user("Weather in Paris?"),
            ChatMessage::assistant(
                None,
                vec![ToolCall::new("call_1", "get_weather", r#"{"city":"Paris"}"#)],
            ),
            ChatMessage::tool("call_1", "get_weather", "sunny"),
            ChatMessage::assistant(Some("It is sunny.".into()), vec![]),
        ],
        tools: vec![ToolSpec::new(
            "get_weather",
            "Current weather",
            json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        )],
        max_tokens: Some(256),
        temperature: Some(0.5),
    };
    llm.complete(request).await.unwrap();
    assert_eq!(
        fake.requests(),
        vec![json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
                {"role": "assistant", "content": "It is sunny."},
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            }}],
            "tool_choice": "auto",
            "max_tokens": 256,
            "temperature": 0.5,
        })]
    );
    let recorded = fake.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].method, "POST");
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    assert_eq!(
        recorded[0].headers.get("authorization").map(String::as_str),
        Some("Bearer sk-test")
    );
    assert_eq!(
        recorded[0].headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
}

#[tokio::test]
async fn no_tools_means_no_tools_field_and_no_key_means_no_authorization() {
    let fake = FakeOpenAi::echo().unwrap();
    provider(fake.base_url(), None).complete(hello()).await.unwrap();
    assert_eq!(
        fake.requests(),
        vec![json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]})]
    );
    assert_eq!(fake.recorded()[0].headers.get("authorization"), None);
}

#[tokio::test]
async fn http_500_is_a_retryable_http_error() {
    let fake = FakeOpenAi::start(vec![FakeReply::status(500)]).unwrap();
    let err = provider(fake.base_url(), None).complete(hello()).await.unwrap_err();
    assert_eq!(
        err,
        LlmError::Http {
            status: 500,
            body: r#"{"error":{"code":500,"message":"fake error 500","type":"fake_error"}}"#.into()
        }
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn http_429_is_retryable_and_400_is_not() {
    let fake = FakeOpenAi::start(vec![
        FakeReply::Status {
            status: 429,
            body: "slow down".into(),
        },
        FakeReply::Status {
            status: 400,
            body: "bad".into(),
        },
    ])
    .unwrap();
    let llm = provider(fake.base_url(), None);
    let err = llm.complete(hello()).await.unwrap_err();
    assert_eq!(
        err,
        LlmError::Http {
            status: 429,
            body: "slow down".into()
        }
    );
    assert!(err.is_retryable());
    let err = llm.complete(hello()).await.unwrap_err();
    assert_eq!(
        err,
        LlmError::Http {
            status: 400,
            body: "bad".into()
        }
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn error_bodies_are_truncated_to_2_kb() {
    let fake = FakeOpenAi::start(vec![FakeReply::Status {
        status: 503,
        body: "é".repeat(3000),
    }])
    .unwrap();
    let err = provider(fake.base_url(), None).complete(hello()).await.unwrap_err();
    match err {
        LlmError::Http { status: 503, body } => {
            assert_eq!(body.len(), MAX_ERROR_BODY_BYTES);
            assert_eq!(body, "é".repeat(MAX_ERROR_BODY_BYTES / 2));
        }
        other => panic!("expected Http 503, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_body_is_a_decode_error() {
    let fake = FakeOpenAi::start(vec![FakeReply::Raw("<html>not json</html>".into())]).unwrap();
    let err = provider(fake.base_url(), None).complete(hello()).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::Decode { reason } if reason.contains("is not JSON") && reason.contains("<html>not json</html>")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn json_without_choices_is_a_decode_error() {
    let fake = FakeOpenAi::start(vec![FakeReply::Raw(r#"{"choices": []}"#.into())]).unwrap();
    let err = provider(fake.base_url(), None).complete(hello()).await.unwrap_err();
    assert_eq!(
        err,
        LlmError::Decode {
            reason: "the answer has no `choices[0]`".into()
        }
    );
}

#[tokio::test]
async fn lenient_answers_are_accepted() {
    // content null, arguments as an object, no id, no usage, no model, no finish_reason.
    let body = json!({
        "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
            {"type": "function", "function": {"name": "send_message", "arguments": {"message": "hi"}}}
        ]}}]
    });
    let fake = FakeOpenAi::start(vec![FakeReply::Raw(body.to_string())]).unwrap();
    let answer = provider(fake.base_url(), None).complete(hello()).await.unwrap();
    assert_eq!(
        answer,
        ChatResponse {
            content: None,
            tool_calls: vec![ToolCall::new("call_0", "send_message", r#"{"message":"hi"}"#)],
            usage: Usage::default(),
            finish_reason: FinishReason::ToolCalls,
            model: "gpt-test".into(),
        }
    );
}

#[tokio::test]
async fn other_finish_reasons_are_kept() {
    let body = json!({
        "model": "m",
        "choices": [{"message": {"role": "assistant", "content": "cut"}, "finish_reason": "content_filter"}],
        "usage": {"prompt_tokens": 7}
    });
    let fake = FakeOpenAi::start(vec![FakeReply::Raw(body.to_string())]).unwrap();
    let answer = provider(fake.base_url(), None).complete(hello()).await.unwrap();
    assert_eq!(answer.finish_reason, FinishReason::Other("content_filter".into()));
    assert_eq!(
        answer.usage,
        Usage {
            prompt_tokens: 7,
            completion_tokens: 0
        }
    );
}

#[tokio::test]
async fn connection_refused_is_a_retryable_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = provider(format!("http://{addr}/v1"), None)
        .complete(hello())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LlmError::Transport { reason } if reason.contains(&addr.to_string())),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_stalled_server_is_a_transport_timeout() {
    let fake = FakeOpenAi::start(vec![FakeReply::Hang]).unwrap();
    let mut config = OpenAiConfig::new(fake.base_url(), "gpt-test");
    config.timeout = Duration::from_millis(300);
    let err = OpenAiProvider::new(config)
        .unwrap()
        .complete(hello())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LlmError::Transport { reason } if reason.ends_with("no complete answer within 300ms")),
        "{err:?}"
    );
    assert!(err.is_retryable());
    fake.shutdown(); // returns although a connection is still hanging
}

#[tokio::test]
async fn echo_over_http_calls_send_message_then_says_done() {
    let fake = FakeOpenAi::echo().unwrap();
    let llm = provider(fake.base_url(), None);
    let mut messages = vec![ChatMessage::system("sys"), ChatMessage::user("say \"hi\"\nplease")];
    let request = ChatRequest::new(messages.clone()).with_tools(vec![send_message_tool()]);
    let first = llm.complete(request).await.unwrap();
    let arguments = r#"{"message":"Echo: say \"hi\"\nplease"}"#;
    assert_eq!(
        first,
        ChatResponse {
            content: None,
            tool_calls: vec![ToolCall::new("call_1", "send_message", arguments)],
            // (3 + 15) chars / 4 and 38 chars of arguments / 4
            usage: Usage {
                prompt_tokens: 4,
                completion_tokens: 9
            },
            finish_reason: FinishReason::ToolCalls,
            model: "gpt-test".into(),
        }
    );
    messages.push(ChatMessage::from_response(&first));
    messages.push(ChatMessage::tool("call_1", "send_message", "sent"));
    let second = llm
        .complete(ChatRequest::new(messages).with_tools(vec![send_message_tool()]))
        .await
        .unwrap();
    assert_eq!(second.content.as_deref(), Some("done"));
    assert_eq!(second.tool_calls, vec![]);
    assert_eq!(second.finish_reason, FinishReason::Stop);
    let third = llm
        .complete(ChatRequest::new(vec![ChatMessage::user("again")]).with_tools(vec![send_message_tool()]))
        .await
        .unwrap();
    assert_eq!(third.tool_calls[0].id, "call_2");
}

#[tokio::test]
async fn echo_without_send_message_answers_text() {
    let fake = FakeOpenAi::echo().unwrap();
    let answer = provider(fake.base_url(), None).complete(hello()).await.unwrap();
    assert_eq!(answer.content.as_deref(), Some("Echo: hello"));
    assert_eq!(answer.finish_reason, FinishReason::Stop);
    assert_eq!(
        answer.usage,
        Usage {
            prompt_tokens: 1,
            completion_tokens: 2
        }
    );
}

#[test]
fn bad_settings_are_not_configured_errors() {
    let err = |base: &str, model: &str| OpenAiProvider::new(OpenAiConfig::new(base, model)).unwrap_err();
    assert_eq!(
        err("", "m"),
        LlmError::NotConfigured {
            what: "OpenAI base_url is empty: set it to the provider's URL".into()
        }
    );
    assert_eq!(
        err("ftp://x", "m"),
        LlmError::NotConfigured {
            what: "OpenAI base_url must start with http:// or https://, got \"ftp://x\"".into()
        }
    );
    assert_eq!(
        err("http://x/v1", " "),
        LlmError::NotConfigured {
            what: "OpenAI model is empty: set the model name (e.g. gpt-4o-mini)".into()
        }
    );
    let ok = OpenAiProvider::new(OpenAiConfig::new("http://x/v1//", "m")).unwrap();
    assert_eq!(ok.url(), "http://x/v1/chat/completions");
}

#[test]
fn debug_output_hides_the_key() {
    let config = OpenAiConfig::new("http://x/v1", "m").with_api_key("sk-secret");
    assert!(!format!("{config:?}").contains("sk-secret"));
    let provider = OpenAiProvider::new(config).unwrap();
    assert!(!format!("{provider:?}").contains("sk-secret"));
}
