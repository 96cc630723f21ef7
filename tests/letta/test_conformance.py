"""Letta API conformance suite for the Kelpie agent server.

Uses ONLY the official Python SDK (``letta-client``, pinned in requirements.txt) against a running
server whose base URL is given in ``KELPIE_URL``. The server must be configured with the echo LLM
(fake-llm ``--llm-model echo``): every turn calls ``send_message`` with
``{"message": "Echo: <last user text>"}``.

Responses are parsed with the SDK's *strict* validation (set ``KELPIE_STRICT=0`` to use the SDK's
default lenient parsing), so missing required fields fail loudly.

See crates/kelpie-server/LETTA_API.md for the wire contract these tests encode.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, Iterator, List

import pytest
from letta_client import Letta, NotFoundError, UnprocessableEntityError

BUILTIN_TOOLS = {
    "send_message",
    "core_memory_append",
    "core_memory_replace",
    "archival_memory_insert",
    "archival_memory_search",
    "conversation_search",
}
MISSING_AGENT = "agent-00000000-0000-4000-8000-000000000000"
# Max pages we are willing to fetch before declaring that pagination does not terminate.
MAX_PAGES = 200


# --------------------------------------------------------------------------- helpers / fixtures


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def text_of(content: Any) -> str:
    """Text of a message `content` (str, or list of text parts)."""
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        t = getattr(part, "text", None)
        if t is None and isinstance(part, dict):
            t = part.get("text")
        if t is not None:
            parts.append(t)
    return "".join(parts)


def msg_type(m: Any) -> str:
    return getattr(m, "message_type", None) or ""


def assistant_texts(messages: List[Any]) -> List[str]:
    return [text_of(m.content) for m in messages if msg_type(m) == "assistant_message"]


@pytest.fixture(scope="session")
def base_url() -> str:
    url = os.environ.get("KELPIE_URL")
    if not url:
        pytest.fail("KELPIE_URL is not set (e.g. http://127.0.0.1:8283)")
    return url.rstrip("/")


@pytest.fixture(scope="session")
def client(base_url: str) -> Letta:
    strict = os.environ.get("KELPIE_STRICT", "1") != "0"
    # max_retries=0: a 5xx must surface as a failure, not be silently retried.
    return Letta(base_url=base_url, max_retries=0, timeout=60.0, _strict_response_validation=strict)


@pytest.fixture
def cleanup(client: Letta) -> Iterator[List[tuple]]:
    """Collects (kind, id) pairs to delete after the test; errors are ignored."""
    items: List[tuple] = []
    yield items
    for kind, ident in reversed(items):
        try:
            if kind == "agent":
                client.agents.delete(ident)
            elif kind == "block":
                client.blocks.delete(ident)
            elif kind == "tool":
                client.tools.delete(ident)
        except Exception:
            pass


def make_agent(client: Letta, cleanup: List[tuple], *, persona_limit: int = 5000, **kw: Any):
    kw.setdefault("name", uniq("agent"))
    kw.setdefault(
        "memory_blocks",
        [
            {"label": "persona", "value": "I am Kelpie, a helpful agent.", "limit": persona_limit},
            {"label": "human", "value": "The human is a tester.", "limit": 5000},
        ],
    )
    agent = client.agents.create(**kw)
    cleanup.append(("agent", agent.id))
    return agent


def send(client: Letta, agent_id: str, text: str, **kw: Any):
    return client.agents.messages.create(agent_id, messages=[{"role": "user", "content": text}], **kw)


def count_agents(client: Letta) -> int:
    # letta-client 1.x has no agents.count(); the endpoint is GET /v1/agents/count -> bare int.
    return client.get("/v1/agents/count", cast_to=int)


# --------------------------------------------------------------------------- health


def test_health(client: Letta) -> None:
    h = client.health()
    assert h.status == "ok"
    assert isinstance(h.version, str) and h.version != ""


# --------------------------------------------------------------------------- agents


def test_agent_create_and_retrieve(client: Letta, cleanup: List[tuple]) -> None:
    name = uniq("create")
    tag = uniq("tag")
    agent = make_agent(client, cleanup, name=name, tags=[tag, "conformance"], description="a test agent")
    assert isinstance(agent.id, str) and agent.id
    assert agent.name == name
    assert sorted(agent.tags) == sorted([tag, "conformance"])
    assert agent.description == "a test agent"
    assert isinstance(agent.system, str)
    assert agent.llm_config is not None and isinstance(agent.llm_config.model, str)
    blocks = {b.label: b for b in agent.blocks}
    assert set(blocks) == {"persona", "human"}
    assert blocks["persona"].value == "I am Kelpie, a helpful agent."
    assert blocks["persona"].limit == 5000
    assert blocks["human"].value == "The human is a tester."
    mem_blocks = {b.label: b.value for b in agent.memory.blocks}
    assert mem_blocks == {"persona": "I am Kelpie, a helpful agent.", "human": "The human is a tester."}
    tool_names = {t.name for t in agent.tools}
    assert "send_message" in tool_names

    got = client.agents.retrieve(agent.id)
    assert got.id == agent.id
    assert got.name == name
    assert sorted(got.tags) == sorted([tag, "conformance"])
    assert got.description == "a test agent"
    assert {b.label: b.value for b in got.blocks} == {b.label: b.value for b in agent.blocks}
    assert {t.name for t in got.tools} == tool_names


def test_agent_update(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup, tags=["old"], description="before")
    new_name = uniq("renamed")
    updated = client.agents.update(agent.id, name=new_name, description="after", tags=["new1", "new2"])
    assert updated.id == agent.id
    assert updated.name == new_name
    assert updated.description == "after"
    assert sorted(updated.tags) == ["new1", "new2"]
    got = client.agents.retrieve(agent.id)
    assert got.name == new_name
    assert got.description == "after"
    assert sorted(got.tags) == ["new1", "new2"]
    # untouched fields are preserved
    assert {b.label: b.value for b in got.blocks} == {b.label: b.value for b in agent.blocks}
    # partial update: only description
    client.agents.update(agent.id, description="only-desc")
    got = client.agents.retrieve(agent.id)
    assert got.name == new_name
    assert got.description == "only-desc"
    assert sorted(got.tags) == ["new1", "new2"]


def test_agent_list_filters_order_and_pagination(client: Letta, cleanup: List[tuple]) -> None:
    tag = uniq("listtag")
    extra = uniq("extra")
    created = []
    for i in range(3):
        tags = [tag, extra] if i == 0 else [tag]
        created.append(make_agent(client, cleanup, name=uniq(f"list{i}"), tags=tags))
        time.sleep(0.05)  # distinct created_at
    ids = [a.id for a in created]

    # tag filter (ANY), ascending / descending by creation time
    asc = client.agents.list(tags=[tag], order="asc", limit=50).items
    assert [a.id for a in asc] == ids
    desc = client.agents.list(tags=[tag], order="desc", limit=50).items
    assert [a.id for a in desc] == list(reversed(ids))

    # name filter (exact)
    by_name = client.agents.list(name=created[1].name).items
    assert [a.id for a in by_name] == [ids[1]]

    # match_all_tags
    all_tags = client.agents.list(tags=[tag, extra], match_all_tags=True, order="asc").items
    assert [a.id for a in all_tags] == [ids[0]]
    any_tags = client.agents.list(tags=[tag, extra], match_all_tags=False, order="asc").items
    assert [a.id for a in any_tags] == ids

    # limit
    page1 = client.agents.list(tags=[tag], order="asc", limit=2).items
    assert [a.id for a in page1] == ids[:2]

    # after / before cursors (relative to the sort order)
    assert [a.id for a in client.agents.list(tags=[tag], order="asc", after=ids[1]).items] == ids[2:]
    assert [a.id for a in client.agents.list(tags=[tag], order="asc", after=ids[2]).items] == []
    assert [a.id for a in client.agents.list(tags=[tag], order="asc", before=ids[2]).items] == ids[:2]
    assert [a.id for a in client.agents.list(tags=[tag], order="asc", before=ids[0]).items] == []
    # before + limit returns the items closest to the cursor
    assert [a.id for a in client.agents.list(tags=[tag], order="asc", before=ids[2], limit=1).items] == [ids[1]]
    assert [a.id for a in client.agents.list(tags=[tag], order="desc", after=ids[2], limit=1).items] == [ids[1]]

    # SDK auto-pagination (after=<last id> until an empty page) must terminate with no duplicates
    seen = []
    for a in client.agents.list(tags=[tag], order="asc", limit=1):
        seen.append(a.id)
        assert len(seen) <= 3 * 2, "auto-pagination does not terminate"
    assert seen == ids


def test_agent_count(client: Letta, cleanup: List[tuple]) -> None:
    before = count_agents(client)
    assert isinstance(before, int) and before >= 0
    agent = make_agent(client, cleanup)
    assert count_agents(client) == before + 1
    client.agents.delete(agent.id)
    assert count_agents(client) == before


def test_agent_delete(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup)
    client.agents.delete(agent.id)
    with pytest.raises(NotFoundError) as ei:
        client.agents.retrieve(agent.id)
    assert ei.value.status_code == 404
    assert client.agents.list(name=agent.name).items == []
    with pytest.raises(NotFoundError):
        client.agents.delete(agent.id)


def test_unknown_agent_is_404(client: Letta) -> None:
    calls = [
        lambda: client.agents.retrieve(MISSING_AGENT),
        lambda: client.agents.update(MISSING_AGENT, name="x"),
        lambda: client.agents.delete(MISSING_AGENT),
        lambda: client.agents.blocks.list(MISSING_AGENT),
        lambda: client.agents.blocks.retrieve("persona", agent_id=MISSING_AGENT),
        lambda: client.agents.messages.list(MISSING_AGENT),
        lambda: send(client, MISSING_AGENT, "hello"),
        lambda: client.agents.passages.list(MISSING_AGENT),
        lambda: client.agents.tools.list(MISSING_AGENT),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as ei:
            call()
        assert ei.value.status_code == 404


# --------------------------------------------------------------------------- core memory


def test_core_memory_list_retrieve_modify(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup)
    blocks = client.agents.blocks.list(agent.id).items
    assert {b.label for b in blocks} == {"persona", "human"}
    assert all(isinstance(b.id, str) and b.id for b in blocks)

    persona = client.agents.blocks.retrieve("persona", agent_id=agent.id)
    assert persona.label == "persona"
    assert persona.value == "I am Kelpie, a helpful agent."
    assert persona.limit == 5000

    updated = client.agents.blocks.update("persona", agent_id=agent.id, value="I am a renamed Kelpie.")
    assert updated.label == "persona"
    assert updated.value == "I am a renamed Kelpie."
    assert updated.id == persona.id
    assert client.agents.blocks.retrieve("persona", agent_id=agent.id).value == "I am a renamed Kelpie."
    got = client.agents.retrieve(agent.id)
    assert {b.label: b.value for b in got.blocks}["persona"] == "I am a renamed Kelpie."
    # the other block is untouched
    assert client.agents.blocks.retrieve("human", agent_id=agent.id).value == "The human is a tester."

    # SDK iteration over the block list must terminate (server honours `after`)
    labels = []
    for b in client.agents.blocks.list(agent.id, limit=1):
        labels.append(b.label)
        assert len(labels) <= 10, "auto-pagination does not terminate"
    assert sorted(labels) == ["human", "persona"]

    with pytest.raises(NotFoundError):
        client.agents.blocks.retrieve(uniq("nolabel"), agent_id=agent.id)


def test_core_memory_over_limit_rejected(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup, persona_limit=100)
    original = client.agents.blocks.retrieve("persona", agent_id=agent.id).value
    with pytest.raises(UnprocessableEntityError) as ei:
        client.agents.blocks.update("persona", agent_id=agent.id, value="x" * 101)
    assert ei.value.status_code == 422
    assert client.agents.blocks.retrieve("persona", agent_id=agent.id).value == original
    # exactly at the limit is fine
    ok = client.agents.blocks.update("persona", agent_id=agent.id, value="y" * 100)
    assert ok.value == "y" * 100


# --------------------------------------------------------------------------- standalone blocks


def test_blocks_crud_and_list(client: Letta, cleanup: List[tuple]) -> None:
    label = uniq("label")
    block = client.blocks.create(label=label, value="standalone value", limit=1000, description="desc")
    cleanup.append(("block", block.id))
    assert block.label == label
    assert block.value == "standalone value"
    assert block.limit == 1000
    assert block.description == "desc"

    got = client.blocks.retrieve(block.id)
    assert (got.id, got.label, got.value, got.limit) == (block.id, label, "standalone value", 1000)

    upd = client.blocks.update(block.id, value="new value", description="desc2")
    assert upd.id == block.id
    assert upd.value == "new value"
    assert upd.description == "desc2"
    assert client.blocks.retrieve(block.id).value == "new value"

    listed = client.blocks.list(label=label).items
    assert [b.id for b in listed] == [block.id]
    # whole-list auto-pagination terminates and contains our block exactly once
    all_ids = []
    for b in client.blocks.list(limit=5):
        all_ids.append(b.id)
        assert len(all_ids) <= 5 * MAX_PAGES, "auto-pagination does not terminate"
    assert all_ids.count(block.id) == 1
    assert len(all_ids) == len(set(all_ids))

    with pytest.raises(UnprocessableEntityError):
        client.blocks.update(block.id, value="z" * 1001)
    assert client.blocks.retrieve(block.id).value == "new value"

    client.blocks.delete(block.id)
    with pytest.raises(NotFoundError):
        client.blocks.retrieve(block.id)


def test_block_attach_detach(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup)
    label = uniq("shared")
    block = client.blocks.create(label=label, value="shared knowledge", limit=2000)
    cleanup.append(("block", block.id))

    state = client.agents.blocks.attach(block.id, agent_id=agent.id)
    assert state.id == agent.id
    assert block.id in {b.id for b in state.blocks}
    assert {b.label for b in client.agents.blocks.list(agent.id).items} == {"persona", "human", label}
    assert client.agents.blocks.retrieve(label, agent_id=agent.id).value == "shared knowledge"

    # blocks are shared by reference: a standalone update is visible through the agent
    client.blocks.update(block.id, value="updated knowledge")
    assert client.agents.blocks.retrieve(label, agent_id=agent.id).value == "updated knowledge"

    state = client.agents.blocks.detach(block.id, agent_id=agent.id)
    assert block.id not in {b.id for b in state.blocks}
    assert {b.label for b in client.agents.blocks.list(agent.id).items} == {"persona", "human"}
    with pytest.raises(NotFoundError):
        client.agents.blocks.retrieve(label, agent_id=agent.id)
    # detaching does not delete the block
    assert client.blocks.retrieve(block.id).value == "updated knowledge"


# --------------------------------------------------------------------------- messages


def test_send_message_echo(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup)
    text = f"hello kelpie {uuid.uuid4().hex[:8]}"
    resp = send(client, agent.id, text)
    assert f"Echo: {text}" in assistant_texts(resp.messages)
    for m in resp.messages:
        assert isinstance(m.id, str) and m.id
        assert m.date is not None
    assert resp.stop_reason.stop_reason == "end_turn"
    assert resp.usage.step_count is not None and resp.usage.step_count >= 1
    if resp.usage.total_tokens is not None and resp.usage.prompt_tokens is not None:
        assert resp.usage.total_tokens == resp.usage.prompt_tokens + (resp.usage.completion_tokens or 0)


def test_send_message_content_parts(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup)
    text = f"parts {uuid.uuid4().hex[:8]}"
    resp = client.agents.messages.create(
        agent.id, messages=[{"role": "user", "content": [{"type": "text", "text": text}]}]
    )
    assert f"Echo: {text}" in assistant_texts(resp.messages)
    assert resp.stop_reason.stop_reason == "end_turn"


def test_send_message_include_return_message_types(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup)
    text = f"filtered {uuid.uuid4().hex[:8]}"
    resp = send(client, agent.id, text, include_return_message_types=["assistant_message"])
    assert len(resp.messages) >= 1
    assert {msg_type(m) for m in resp.messages} == {"assistant_message"}
    assert assistant_texts(resp.messages) == [f"Echo: {text}"]


def test_send_message_without_assistant_message(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup)
    text = f"raw tool call {uuid.uuid4().hex[:8]}"
    resp = send(client, agent.id, text, use_assistant_message=False)
    assert assistant_texts(resp.messages) == []
    calls = [m for m in resp.messages if msg_type(m) == "tool_call_message"]
    assert len(calls) >= 1
    call = calls[0].tool_call
    assert call.name == "send_message"
    assert json.loads(call.arguments) == {"message": f"Echo: {text}"}
    returns = [m for m in resp.messages if msg_type(m) == "tool_return_message"]
    assert len(returns) >= 1
    assert returns[0].tool_call_id == call.tool_call_id
    assert returns[0].status == "success"


def test_list_messages_and_paginate(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup)
    texts = [f"msg {i} {uuid.uuid4().hex[:6]}" for i in range(3)]
    for t in texts:
        send(client, agent.id, t)

    full = client.agents.messages.list(agent.id, order="asc", limit=1000).items
    users = [text_of(m.content) for m in full if msg_type(m) == "user_message"]
    for t in texts:
        assert t in users
    assert [u for u in users if u in texts] == texts  # chronological
    echoes = assistant_texts(full)
    assert [e for e in echoes if e.startswith("Echo: msg ")] == [f"Echo: {t}" for t in texts]
    # each echo comes after its user message
    order = [(msg_type(m), text_of(getattr(m, "content", ""))) for m in full]
    for t in texts:
        assert order.index(("user_message", t)) < order.index(("assistant_message", f"Echo: {t}"))

    keys_full = [(m.id, msg_type(m)) for m in full]
    assert len(keys_full) == len(set(keys_full)), "duplicate messages in the full listing"

    # manual pagination with after=<last id>, must terminate and reproduce the full listing
    paged: List[Any] = []
    after = None
    for _ in range(MAX_PAGES):
        page = client.agents.messages.list(agent.id, order="asc", limit=2, **({"after": after} if after else {})).items
        if not page:
            break
        assert len(page) <= 2
        paged.extend(page)
        after = page[-1].id
    else:
        pytest.fail("message pagination with after= did not terminate")
    keys = [(m.id, msg_type(m)) for m in paged]
    assert len(keys) == len(set(keys)), "duplicate messages across pages"
    assert keys == keys_full

    # SDK auto-pagination gives the same sequence
    auto = []
    for m in client.agents.messages.list(agent.id, order="asc", limit=2):
        auto.append((m.id, msg_type(m)))
        assert len(auto) <= len(keys_full) + 10, "auto-pagination does not terminate"
    assert auto == keys_full

    # desc order is the reverse
    desc = client.agents.messages.list(agent.id, order="desc", limit=1000).items
    assert [(m.id, msg_type(m)) for m in desc] == list(reversed(keys_full))

    # limit respected
    assert len(client.agents.messages.list(agent.id, order="asc", limit=3).items) == 3


def _check_stream(chunks: List[Any], text: str) -> None:
    types = [msg_type(c) for c in chunks]
    assert "assistant_message" in types, types
    assert f"Echo: {text}" in assistant_texts(chunks)
    stops = [c for c in chunks if msg_type(c) == "stop_reason"]
    assert len(stops) == 1, types
    assert stops[0].stop_reason == "end_turn"
    usages = [c for c in chunks if msg_type(c) == "usage_statistics"]
    assert len(usages) == 1, types
    assert usages[0].step_count is not None and usages[0].step_count >= 1
    assert types.index("assistant_message") < types.index("stop_reason")
    assert "error_message" not in types


def test_streaming_via_create(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup)
    text = f"stream {uuid.uuid4().hex[:8]}"
    stream = client.agents.messages.create(
        agent.id, messages=[{"role": "user", "content": text}], streaming=True
    )
    chunks = [c for c in stream if msg_type(c) != "ping"]
    _check_stream(chunks, text)
    # the streamed turn is persisted
    listed = client.agents.messages.list(agent.id, order="asc", limit=1000).items
    assert text in [text_of(m.content) for m in listed if msg_type(m) == "user_message"]
    assert f"Echo: {text}" in assistant_texts(listed)


def test_streaming_via_stream_endpoint(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup)
    text = f"stream2 {uuid.uuid4().hex[:8]}"
    with pytest.warns(DeprecationWarning):
        stream = client.agents.messages.stream(agent.id, messages=[{"role": "user", "content": text}])
    chunks = [c for c in stream if msg_type(c) != "ping"]
    _check_stream(chunks, text)


# --------------------------------------------------------------------------- archival memory


def test_archival_memory(client: Letta, cleanup: List[tuple]) -> None:
    agent = make_agent(client, cleanup)
    texts = ["the cat sat on the mat", "rust borrow checker", "quantum chromodynamics lecture notes"]
    ids = []
    for t in texts:
        created = client.agents.passages.create(agent.id, text=t)
        assert isinstance(created, list) and len(created) == 1
        assert created[0].text == t
        assert isinstance(created[0].id, str) and created[0].id
        ids.append(created[0].id)
        time.sleep(0.02)
    assert len(set(ids)) == 3

    listed = client.agents.passages.list(agent.id, limit=100)
    assert sorted(p.text for p in listed) == sorted(texts)
    assert {p.id for p in listed} == set(ids)
    asc = client.agents.passages.list(agent.id, ascending=True, limit=100)
    assert [p.text for p in asc] == texts

    res = client.agents.passages.search(agent.id, query="cat mat")
    assert res.count == len(res.results)
    assert res.count >= 1
    assert res.results[0].content == "the cat sat on the mat"
    assert res.results[0].id == ids[0]

    res = client.agents.passages.search(agent.id, query="rust borrow checker", top_k=1)
    assert res.count == 1
    assert [r.content for r in res.results] == ["rust borrow checker"]

    client.agents.passages.delete(ids[0], agent_id=agent.id)
    remaining = client.agents.passages.list(agent.id, limit=100)
    assert sorted(p.text for p in remaining) == sorted(texts[1:])
    res = client.agents.passages.search(agent.id, query="cat mat")
    assert "the cat sat on the mat" not in [r.content for r in res.results]

    # archival memory is per agent
    other = make_agent(client, cleanup)
    assert client.agents.passages.list(other.id, limit=100) == []


# --------------------------------------------------------------------------- tools


def test_tools_list_builtins(client: Letta) -> None:
    names = []
    for t in client.tools.list(limit=10):
        names.append(t.name)
        assert isinstance(t.id, str) and t.id
        assert len(names) <= 10 * MAX_PAGES, "auto-pagination does not terminate"
    assert BUILTIN_TOOLS <= set(names), BUILTIN_TOOLS - set(names)
    for b in BUILTIN_TOOLS:
        assert names.count(b) == 1, f"{b} listed {names.count(b)} times"
    by_name = client.tools.list(name="send_message").items
    assert [t.name for t in by_name] == ["send_message"]


def test_custom_tool_create_attach_detach(client: Letta, cleanup: List[tuple]) -> None:
    fn = f"roll_dice_{uuid.uuid4().hex[:8]}"
    source = (
        f"def {fn}(sides: int) -> str:\n"
        f'    """Roll a die with the given number of sides.\n\n'
        f"    Args:\n"
        f"        sides (int): Number of sides of the die.\n\n"
        f"    Returns:\n"
        f"        str: The result.\n"
        f'    """\n'
        f"    return str(sides)\n"
    )
    tool = client.tools.create(source_code=source, description="Roll a die.", tags=["dice"])
    cleanup.append(("tool", tool.id))
    assert tool.name == fn
    assert tool.source_code == source
    assert tool.json_schema is not None and tool.json_schema.get("name") == fn
    assert "sides" in tool.json_schema.get("parameters", {}).get("properties", {})

    got = client.tools.retrieve(tool.id)
    assert (got.id, got.name) == (tool.id, fn)
    assert [t.id for t in client.tools.list(name=fn).items] == [tool.id]

    agent = make_agent(client, cleanup)
    state = client.agents.tools.attach(tool.id, agent_id=agent.id)
    assert state.id == agent.id
    assert fn in {t.name for t in state.tools}
    agent_tools = {t.name for t in client.agents.tools.list(agent.id).items}
    assert fn in agent_tools
    assert "send_message" in agent_tools
    assert fn in {t.name for t in client.agents.retrieve(agent.id).tools}

    state = client.agents.tools.detach(tool.id, agent_id=agent.id)
    assert fn not in {t.name for t in state.tools}
    assert fn not in {t.name for t in client.agents.tools.list(agent.id).items}
    # detaching does not delete the tool
    assert client.tools.retrieve(tool.id).name == fn

    client.tools.delete(tool.id)
    with pytest.raises(NotFoundError):
        client.tools.retrieve(tool.id)
