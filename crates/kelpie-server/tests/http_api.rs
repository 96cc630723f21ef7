//! The HTTP API of the real `kelpie-server` binary, over real HTTP, with a
//! fake OpenAI server (or the built-in echo model) as the LLM. Every test
//! has its own data directory and server.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{parse_sse, types, Api, Server, TestDir};
use kelpie_llm::fake::{FakeOpenAi, FakeReply};
use kelpie_llm::{ChatResponse, ToolCall};
use serde_json::{json, Value};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const BUILTIN_TOOLS: [&str; 6] = [
    "send_message",
    "core_memory_append",
    "core_memory_replace",
    "archival_memory_insert",
    "archival_memory_search",
    "conversation_search",
];
/// A well-formed id that names nothing.
const MISSING_AGENT: &str = "agent-00000000-0000-4000-8000-000000000000";

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|item| item["name"].as_str().expect("name").to_string())
        .collect()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_string())
        .collect()
}

fn tool_call(id: &str, name: &str, arguments: &str) -> FakeReply {
    FakeReply::Reply(ChatResponse::tool_calls(vec![ToolCall::new(id, name, arguments)]))
}

fn user(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

/// Pages `path` (which has a query) with `cursor=<edge id>` until an empty
/// page, starting at `start` (or without a cursor); asserts no id repeats.
async fn page_all(api: &Api, path: &str, cursor: &str) -> Vec<Value> {
    page_from(api, path, cursor, None).await
}

async fn page_from(api: &Api, path: &str, cursor: &str, start: Option<String>) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut edge: Option<String> = start;
    for _ in 0..100 {
        let url = match &edge {
            None => path.to_string(),
            Some(id) => format!("{path}&{cursor}={id}"),
        };
        let page = api.get_ok(&url).await;
        let page = page.as_array().expect("array").clone();
        if page.is_empty() {
            return all;
        }
        let next = if cursor == "after" { page.last() } else { page.first() };
        edge = Some(next.expect("edge")["id"].as_str().expect("id").to_string());
        for item in &page {
            let id = item["id"].as_str().expect("id").to_string();
            assert!(seen.insert(id.clone()), "{id} repeated paging {path} by {cursor}");
        }
        if cursor == "after" {
            all.extend(page);
        } else {
            let mut page = page;
            page.extend(all);
            all = page;
        }
    }
    panic!("paging {path} by {cursor} did not terminate");
}

// ------------------------------------------------------------------ 1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_with_and_without_slash_and_unknown_routes_are_404_json() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    for path in ["/v1/health/", "/v1/health"] {
        let reply = api.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.content_type(), "application/json", "{path}");
        assert_eq!(reply.body, json!({"status": "ok", "version": VERSION}), "{path}");
    }
    for path in ["/v1/nope", "/v2/agents/", "/"] {
        let reply = api.get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.content_type(), "application/json", "{path}");
        assert_eq!(reply.body, json!({"detail": "route not found"}), "{path}");
    }
}

