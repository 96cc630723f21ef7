//! The alignment table (`specs/alignment.toml`) is complete and true: every
//! TLA+ invariant, simulator invariant and simulator fault type has a row;
//! every name a row gives exists where it says; every simulator check a row
//! lists is evaluated during the simulator suite; a checker a row lacks is
//! declared as a gap (and a declared gap that no longer exists fails too).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kelpie_dst::scenarios::agent_server::AgentServerScenario;
use kelpie_dst::scenarios::heartbeat::HeartbeatScenario;
use kelpie_dst::scenarios::ownership::OwnershipScenario;
use kelpie_dst::scenarios::runtime::RuntimeScenario;
use kelpie_dst::scenarios::storage::StorageScenario;
use kelpie_dst::{FaultKind, SimReport};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    invariant: Vec<InvariantRow>,
    fault: Vec<FaultRow>,
    bug_switch: Vec<BugSwitchRow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BugSwitchRow {
    feature: String,
    invariant: String,
    tla_cfg: String,
    stateright: bool,
    /// The test file of the Stateright cell when it is not in
    /// `crates/kelpie-spec/tests` (a model next to its code).
    #[serde(default)]
    stateright_test: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvariantRow {
    name: String,
    guarantee: String,
    tla: Vec<String>,
    rust: String,
    stateright: Vec<String>,
    scenarios: Vec<String>,
    #[serde(default)]
    gap: Option<String>,
    /// How a checker checks it, where that needs saying (not a gap).
    #[serde(default)]
    #[allow(dead_code)] // Read by people, not by the test.
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRow {
    kind: String,
    tla: Vec<String>,
}

const SCENARIOS: [&str; 5] = ["heartbeat", "storage", "ownership", "runtime", "agent_server"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|error| panic!("read {relative}: {error}"))
}

fn table() -> Table {
    toml::from_str(&read("specs/alignment.toml")).expect("specs/alignment.toml parses")
}

/// Whether `spec`'s module defines operator `name` at the start of a line.
fn tla_defines(spec: &str, name: &str) -> bool {
    read(&format!("specs/tla/{spec}.tla")).lines().any(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(" ==") || rest.starts_with('('))
    })
}

/// Invariant names checked by the passing cfgs (`Name.cfg`), but `TypeOK`.
fn tla_invariants() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("specs/tla")).expect("specs/tla") {
        let path = entry.expect("entry").path();
        let file = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("")
            .to_string();
        if !file.ends_with(".cfg") || file.contains("_Buggy") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("cfg");
        let mut in_invariants = false;
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first() {
                Some(&"INVARIANT") | Some(&"INVARIANTS") => {
                    in_invariants = true;
                    names.extend(words[1..].iter().map(|word| word.to_string()));
                }
                Some(word) if word.chars().all(|c| c.is_ascii_uppercase()) && word.len() > 1 => in_invariants = false,
                Some(word) if in_invariants && !word.starts_with('\\') => {
                    names.extend(words.iter().map(|word| word.to_string()));
                }
                _ => {}
            }
        }
    }
    names.remove("TypeOK");
    names
}

/// The invariant names the simulator scenarios register (their constants).
fn simulator_invariants() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for scenario in SCENARIOS {
        for line in read(&format!("crates/kelpie-dst/src/scenarios/{scenario}.rs")).lines() {
            if let Some(rest) = line.trim().strip_prefix("pub const ") {
                if let Some((_, value)) = rest.split_once(": &str = \"") {
                    names.insert(value.trim_end_matches("\";").to_string());
                }
            }
        }
    }
    names
}

