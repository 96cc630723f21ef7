//! The scripted provider, the error type and the serde forms of the types.

use kelpie_llm::{
    ChatMessage, ChatRequest, ChatResponse, FinishReason, LlmError, LlmProvider, Role, ScriptStep, ScriptedProvider,
    ToolCall, ToolSpec, Usage,
};
use serde_json::json;

fn send_message_tool() -> ToolSpec {
    ToolSpec::new("send_message", "Send a message", json!({"type": "object"}))
}

#[tokio::test]
async fn steps_replay_in_order_then_echo() {
    let reply = ChatResponse::text("first");
    let failure = LlmError::Http {
        status: 503,
        body: "down".into(),
    };
    let llm = ScriptedProvider::new(vec![
        ScriptStep::Reply(reply.clone()),
        ScriptStep::Fail(failure.clone()),
    ]);
    assert_eq!((llm.name(), llm.model()), ("scripted", "scripted"));
    assert_eq!(llm.remaining(), 2);
    let request = ChatRequest::new(vec![ChatMessage::user("hey")]);
    assert_eq!(llm.complete(request.clone()).await, Ok(reply));
    assert_eq!(llm.complete(request.clone()).await, Err(failure));
    assert_eq!(llm.remaining(), 0);
    assert_eq!(
        llm.complete(request.clone()).await.unwrap().content.as_deref(),
        Some("Echo: hey")
    );
    assert_eq!(llm.requests(), vec![request.clone(), request.clone(), request]);
}

#[tokio::test]
async fn strict_scripts_fail_when_exhausted() {
    let llm = ScriptedProvider::strict(vec![ScriptStep::Reply(ChatResponse::text("only"))]);
    let request = ChatRequest::new(vec![ChatMessage::user("x")]);
    assert_eq!(
        llm.complete(request.clone()).await.map(|response| response.content),
        Ok(Some("only".to_string()))
    );
    let err = llm.complete(request).await.unwrap_err();
    assert_eq!(
        err,
        LlmError::Scripted {
            reason: "the script is exhausted (request 2 has no step)".into()
        }
    );
    assert!(!err.is_retryable());
    llm.push(ScriptStep::Reply(ChatResponse::text("more")));
    let again = llm.complete(ChatRequest::new(vec![ChatMessage::user("x")])).await;
    assert_eq!(again.unwrap().content.as_deref(), Some("more"));
}

#[tokio::test]
async fn echo_calls_send_message_with_escaped_json_and_counted_ids() {
    let llm = ScriptedProvider::echo();
    let request = ChatRequest::new(vec![
        ChatMessage::system("system prompt"),
        ChatMessage::user("older"),
        ChatMessage::assistant(Some("reply".into()), vec![]),
        ChatMessage::user("He said \"hi\"\n\\ ok"),
    ])
    .with_tools(vec![ToolSpec::new("other", "x", json!({})), send_message_tool()]);
    let answer = llm.complete(request.clone()).await.unwrap();
    let arguments = r#"{"message":"Echo: He said \"hi\"\n\\ ok"}"#;
    assert_eq!(
        answer,
        ChatResponse {
            content: None,
            tool_calls: vec![ToolCall::new("call_1", "send_message", arguments)],
            // (13 + 5 + 5 + 17) chars / 4 = 10; 41 chars of arguments / 4 = 10
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 10
            },
            finish_reason: FinishReason::ToolCalls,
            model: "scripted".into(),
        }
    );
    let parsed: serde_json::Value = serde_json::from_str(&answer.tool_calls[0].arguments).unwrap();
    assert_eq!(parsed, json!({"message": "Echo: He said \"hi\"\n\\ ok"}));
    let again = llm.complete(request).await.unwrap();
    assert_eq!(again.tool_calls[0].id, "call_2");
}

