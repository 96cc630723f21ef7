#!/usr/bin/env python3
"""Letta server as a benchmark peer for crates/kelpie-bench/benches/server.rs.

Same workload and the same request bodies as the Kelpie bench:
  - agent creations/s with 2 memory blocks at 1 and 64 clients
    (300 and 1200 requests at scale 1),
  - message round trips/s, plain and SSE, at 1 and 64 clients
    (200 and 800 requests at scale 1; one fresh agent per client),
  - p50/p99 latency (same nearest-rank rounding as the Rust bench),
  - RSS per "active" agent (growth of the server process while creating
    2000*scale agents from 16 clients) and per stored agent (RSS of a server
    restarted on the full database after one /v1/agents/count, minus the RSS
    of a server on an empty database after the same call).

Letta specifics (see README.md here):
  - needs PostgreSQL with pgvector (0.16.x dropped SQLite); every run creates
    fresh databases `<db>` and `<db>_empty` via the admin URI and builds the
    schema with init_schema.py;
  - the model/embedding come from LETTA_DEFAULT_LLM_HANDLE /
    LETTA_DEFAULT_EMBEDDING_HANDLE so the create body is Kelpie's verbatim;
  - streaming=true on /v1/agents/{id}/messages is accepted only from SDK v1
    clients, so requests carry `User-Agent: letta-client/1.11.0`;
  - the LLM is Kelpie's fake-llm (non-streaming echo).

Usage: venv/bin/python bench_letta.py [--scale 0.25] [--fake-llm PATH]
"""

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
UA = {"User-Agent": "letta-client/1.11.0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def tree_rss(pid: int) -> int:
    """RSS of pid plus its descendants (Letta runs one process, but be safe)."""
    total = rss_bytes(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        children = []
    for child in children:
        try:
            total += tree_rss(int(child))
        except (FileNotFoundError, RuntimeError):
            pass
    return total


def postgres_pss(port: int) -> int:
    """Proportional set size of every postgres process of the cluster on `port`."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if not cmd or not cmd[0].endswith(b"postgres") and b"postgres:" not in cmd[0]:
                continue
            for line in (proc / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return total


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    index = round((len(sorted_values) - 1) * p)
    return sorted_values[min(index, len(sorted_values) - 1)]


class Letta:
    def __init__(self, args, db: str, log_name: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            HOME=str(args.home),
            LETTA_DIR=str(args.home / ".letta"),
            LETTA_PG_URI=f"{args.pg_base}/{db}" + ("?ssl=disable" if args.pooling == "on" else ""),
            # Letta's default is NullPool (a new connection per DB session); "on" uses its
            # AsyncAdaptedQueuePool (pool 25 + overflow 10), which forces ssl=require unless
            # the URI says otherwise, hence ?ssl=disable for the local cluster.
            LETTA_DISABLE_SQLALCHEMY_POOLING="false" if args.pooling == "on" else "true",
            OPENAI_API_KEY="dummy",
            OPENAI_BASE_URL=args.llm_base,
            LETTA_DEFAULT_LLM_HANDLE=args.model,
            LETTA_DEFAULT_EMBEDDING_HANDLE=args.embedding,
        )
        self.log = open(HERE / "run" / log_name, "w")
        self.proc = subprocess.Popen(
            [str(args.letta_bin), "server", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=HERE / "run",
            start_new_session=True,
        )

    async def wait_ready(self, session, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"letta exited with {self.proc.returncode}; see {self.log.name}")
            try:
                async with session.get(f"{self.url}/v1/health/") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
        raise RuntimeError("letta did not become ready")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


async def measure(clients, total, call):
    latencies = []

    async def client(c):
        i = c
        while i < total:
            t = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t)
            i += clients

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return total / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99)


async def create_agent(session, url, name):
    body = {
        "name": name,
        "memory_blocks": [
            {"label": "persona", "value": "I am a benchmark agent."},
            {"label": "human", "value": "Name: bench"},
        ],
    }
    async with session.post(f"{url}/v1/agents/", json=body, headers=UA) as r:
        text = await r.text()
        if r.status >= 400:
            raise RuntimeError(f"create {r.status}: {text[:500]}")
        import json

        return json.loads(text)["id"]


async def send(session, url, agent, streaming):
    body = {"messages": [{"role": "user", "content": "hello"}], "streaming": streaming}
    async with session.post(f"{url}/v1/agents/{agent}/messages", json=body, headers=UA) as r:
        text = await r.text()
        if r.status >= 400:
            raise RuntimeError(f"send {r.status}: {text[:500]}")
        assert "Echo: hello" in text, f"unexpected reply: {text[:500]}"


def row(what, clients, m):
    per_second, p50, p99 = m
    print(f"| {what} | {clients} | {per_second:.1f}/s | {p50 * 1e3:.2f} ms | {p99 * 1e3:.2f} ms |", flush=True)


def fresh_db(args, db):
    admin = args.pg_admin
    subprocess.run(["psql", admin, "-q", "-c", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], check=True)
    subprocess.run(["psql", admin, "-q", "-c", f"CREATE DATABASE {db} OWNER letta"], check=True)
    subprocess.run(
        [str(args.python), str(HERE / "init_schema.py"), f"{args.pg_base.replace('postgresql://', 'postgresql+psycopg2://')}/{db}"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(args.home), "LETTA_PG_URI": f"{args.pg_base}/{db}"},  # PG column types
    )


async def count(session, url):
    async with session.get(f"{url}/v1/agents/count", headers=UA) as r:
        return int(await r.text())


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=float(os.environ.get("SERVER_BENCH_SCALE", "1")))
    p.add_argument("--venv", type=Path, default=HERE / "venv")
    p.add_argument("--fake-llm", type=Path, default=Path(__file__).resolve().parents[2] / "target" / "release" / "fake-llm" if (Path(__file__).resolve().parents[2] / "Cargo.toml").exists() else Path("target/release/fake-llm"))
    p.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:55432/postgres")
    p.add_argument("--pg-base", default="postgresql://letta:letta@127.0.0.1:55432")
    p.add_argument("--db", default="letta_bench")
    p.add_argument("--model", default="openai-proxy/fake-model")
    p.add_argument("--embedding", default="openai/text-embedding-3-small")
    p.add_argument("--pooling", choices=["on", "off"], default="on")
    p.add_argument("--skip", default="", help="comma list of: create,plain,sse,memory")
    args = p.parse_args()
    args.letta_bin = args.venv / "bin" / "letta"
    args.python = args.venv / "bin" / "python"
    args.home = HERE / "home"
    (HERE / "run").mkdir(exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))

    def n(base):
        return max(1, round(base * args.scale))

    fake = subprocess.Popen([str(args.fake_llm), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = fake.stdout.readline().strip()
    args.llm_base = f"http://{line.removeprefix('listening on ')}/v1"

    # uvicorn closes idle keep-alive connections after 5 s; drop ours sooner so a reused one is never stale
    connector = aiohttp.TCPConnector(limit=128, keepalive_timeout=2)
    timeout = aiohttp.ClientTimeout(total=600)
    servers = []
    try:
        fresh_db(args, args.db)
        fresh_db(args, args.db + "_empty")
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            server = Letta(args, args.db, "bench-main.log")
            servers.append(server)
            await server.wait_ready(session)
            url = server.url
            # one warm-up create + send (first requests load lazily-imported code)
            warm = await create_agent(session, url, "warmup")
            await send(session, url, warm, False)
            await send(session, url, warm, True)
            print(f"letta pid {server.proc.pid}, scale {args.scale}, pooling {args.pooling}, llm {args.llm_base}", flush=True)
            print("| operation | clients | throughput | p50 | p99 |")
            print("|---|---|---|---|---|", flush=True)
            if "create" not in skip:
                for clients in (1, 64):
                    total = n(300 * (1 if clients == 1 else 4))
                    m = await measure(clients, total, lambda i, c=clients: create_agent(session, url, f"create-{c}-{i}"))
                    row(f"create agent (2 blocks) [n={total}]", clients, m)
            for streaming in (False, True):
                if ("sse" if streaming else "plain") in skip:
                    continue
                for clients in (1, 64):
                    agents = [await create_agent(session, url, f"chat-{streaming}-{clients}-{i}") for i in range(clients)]
                    total = n(200 * (1 if clients == 1 else 4))
                    m = await measure(clients, total, lambda i, a=agents, s=streaming: send(session, url, a[i % len(a)], s))
                    what = "message round trip, SSE" if streaming else "message round trip"
                    row(f"{what} [n={total}]", clients, m)
            if "memory" in skip:
                return
            agents = n(2000)
            pid = server.proc.pid
            before, pg_before = tree_rss(pid), postgres_pss(55432)
            await measure(16, agents, lambda i: create_agent(session, url, f"rss-{i}"))
            after, pg_after = tree_rss(pid), postgres_pss(55432)
            active = max(0, after - before) // agents
            server.stop()

            empty = Letta(args, args.db + "_empty", "bench-empty.log")
            servers.append(empty)
            await empty.wait_ready(session)
            await count(session, empty.url)
            baseline = tree_rss(empty.proc.pid)
            empty.stop()

            restarted = Letta(args, args.db, "bench-restarted.log")
            servers.append(restarted)
            await restarted.wait_ready(session)
            stored_count = await count(session, restarted.url)
            stored_total = max(0, tree_rss(restarted.proc.pid) - baseline)
            restarted.stop()
            print()
            print("| memory | bytes per agent |")
            print("|---|---|")
            print(f"| active (created, idle) [n={agents}] | {active} |")
            print(f"| stored ({stored_count} agents, none active) | {stored_total // max(1, stored_count)} |")
            sizes = [
                int(subprocess.run(["psql", args.pg_admin, "-tAc", f"SELECT pg_database_size('{d}')"], capture_output=True, text=True, check=True).stdout)
                for d in (args.db, args.db + "_empty")
            ]
            print(f"| postgres on disk, stored ({stored_count} agents) | {(sizes[0] - sizes[1]) // max(1, stored_count)} |")
            print(
                f"| (letta process RSS: empty {baseline >> 20} MiB, after creating {agents}: {after >> 20} MiB; "
                f"postgres PSS {pg_before >> 20} -> {pg_after >> 20} MiB) | |",
                flush=True,
            )
    finally:
        for s in servers:
            s.stop()
        fake.kill()
        fake.wait()


if __name__ == "__main__":
    asyncio.run(main())