#[test]
fn every_row_names_what_exists_and_nothing_is_missing() {
    let table = table();
    let mut problems = Vec::new();
    let rows: BTreeMap<&str, &InvariantRow> = table.invariant.iter().map(|row| (row.name.as_str(), row)).collect();
    if rows.len() != table.invariant.len() {
        problems.push("an invariant has two rows".to_string());
    }
    for name in tla_invariants().iter().chain(simulator_invariants().iter()) {
        if !rows.contains_key(name.as_str()) {
            problems.push(format!("missing row: invariant {name}"));
        }
    }
    for row in &table.invariant {
        let name = &row.name;
        if !["G1", "G2", "G3", "G4", "G5", "G6"].contains(&row.guarantee.as_str()) {
            problems.push(format!("{name}: unknown guarantee {}", row.guarantee));
        }
        for spec in &row.tla {
            if !tla_defines(spec, name) {
                problems.push(format!("{name}: dangling: specs/tla/{spec}.tla defines no {name}"));
            }
        }
        if !row.rust.is_empty() {
            let (file, symbol) = row.rust.split_once('#').unwrap_or((&row.rust, ""));
            let text = read(file);
            let defined = [
                format!("fn {symbol}("),
                format!("fn {symbol}<"),
                format!("let {symbol} "),
                format!("let mut {symbol} "),
                format!("struct {symbol} "),
            ]
            .iter()
            .any(|pattern| text.contains(pattern.as_str()));
            if symbol.is_empty() || !defined {
                problems.push(format!("{name}: dangling: {file} defines no {symbol}"));
            }
        }
        for file in &row.stateright {
            if !read(file).contains(&format!("\"{name}\"")) {
                problems.push(format!("{name}: dangling: {file} has no property \"{name}\""));
            }
        }
        for scenario in &row.scenarios {
            if !SCENARIOS.contains(&scenario.as_str()) {
                problems.push(format!("{name}: unknown scenario {scenario}"));
            }
        }
        let lacks = row.tla.is_empty() || row.rust.is_empty() || row.stateright.is_empty() || row.scenarios.is_empty();
        match (&row.gap, lacks) {
            (None, true) => problems.push(format!("{name}: a checker is missing and no gap says why")),
            (Some(_), false) => problems.push(format!("{name}: declares a gap but has every checker")),
            _ => {}
        }
    }

    let faults: BTreeMap<&str, &FaultRow> = table.fault.iter().map(|row| (row.kind.as_str(), row)).collect();
    for kind in FaultKind::ALL {
        let kind_name = format!("{kind:?}");
        match faults.get(kind_name.as_str()) {
            None => problems.push(format!("missing row: fault {kind_name}")),
            Some(row) if row.tla.is_empty() => problems.push(format!("fault {kind_name}: no TLA+ counterpart")),
            Some(_) => {}
        }
        if kind.consumer().is_empty() {
            problems.push(format!("fault {kind_name}: no consumer"));
        }
    }
    for row in &table.fault {
        if !FaultKind::ALL.iter().any(|kind| format!("{kind:?}") == row.kind) {
            problems.push(format!("dangling: fault {} is not a simulator fault type", row.kind));
        }
        for action in &row.tla {
            match action.split_once('!') {
                Some((spec, action_name)) if tla_defines(spec, action_name) => {}
                _ => problems.push(format!("fault {}: dangling TLA+ action {action}", row.kind)),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "alignment table problems:\n  {}",
        problems.join("\n  ")
    );
}

/// Evaluations per invariant in `seeds` runs of one scenario.
fn evaluations(scenario: &str, seeds: std::ops::Range<u64>) -> BTreeMap<String, u64> {
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for seed in seeds {
        let report: SimReport = match scenario {
            "heartbeat" => HeartbeatScenario::default().run(seed).map(|(report, _)| report),
            "storage" => StorageScenario::default().run(seed),
            "ownership" => OwnershipScenario::default().run(seed).map(|(report, _)| report),
            "runtime" => RuntimeScenario::default().run(seed).map(|(report, _)| report),
            "agent_server" => AgentServerScenario::default().run(seed).map(|(report, _)| report),
            other => panic!("unknown scenario {other}"),
        }
        .unwrap_or_else(|failure| panic!("{scenario} seed {seed} failed: {failure}"));
        for (name, count) in report.invariant_evaluations {
            *total.entry(name.to_string()).or_default() += count;
        }
    }
    total
}

#[test]
fn every_simulator_check_in_the_table_is_evaluated_by_the_suite() {
    let table = table();
    let counts: BTreeMap<&str, BTreeMap<String, u64>> = SCENARIOS
        .iter()
        .map(|scenario| (*scenario, evaluations(scenario, 1..3)))
        .collect();
    let mut problems = Vec::new();
    for row in &table.invariant {
        for scenario in &row.scenarios {
            let evaluated = counts
                .get(scenario.as_str())
                .and_then(|counts| counts.get(&row.name))
                .copied()
                .unwrap_or(0);
            if evaluated == 0 {
                problems.push(format!("{} is never evaluated in the {scenario} scenario", row.name));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The text of the `#[cfg(feature = "...")]` item for `feature` in `file`
/// (up to the next `#[cfg`), if any.
fn feature_block(file: &str, feature: &str) -> Option<String> {
    let text = read(file);
    let start = text.find(&format!("#[cfg(feature = \"{feature}\")]"))?;
    let rest = &text[start + 1..];
    let end = rest.find("#[cfg").map_or(rest.len(), |end| end);
    Some(rest[..end].to_string())
}

#[test]
fn every_bug_switch_is_caught_three_ways_under_one_name() {
    let table = table();
    let results: serde_json::Value =
        serde_json::from_str(&read("specs/tla/results.json")).expect("specs/tla/results.json parses");
    let mut problems = Vec::new();
    let mut features = BTreeSet::new();
    for line in read("crates/kelpie-dst/Cargo.toml").lines() {
        if let Some((name, _)) = line.split_once(" = [") {
            if name.starts_with("bug-") {
                features.insert(name.trim().to_string());
            }
        }
    }
    let rows: BTreeSet<&str> = table.bug_switch.iter().map(|row| row.feature.as_str()).collect();
    for feature in &features {
        if !rows.contains(feature.as_str()) {
            problems.push(format!("missing row: bug switch {feature}"));
        }
    }
    for row in &table.bug_switch {
        let feature = &row.feature;
        let invariant = &row.invariant;
        if !features.contains(feature) {
            problems.push(format!("dangling: {feature} is not a kelpie-dst feature"));
        }
        match feature_block("crates/kelpie-dst/tests/bug_switches.rs", feature) {
            Some(block) if block.contains(&format!("\"{invariant}\"")) => {}
            _ => problems.push(format!("{feature}: the simulator test does not assert {invariant}")),
        }
        if row.tla_cfg.is_empty() {
            if row.note.is_none() {
                problems.push(format!("{feature}: no TLA+ cfg and no note saying why"));
            }
        } else {
            let outcome = results[&row.tla_cfg]["outcome"].as_str().unwrap_or("");
            if outcome != format!("fail:{invariant}") {
                problems.push(format!(
                    "{feature}: {} records {outcome:?}, not fail:{invariant}",
                    row.tla_cfg
                ));
            }
            let bug = feature.trim_start_matches("bug-");
            let cfg = read(&format!("specs/tla/{}", row.tla_cfg));
            if !cfg.contains(&format!("Bug = \"{bug}\"")) && row.note.is_none() {
                problems.push(format!("{feature}: {} does not set Bug = \"{bug}\"", row.tla_cfg));
            }
        }
        if row.stateright {
            let files: Vec<String> = match &row.stateright_test {
                Some(file) => vec![file.clone()],
                None => std::fs::read_dir(root().join("crates/kelpie-spec/tests"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|entry| entry.path().to_str().map(str::to_string))
                    .filter_map(|path| path.split("/../../").nth(1).map(str::to_string))
                    .collect(),
            };
            let found = files.iter().any(|file| {
                feature_block(file, feature).is_some_and(|block| block.contains(&format!("\"{invariant}\"")))
            });
            if !found {
                problems.push(format!(
                    "{feature}: no kelpie-spec test under the feature discovers {invariant}"
                ));
            }
        } else if row.note.is_none() {
            problems.push(format!("{feature}: no Stateright cell and no note saying why"));
        }
    }
    assert!(
        problems.is_empty(),
        "bug-switch matrix problems:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn verification_md_shows_the_recorded_tlc_results() {
    let results: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&read("specs/tla/results.json")).expect("specs/tla/results.json parses");
    let mut table = String::from("| cfg | expected outcome | distinct states | depth |\n|---|---|---|---|\n");
    for (cfg, result) in &results {
        table.push_str(&format!(
            "| `{cfg}` | {} | {} | {} |\n",
            result["outcome"].as_str().unwrap_or("?"),
            result["distinct_states"],
            result["depth"]
        ));
    }
    let doc = read("VERIFICATION.md");
    let begin = "<!-- tlc-table:begin -->\n";
    let shown = doc
        .split_once(begin)
        .and_then(|(_, rest)| rest.split_once("<!-- tlc-table:end -->"))
        .map(|(shown, _)| shown.to_string())
        .unwrap_or_default();
    assert_eq!(
        shown, table,
        "VERIFICATION.md's TLC table differs from specs/tla/results.json; replace it with:\n{table}"
    );
}