#[tokio::test]
async fn echo_after_a_tool_result_says_done() {
    let llm = ScriptedProvider::echo();
    let request = ChatRequest::new(vec![
        ChatMessage::user("hello"),
        ChatMessage::assistant(None, vec![ToolCall::new("call_1", "send_message", "{}")]),
        ChatMessage::tool("call_1", "send_message", "sent"),
    ])
    .with_tools(vec![send_message_tool()]);
    assert_eq!(
        llm.complete(request).await.unwrap(),
        ChatResponse {
            content: Some("done".into()),
            tool_calls: vec![],
            usage: Usage {
                prompt_tokens: 2,
                completion_tokens: 1
            },
            finish_reason: FinishReason::Stop,
            model: "scripted".into(),
        }
    );
}

#[tokio::test]
async fn echo_without_send_message_answers_text() {
    let llm = ScriptedProvider::echo();
    let answer = llm
        .complete(ChatRequest::new(vec![ChatMessage::user("héllo wörld")]))
        .await
        .unwrap();
    assert_eq!(
        answer,
        ChatResponse {
            content: Some("Echo: héllo wörld".into()),
            tool_calls: vec![],
            usage: Usage {
                prompt_tokens: 2,
                completion_tokens: 4
            },
            finish_reason: FinishReason::Stop,
            model: "scripted".into(),
        }
    );
    let empty = llm.complete(ChatRequest::default()).await.unwrap();
    assert_eq!(empty.content.as_deref(), Some("Echo: "));
}

#[test]
fn retryability() {
    let http = |status| LlmError::Http {
        status,
        body: String::new(),
    };
    for status in [429, 500, 502, 503, 529, 599] {
        assert!(http(status).is_retryable(), "{status}");
    }
    for status in [400, 401, 403, 404, 422, 600] {
        assert!(!http(status).is_retryable(), "{status}");
    }
    assert!(LlmError::Transport { reason: "x".into() }.is_retryable());
    assert!(!LlmError::Decode { reason: "x".into() }.is_retryable());
    assert!(!LlmError::NotConfigured { what: "x".into() }.is_retryable());
    assert!(!LlmError::Scripted { reason: "x".into() }.is_retryable());
}

#[test]
fn error_messages_name_the_problem() {
    assert_eq!(
        LlmError::Http {
            status: 500,
            body: "oops".into()
        }
        .to_string(),
        "LLM provider answered HTTP 500: oops"
    );
    assert_eq!(
        LlmError::NotConfigured { what: "set KEY".into() }.to_string(),
        "LLM provider not configured: set KEY"
    );
}

#[test]
fn serde_forms() {
    assert_eq!(serde_json::to_value(Role::Assistant).unwrap(), json!("assistant"));
    assert_eq!(serde_json::to_value(Role::Tool).unwrap(), json!("tool"));
    let message = ChatMessage::tool("call_1", "send_message", "sent");
    let value = serde_json::to_value(&message).unwrap();
    assert_eq!(
        value,
        json!({"role": "tool", "content": "sent", "tool_call_id": "call_1", "name": "send_message"})
    );
    assert_eq!(serde_json::from_value::<ChatMessage>(value).unwrap(), message);
    assert_eq!(
        serde_json::from_value::<ChatMessage>(json!({"role": "user", "content": "x"})).unwrap(),
        ChatMessage::user("x")
    );
    let response = ChatResponse {
        finish_reason: FinishReason::Other("content_filter".into()),
        ..ChatResponse::text("x")
    };
    let value = serde_json::to_value(&response).unwrap();
    assert_eq!(value["finish_reason"], json!("content_filter"));
    assert_eq!(serde_json::from_value::<ChatResponse>(value).unwrap(), response);
    assert_eq!(
        serde_json::from_value::<FinishReason>(json!("tool_calls")).unwrap(),
        FinishReason::ToolCalls
    );
}

#[test]
fn usage_total() {
    assert_eq!(
        Usage {
            prompt_tokens: 3,
            completion_tokens: 4
        }
        .total_tokens(),
        7
    );
    assert_eq!(
        Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: 4
        }
        .total_tokens(),
        u64::MAX
    );
}

#[test]
fn providers_are_object_safe() {
    let boxed: Box<dyn LlmProvider> = Box::new(ScriptedProvider::echo());
    assert_eq!(boxed.name(), "scripted");
}
