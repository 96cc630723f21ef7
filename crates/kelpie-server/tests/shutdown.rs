//! Graceful shutdown of the real `kelpie-server` binary: SIGTERM while
//! many requests are in flight. Every request either completed (200, and
//! its effect is there after a restart) or was not accepted (503 with
//! `Retry-After`, or a connection error) and left no effect. Never lost,
//! never half-applied.
//!
//! `SHUTDOWN_ITERATIONS` (default 20) sets how many rounds run in a row.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{client, pause, poll_until, read, types, Api, Server, TestDir};
use serde_json::{json, Value};

/// Requests fired per round.
const REQUESTS: usize = 40;
/// The server's drain timeout in these tests.
const DRAIN_SECS: u64 = 5;
const HUMAN_INITIAL: &str = "The human is testing.";

#[derive(Clone, Debug)]
enum Kind {
    /// `POST /v1/agents/` with a distinct Idempotency-Key and name.
    Create { name: String, key: String },
    /// PATCH the base agent's human block to `value`.
    Patch { value: String },
    /// Send `text` to the base agent.
    Message { text: String },
    /// Send `text` to the base agent over `POST .../messages/stream`.
    Stream { text: String },
}

#[derive(Debug)]
enum Outcome {
    /// 200 with this body.
    Completed(Value),
    /// 503 with `Retry-After`.
    Unavailable,
    /// The connection failed: never accepted (the error, for the report).
    NotAccepted(#[allow(dead_code)] String),
}

fn kind(iteration: usize, index: usize) -> Kind {
    match index % 4 {
        0 => Kind::Create {
            name: format!("sd-{iteration}-{index}"),
            key: format!("sd-key-{iteration}-{index}"),
        },
        1 => Kind::Patch {
            value: format!("value-{iteration}-{index}"),
        },
        2 => Kind::Message {
            text: format!("msg-{iteration}-{index}"),
        },
        _ => Kind::Stream {
            text: format!("stream-{iteration}-{index}"),
        },
    }
}

fn agent_body(name: &str) -> Value {
    json!({
        "name": name,
        "memory_blocks": [
            {"label": "persona", "value": format!("persona of {name}")},
            {"label": "human", "value": HUMAN_INITIAL},
        ],
    })
}

async fn fire(http: &reqwest::Client, base: &str, agent_id: &str, kind: &Kind) -> Outcome {
    let request = match kind {
        Kind::Create { name, key } => http
            .post(format!("{base}/v1/agents/"))
            .header("Idempotency-Key", key)
            .json(&agent_body(name)),
        Kind::Patch { value } => http
            .patch(format!("{base}/v1/agents/{agent_id}/core-memory/blocks/human"))
            .json(&json!({"value": value})),
        Kind::Message { text } => http
            .post(format!("{base}/v1/agents/{agent_id}/messages"))
            .json(&json!({"messages": [{"role": "user", "content": text}]})),
        Kind::Stream { text } => http
            .post(format!("{base}/v1/agents/{agent_id}/messages/stream"))
            .json(&json!({"messages": [{"role": "user", "content": text}]})),
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Outcome::NotAccepted(format!("{error:?}")),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    // A body cut off mid-way would be a lost answer: fail loudly below.
    let reply = match response.text().await {
        Ok(text) => text,
        Err(error) => panic!("{kind:?}: status {status} but the body was cut off: {error:?}"),
    };
    match status {
        200 if matches!(kind, Kind::Stream { .. }) => {
            // The SSE body as a JSON array of its chunks, `[DONE]` checked.
            let events = common::parse_sse(&reply);
            let data: Vec<&str> = events.iter().map(|event| event.data.as_str()).collect();
            assert_eq!(
                data.last().copied(),
                Some("[DONE]"),
                "{kind:?}: stream cut off: {reply}"
            );
            let chunks: Vec<Value> = data[..data.len() - 1]
                .iter()
                .map(|chunk| serde_json::from_str(chunk).expect("JSON chunk"))
                .collect();
            Outcome::Completed(json!({"messages": chunks}))
        }
        200 => Outcome::Completed(serde_json::from_str(&reply).expect("JSON body")),
        503 => {
            let seconds: u64 = retry_after
                .unwrap_or_else(|| panic!("{kind:?}: 503 without Retry-After: {reply}"))
                .parse()
                .expect("Retry-After is whole seconds");
            assert!(seconds >= 1, "Retry-After {seconds}");
            let body: Value = serde_json::from_str(&reply).expect("JSON 503 body");
            assert!(
                body["detail"]
                    .as_str()
                    .is_some_and(|detail| detail.starts_with("server is shutting down")),
                "{body}"
            );
            Outcome::Unavailable
        }
        other => panic!("{kind:?}: unexpected status {other}: {reply}"),
    }
}

#[derive(Default, Debug)]
struct Tally {
    completed: usize,
    unavailable: usize,
    not_accepted: usize,
    /// Completed requests sent before SIGTERM and answered after it.
    in_flight_at_signal: usize,
}

async fn round(iteration: usize, tally: &mut Tally) {
    let dir = TestDir::new();
    let drain = DRAIN_SECS.to_string();
    let args = ["--llm-provider", "scripted", "--drain-timeout-secs", drain.as_str()];
    let mut server = Server::start(&dir, &args);
    let api = Api::new(&server);
    let base_agent = api.create_agent("base").await;

    let kinds: Vec<Kind> = (0..REQUESTS).map(|index| kind(iteration, index)).collect();
    let answered = AtomicUsize::new(0);
    let signalled = AtomicBool::new(false);
    let http = client();
    let requests = kinds.iter().enumerate().map(|(index, kind)| {
        let http = &http;
        let base = server.base.clone();
        let agent = base_agent.clone();
        let answered = &answered;
        let signalled = &signalled;
        async move {
            // Spread the requests over ~200 ms so the signal lands among them.
            pause(Duration::from_millis(5 * index as u64)).await;
            let sent_before = !signalled.load(Ordering::SeqCst);
            let outcome = fire(http, &base, &agent, kind).await;
            let spanned = sent_before && signalled.load(Ordering::SeqCst);
            answered.fetch_add(1, Ordering::SeqCst);
            (outcome, spanned)
        }
    });
    let terminate = async {
        // Once a quarter of the requests were answered, the rest are in
        // flight or still to come.
        let quarter = poll_until(Duration::from_secs(30), || {
            answered.load(Ordering::SeqCst) >= REQUESTS / 4
        })
        .await;
        assert!(quarter, "requests are not being answered");
        server.terminate();
        signalled.store(true, Ordering::SeqCst);
    };
    let (outcomes, ()) = tokio::join!(futures::future::join_all(requests), terminate);
    for (outcome, spanned) in &outcomes {
        if *spanned && matches!(outcome, Outcome::Completed(_)) {
            tally.in_flight_at_signal += 1;
        }
    }
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|(outcome, _)| outcome).collect();

    let status = server
        .wait_exit(Duration::from_secs(DRAIN_SECS + 5))
        .unwrap_or_else(|| panic!("the server did not exit within the drain timeout:\n{}", server.stderr()));
    assert!(
        status.success(),
        "iteration {iteration}: exit {status}:\n{}",
        server.stderr()
    );
    drop(server);

    // Restart on the same data and check every request's effect.
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let all_agents = api.get_ok("/v1/agents/?limit=1000").await;
    let all_agents = all_agents.as_array().expect("array");
    for agent in all_agents {
        let labels: Vec<&str> = agent["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .map(|block| block["label"].as_str().expect("label"))
            .collect();
        assert_eq!(labels, vec!["persona", "human"], "half-applied agent {agent}");
    }
    let history = api.all_messages(&base_agent).await;
    let said: Vec<(String, String)> = history
        .iter()
        .map(|message| {
            (
                message["message_type"].as_str().expect("type").to_string(),
                message["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let count_of = |kind: &str, content: &str| said.iter().filter(|(k, c)| k == kind && c == content).count();
    let human = api
        .get_ok(&format!("/v1/agents/{base_agent}/core-memory/blocks/human"))
        .await["value"]
        .as_str()
        .expect("value")
        .to_string();
    let mut completed_values = Vec::new();
    let mut creates_completed = 0;
    let mut messages_completed = 0;
    for (kind, outcome) in kinds.iter().zip(&outcomes) {
        let completed = match outcome {
            Outcome::Completed(_) => {
                tally.completed += 1;
                true
            }
            Outcome::Unavailable => {
                tally.unavailable += 1;
                false
            }
            Outcome::NotAccepted(_) => {
                tally.not_accepted += 1;
                false
            }
        };
        let context = format!("iteration {iteration}: {kind:?} -> {outcome:?}");
        match kind {
            Kind::Create { name, .. } => {
                let found = api.get_ok(&format!("/v1/agents/?name={name}")).await;
                let found = found.as_array().expect("array");
                if completed {
                    creates_completed += 1;
                    let Outcome::Completed(body) = outcome else {
                        unreachable!()
                    };
                    assert_eq!(found.len(), 1, "{context}: not exactly once after restart");
                    assert_eq!(found[0]["id"], body["id"], "{context}");
                    assert_eq!(
                        found[0]["blocks"][0]["value"],
                        format!("persona of {name}"),
                        "{context}"
                    );
                    assert_eq!(found[0]["blocks"][1]["value"], HUMAN_INITIAL, "{context}");
                } else {
                    assert_eq!(found.len(), 0, "{context}: a request not accepted took effect");
                }
            }
            Kind::Patch { value } => {
                if completed {
                    let Outcome::Completed(body) = outcome else {
                        unreachable!()
                    };
                    assert_eq!(body["value"], value.as_str(), "{context}");
                    completed_values.push(value.clone());
                } else {
                    assert_ne!(&human, value, "{context}: a request not accepted took effect");
                }
            }
            Kind::Message { text } | Kind::Stream { text } => {
                let echo = format!("Echo: {text}");
                if completed {
                    messages_completed += 1;
                    let Outcome::Completed(body) = outcome else {
                        unreachable!()
                    };
                    let messages = body["messages"].as_array().expect("messages");
                    let expected = if matches!(kind, Kind::Stream { .. }) {
                        vec!["assistant_message", "stop_reason", "usage_statistics"]
                    } else {
                        vec!["assistant_message"]
                    };
                    assert_eq!(types(messages), expected, "{context}");
                    assert_eq!(messages[0]["content"], echo.as_str(), "{context}");
                    assert_eq!(
                        count_of("user_message", text),
                        1,
                        "{context}: user message after restart"
                    );
                    assert_eq!(
                        count_of("assistant_message", &echo),
                        1,
                        "{context}: answer after restart"
                    );
                } else {
                    assert_eq!(
                        count_of("user_message", text),
                        0,
                        "{context}: a request not accepted took effect"
                    );
                    assert_eq!(
                        count_of("assistant_message", &echo),
                        0,
                        "{context}: a request not accepted took effect"
                    );
                }
            }
        }
    }
    if completed_values.is_empty() {
        assert_eq!(human, HUMAN_INITIAL, "iteration {iteration}: no PATCH completed");
    } else {
        assert!(
            completed_values.contains(&human),
            "iteration {iteration}: human block {human:?} is not the value of a completed PATCH {completed_values:?}"
        );
    }
    assert_eq!(
        all_agents.len(),
        1 + creates_completed,
        "iteration {iteration}: agent count"
    );
    assert_eq!(api.count().await, 1 + creates_completed as u64);
    assert_eq!(
        history.len(),
        2 * messages_completed,
        "iteration {iteration}: history holds exactly the completed exchanges"
    );
    // The restarted server works.
    let reply = read(
        api.request(reqwest::Method::POST, &format!("/v1/agents/{base_agent}/messages"))
            .json(&json!({"input": "after restart"}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["messages"][0]["content"], "Echo: after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_loses_nothing() {
    let iterations: usize = std::env::var("SHUTDOWN_ITERATIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let mut tally = Tally::default();
    for iteration in 0..iterations {
        round(iteration, &mut tally).await;
    }
    eprintln!("{iterations} rounds: {tally:?}");
    assert!(tally.completed > 0, "nothing completed: {tally:?}");
    assert!(
        iterations == 0 || tally.unavailable + tally.not_accepted > 0,
        "the signal never landed among the requests: {tally:?}"
    );
    assert!(
        iterations == 0 || tally.in_flight_at_signal > 0,
        "no request was in flight at the signal: {tally:?}"
    );
}