// ------------------------------------------------------------------ 2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_create_retrieve_update_list_count_delete() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    assert_eq!(api.count().await, 0);
    assert_eq!(api.get_ok("/v1/agents/").await, json!([]));

    let created = api
        .post_ok(
            "/v1/agents/",
            &json!({
                "name": "alpha",
                "memory_blocks": [
                    {"label": "persona", "value": "I am Alpha."},
                    {"label": "human", "value": "Name: Sam", "limit": 100},
                ],
                "tags": ["blue", "green"],
            }),
        )
        .await;
    let id = created["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("agent-"), "{id}");
    assert_eq!(created["name"], "alpha");
    assert_eq!(created["tags"], json!(["blue", "green"]));
    assert_eq!(created["agent_type"], "memgpt_v2_agent");
    assert_eq!(created["description"], Value::Null);
    assert_eq!(created["metadata"], json!({}));
    assert_eq!(created["sources"], json!([]));
    assert!(
        created["system"]
            .as_str()
            .expect("system")
            .starts_with("You are a helpful agent with persistent memory"),
        "{}",
        created["system"]
    );
    assert_eq!(created["llm_config"]["model"], "scripted");
    assert_eq!(created["llm_config"]["model_endpoint_type"], "openai");
    assert_eq!(created["llm_config"]["context_window"], 8192);
    let blocks = created["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0]["label"], "persona");
    assert_eq!(blocks[0]["value"], "I am Alpha.");
    assert_eq!(blocks[0]["limit"], 20_000);
    assert_eq!(blocks[0]["read_only"], false);
    assert_eq!(blocks[1]["label"], "human");
    assert_eq!(blocks[1]["value"], "Name: Sam");
    assert_eq!(blocks[1]["limit"], 100);
    for block in blocks {
        assert!(block["id"].as_str().expect("block id").starts_with("block-"));
    }
    assert_ne!(blocks[0]["id"], blocks[1]["id"]);
    assert_eq!(created["memory"]["blocks"], created["blocks"]);
    assert_eq!(names(&created["tools"]), BUILTIN_TOOLS);
    assert_eq!(created["created_at"], created["updated_at"]);

    // Retrieve: the same agent, field for field.
    let fetched = api.get_ok(&format!("/v1/agents/{id}")).await;
    assert_eq!(fetched, created);

    // PATCH name and tags (tags replace the list).
    let patched = api
        .patch_ok(
            &format!("/v1/agents/{id}"),
            &json!({"name": "alpha-2", "tags": ["red"]}),
        )
        .await;
    assert_eq!(patched["id"], id.as_str());
    assert_eq!(patched["name"], "alpha-2");
    assert_eq!(patched["tags"], json!(["red"]));
    assert_eq!(patched["blocks"], created["blocks"]);
    let fetched = api.get_ok(&format!("/v1/agents/{id}")).await;
    assert_eq!(fetched["name"], "alpha-2");
    assert_eq!(fetched["tags"], json!(["red"]));
    assert_eq!(fetched["description"], Value::Null);
    assert_eq!(ids(&api.get_ok("/v1/agents/?name=alpha-2").await), vec![id.clone()]);
    assert_eq!(api.get_ok("/v1/agents/?name=alpha").await, json!([]));
    assert_eq!(ids(&api.get_ok("/v1/agents/?tags=red").await), vec![id.clone()]);
    assert_eq!(api.get_ok("/v1/agents/?tags=blue").await, json!([]));

    // Seven more, for paging.
    let mut paged = Vec::new();
    for index in 0..7 {
        let agent = api
            .post_ok(
                "/v1/agents/",
                &json!({"name": format!("page-{index}"), "tags": ["paged", format!("n{}", index % 2)]}),
            )
            .await;
        paged.push(agent);
    }
    assert_eq!(api.count().await, 8);
    // Creation order: by created_at, ties broken by id.
    let mut expected = paged.clone();
    expected.sort_by(|a, b| {
        (a["created_at"].as_str(), a["id"].as_str()).cmp(&(b["created_at"].as_str(), b["id"].as_str()))
    });
    let ascending: Vec<String> = expected
        .iter()
        .map(|agent| agent["id"].as_str().expect("id").to_string())
        .collect();
    let mut descending = ascending.clone();
    descending.reverse();

    assert_eq!(
        ids(&api.get_ok("/v1/agents/?tags=paged&limit=3&order=asc").await),
        ascending[..3]
    );
    assert_eq!(
        ids(&api.get_ok("/v1/agents/?tags=paged&limit=3&order=desc").await),
        descending[..3]
    );
    // Letta's default order is newest first.
    assert_eq!(ids(&api.get_ok("/v1/agents/?tags=paged").await), descending);
    let forward = page_all(&api, "/v1/agents/?tags=paged&limit=3&order=asc", "after").await;
    assert_eq!(ids(&Value::Array(forward)), ascending);
    let backward = page_all(&api, "/v1/agents/?tags=paged&limit=3&order=desc", "after").await;
    assert_eq!(ids(&Value::Array(backward)), descending);
    // `before`: the `limit` items closest to the cursor, in the requested order.
    assert_eq!(
        ids(&api
            .get_ok(&format!(
                "/v1/agents/?tags=paged&limit=3&order=asc&before={}",
                ascending[6]
            ))
            .await),
        ascending[3..6]
    );
    let from_end = page_from(
        &api,
        "/v1/agents/?tags=paged&limit=3&order=asc",
        "before",
        Some(ascending[6].clone()),
    )
    .await;
    assert_eq!(ids(&Value::Array(from_end)), ascending[..6]);

    // Tags: any by default, all with match_all_tags.
    assert_eq!(names(&api.get_ok("/v1/agents/?tags=n1&order=asc").await).len(), 3);
    assert_eq!(
        api.get_ok("/v1/agents/?tags=red&tags=n0")
            .await
            .as_array()
            .expect("array")
            .len(),
        5
    );
    assert_eq!(
        api.get_ok("/v1/agents/?tags=paged&tags=n0&match_all_tags=true")
            .await
            .as_array()
            .expect("array")
            .len(),
        4
    );
    assert_eq!(
        api.get_ok("/v1/agents/?tags=red&tags=n0&match_all_tags=true").await,
        json!([])
    );
    assert_eq!(
        names(&api.get_ok("/v1/agents/?name=page-4").await),
        vec!["page-4".to_string()]
    );
    assert_eq!(
        api.get_ok("/v1/agents/?limit=50")
            .await
            .as_array()
            .expect("array")
            .len(),
        8
    );

    // Delete: 200 JSON, then gone everywhere.
    let reply = api.delete(&format!("/v1/agents/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.content_type(), "application/json");
    assert_eq!(
        reply.body,
        json!({"message": format!("Agent id={id} successfully deleted")})
    );
    let reply = api.get(&format!("/v1/agents/{id}")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.detail(), format!("Agent {id} not found"));
    assert_eq!(api.count().await, 7);
    let all = ids(&api.get_ok("/v1/agents/?order=asc").await);
    assert_eq!(all, ascending);
    assert_eq!(api.get_ok("/v1/agents/?name=alpha-2").await, json!([]));
    // Deleting again: 404.
    let reply = api.delete(&format!("/v1/agents/{id}")).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.detail(), format!("Agent {id} not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_created_with_idempotency_keys_list_in_creation_order() {
    // Keyed creations get ids derived from the key (not time-ordered); the
    // list order is still creation order (created_at, ties by id).
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let mut created = Vec::new();
    for index in 0..6 {
        let reply = api
            .post_keyed(
                "/v1/agents/",
                &json!({"name": format!("keyed-{index}")}),
                &format!("order-key-{index}"),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        created.push(reply.body);
    }
    let mut expected = created.clone();
    expected.sort_by(|a, b| {
        (a["created_at"].as_str(), a["id"].as_str()).cmp(&(b["created_at"].as_str(), b["id"].as_str()))
    });
    let expected_names = names(&Value::Array(expected));
    let listed = names(&api.get_ok("/v1/agents/?order=asc").await);
    assert_eq!(listed, expected_names, "GET /v1/agents/?order=asc");
    let paged = page_all(&api, "/v1/agents/?order=asc&limit=2", "after").await;
    assert_eq!(names(&Value::Array(paged)), expected_names);
}

// ------------------------------------------------------------------ 3

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_agent_create_leaves_nothing_behind() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let existing = api.create_agent("existing").await;
    let before = api.get_ok("/v1/agents/").await;

    // The second block is over its limit.
    let reply = api
        .post(
            "/v1/agents/",
            &json!({
                "name": "doomed",
                "memory_blocks": [
                    {"label": "bug001-first", "value": "fine"},
                    {"label": "bug001-second", "value": "x".repeat(20), "limit": 10},
                ],
            }),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(
        reply.detail(),
        "block \"bug001-second\" would be 20 characters, over its limit of 10"
    );

    // A block id that does not exist, after a valid new block.
    let missing_block = "block-00000000-0000-4000-8000-000000000000";
    let reply = api
        .post(
            "/v1/agents/",
            &json!({
                "name": "doomed-too",
                "memory_blocks": [{"label": "bug001-third", "value": "fine"}],
                "block_ids": [missing_block],
            }),
        )
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.detail(), format!("Block {missing_block} not found"));

    // Two new blocks with the same label.
    let reply = api
        .post(
            "/v1/agents/",
            &json!({
                "name": "doomed-three",
                "memory_blocks": [
                    {"label": "bug001-dup", "value": "one"},
                    {"label": "bug001-dup", "value": "two"},
                ],
            }),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(
        reply.detail(),
        "two blocks are labelled \"bug001-dup\"; labels must be unique within an agent"
    );

    assert_eq!(api.count().await, 1);
    assert_eq!(api.get_ok("/v1/agents/").await, before);
    assert_eq!(ids(&api.get_ok("/v1/agents/").await), vec![existing]);
    for label in ["bug001-first", "bug001-second", "bug001-third", "bug001-dup"] {
        assert_eq!(
            api.get_ok(&format!("/v1/blocks/?label={label}")).await,
            json!([]),
            "a block labelled {label} was left behind"
        );
    }
    for name in ["doomed", "doomed-too", "doomed-three"] {
        assert_eq!(api.get_ok(&format!("/v1/agents/?name={name}")).await, json!([]));
    }
    // Only the existing agent's two blocks exist.
    assert_eq!(api.get_ok("/v1/blocks/").await.as_array().expect("array").len(), 2);
}

// ------------------------------------------------------------------ 4

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_memory_blocks_and_standalone_blocks() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let agent = api
        .post_ok(
            "/v1/agents/",
            &json!({
                "name": "memo",
                "memory_blocks": [
                    {"label": "persona", "value": "I remember."},
                    {"label": "human", "value": "Name: Sam", "limit": 20, "description": "the user"},
                ],
            }),
        )
        .await;
    let id = agent["id"].as_str().expect("id").to_string();
    let base = format!("/v1/agents/{id}/core-memory/blocks");

    // List and retrieve by label.
    let listed = api.get_ok(&base).await;
    assert_eq!(listed, agent["blocks"]);
    let human = api.get_ok(&format!("{base}/human")).await;
    assert_eq!(human, agent["blocks"][1]);
    assert_eq!(human["label"], "human");
    assert_eq!(human["value"], "Name: Sam");
    assert_eq!(human["limit"], 20);
    assert_eq!(human["description"], "the user");
    let human_id = human["id"].as_str().expect("id").to_string();
    let reply = api.get(&format!("{base}/nope")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.detail(),
        format!("Block with label \"nope\" of agent {id} not found")
    );
    let limited = api.get_ok(&format!("{base}?limit=1")).await;
    assert_eq!(labels(&limited), vec!["persona"]);
    let after = api
        .get_ok(&format!(
            "{base}?limit=1&after={}",
            agent["blocks"][0]["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(labels(&after), vec!["human"]);
    let done = api.get_ok(&format!("{base}?limit=1&after={human_id}")).await;
    assert_eq!(done, json!([]));

    // Patch by label.
    let patched = api
        .patch_ok(&format!("{base}/human"), &json!({"value": "Name: Kim"}))
        .await;
    assert_eq!(patched["id"], human_id.as_str());
    assert_eq!(patched["value"], "Name: Kim");
    assert_eq!(patched["limit"], 20);
    assert_eq!(api.get_ok(&format!("{base}/human")).await["value"], "Name: Kim");

    // Over the limit: 422, value unchanged.
    let reply = api
        .patch(&format!("{base}/human"), &json!({"value": "y".repeat(21)}))
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(
        reply.detail(),
        "block \"human\" would be 21 characters, over its limit of 20"
    );
    assert_eq!(api.get_ok(&format!("{base}/human")).await["value"], "Name: Kim");
    // Lowering the limit under the value is over the limit too.
    let reply = api.patch(&format!("{base}/human"), &json!({"limit": 3})).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(
        reply.detail(),
        "block \"human\" would be 9 characters, over its limit of 3"
    );
    assert_eq!(api.get_ok(&format!("{base}/human")).await["limit"], 20);

    // Standalone blocks: create, retrieve, update, list.
    let shared = api
        .post_ok(
            "/v1/blocks/",
            &json!({"label": "team", "value": "team notes", "limit": 50, "description": "shared"}),
        )
        .await;
    let shared_id = shared["id"].as_str().expect("id").to_string();
    assert!(shared_id.starts_with("block-"), "{shared_id}");
    assert_eq!(shared["label"], "team");
    assert_eq!(shared["value"], "team notes");
    assert_eq!(shared["limit"], 50);
    assert_eq!(shared["description"], "shared");
    assert_eq!(shared["read_only"], false);
    assert_eq!(api.get_ok(&format!("/v1/blocks/{shared_id}")).await, shared);
    let updated = api
        .patch_ok(&format!("/v1/blocks/{shared_id}"), &json!({"value": "team notes v2"}))
        .await;
    assert_eq!(updated["value"], "team notes v2");
    assert_eq!(updated["label"], "team");
    assert_eq!(
        ids(&api.get_ok("/v1/blocks/?label=team").await),
        vec![shared_id.clone()]
    );
    let reply = api
        .patch(&format!("/v1/blocks/{shared_id}"), &json!({"value": "z".repeat(51)}))
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(
        reply.detail(),
        "block \"team\" would be 51 characters, over its limit of 50"
    );
    let reply = api
        .post(
            "/v1/blocks/",
            &json!({"label": "big", "value": "z".repeat(11), "limit": 10}),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(
        reply.detail(),
        "block \"big\" would be 11 characters, over its limit of 10"
    );
    assert_eq!(api.get_ok("/v1/blocks/?label=big").await, json!([]));

    // Attach: the agent sees the same record.
    let attached = api.patch_empty(&format!("{base}/attach/{shared_id}")).await;
    assert_eq!(attached.status, 200, "{}", attached.text);
    assert_eq!(labels(&attached.body["blocks"]), vec!["persona", "human", "team"]);
    assert_eq!(attached.body["blocks"][2]["value"], "team notes v2");
    api.patch_ok(&format!("/v1/blocks/{shared_id}"), &json!({"value": "team notes v3"}))
        .await;
    assert_eq!(api.get_ok(&format!("{base}/team")).await["value"], "team notes v3");
    let agent_view = api.get_ok(&format!("/v1/agents/{id}")).await;
    assert_eq!(agent_view["blocks"][2]["value"], "team notes v3");
    assert_eq!(agent_view["blocks"][2]["id"], shared_id.as_str());
    // ... and the other way round.
    api.patch_ok(&format!("{base}/team"), &json!({"value": "edited by the agent"}))
        .await;
    assert_eq!(
        api.get_ok(&format!("/v1/blocks/{shared_id}")).await["value"],
        "edited by the agent"
    );

    // A second block labelled "human": 409.
    let other_human = api
        .post_ok("/v1/blocks/", &json!({"label": "human", "value": "someone else"}))
        .await;
    let other_id = other_human["id"].as_str().expect("id");
    let reply = api.patch_empty(&format!("{base}/attach/{other_id}")).await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(
        reply.detail(),
        format!("agent {id} already has a block labelled \"human\"")
    );
    assert_eq!(labels(&api.get_ok(&base).await), vec!["persona", "human", "team"]);
    assert_eq!(api.get_ok(&format!("{base}/human")).await["value"], "Name: Kim");

    // Detach: gone from the agent, still a standalone block.
    let detached = api.patch_empty(&format!("{base}/detach/{shared_id}")).await;
    assert_eq!(detached.status, 200, "{}", detached.text);
    assert_eq!(labels(&detached.body["blocks"]), vec!["persona", "human"]);
    assert_eq!(labels(&api.get_ok(&base).await), vec!["persona", "human"]);
    assert_eq!(
        api.get_ok(&format!("/v1/blocks/{shared_id}")).await["value"],
        "edited by the agent"
    );
    let reply = api.patch_empty(&format!("{base}/detach/{shared_id}")).await;
    assert_eq!(reply.status, 404, "{}", reply.text);

    // Delete the standalone block.
    let reply = api.delete(&format!("/v1/blocks/{shared_id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({"message": format!("Block id={shared_id} successfully deleted")})
    );
    let reply = api.get(&format!("/v1/blocks/{shared_id}")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.detail(), format!("Block {shared_id} not found"));
    assert_eq!(api.get_ok("/v1/blocks/?label=team").await, json!([]));
    let reply = api.patch_empty(&format!("{base}/attach/{shared_id}")).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.detail(), format!("Block {shared_id} not found"));
}

fn labels(blocks: &Value) -> Vec<String> {
    blocks
        .as_array()
        .expect("array")
        .iter()
        .map(|block| block["label"].as_str().expect("label").to_string())
        .collect()
}

// ------------------------------------------------------------------ 5

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_round_edits_memory_and_answers() {
    let append = r#"{"label":"human","content":"likes tea","request_heartbeat":true}"#;
    let fake = FakeOpenAi::start(vec![
        tool_call("call_mem_1", "core_memory_append", append),
        tool_call("call_send_1", "send_message", r#"{"message":"Noted."}"#),
    ])
    .expect("fake LLM");
    let dir = TestDir::new();
    let server = Server::with_llm(&dir, &fake.base_url(), &[]);
    let api = Api::new(&server);
    let agent = api
        .post_ok(
            "/v1/agents/",
            &json!({
                "name": "tea",
                "memory_blocks": [
                    {"label": "persona", "value": "I listen."},
                    {"label": "human", "value": "Name: Sam"},
                ],
            }),
        )
        .await;
    assert_eq!(agent["llm_config"]["model"], "fake");
    let id = agent["id"].as_str().expect("id").to_string();

    let reply = api
        .post(&format!("/v1/agents/{id}/messages"), &user("I like tea"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.content_type(), "application/json");
    let messages = reply.body["messages"].as_array().expect("messages").clone();
    assert_eq!(
        types(&messages),
        vec!["tool_call_message", "tool_return_message", "assistant_message"],
        "{}",
        reply.text
    );
    assert_eq!(messages[0]["tool_call"]["name"], "core_memory_append");
    assert_eq!(messages[0]["tool_call"]["arguments"], append);
    assert_eq!(messages[0]["tool_call"]["tool_call_id"], "call_mem_1");
    assert_eq!(messages[1]["status"], "success");
    assert_eq!(messages[1]["tool_call_id"], "call_mem_1");
    assert_eq!(messages[1]["tool_return"], "Appended to block \"human\".");
    assert_eq!(messages[2]["content"], "Noted.");
    assert_eq!(
        reply.body["stop_reason"],
        json!({"message_type": "stop_reason", "stop_reason": "end_turn"})
    );
    let usage = &reply.body["usage"];
    assert_eq!(usage["message_type"], "usage_statistics");
    assert_eq!(usage["step_count"], 2);
    assert_eq!(
        usage["total_tokens"].as_u64().expect("total"),
        usage["prompt_tokens"].as_u64().expect("prompt") + usage["completion_tokens"].as_u64().expect("completion")
    );

    // The memory edit committed.
    let human = api.get_ok(&format!("/v1/agents/{id}/core-memory/blocks/human")).await;
    assert_eq!(human["value"], "Name: Sam\nlikes tea");

    // The model saw the tool result in its second request.
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0]["model"], "fake");
    let first: Vec<&Value> = requests[0]["messages"].as_array().expect("messages").iter().collect();
    assert_eq!(first[0]["role"], "system");
    assert!(
        first[0]["content"].as_str().expect("system").contains("Name: Sam"),
        "the system prompt shows core memory: {}",
        first[0]["content"]
    );
    assert_eq!(first.last().expect("last")["role"], "user");
    assert_eq!(first.last().expect("last")["content"], "I like tea");
    let tool_names: Vec<&str> = requests[0]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|tool| tool["function"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(tool_names, BUILTIN_TOOLS);
    let second = requests[1]["messages"].as_array().expect("messages");
    let tool_result = second
        .iter()
        .find(|message| message["role"] == "tool")
        .unwrap_or_else(|| panic!("no tool message in {second:?}"));
    assert_eq!(tool_result["tool_call_id"], "call_mem_1");
    assert_eq!(tool_result["content"], "Appended to block \"human\".");
    let call_turn = second
        .iter()
        .find(|message| message["role"] == "assistant")
        .expect("the assistant turn with the call");
    assert_eq!(call_turn["tool_calls"][0]["id"], "call_mem_1");
    assert_eq!(call_turn["tool_calls"][0]["function"]["name"], "core_memory_append");
    assert!(
        second[0]["content"].as_str().expect("system").contains("likes tea"),
        "the second step's system prompt shows the edited memory"
    );

    // History, paged with `after` until empty.
    let history = api.all_messages(&id).await;
    assert_eq!(
        types(&history),
        vec![
            "user_message",
            "tool_call_message",
            "tool_return_message",
            "assistant_message"
        ]
    );
    assert_eq!(history[0]["content"], "I like tea");
    assert_eq!(history[3]["content"], "Noted.");
    assert_eq!(history[1]["id"], messages[0]["id"]);
    let pairs: BTreeSet<(String, String)> = history
        .iter()
        .map(|message| (message["id"].to_string(), message["message_type"].to_string()))
        .collect();
    assert_eq!(pairs.len(), history.len(), "duplicated (id, message_type)");
    // Newest first by default.
    let newest_first = api.get_ok(&format!("/v1/agents/{id}/messages")).await;
    let mut reversed = history.clone();
    reversed.reverse();
    assert_eq!(newest_first, Value::Array(reversed));
    // Without the assistant-message view: the send_message call and return.
    let raw = api
        .get_ok(&format!(
            "/v1/agents/{id}/messages?order=asc&use_assistant_message=false"
        ))
        .await;
    assert_eq!(
        types(raw.as_array().expect("array")),
        vec![
            "user_message",
            "tool_call_message",
            "tool_return_message",
            "tool_call_message",
            "tool_return_message"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_error_stops_with_llm_api_error_and_adds_nothing() {
    let fake = FakeOpenAi::start(vec![FakeReply::status(500)]).expect("fake LLM");
    let dir = TestDir::new();
    let server = Server::with_llm(&dir, &fake.base_url(), &[]);
    let api = Api::new(&server);
    let id = api.create_agent("fails").await;
    let reply = api.post(&format!("/v1/agents/{id}/messages"), &user("hello?")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["messages"], json!([]));
    assert_eq!(reply.body["stop_reason"]["stop_reason"], "llm_api_error");
    assert_eq!(api.all_messages(&id).await, Vec::<Value>::new());
    assert_eq!(fake.requests().len(), 1);

    // The next message works (the fake echoes) and history has only it.
    let reply = api.post(&format!("/v1/agents/{id}/messages"), &user("again")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["stop_reason"]["stop_reason"], "end_turn");
    let messages = reply.body["messages"].as_array().expect("messages");
    assert_eq!(types(messages), vec!["assistant_message"]);
    assert_eq!(messages[0]["content"], "Echo: again");
    let history = api.all_messages(&id).await;
    assert_eq!(types(&history), vec!["user_message", "assistant_message"]);
    assert_eq!(history[0]["content"], "again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tool_stops_with_invalid_tool_call() {
    let fake = FakeOpenAi::start(vec![tool_call("call_bad", "launch_rockets", "{}")]).expect("fake LLM");
    let dir = TestDir::new();
    let server = Server::with_llm(&dir, &fake.base_url(), &[]);
    let api = Api::new(&server);
    let id = api.create_agent("rockets").await;
    let reply = api.post(&format!("/v1/agents/{id}/messages"), &user("launch")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["stop_reason"]["stop_reason"], "invalid_tool_call");
    let messages = reply.body["messages"].as_array().expect("messages");
    assert_eq!(types(messages), vec!["tool_call_message", "tool_return_message"]);
    assert_eq!(messages[0]["tool_call"]["name"], "launch_rockets");
    assert_eq!(messages[1]["status"], "error");
    assert_eq!(messages[1]["tool_call_id"], "call_bad");
    assert_eq!(messages[1]["tool_return"], "Error: unknown tool \"launch_rockets\"");
    assert_eq!(reply.body["usage"]["step_count"], 1);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_steps_stops_a_model_that_always_wants_a_heartbeat() {
    let search = r#"{"query":"anything","request_heartbeat":true}"#;
    let fake = FakeOpenAi::start(vec![
        tool_call("call_1", "conversation_search", search),
        tool_call("call_2", "conversation_search", search),
        tool_call("call_3", "conversation_search", search),
    ])
    .expect("fake LLM");
    let dir = TestDir::new();
    let server = Server::with_llm(&dir, &fake.base_url(), &[]);
    let api = Api::new(&server);
    let id = api.create_agent("loops").await;
    let mut body = user("loop");
    body["max_steps"] = json!(2);
    let reply = api.post(&format!("/v1/agents/{id}/messages"), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["stop_reason"]["stop_reason"], "max_steps");
    assert_eq!(reply.body["usage"]["step_count"], 2);
    let messages = reply.body["messages"].as_array().expect("messages");
    assert_eq!(
        types(messages),
        vec![
            "tool_call_message",
            "tool_return_message",
            "tool_call_message",
            "tool_return_message"
        ]
    );
    assert_eq!(messages[1]["status"], "success");
    assert_eq!(fake.requests().len(), 2, "exactly max_steps LLM calls");
}

// ------------------------------------------------------------------ 6

fn assert_echo_stream(reply: &common::Reply, text: &str) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply.content_type().starts_with("text/event-stream"),
        "content-type {}",
        reply.content_type()
    );
    let events = parse_sse(&reply.text);
    assert!(
        events.iter().all(|event| event.event.is_none()),
        "no event: names on normal chunks: {events:?}"
    );
    let data: Vec<&str> = events.iter().map(|event| event.data.as_str()).collect();
    assert_eq!(data.len(), 4, "{}", reply.text);
    assert_eq!(*data.last().expect("last"), "[DONE]");
    let chunks: Vec<Value> = data[..3]
        .iter()
        .map(|data| serde_json::from_str(data).expect("JSON chunk"))
        .collect();
    assert_eq!(
        types(&chunks),
        vec!["assistant_message", "stop_reason", "usage_statistics"]
    );
    assert_eq!(chunks[0]["content"], format!("Echo: {text}"));
    assert!(chunks[0]["id"].as_str().expect("id").starts_with("message-"));
    assert_eq!(chunks[1]["stop_reason"], "end_turn");
    assert_eq!(chunks[2]["step_count"], 1);
    assert_eq!(
        chunks[2]["total_tokens"].as_u64().expect("total"),
        chunks[2]["prompt_tokens"].as_u64().expect("prompt")
            + chunks[2]["completion_tokens"].as_u64().expect("completion")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_sends_messages_then_stop_reason_usage_and_done() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let id = api.create_agent("streamer").await;

    let reply = api
        .post(&format!("/v1/agents/{id}/messages/stream"), &user("one"))
        .await;
    assert_echo_stream(&reply, "one");

    let mut body = user("two");
    body["streaming"] = json!(true);
    let reply = api.post(&format!("/v1/agents/{id}/messages"), &body).await;
    assert_echo_stream(&reply, "two");

    // `streaming: false` is a plain JSON answer.
    let mut body = user("three");
    body["streaming"] = json!(false);
    let reply = api.post(&format!("/v1/agents/{id}/messages"), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.content_type(), "application/json");
    assert_eq!(reply.body["messages"][0]["content"], "Echo: three");

    let history = api.all_messages(&id).await;
    let contents: Vec<&str> = history
        .iter()
        .map(|message| message["content"].as_str().expect("content"))
        .collect();
    assert_eq!(
        contents,
        vec!["one", "Echo: one", "two", "Echo: two", "three", "Echo: three"]
    );

    // An unknown agent: a JSON 404 before any stream starts.
    let reply = api
        .post(&format!("/v1/agents/{MISSING_AGENT}/messages/stream"), &user("x"))
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.content_type(), "application/json");
    assert_eq!(reply.detail(), format!("Agent {MISSING_AGENT} not found"));
}

// ------------------------------------------------------------------ 7

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_llm_everything_but_messages_works() {
    let dir = TestDir::new();
    let server = Server::start(&dir, &[]);
    let api = Api::new(&server);
    let agent = api
        .post_ok(
            "/v1/agents/",
            &json!({"name": "quiet", "memory_blocks": [{"label": "human", "value": "Sam"}]}),
        )
        .await;
    assert_eq!(agent["llm_config"]["model"], "none");
    let id = agent["id"].as_str().expect("id").to_string();
    api.patch_ok(
        &format!("/v1/agents/{id}/core-memory/blocks/human"),
        &json!({"value": "Kim"}),
    )
    .await;
    api.post_ok("/v1/blocks/", &json!({"label": "notes", "value": "n"}))
        .await;
    for (path, body) in [
        (format!("/v1/agents/{id}/messages"), user("hi")),
        (format!("/v1/agents/{id}/messages/stream"), user("hi")),
    ] {
        let reply = api.post(&path, &body).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text);
        assert_eq!(reply.content_type(), "application/json");
        let detail = reply.detail();
        assert!(detail.contains("--llm-base-url"), "{detail}");
        assert!(detail.starts_with("no LLM is configured"), "{detail}");
    }
    assert_eq!(api.all_messages(&id).await, Vec::<Value>::new());

    // Archival memory needs no LLM (the embedder is local).
    let inserted = api
        .post_ok(&format!("/v1/agents/{id}/archival-memory"), &json!({"text": "a fact"}))
        .await;
    assert_eq!(inserted[0]["text"], "a fact");
    assert_eq!(
        api.get_ok(&format!("/v1/agents/{id}/archival-memory/search?query=fact"))
            .await["count"],
        1
    );
}

// ------------------------------------------------------------------ 8

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archival_memory_insert_list_search_delete() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let id = api.create_agent("archivist").await;
    let path = format!("/v1/agents/{id}/archival-memory");
    let texts = [
        "the cat sat on the mat",
        "dogs chase balls in the park",
        "quantum computers use qubits",
    ];
    let mut inserted = Vec::new();
    for text in texts {
        let reply = api.post(&path, &json!({"text": text, "tags": ["t"]})).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let list = reply.body.as_array().expect("a JSON array");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["text"], text);
        assert_eq!(list[0]["tags"], json!(["t"]));
        assert!(list[0]["id"].as_str().expect("id").starts_with("passage-"));
        inserted.push(list[0].clone());
    }
    let listed = api.get_ok(&path).await;
    let mut listed_texts: Vec<String> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|passage| passage["text"].as_str().expect("text").to_string())
        .collect();
    listed_texts.sort();
    let mut expected: Vec<String> = texts.iter().map(|text| text.to_string()).collect();
    expected.sort();
    assert_eq!(listed_texts, expected);

    let search = api.get_ok(&format!("{path}/search?query=cat%20mat")).await;
    let results = search["results"].as_array().expect("results");
    assert_eq!(search["count"].as_u64(), Some(results.len() as u64));
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["content"], "the cat sat on the mat");
    assert_eq!(results[0]["id"], inserted[0]["id"]);
    assert!(results[0]["timestamp"].is_string());
    let top1 = api.get_ok(&format!("{path}/search?query=cat%20mat&top_k=1")).await;
    assert_eq!(top1["count"], 1);

    let cat_id = inserted[0]["id"].as_str().expect("id").to_string();
    let reply = api.delete(&format!("{path}/{cat_id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({"message": format!("Passage id={cat_id} successfully deleted")})
    );
    let search = api.get_ok(&format!("{path}/search?query=cat%20mat")).await;
    assert_eq!(search["count"], 2);
    assert!(
        search["results"]
            .as_array()
            .expect("results")
            .iter()
            .all(|result| result["id"] != cat_id.as_str()),
        "{search}"
    );
    assert_eq!(api.get_ok(&path).await.as_array().expect("array").len(), 2);

    let reply = api.delete(&format!("{path}/{cat_id}")).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.detail(), format!("Passage {cat_id} not found"));
    let reply = api.delete(&format!("{path}/passage-nope")).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.detail(), "Passage passage-nope not found");
    let reply = api.get(&format!("{path}/search")).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.detail(), "query parameter `query` is required");
    let reply = api.post(&path, &json!({"text": "  "})).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.detail(), "text must not be empty");
    let reply = api.get(&format!("/v1/agents/{MISSING_AGENT}/archival-memory")).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
}

// ------------------------------------------------------------------ 9

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_builtins_custom_duplicates_attach_detach() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let listed = api.get_ok("/v1/tools/").await;
    assert_eq!(names(&listed), BUILTIN_TOOLS);
    assert_eq!(names(&api.get_ok("/v1/tools").await), BUILTIN_TOOLS);

    let source = "def roll_dice(sides: int) -> str:\n    \"\"\"Roll a die with this many sides.\n\n    Args:\n        sides: how many sides\n    \"\"\"\n    return str(4)\n";
    let reply = api.post("/v1/tools/", &json!({"source_code": source})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let tool = reply.body;
    let tool_id = tool["id"].as_str().expect("id").to_string();
    assert!(tool_id.starts_with("tool-"), "{tool_id}");
    assert_eq!(tool["name"], "roll_dice");
    assert_eq!(tool["tool_type"], "custom");
    assert_eq!(tool["source_type"], "python");
    assert_eq!(tool["source_code"], source);
    assert_eq!(tool["description"], "Roll a die with this many sides.");
    assert_eq!(
        tool["json_schema"],
        json!({
            "name": "roll_dice",
            "description": "Roll a die with this many sides.",
            "parameters": {
                "type": "object",
                "properties": {"sides": {"type": "integer"}},
                "required": ["sides"],
            },
        })
    );
    assert_eq!(api.get_ok(&format!("/v1/tools/{tool_id}")).await, tool);
    let mut with_custom: Vec<String> = BUILTIN_TOOLS.iter().map(|name| name.to_string()).collect();
    with_custom.push("roll_dice".to_string());
    assert_eq!(names(&api.get_ok("/v1/tools/").await), with_custom);
    assert_eq!(
        ids(&api.get_ok("/v1/tools/?name=roll_dice").await),
        vec![tool_id.clone()]
    );

    let reply = api.post("/v1/tools/", &json!({"source_code": source})).await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(reply.detail(), "a tool named \"roll_dice\" already exists");
    let reply = api
        .post(
            "/v1/tools/",
            &json!({"source_code": "def send_message(message: str) -> None:\n    pass\n"}),
        )
        .await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(reply.detail(), "tool name \"send_message\" is a built-in tool");
    let reply = api.post("/v1/tools/", &json!({"source_code": "x = 1"})).await;
    assert_eq!(reply.status, 422, "{}", reply.text);

    let agent = api.create_agent("gamer").await;
    let attached = api
        .patch_empty(&format!("/v1/agents/{agent}/tools/attach/{tool_id}"))
        .await;
    assert_eq!(attached.status, 200, "{}", attached.text);
    assert_eq!(names(&attached.body["tools"]), with_custom);
    assert_eq!(
        names(&api.get_ok(&format!("/v1/agents/{agent}/tools")).await),
        with_custom
    );
    let detached = api
        .patch_empty(&format!("/v1/agents/{agent}/tools/detach/{tool_id}"))
        .await;
    assert_eq!(detached.status, 200, "{}", detached.text);
    assert_eq!(names(&detached.body["tools"]), BUILTIN_TOOLS);
    assert_eq!(
        names(&api.get_ok(&format!("/v1/agents/{agent}")).await["tools"]),
        BUILTIN_TOOLS
    );
    let reply = api
        .patch_empty(&format!("/v1/agents/{agent}/tools/detach/{tool_id}"))
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(
        reply.detail(),
        format!("Tool {tool_id} attached to agent {agent} not found")
    );
    let missing_tool = "tool-00000000-0000-4000-8000-000000000000";
    let reply = api
        .patch_empty(&format!("/v1/agents/{agent}/tools/attach/{missing_tool}"))
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.detail(), format!("Tool {missing_tool} not found"));

    let reply = api.delete(&format!("/v1/tools/{tool_id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({"message": format!("Tool id={tool_id} successfully deleted")})
    );
    assert_eq!(names(&api.get_ok("/v1/tools/").await), BUILTIN_TOOLS);
    let reply = api.get(&format!("/v1/tools/{tool_id}")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.detail(), format!("Tool {tool_id} not found"));
}

// ------------------------------------------------------------------ 10

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_and_reject_reuse() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let body = json!({"name": "once", "memory_blocks": [{"label": "human", "value": "Sam"}]});
    let first = api.post_keyed("/v1/agents/", &body, "k1").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let second = api.post_keyed("/v1/agents/", &body, "k1").await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body, first.body);
    assert_eq!(api.count().await, 1);
    assert_eq!(
        api.get_ok("/v1/blocks/?label=human")
            .await
            .as_array()
            .expect("array")
            .len(),
        1
    );

    let reply = api.post_keyed("/v1/agents/", &json!({"name": "twice"}), "k1").await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(
        reply.detail(),
        "Idempotency-Key was already used with a different request (method, path or body)"
    );
    assert_eq!(api.count().await, 1);
    assert_eq!(api.get_ok("/v1/agents/?name=twice").await, json!([]));

    // The same key on another route is another request.
    let block = api
        .post_keyed("/v1/blocks/", &json!({"label": "notes", "value": "n"}), "k1")
        .await;
    assert_eq!(block.status, 200, "{}", block.text);
    let again = api
        .post_keyed("/v1/blocks/", &json!({"label": "notes", "value": "n"}), "k1")
        .await;
    assert_eq!(again.body, block.body);
    assert_eq!(
        api.get_ok("/v1/blocks/?label=notes")
            .await
            .as_array()
            .expect("array")
            .len(),
        1
    );

    // A keyed message is answered once: the retry replays the answer.
    let id = first.body["id"].as_str().expect("id").to_string();
    let sent = api
        .post_keyed(&format!("/v1/agents/{id}/messages"), &user("only once"), "m-once")
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    let resent = api
        .post_keyed(&format!("/v1/agents/{id}/messages"), &user("only once"), "m-once")
        .await;
    assert_eq!(resent.status, 200, "{}", resent.text);
    assert_eq!(resent.body["messages"], sent.body["messages"]);
    let history = api.all_messages(&id).await;
    assert_eq!(types(&history), vec!["user_message", "assistant_message"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_create_retried_after_a_crash_returns_the_original() {
    let dir = TestDir::new();
    let body = json!({"name": "survivor", "memory_blocks": [{"label": "persona", "value": "tough"}]});
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let first = api.post_keyed("/v1/agents/", &body, "crash-key").await;
    assert_eq!(first.status, 200, "{}", first.text);
    server.crash();

    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let retry = api.post_keyed("/v1/agents/", &body, "crash-key").await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.body["id"], first.body["id"]);
    assert_eq!(retry.body, first.body);
    assert_eq!(api.count().await, 1);
    assert_eq!(names(&api.get_ok("/v1/agents/").await), vec!["survivor".to_string()]);
    let reply = api
        .post_keyed("/v1/agents/", &json!({"name": "impostor"}), "crash-key")
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_of_a_running_keyed_request_is_409() {
    let fake = FakeOpenAi::start(vec![FakeReply::Hang]).expect("fake LLM");
    let dir = TestDir::new();
    let server = Server::with_llm(&dir, &fake.base_url(), &["--llm-timeout-secs", "1"]);
    let api = Api::new(&server);
    let id = api.create_agent("busy").await;
    let path = format!("/v1/agents/{id}/messages");
    let body = user("slow one");
    let first = api.post_keyed(&path, &body, "m1");
    let duplicate = async {
        let arrived = common::poll_until(Duration::from_secs(10), || !fake.requests().is_empty()).await;
        assert!(arrived, "the first request never reached the LLM");
        api.post_keyed(&path, &body, "m1").await
    };
    let (first, duplicate) = tokio::join!(first, duplicate);
    assert_eq!(duplicate.status, 409, "{}", duplicate.text);
    assert_eq!(
        duplicate.detail(),
        "a request with this Idempotency-Key is still running; retry when it has finished"
    );
    // The first one ends when the LLM call times out.
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["stop_reason"]["stop_reason"], "llm_api_error");
    assert_eq!(fake.requests().len(), 1, "the duplicate never ran");
}

// ------------------------------------------------------------------ 11

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_locked_data_dir_exits_and_the_first_keeps_serving() {
    let dir = TestDir::new();
    let first = Server::scripted(&dir);
    let api = Api::new(&first);
    let id = api.create_agent("holder").await;
    let failed = match Server::try_start(&dir, &["--llm-provider", "scripted"]) {
        Ok(second) => panic!("a second server started on a locked data dir at {}", second.base),
        Err(failed) => failed,
    };
    let status = failed.status.expect("the second server exited");
    assert!(!status.success(), "{status}");
    assert_eq!(status.code(), Some(2), "{}", failed.stderr);
    assert!(failed.stderr.contains("locked"), "{}", failed.stderr);
    assert!(failed.polls < 500, "took {} polls of 10 ms to exit", failed.polls);
    assert_eq!(api.get_ok("/v1/health/").await["status"], "ok");
    assert_eq!(api.get_ok(&format!("/v1/agents/{id}")).await["name"], "holder");
    api.create_agent("after").await;
    assert_eq!(api.count().await, 2);
}

// ------------------------------------------------------------------ 12

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_without_panics() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let id = api.create_agent("target").await;

    let reply = common::read(
        api.request(reqwest::Method::POST, "/v1/agents/")
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert!(
        reply.detail().starts_with("invalid request body: "),
        "{}",
        reply.detail()
    );
    let reply = api.post("/v1/agents/", &json!({"name": 7})).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert!(reply.detail().starts_with("invalid request body: "));
    let reply = api.post("/v1/agents/", &json!({"name": "  "})).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.detail(), "name must be 1 to 256 characters");
    let reply = api.post("/v1/blocks/", &json!({"value": "no label"})).await;
    assert_eq!(reply.status, 422, "{}", reply.text);

    for (path, detail) in [
        ("/v1/agents/?limit=0", "limit=\"0\" must be an integer in 1..=1000"),
        ("/v1/agents/?limit=-1", "limit=\"-1\" must be an integer in 1..=1000"),
        ("/v1/agents/?limit=abc", "limit=\"abc\" must be an integer in 1..=1000"),
        (
            "/v1/agents/?limit=1001",
            "limit=\"1001\" must be an integer in 1..=1000",
        ),
        ("/v1/blocks/?limit=0", "limit=\"0\" must be an integer in 1..=1000"),
        ("/v1/tools/?limit=0", "limit=\"0\" must be an integer in 1..=1000"),
        ("/v1/agents/?order=sideways", "order=\"sideways\" must be asc or desc"),
        (
            "/v1/agents/?match_all_tags=maybe",
            "query parameter match_all_tags=\"maybe\" is not a boolean",
        ),
    ] {
        let reply = api.get(path).await;
        assert_eq!(reply.status, 422, "{path}: {}", reply.text);
        assert_eq!(reply.detail(), detail, "{path}");
    }
    let reply = api.get(&format!("/v1/agents/{id}/messages?limit=0")).await;
    assert_eq!(reply.status, 422, "{}", reply.text);

    for bad in [
        "not-an-id",
        "agent-123",
        "agent-zzzzzzzz-0000-4000-8000-000000000000",
        MISSING_AGENT,
    ] {
        let reply = api.get(&format!("/v1/agents/{bad}")).await;
        assert_eq!(reply.status, 404, "{bad}: {}", reply.text);
        assert_eq!(reply.detail(), format!("Agent {bad} not found"));
        let reply = api.patch(&format!("/v1/agents/{bad}"), &json!({"name": "x"})).await;
        assert_eq!(reply.status, 404, "{bad}: {}", reply.text);
        assert_eq!(reply.detail(), format!("Agent {bad} not found"));
        let reply = api.delete(&format!("/v1/agents/{bad}")).await;
        assert_eq!(reply.status, 404, "{bad}: {}", reply.text);
        let reply = api.post(&format!("/v1/agents/{bad}/messages"), &user("hi")).await;
        assert_eq!(reply.status, 404, "{bad}: {}", reply.text);
        let reply = api.get(&format!("/v1/agents/{bad}/messages")).await;
        assert_eq!(reply.status, 404, "{bad}: {}", reply.text);
        let reply = api.get(&format!("/v1/agents/{bad}/core-memory/blocks")).await;
        assert_eq!(reply.status, 404, "{bad}: {}", reply.text);
    }
    for bad in ["nope", "block-1"] {
        let reply = api.get(&format!("/v1/blocks/{bad}")).await;
        assert_eq!(reply.status, 404, "{bad}: {}", reply.text);
        let reply = api.patch(&format!("/v1/blocks/{bad}"), &json!({"value": "v"})).await;
        assert_eq!(reply.status, 404, "{bad}: {}", reply.text);
        let reply = api.get(&format!("/v1/tools/{bad}")).await;
        assert_eq!(reply.status, 404, "{bad}: {}", reply.text);
    }
    // Message bodies.
    let path = format!("/v1/agents/{id}/messages");
    let reply = api.post(&path, &json!({})).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.detail(), "send at least one message (messages or input)");
    let reply = api
        .post(&path, &json!({"messages": [{"role": "tool", "content": "x"}]}))
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    let mut body = user("hi");
    body["max_steps"] = json!(0);
    let reply = api.post(&path, &body).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.detail(), "max_steps=0 is outside 1..=1000");
    let reply = common::read(
        api.request(reqwest::Method::POST, "/v1/agents/")
            .header("Idempotency-Key", "")
            .json(&json!({}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.detail(), "Idempotency-Key must be 1 to 255 characters");
    // Oversized block label.
    let reply = api
        .post("/v1/blocks/", &json!({"label": "l".repeat(10_000), "value": "v"}))
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);

    // Still healthy, nothing created by the bad requests, no panic.
    assert_eq!(api.get_ok("/v1/health/").await["status"], "ok");
    assert_eq!(api.count().await, 1);
    assert_eq!(api.get_ok(&format!("/v1/agents/{id}")).await["name"], "target");
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_tools_list_in_creation_order_and_page_with_after() {
    // Custom tool ids are derived from the name (not time-ordered); the list
    // is still in creation order (created_at, ties by id), built-ins first.
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let created: Vec<&str> = vec!["zeta_tool", "alpha_tool", "mid_tool", "beta_tool"];
    for name in &created {
        let source = format!("def {name}(x: str) -> str:\n    \"\"\"Does {name}.\"\"\"\n    return x\n");
        api.post_ok("/v1/tools/", &json!({"source_code": source})).await;
    }
    let mut expected: Vec<String> = BUILTIN_TOOLS.iter().map(|name| name.to_string()).collect();
    expected.extend(created.iter().map(|name| name.to_string()));
    assert_eq!(names(&api.get_ok("/v1/tools/?order=asc").await), expected);
    let paged = page_all(&api, "/v1/tools/?order=asc&limit=3", "after").await;
    assert_eq!(names(&Value::Array(paged)), expected);
}

#[tokio::test]
async fn a_keyed_delete_retried_returns_the_first_response_and_an_unkeyed_one_is_404() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let agent = api.create_agent("doomed").await;
    let path = format!("/v1/agents/{agent}");
    let keyed = |key: &'static str| {
        api.request(reqwest::Method::DELETE, &path)
            .header("idempotency-key", key)
            .send()
    };
    let first = common::read(keyed("d1").await.expect("send")).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(
        first.body,
        json!({"message": format!("Agent id={agent} successfully deleted")})
    );
    let retry = common::read(keyed("d1").await.expect("send")).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.body, first.body);
    let unkeyed = api.delete(&path).await;
    assert_eq!(unkeyed.status, 404, "{}", unkeyed.text);
    assert_eq!(unkeyed.detail(), format!("Agent {agent} not found"));
    assert_eq!(api.count().await, 0);
}

