#!/usr/bin/env python3
"""Rewrites the TLC table in VERIFICATION.md from specs/tla/results.json
(the alignment test fails when they differ)."""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
results = json.loads((root / "specs/tla/results.json").read_text())
rows = ["| cfg | expected outcome | distinct states | depth |", "|---|---|---|---|"]
for cfg in sorted(results):
    r = results[cfg]
    rows.append(f"| `{cfg}` | {r['outcome']} | {r['distinct_states']} | {r['depth']} |")
doc_path = root / "VERIFICATION.md"
doc = doc_path.read_text()
begin, end = "<!-- tlc-table:begin -->\n", "<!-- tlc-table:end -->"
head, rest = doc.split(begin, 1)
_, tail = rest.split(end, 1)
doc_path.write_text(head + begin + "\n".join(rows) + "\n" + end + tail)
