#!/usr/bin/env bash
# Letta API conformance: builds kelpie-server + fake-llm, starts both, runs tests/letta with the
# official letta-client SDK against the server. Run from the repository root.
#   scripts/letta-conformance.sh [extra pytest args...]
# Env: PYTHON (default python3), KELPIE_CONFORMANCE_SKIP_BUILD=1 to reuse existing binaries,
#      KELPIE_STRICT=0 to use the SDK's lenient response parsing.
set -euo pipefail

ROOT="$(pwd)"
if [[ ! -f "$ROOT/Cargo.toml" || ! -d "$ROOT/tests/letta" ]]; then
    echo "error: run from the repository root (tests/letta not found in $ROOT)" >&2
    exit 2
fi

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/target/letta-venv"
REQ="$ROOT/tests/letta/requirements.txt"
STAMP="$VENV/.requirements.sha256"
SERVER_BIN="$ROOT/target/release/kelpie-server"
FAKE_BIN="$ROOT/target/release/fake-llm"
STARTUP_TIMEOUT=60

# ---------------------------------------------------------------- venv
req_sha="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$req_sha" ]]; then
    echo "==> venv up to date ($VENV)"
else
    echo "==> creating venv $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$REQ"
    echo "$req_sha" > "$STAMP"
fi

# ---------------------------------------------------------------- build
if [[ "${KELPIE_CONFORMANCE_SKIP_BUILD:-0}" != "1" ]]; then
    echo "==> cargo build"
    cargo build --release --locked -p kelpie-server -p kelpie-llm --features kelpie-llm/fake --bins
fi
for bin in "$SERVER_BIN" "$FAKE_BIN"; do
    [[ -x "$bin" ]] || { echo "error: missing binary $bin" >&2; exit 1; }
done

# ---------------------------------------------------------------- processes + cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kelpie-letta.XXXXXX")"
DATA_DIR="$WORK/data"
mkdir -p "$DATA_DIR"
FAKE_LOG="$WORK/fake-llm.log"
SERVER_LOG="$WORK/kelpie-server.log"
FAKE_PID=""
SERVER_PID=""

stop_pid() {
    local pid="$1"
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$SERVER_PID"
    stop_pid "$FAKE_PID"
    if [[ $rc -ne 0 && -f "$SERVER_LOG" ]]; then
        echo "---- kelpie-server log (tail) ----" >&2
        tail -n 40 "$SERVER_LOG" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# fake LLM: prints exactly one line "listening on 127.0.0.1:<port>"
echo "==> starting fake-llm"
"$FAKE_BIN" --port 0 >"$FAKE_LOG" 2>&1 &
FAKE_PID=$!
FAKE_PORT=""
for _ in $(seq 1 $((STARTUP_TIMEOUT * 10))); do
    line="$(grep -m1 -E '^listening on 127\.0\.0\.1:[0-9]+$' "$FAKE_LOG" 2>/dev/null || true)"
    if [[ -n "$line" ]]; then
        FAKE_PORT="${line##*:}"
        break
    fi
    if ! kill -0 "$FAKE_PID" 2>/dev/null; then
        echo "error: fake-llm exited early; log:" >&2
        cat "$FAKE_LOG" >&2 || true
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$FAKE_PORT" ]]; then
    echo "error: fake-llm did not print 'listening on 127.0.0.1:<port>' within ${STARTUP_TIMEOUT}s; log:" >&2
    cat "$FAKE_LOG" >&2 || true
    exit 1
fi
echo "    fake-llm on port $FAKE_PORT (pid $FAKE_PID)"

PORT="$(free_port)"
KELPIE_URL="http://127.0.0.1:$PORT"
echo "==> starting kelpie-server on $KELPIE_URL (data dir $DATA_DIR)"
"$SERVER_BIN" --bind 127.0.0.1 --port "$PORT" --data-dir "$DATA_DIR" \
    --llm-base-url "http://127.0.0.1:$FAKE_PORT/v1" --llm-model echo >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

ready=0
deadline=$((SECONDS + STARTUP_TIMEOUT))
while (( SECONDS < deadline )); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "error: kelpie-server exited before becoming healthy" >&2
        exit 1
    fi
    if "$VENV/bin/python" - "$KELPIE_URL/v1/health/" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
    then
        ready=1
        break
    fi
    sleep 0.2
done
if [[ $ready -ne 1 ]]; then
    echo "error: kelpie-server did not answer GET /v1/health/ within ${STARTUP_TIMEOUT}s" >&2
    exit 1
fi
echo "    kelpie-server healthy (pid $SERVER_PID)"

# ---------------------------------------------------------------- tests
echo "==> running conformance suite"
set +e
KELPIE_URL="$KELPIE_URL" "$VENV/bin/python" -m pytest -c "$ROOT/tests/letta/pytest.ini" \
    --rootdir "$ROOT/tests/letta" "$ROOT/tests/letta" "$@"
rc=$?
set -e
exit "$rc"
