#!/usr/bin/env python3
"""Runs TLC on every cfg in specs/tla and compares with results.json.

Stdlib only. Called by scripts/tlc.sh, which provides the jar:

    check_tlc.py --jar PATH [--record] [CFG_OR_SPEC ...]

- Every `*.cfg` in this directory must be listed in results.json and every
  entry of results.json must have its cfg file (checked before any run).
- Each cfg runs with its spec (`spec` field), `-workers $TLC_WORKERS` (default
  2; TLC 2.15 has no `-workers auto`) -- one worker for cfgs expected to fail,
  so where TLC stops is reproducible --, `-lncheck final`, a fresh `-metadir` under target/tlc-meta/, and `-deadlock`
  (deadlock checking off) unless the entry says `"check_deadlock": true`.
- The outcome is parsed from TLC's output: `pass`, `fail:<Invariant>`,
  `fail:<ActionProperty>`, `fail:TemporalProperties` (TLC does not name the
  violated temporal property), `fail:Deadlock`, or `error` (TLC could not
  run the model).  A different outcome than recorded fails the run (exit 1).
  Distinct states and depth that differ are only a note (multi-worker TLC
  counts may vary), unless TLC_STRICT=1.
- `--record` rewrites results.json from this run instead of comparing
  (all cfgs must be run: no filter).
- Arguments filter the cfgs to run: a cfg file name or a spec name.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RESULTS = os.path.join(HERE, "results.json")
TIMEOUT_S = int(os.environ.get("TLC_TIMEOUT_S", "900"))

RE_INVARIANT = re.compile(r"^Error: Invariant (\w+) is violated", re.M)
RE_ACTION_PROP = re.compile(r"^Error: Action property (\w+) is violated", re.M)
RE_TEMPORAL = re.compile(r"^Error: Temporal properties were violated", re.M)
RE_DEADLOCK = re.compile(r"^Error: Deadlock reached", re.M)
RE_PASS = re.compile(r"^Model checking completed\. No error has been found\.", re.M)
RE_STATES = re.compile(r"^(\d+) states generated, (\d+) distinct states found", re.M)
RE_DEPTH = re.compile(r"^The depth of the complete state graph search is (\d+)", re.M)


def parse(output):
    """(outcome, distinct_states, depth) from TLC's output."""
    if m := RE_INVARIANT.search(output):
        outcome = f"fail:{m.group(1)}"
    elif m := RE_ACTION_PROP.search(output):
        outcome = f"fail:{m.group(1)}"
    elif RE_TEMPORAL.search(output):
        outcome = "fail:TemporalProperties"
    elif RE_DEADLOCK.search(output):
        outcome = "fail:Deadlock"
    elif RE_PASS.search(output):
        outcome = "pass"
    else:
        outcome = "error"
    states = RE_STATES.findall(output)
    depth = RE_DEPTH.findall(output)
    return (
        outcome,
        int(states[-1][1]) if states else None,
        int(depth[-1]) if depth else None,
    )


def spec_of(cfg):
    return cfg[: -len(".cfg")].split("_", 1)[0]


