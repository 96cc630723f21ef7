#!/usr/bin/env bash
# The test command. Does its own set-up on a fresh machine, then runs every
# test, the Stateright models, the TLA+ specs (TLC), then the bug-switch
# matrix (each switch built in must be caught, in the simulator and, where a
# model covers it, by Stateright).
#
#   DST_SEEDS=k          run k seeds in the simulation sweeps (default per test)
#   DST_SEED=n           replay seed n
#   DST_RUNTIME_SEEDS=k  seeds of the release-mode runtime sweep (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust (https://rustup.rs) and retry" >&2
    exit 1
fi

echo "== cargo test (workspace, debug; simulations below in release)"
cargo test --workspace --locked --exclude kelpie-bench --exclude kelpie-dst --exclude kelpie-spec

echo "== Letta API conformance: the official Python SDK (letta-client, pinned) against the real server"
# Builds kelpie-server and the fake LLM (release), creates target/letta-venv
# from tests/letta/requirements.txt, starts both, runs tests/letta.
./scripts/letta-conformance.sh

echo "== Stateright models on the production cores (release, exhaustive within bounds)"
cargo test --release --locked -p kelpie-spec

echo "== simulations (release)"
cargo test --release --locked -p kelpie-dst -- --skip runtime_invariants_hold

echo "== simulation sweep (release): ${DST_RUNTIME_SEEDS:-1000} seeds of the actor runtime"
# The 3-node runtime scenario (single activation, fencing, graceful
# deactivation, linearizable histories, liveness after faults stop).
DST_SEEDS="${DST_RUNTIME_SEEDS:-1000}" cargo test --release --locked -p kelpie-dst --test runtime -- --nocapture

echo "== TLA+ specs (TLC): every cfg's outcome must match specs/tla/results.json"
./scripts/tlc.sh

echo "== bug-switch matrix"
# Each switch re-creates a known defect; its test asserts the simulator
# catches it and names the invariant.
for switch in \
    bug-incarnation-no-fsync \
    bug-heartbeat-accept-stale-incarnation \
    bug-heartbeat-never-suspect \
    bug-storage-nonatomic-apply \
    bug-storage-ack-before-sync \
    bug-storage-skip-occ-check \
    bug-journal-replay-completed \
    bug-ownership-acquire-without-compare \
    bug-ownership-lookup-then-claim \
    bug-ownership-no-self-fencing-margin \
    bug-ownership-unfenced-commit \
    bug-ownership-renew-without-holder-check \
    bug-runtime-unfenced-commit \
    bug-runtime-drop-on-deactivate \
    bug-server-nonatomic-create \
    bug-server-ignore-idempotency-key; do
    echo "-- $switch: simulator"
    cargo test --release --locked -p kelpie-dst --features "$switch" --test bug_switches
    # The Stateright cell: the kelpie-spec test files whose cfgs name the
    # switch, or the row's own test file (`stateright_test`, a model next to
    # its code: crates/<pkg>/tests/<t>.rs).
    cell="$(python3 - "$switch" <<'PY'
import glob, os, sys, tomllib
rows = tomllib.load(open("specs/alignment.toml", "rb"))["bug_switch"]
if not any(r["feature"] == sys.argv[1] for r in rows):
    sys.exit(f"{sys.argv[1]}: no row in specs/alignment.toml")
for r in rows:
    if r["feature"] == sys.argv[1] and r["stateright"]:
        test = r.get("stateright_test")
        if test:
            parts = test.split("/")
            print(f"-p {parts[1]} --test {parts[3].removesuffix('.rs')}")
        else:
            marker = f'feature = "{sys.argv[1]}"'
            tests = sorted(
                os.path.basename(path).removesuffix(".rs")
                for path in glob.glob("crates/kelpie-spec/tests/*.rs")
                if marker in open(path).read()
            )
            print(" ".join(["-p kelpie-spec"] + [f"--test {t}" for t in tests]))
PY
)"
    if [[ -n "$cell" ]]; then
        echo "-- $switch: Stateright ($cell)"
        # shellcheck disable=SC2086 # $cell is a list of cargo arguments
        cargo test --release --locked --features "$switch" $cell
    fi
done
# The TLC cell of each switch ran above (scripts/tlc.sh: its buggy cfg must
# fail on the recorded invariant); crates/kelpie-dst/tests/alignment.rs
# checks the three cells name the same invariant (specs/alignment.toml).
