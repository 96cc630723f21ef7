//! The fake server's other routes and the `fake-llm` binary.
#![cfg(feature = "fake")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use kelpie_llm::fake::{FakeOpenAi, FAKE_MODEL};
use kelpie_llm::{ChatMessage, ChatRequest, LlmProvider, OpenAiConfig, OpenAiProvider};
use serde_json::json;

#[tokio::test]
async fn models_route_and_unknown_routes() {
    let fake = FakeOpenAi::echo().unwrap();
    assert!(fake.base_url().ends_with("/v1"));
    let client = reqwest::Client::new();
    let models: serde_json::Value = client
        .get(format!("{}/models", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], json!(FAKE_MODEL));
    let missing = client.get(format!("{}/nope", fake.base_url())).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    // GETs are recorded but have no body to list in requests().
    assert_eq!(fake.recorded().len(), 2);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn malformed_chat_requests_get_a_400() {
    let fake = FakeOpenAi::echo().unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", fake.base_url());
    let empty_tools = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": []});
    let answer = client.post(&url).json(&empty_tools).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let tool_without_id = json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]});
    let answer = client.post(&url).json(&tool_without_id).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    assert!(answer.text().await.unwrap().contains("tool_call_id"));
}

#[test]
fn works_without_a_runtime_and_stops_when_dropped() {
    let fake = FakeOpenAi::echo().unwrap();
    let addr = fake.addr();
    std::net::TcpStream::connect(addr).expect("the fake listens");
    drop(fake);
    let refused = std::net::TcpStream::connect(addr).expect_err("the fake stopped");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn fake_llm_binary_prints_its_port_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-llm"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port: u16 = line
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|rest| rest.trim_end_matches('\n').parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let mut config = OpenAiConfig::new(format!("http://127.0.0.1:{port}/v1"), "m");
    config.timeout = Duration::from_secs(10);
    let answer = OpenAiProvider::new(config)
        .unwrap()
        .complete(ChatRequest::new(vec![ChatMessage::user("ping")]))
        .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answer.unwrap().content.as_deref(), Some("Echo: ping"));
}
