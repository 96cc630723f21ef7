//! The `kelpie` binary as a user runs it.

use std::process::Command;

fn kelpie(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kelpie"));
    command.args(args).env_remove("KELPIE_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("kelpie runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn trace_hash(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("trace hash: "))
        .expect("a trace hash line")
        .to_string()
}

#[test]
fn dst_prints_the_run_and_the_same_seed_gives_the_same_hash() {
    let (code, first, stderr) = kelpie(&["dst", "--seed", "7"], &[]);
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "seed: 7",
        "steps: ",
        "virtual time: 20.000s",
        "fault effects: clock_skew=",
        "trace hash: ",
    ] {
        assert!(first.contains(expected), "missing {expected:?} in:\n{first}");
    }
    let hash = trace_hash(&first);
    assert_eq!(hash.len(), 64);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    let (_, second, _) = kelpie(&["dst", "--seed", "7"], &[]);
    assert_eq!(trace_hash(&second), hash);
    let (_, other, _) = kelpie(&["dst", "--seed", "8"], &[]);
    assert_ne!(trace_hash(&other), hash);
}

#[test]
fn config_prints_version_and_validated_configuration() {
    let (code, stdout, stderr) = kelpie(&["config"], &[("KELPIE_LEASE__TTL_MS", "5000")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(&format!("kelpie {}\n", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert!(stdout.contains("ttl_ms = 5000"), "{stdout}");
    assert!(stdout.contains("kind = \"embedded\""), "{stdout}");
}

#[test]
fn an_etcd_backend_without_endpoints_fails_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kelpie.toml");
    std::fs::write(&path, "[backend]\nkind = \"etcd\"\n").expect("write config");
    let path = path.to_str().expect("utf-8 path");
    let (code, _, stderr) = kelpie(&["config", "--config", path], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("backend.endpoints"), "{stderr}");
}

#[test]
fn dst_rejects_too_few_nodes() {
    let (code, _, stderr) = kelpie(&["dst", "--seed", "1", "--nodes", "2"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--nodes must be at least 3"), "{stderr}");
}