def run_tlc(jar, java, cfg, entry, workers, metaroot):
    spec = entry["spec"]
    meta = os.path.join(metaroot, cfg[: -len(".cfg")])
    shutil.rmtree(meta, ignore_errors=True)
    os.makedirs(meta)
    cmd = [java, "-XX:+UseParallelGC", "-cp", jar, "tlc2.TLC",
           "-workers", workers, "-lncheck", "final", "-metadir", meta,
           "-config", cfg]
    if not entry.get("check_deadlock", False):
        cmd.append("-deadlock")
    cmd.append(f"{spec}.tla")
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=HERE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S)
        output = proc.stdout
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        output += f"\n(timed out after {TIMEOUT_S} s)\n"
    elapsed = time.monotonic() - start
    shutil.rmtree(meta, ignore_errors=True)
    return parse(output), elapsed, output, cmd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jar", required=True)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("only", nargs="*")
    args = ap.parse_args()

    java = os.environ.get("JAVA", shutil.which("java") or "/usr/bin/java")
    workers = os.environ.get("TLC_WORKERS", "2")
    strict = os.environ.get("TLC_STRICT") == "1"

    with open(RESULTS) as f:
        results = json.load(f)
    cfgs = sorted(f for f in os.listdir(HERE) if f.endswith(".cfg"))
    problems = []
    unlisted = [c for c in cfgs if c not in results]
    missing = [c for c in results if c not in cfgs]
    if unlisted and not args.record:
        problems.append(f"cfg files not listed in results.json: {', '.join(unlisted)}")
    if missing:
        problems.append(f"results.json lists cfgs that do not exist: {', '.join(missing)}")
    for cfg, entry in results.items():
        if not os.path.exists(os.path.join(HERE, f"{entry.get('spec', '?')}.tla")):
            problems.append(f"{cfg}: spec {entry.get('spec')!r} has no .tla file")
    if problems:
        for p in problems:
            print(f"tlc: ERROR: {p}", file=sys.stderr)
        return 1
    if args.record and args.only:
        print("tlc: ERROR: --record runs every cfg; no filter", file=sys.stderr)
        return 1

    selected = [c for c in cfgs if not args.only
                or c in args.only or spec_of(c) in args.only or c[:-4] in args.only]
    if not selected:
        print(f"tlc: ERROR: nothing matches {args.only}", file=sys.stderr)
        return 1

    metaroot = os.path.join(ROOT, "target", "tlc-meta", f"run-{os.getpid()}")
    rows, failures, notes, recorded = [], [], [], {}
    total_start = time.monotonic()
    for cfg in selected:
        entry = results.get(cfg) or {"spec": spec_of(cfg)}
        # A cfg expected to fail runs on one worker: TLC then stops at the
        # same state every time, so its states/depth are reproducible.
        cfg_workers = "1" if str(entry.get("outcome", "")).startswith("fail:") else workers
        (outcome, states, depth), elapsed, output, cmd = run_tlc(
            args.jar, java, cfg, entry, cfg_workers, metaroot)
        expected = entry.get("outcome")
        ok = args.record or outcome == expected
        status = "ok" if ok else "MISMATCH"
        if outcome == "error":
            ok, status = False, "ERROR"
        rows.append((cfg, expected or "-", outcome, states, depth, elapsed, status))
        if not ok:
            failures.append((cfg, expected, outcome, output, cmd))
        elif not args.record:
            for name, want, got in (("distinct_states", entry.get("distinct_states"), states),
                                    ("depth", entry.get("depth"), depth)):
                if want != got:
                    notes.append(f"{cfg}: {name} {got} (recorded {want})")
        new = {"spec": entry["spec"], "outcome": outcome,
               "distinct_states": states, "depth": depth}
        if entry.get("check_deadlock"):
            new["check_deadlock"] = True
        recorded[cfg] = new
        print(f"  {cfg:<62} {outcome:<26} {elapsed:6.1f} s", flush=True)
    total = time.monotonic() - total_start
    shutil.rmtree(metaroot, ignore_errors=True)

    print()
    header = f"{'cfg':<62} {'expected':<26} {'outcome':<26} {'states':>9} {'depth':>5} {'time':>7}  status"
    print(header)
    print("-" * len(header))
    for cfg, expected, outcome, states, depth, elapsed, status in rows:
        print(f"{cfg:<62} {expected:<26} {outcome:<26} {states if states is not None else '-':>9} "
              f"{depth if depth is not None else '-':>5} {elapsed:6.1f}s  {status}")
    print(f"\nTLC total wall time: {total:.1f} s for {len(rows)} cfgs (workers={workers})")

    for note in notes:
        print(f"note: {note}")
    for cfg, expected, outcome, output, cmd in failures:
        print(f"\ntlc: {cfg}: expected {expected}, got {outcome}", file=sys.stderr)
        print(f"tlc: command (in specs/tla): {' '.join(cmd)}", file=sys.stderr)
        tail = "\n".join(output.strip().splitlines()[-40:])
        print(f"tlc: last lines of TLC output:\n{tail}", file=sys.stderr)

    if args.record:
        if failures:
            print("tlc: not recording: some cfgs could not be run", file=sys.stderr)
            return 1
        with open(RESULTS, "w") as f:
            json.dump(recorded, f, indent=2)
            f.write("\n")
        print(f"recorded {len(recorded)} cfgs in {os.path.relpath(RESULTS, ROOT)}")
        return 0
    if failures:
        print(f"\ntlc: FAILED: {len(failures)} cfg(s) differ from results.json", file=sys.stderr)
        return 1
    if strict and notes:
        print("\ntlc: FAILED: TLC_STRICT=1 and states/depth differ", file=sys.stderr)
        return 1
    print("tlc: all outcomes match results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