/// Review findings: each of these once broke an agent or returned a 500.
#[tokio::test]
async fn review_regressions_stay_fixed() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);

    // Malformed ids are 404s, never storage errors.
    let reply = api.post("/v1/agents/", &json!({"block_ids": [""]})).await;
    assert_eq!(
        (reply.status, reply.detail()),
        (404, "Block  not found"),
        "{}",
        reply.text
    );
    let agent = api.create_agent("reviewed").await;
    let long = "x".repeat(1100);
    let reply = api
        .patch_empty(&format!("/v1/agents/{agent}/core-memory/blocks/attach/{long}"))
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(api.get(&format!("/v1/blocks/{long}")).await.status, 404);
    assert_eq!(api.get(&format!("/v1/tools/{long}")).await.status, 404);

    // A shared block renamed to a label the agent already has does not
    // break the agent's messages.
    let blocks = api.get_ok(&format!("/v1/agents/{agent}/core-memory/blocks")).await;
    let human = blocks
        .as_array()
        .expect("array")
        .iter()
        .find(|block| block["label"] == "human")
        .expect("human block")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let renamed = api
        .patch(&format!("/v1/blocks/{human}"), &json!({"label": "persona"}))
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    let sent = api
        .post(
            &format!("/v1/agents/{agent}/messages"),
            &json!({"messages": [{"role": "user", "content": "still there?"}]}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    assert_eq!(sent.body["messages"][0]["content"], "Echo: still there?");

    // Tool creates under an Idempotency-Key: a retry gets the first
    // response, the key with another tool is 422, and creates nothing.
    let tool = |name: &str| json!({"source_code": format!("def {name}(x: str) -> str:\n    return x\n")});
    let first = api.post_keyed("/v1/tools/", &tool("alpha_tool"), "t1").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let retry = api.post_keyed("/v1/tools/", &tool("alpha_tool"), "t1").await;
    assert_eq!((retry.status, &retry.body), (200, &first.body), "{}", retry.text);
    let reused = api.post_keyed("/v1/tools/", &tool("beta_tool"), "t1").await;
    assert_eq!(
        (reused.status, reused.detail()),
        (422, "Idempotency-Key was already used with a different request body"),
        "{}",
        reused.text
    );
    assert_eq!(api.get_ok("/v1/tools/?name=beta_tool").await, json!([]));
    let bad = api.post("/v1/tools/", &tool("has space")).await;
    assert_eq!(bad.status, 422, "{}", bad.text);
}

#[tokio::test]
async fn concurrent_messages_to_one_agent_run_one_after_the_other() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let agent = api.create_agent("queue").await;
    let path = format!("/v1/agents/{agent}/messages");
    let send = |text: &str| {
        let body = json!({"messages": [{"role": "user", "content": text}]});
        let (api, path) = (&api, path.clone());
        async move { api.post(&path, &body).await }
    };
    let (a, b, c) = tokio::join!(send("one"), send("two"), send("three"));
    for reply in [&a, &b, &c] {
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    // Each run's user message is followed by its own answer: the runs did
    // not interleave.
    let history = api.all_messages(&agent).await;
    let contents: Vec<&str> = history
        .iter()
        .map(|message| message["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(contents.len(), 6, "{contents:?}");
    for pair in contents.chunks(2) {
        assert_eq!(format!("Echo: {}", pair[0]), pair[1], "{contents:?}");
    }
}

#[tokio::test]
async fn a_keyed_request_whose_reply_is_too_large_to_journal_fails_cleanly() {
    let dir = TestDir::new();
    let mut server = Server::scripted(&dir);
    let api = Api::new(&server);
    // Two blocks of 200,000 characters: the agent as a response (blocks are
    // listed twice, in `blocks` and `memory.blocks`) is over the journal's
    // per-result limit.
    let big = "a".repeat(200_000);
    let agent = api
        .post_ok(
            "/v1/agents/",
            &json!({"name": "big", "memory_blocks": [
                {"label": "one", "value": big, "limit": 200_000},
                {"label": "two", "value": big, "limit": 200_000},
            ]}),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let path = format!("/v1/agents/{agent}");
    let keyed = api
        .request(reqwest::Method::PATCH, &path)
        .header("idempotency-key", "big-1")
        .json(&json!({"description": "renamed"}))
        .send()
        .await
        .expect("send");
    let keyed = common::read(keyed).await;
    assert_eq!(keyed.status, 500, "{}", keyed.text);
    assert!(keyed.detail().contains("cannot be stored"), "{}", keyed.text);
    assert_eq!(api.get_ok(&path).await["description"], Value::Null, "nothing applied");
    // The agent is not poisoned: unkeyed changes work, also after a restart
    // (activation does not replay the failed entry forever).
    assert_eq!(api.patch(&path, &json!({"description": "ok"})).await.status, 200);
    server.terminate();
    server.wait_exit(std::time::Duration::from_secs(10)).expect("exits");
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let reply = api.patch(&path, &json!({"description": "after restart"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(api.get_ok(&path).await["description"], "after restart");
}

#[tokio::test]
async fn an_agents_block_is_found_by_label_or_by_id() {
    let dir = TestDir::new();
    let server = Server::scripted(&dir);
    let api = Api::new(&server);
    let agent = api.create_agent("by-id").await;
    let by_label = api
        .get_ok(&format!("/v1/agents/{agent}/core-memory/blocks/human"))
        .await;
    let id = by_label["id"].as_str().expect("id").to_string();
    let by_id = api.get_ok(&format!("/v1/agents/{agent}/core-memory/blocks/{id}")).await;
    assert_eq!(by_id, by_label);
    let patched = api
        .patch_ok(
            &format!("/v1/agents/{agent}/core-memory/blocks/{id}"),
            &json!({"value": "The human is Alex."}),
        )
        .await;
    assert_eq!(patched["label"], "human");
    assert_eq!(patched["value"], "The human is Alex.");
    let missing = api.get(&format!("/v1/agents/{agent}/core-memory/blocks/nope")).await;
    assert_eq!(
        (missing.status, missing.detail()),
        (
            404,
            format!("Block with label \"nope\" of agent {agent} not found").as_str()
        )
    );
}

#[tokio::test]
async fn archival_memory_can_use_an_openai_compatible_embeddings_api() {
    let fake = FakeOpenAi::start(Vec::new()).expect("fake embeddings API");
    let dir = TestDir::new();
    let server = Server::start(
        &dir,
        &[
            "--llm-provider",
            "scripted",
            "--embedding-base-url",
            &fake.base_url(),
            "--embedding-model",
            "fake-embed",
            "--embedding-dimensions",
            "64",
        ],
    );
    let api = Api::new(&server);
    let id = api.create_agent("remote-embeddings").await;
    let agent = api.get_ok(&format!("/v1/agents/{id}")).await;
    assert_eq!(
        agent["embedding_config"],
        json!({"embedding_model": "fake-embed", "embedding_endpoint_type": "openai", "embedding_dim": 64})
    );
    let path = format!("/v1/agents/{id}/archival-memory");
    for text in ["the cat sat on the mat", "quantum computers use qubits"] {
        assert_eq!(api.post(&path, &json!({"text": text})).await.status, 200);
    }
    let found = api.get_ok(&format!("{path}/search?query=cat%20mat&top_k=1")).await;
    assert_eq!(found["count"], 1);
    assert_eq!(found["results"][0]["content"], "the cat sat on the mat");
    let embedding_calls: Vec<_> = fake
        .recorded()
        .into_iter()
        .filter(|request| request.path == "/v1/embeddings")
        .collect();
    // Two inserts and one search query.
    assert_eq!(embedding_calls.len(), 3);
}

#[tokio::test]
async fn working_memory_entries_expire_and_are_shown_to_the_model_while_live() {
    let fake = FakeOpenAi::start(Vec::new()).expect("fake LLM");
    let dir = TestDir::new();
    let server = Server::with_llm(&dir, &fake.base_url(), &[]);
    let api = Api::new(&server);
    let agent = api.create_agent("scratch").await;
    let base = format!("/v1/agents/{agent}/working-memory");
    let put = |key: &str, body: Value| {
        api.request(reqwest::Method::PUT, &format!("{base}/{key}"))
            .json(&body)
            .send()
    };
    let kept = common::read(put("mood", json!({"value": "curious"})).await.expect("send")).await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    assert_eq!(
        kept.body,
        json!([{"key": "mood", "value": "curious", "expires_at": null}])
    );
    let brief = common::read(
        put("flash", json!({"value": "gone soon", "ttl_ms": 300}))
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(brief.status, 200, "{}", brief.text);
    assert_eq!(api.get_ok(&base).await.as_array().expect("array").len(), 2);

    // The model sees live entries in its system prompt.
    let sent = api.post(&format!("/v1/agents/{agent}/messages"), &user("hi")).await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    let system = fake.requests()[0]["messages"][0]["content"]
        .as_str()
        .expect("system prompt")
        .to_string();
    assert!(
        system.contains("<working_memory>\n- flash: gone soon\n- mood: curious\n</working_memory>"),
        "{system}"
    );

    // Expired entries disappear and never count toward the capacity.
    let only_mood = json!([{"key": "mood", "value": "curious", "expires_at": null}]);
    let mut listed = api.get_ok(&base).await;
    for _ in 0..100 {
        if listed == only_mood {
            break;
        }
        // The server is another process: blocking this test's thread is fine.
        std::thread::sleep(std::time::Duration::from_millis(50));
        listed = api.get_ok(&base).await;
    }
    assert_eq!(listed, only_mood);
    let too_big = common::read(
        put("huge", json!({"value": "x".repeat(70 * 1024)}))
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(too_big.status, 422, "{}", too_big.text);
    assert_eq!(
        api.get_ok(&base).await.as_array().expect("array").len(),
        1,
        "nothing applied"
    );
    let removed = api.delete(&format!("{base}/mood")).await;
    assert_eq!(
        (removed.status, removed.body.clone()),
        (200, json!([])),
        "{}",
        removed.text
    );
    let missing = api.delete(&format!("{base}/mood")).await;
    assert_eq!(missing.status, 404, "{}", missing.text);
}
