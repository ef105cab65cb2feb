//! The `torture` command-line contract: exit codes (0 clean, 1 findings, 2 usage error,
//! 3 harness failure), the `--json` JSON Lines schema of `run`, deterministic `repro`, and
//! `inspect` on a real database.
//!
//! How: run the built binary (CARGO_BIN_EXE_torture) with real arguments and parse its
//! output. Pins: clap errors exiting 1 (indistinguishable from findings), JSON objects
//! without a `type`, and a repro that depends on anything but its arguments.

use std::process::Command;

fn torture() -> Command {
    Command::new(env!("CARGO_BIN_EXE_torture"))
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["run", "--no-such-flag"],
        vec!["run", "--mode", "fast"],
        vec!["run", "--shard", "3/2"],
        vec!["run", "--duration", "10 parsecs"],
        vec!["repro"],
        vec!["frobnicate"],
    ] {
        let out = torture().args(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let help = torture().arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
}

#[test]
fn run_json_emits_begin_and_summary_objects() {
    let dir = tempfile::tempdir().unwrap();
    let out = torture()
        .args([
            "run",
            "--cycles",
            "8",
            "--jobs",
            "2",
            "--seed",
            "0x42",
            "--json",
            "--artifacts",
        ])
        .arg(dir.path().join("artifacts"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.first().unwrap()["type"], "begin");
    assert_eq!(lines.first().unwrap()["base_seed"], "0x0000000000000042");
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["cycles"], 8);
    assert_eq!(summary["findings"], 0);
    assert!(summary["cycles_per_s"].as_f64().unwrap() > 0.0);
    assert!(summary["per_mode_kill"].as_object().unwrap().len() >= 8);
    assert!(summary["coverage"].is_object());
    assert!(
        lines.iter().all(|l| l["type"].is_string()),
        "every object has a type"
    );
}

#[test]
fn repro_is_deterministic() {
    let run = || {
        let out = torture()
            .args([
                "repro",
                "--seed",
                "0x77",
                "--mode",
                "async",
                "--kill",
                "offset",
                "--power-loss",
                "--json",
            ])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["type"], "clean");
        (
            v["acked"].clone(),
            v["recovered_n"].clone(),
            v["kill_site"].clone(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn inspect_prints_records_and_where_reading_stopped() {
    use engine::{Database, Key, Namespace, RunId, Value};
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let ns = std::sync::Arc::new(Namespace::new("t", "a", "g", RunId(1)));
    let mut t = db.begin(RunId(1));
    t.put(Key::kv(ns, "answer"), Value::I64(42)).unwrap();
    t.commit().unwrap();
    drop(db);
    let out = torture().arg("inspect").arg(dir.path()).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("header: format version 2"), "{text}");
    assert!(text.contains("answer = I64(42) @v1"), "{text}");
    assert!(text.contains("3 records; stopped: clean end"), "{text}");
    let missing = torture()
        .args(["inspect", "/nonexistent/wal.log"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(3));
}
