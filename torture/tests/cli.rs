//! The `torture` command-line contract: exit codes (0 clean, 1 findings, 2 usage error,
//! 3 harness failure), the `--json` JSON Lines schema of `run`, deterministic `repro`,
//! `inspect` on real and damaged databases, `bench --check`, the heartbeat, the free-space
//! guard, a graceful stop on SIGINT/SIGTERM, and `matrix` (its JSON Lines, JUnit report,
//! table, shards and per-cell reruns). The CI scripts and workflows are tests/ci.rs's.
//!
//! How: run the built binary (CARGO_BIN_EXE_torture) with real arguments and parse its
//! output. Pins: clap errors exiting 1 (indistinguishable from findings), JSON objects
//! without a `type`, a repro that depends on anything but its arguments, runs of zero
//! cycles exiting 0, undocumented options, printed repro lines that `repro` rejects,
//! `inspect` exiting 0 on a damaged WAL and 3 on a missing path, a bench that misses its
//! targets and exits 0, silent long runs in CI, a full disk reported as a finding,
//! Ctrl-C turning children into `child-crashed` findings, and a matrix whose red cell
//! cannot be rerun alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
        // Runs that would do nothing and exit 0, as if clean.
        vec!["run", "--duration", "0s"],
        vec!["run", "--duration", "0ms", "--cycles", "5"],
        vec!["run", "--cycles", "0"],
        vec!["run", "--jobs", "0", "--cycles", "5"],
        vec!["run", "--crash-states", "0", "--cycles", "5"],
        vec!["repro", "--seed", "1", "--crash-states", "0"],
        // A repro replays one case: a fault is on or off, never "sometimes".
        vec!["repro", "--seed", "1", "--power-loss", "sometimes"],
        vec!["bench", "--check", "--replay-only"],
        vec!["bench", "--from", "bench.txt"],
    ] {
        let out = torture().args(&args).output().unwrap();
        assert_exit(&out, 2, &format!("{args:?}"));
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
    assert_exit(&out, 0, "");
    let stdout = String::from_utf8(out.stdout).unwrap();
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
        assert_exit(&out, 0, "");
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
    // A one-put transaction: the namespace's definition, then one PutTxn record.
    assert!(text.contains("2 records; stopped: clean end"), "{text}");
}

fn commit_two_txns(dir: &Path) {
    use engine::{Database, Key, Namespace, RunId, Value};
    let db = Database::open(dir).unwrap();
    let ns = std::sync::Arc::new(Namespace::new("t", "a", "g", RunId(1)));
    for (k, v) in [("first", 1), ("second", 2)] {
        let mut t = db.begin(RunId(1));
        t.put(Key::kv(ns.clone(), k), Value::I64(v)).unwrap();
        t.commit().unwrap();
    }
    drop(db);
}

/// (offset, length) of the first record of `record_type` in `torture inspect`'s listing.
fn record_span(listing: &str, record_type: &str) -> (u64, u64) {
    listing
        .lines()
        .find_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.get(2) == Some(&record_type)).then(|| {
                let len = fields[1].trim_end_matches('B');
                (fields[0].parse().unwrap(), len.parse().unwrap())
            })
        })
        .unwrap_or_else(|| panic!("no {record_type} record in\n{listing}"))
}

#[test]
fn inspect_exits_1_on_damage_and_2_on_what_is_not_a_wal() {
    let dir = tempfile::tempdir().unwrap();
    commit_two_txns(dir.path());
    let wal = dir.path().join("wal.log");
    let clean = torture().arg("inspect").arg(&wal).output().unwrap();
    let listing = String::from_utf8(clean.stdout).unwrap();
    assert_eq!(clean.status.code(), Some(0), "{listing}");
    let original = std::fs::read(&wal).unwrap();

    // A torn tail: half a record after the last one.
    let mut torn = original.clone();
    torn.extend_from_slice(&[9, 0, 0]);
    std::fs::write(&wal, &torn).unwrap();
    let out = torture().arg("inspect").arg(dir.path()).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("stopped: torn tail"), "{text}");
    assert_eq!(std::fs::read(&wal).unwrap(), torn, "inspect never writes");

    // Corruption: the first PutTxn's last payload byte flipped; the second PutTxn, written
    // after a sync covered the first (Strict), proves it was committed history.
    let (offset, len) = record_span(&listing, "PutTxn");
    let mut corrupt = original.clone();
    corrupt[(offset + len - 1) as usize] ^= 0x40;
    std::fs::write(&wal, &corrupt).unwrap();
    let out = torture().arg("inspect").arg(&wal).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("corruption"), "{text}");

    // Not a WAL: the 0-byte LOCK beside it, IDENTITY, a directory without wal.log.
    for not_a_wal in [dir.path().join("LOCK"), dir.path().join("IDENTITY")] {
        assert!(not_a_wal.is_file(), "{}", not_a_wal.display());
        let out = torture().arg("inspect").arg(&not_a_wal).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_exit(&out, 2, &not_a_wal.display().to_string());
        assert!(stderr.contains("not a WAL"), "{stderr}");
        assert!(
            out.stdout.is_empty(),
            "nothing dumped for a file that is not a WAL"
        );
    }
    let empty_dir = tempfile::tempdir().unwrap();
    let out = torture()
        .arg("inspect")
        .arg(empty_dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without wal.log"));

    // A missing path is a usage error, not a harness failure.
    let missing = torture()
        .args(["inspect", "/nonexistent/wal.log"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));

    // An empty wal.log is a WAL torn while it was being created: damage, not "not a WAL".
    std::fs::write(&wal, b"").unwrap();
    let out = torture().arg("inspect").arg(&wal).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("header incomplete"), "{text}");
}

#[test]
fn help_documents_options_and_exit_codes() {
    let help = |args: &[&str]| {
        let out = torture().args(args).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    for args in [
        &[][..],
        &["run"],
        &["repro"],
        &["inspect"],
        &["bench"],
        &["matrix"],
    ] {
        let text = help(args);
        for code in ["0  clean", "1  findings", "2  usage error", "3  harness"] {
            assert!(
                text.contains(code),
                "{args:?} --help lacks {code:?}:\n{text}"
            );
        }
    }
    let run = help(&["run"]);
    assert!(run.contains("Durability mode the writers open"), "{run}");
    assert!(run.contains("How writers are stopped"), "{run}");
    assert!(run.contains("--heartbeat-secs"), "{run}");
    assert!(run.contains("--min-free-mib"), "{run}");
    let repro = help(&["repro"]);
    assert!(
        repro.contains("Durability mode: strict, batched or async"),
        "{repro}"
    );
    assert!(
        repro.contains("Kill kind: offset, watch, time or io-error"),
        "{repro}"
    );
    assert!(repro.contains("One JSON object on stdout"), "{repro}");
    assert!(help(&["bench"]).contains("exit 1 when any is missed"));
    let matrix = help(&["matrix"]);
    for flag in [
        "--matrix", "--cell", "--shard", "--seed", "--quick", "--junit", "--json", "--list",
    ] {
        assert!(
            matrix.contains(flag),
            "matrix --help lacks {flag}:\n{matrix}"
        );
    }
}

fn repro_json(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = torture()
        .arg("repro")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stderr}"));
    (out.status.code(), value)
}

#[test]
fn printed_repro_lines_paste_into_repro_and_fault_flags_match_run() {
    use crashkit::case::{Case, KillKind, Limits, ModeName};
    let mut case = Case::new(0x5eed, ModeName::Batched, KillKind::Offset);
    case.power_loss = true;
    case.recovery_crash = true;
    case.corrupt = true;
    case.generations = 2;
    case.limits = Limits {
        txns_skip: None,
        txns_drop: None,
        ops_drop: None,
        txns_max: Some(6),
        ops_max: Some(3),
        value_len_max: Some(100),
    };
    case.kill_offset_bytes = Some(300);
    let line = case.repro_args();
    let args: Vec<&str> = line.split_whitespace().collect();
    let (code, v) = repro_json(&args);
    assert!(matches!(code, Some(0 | 1)), "{line}: exit {code:?}");
    let replayed: Case = serde_json::from_value(v["case"].clone()).unwrap();
    assert_eq!(
        replayed, case,
        "`repro {line}` replays exactly the printed case"
    );

    // `--power-loss` bare and `--power-loss always` are the same case, in repro as in run.
    let base = ["--seed", "0x77", "--mode", "async", "--kill", "offset"];
    let bare = repro_json(&[&base[..], &["--power-loss"]].concat());
    let spelled = repro_json(&[&base[..], &["--power-loss", "always"]].concat());
    assert_eq!(bare.1["case"]["power_loss"], true);
    assert_eq!(bare, spelled);
    let never = repro_json(&[&base[..], &["--power-loss", "never"]].concat());
    assert_eq!(never.1["case"]["power_loss"], false);
    let dir = tempfile::tempdir().unwrap();
    for spelling in [&["--power-loss"][..], &["--power-loss", "always"]] {
        let out = torture()
            .args([
                "run",
                "--cycles",
                "2",
                "--seed",
                "1",
                "--json",
                "--artifacts",
            ])
            .arg(dir.path())
            .args(spelling)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "run {spelling:?}");
    }
}

/// Asserts that `out` exited with `code`; otherwise shows `what`, its stdout and its stderr.
fn assert_exit(out: &std::process::Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

#[test]
fn run_prints_a_heartbeat_on_stderr_when_it_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = torture()
        .args([
            "run",
            "--duration",
            "2500ms",
            "--jobs",
            "1",
            "--heartbeat-secs",
            "1",
            "--json",
            "--artifacts",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let beats: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("heartbeat:"))
        .collect();
    assert!(beats.len() >= 2, "a beat a second for 2.5 s:\n{stderr}");
    for beat in &beats {
        assert!(beat.contains(" cycles, "), "{beat}");
        assert!(beat.contains(" findings, "), "{beat}");
        assert!(beat.contains("s elapsed"), "{beat}");
    }
    // stdout stays pure JSON Lines.
    assert!(json_lines(&out.stdout)
        .iter()
        .all(|l| l["type"].is_string()));
}

#[test]
fn too_little_free_space_is_an_environment_failure() {
    let dir = tempfile::tempdir().unwrap();
    let out = torture()
        .args(["run", "--cycles", "4", "--json", "--min-free-mib"])
        .arg((1u64 << 40).to_string())
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg("--artifacts")
        .arg(dir.path().join("artifacts"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("MiB free in"), "{stderr}");
    assert!(
        stderr.contains("--min-free-mib"),
        "names the knob: {stderr}"
    );
    let lines = json_lines(&out.stdout);
    assert!(
        lines.iter().all(|l| l["type"] != "finding"),
        "a full disk is not a finding: {lines:?}"
    );
}

/// Starts a long JSON run in its own process group, lets it work, sends `signal` to the
/// group (as a terminal's Ctrl-C does) or to the parent alone, and returns its exit code
/// and JSON lines.
fn stop_a_long_run(signal: libc::c_int, to_group: bool) -> (Option<i32>, Vec<serde_json::Value>) {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = torture()
        .args([
            "run",
            "--duration",
            "120s",
            "--jobs",
            "2",
            "--seed",
            "0x51",
            "--json",
        ])
        .arg("--artifacts")
        .arg(dir.path())
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain kill(2) on a process (group) this test started.
    let rc = unsafe { libc::kill(if to_group { -pid } else { pid }, signal) };
    assert_eq!(rc, 0);
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "torture did not stop after the signal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), json_lines(&out.stdout))
}

#[test]
fn sigint_and_sigterm_stop_the_run_with_a_summary() {
    for (signal, to_group) in [(libc::SIGINT, true), (libc::SIGTERM, false)] {
        let (code, lines) = stop_a_long_run(signal, to_group);
        let summary = lines.last().expect("some output");
        assert_eq!(summary["type"], "summary", "signal {signal}: {lines:?}");
        assert_eq!(summary["interrupted"], true);
        assert!(summary["cycles"].as_u64().unwrap() > 0);
        assert_eq!(
            summary["findings"], 0,
            "signal {signal} to the group must not kill children into findings: {lines:?}"
        );
        assert_eq!(code, Some(0), "clean and interrupted exits 0");
    }
}

#[test]
fn bench_check_exits_1_when_a_target_is_missed() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = torture()
            .args(["bench", "--check", "--from"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let missed = "strict 1 thread / plain loop: 1.25x (target >= 1.3x)\n\
                  strict 8 threads / 1 thread: 6.00x (target >= 5x)\n";
    let (code, text) = check("missed.txt", missed);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("strict 1 thread / plain loop: 1.25x, target >= 1.3x: MISSED"),
        "{text}"
    );
    let (code, text) = check("met.txt", &missed.replace("1.25x", "1.35x"));
    assert_eq!(code, Some(0), "{text}");
    let json =
        r#"{"type":"summary","strict_1t_to_plain_ratio":1.5,"strict_group_commit_ratio":4.0}"#;
    assert_eq!(check("missed.jsonl", json).0, Some(1));
    assert_eq!(check("none.txt", "no targets\n").0, Some(2));
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn report_merges_runs_into_one_summary() {
    let dir = tempfile::tempdir().unwrap();
    let run = |seed: &str, cycles: &str| {
        let out = torture()
            .args([
                "run",
                "--cycles",
                cycles,
                "--seed",
                seed,
                "--json",
                "--artifacts",
            ])
            .arg(dir.path().join("artifacts"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let path = dir.path().join(format!("{seed}.jsonl"));
        std::fs::write(&path, &out.stdout).unwrap();
        path
    };
    let (a, b) = (run("0x1", "12"), run("0x2", "6"));
    let out = torture()
        .arg("report")
        .args([&a, &b])
        .arg("--json")
        .output()
        .unwrap();
    assert_exit(&out, 0, "");
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1);
    let report = &lines[0];
    assert_eq!(report["type"], "report");
    assert_eq!(report["runs"], 2);
    assert_eq!(report["summary"]["cycles"], 18);
    assert_eq!(report["summary"]["findings"], 0);
    let combos = report["summary"]["per_mode_kill"].as_object().unwrap();
    let per_combo: u64 = combos.values().map(|c| c["cycles"].as_u64().unwrap()).sum();
    assert_eq!(per_combo, 18, "every cycle is in one mode/kill row");
    assert_eq!(combos["strict/offset"]["cycles"], 2, "one from each run");
    let rates = report["cycles_per_s_by_mode_kill"].as_object().unwrap();
    assert_eq!(rates.len(), combos.len());
    assert!(rates.values().all(|r| r.as_f64().unwrap() > 0.0));

    let human = torture().arg("report").args([&a, &b]).output().unwrap();
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.starts_with("2 runs merged"), "{text}");
    assert!(text.contains("cycles/s per mode/kill"), "{text}");

    // A run that began and never summarised (a harness failure) makes the merge exit 3.
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"type\":\"begin\",\"base_seed\":\"0x3\"}\n").unwrap();
    let out = torture()
        .arg("report")
        .args([&a, &broken])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    // A run with a finding makes the merge exit 1.
    let found = dir.path().join("found.jsonl");
    let with_finding = std::fs::read_to_string(&b)
        .unwrap()
        .replace("\"findings\":0", "\"findings\":1");
    std::fs::write(&found, with_finding).unwrap();
    let out = torture().arg("report").args([&a, &found]).output().unwrap();
    assert_exit(&out, 1, "");
    let out = torture()
        .args(["report", "/nonexistent.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = torture().arg("report").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "at least one file");
}

/// A small matrix for the `torture matrix` tests: two strict cells (offset kills, one
/// writer thread: bit-exact reruns) and one async cell with power loss.
const SMALL_MATRIX: &str = r#"
seed = "0x5eed"
quick = { divisor = 3, cycles_min = 2 }

[profiles.small-values]
threads = 1
generations = 1
value_len_max = 64

[profiles.large-values]
threads = 1
generations = 1

[faults.offset]
kills = ["offset"]

[faults.power-loss]
kills = ["offset", "time"]
power_loss = "always"

[[cells]]
modes = ["strict"]
faults = ["offset"]
profiles = ["small-values", "large-values"]
cycles = 9

[[cells]]
modes = ["async"]
faults = ["power-loss"]
profiles = ["small-values"]
cycles = 9
"#;

fn small_matrix(dir: &Path) -> PathBuf {
    let path = dir.join("matrix.toml");
    std::fs::write(&path, SMALL_MATRIX).unwrap();
    path
}

fn matrix_cmd(dir: &Path, matrix: &Path) -> Command {
    let mut cmd = torture();
    cmd.arg("matrix")
        .arg("--matrix")
        .arg(matrix)
        .arg("--artifacts")
        .arg(dir.join("artifacts"));
    cmd
}

#[test]
fn matrix_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = small_matrix(dir.path());
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        SMALL_MATRIX.replace("\"power-loss\"]\nprofiles", "\"powerloss\"]\nprofiles"),
    )
    .unwrap();
    for (what, mut cmd) in [
        (
            "missing file",
            matrix_cmd(dir.path(), &dir.path().join("none.toml")),
        ),
        ("unknown fault", matrix_cmd(dir.path(), &broken)),
        ("no cell matches", {
            let mut c = matrix_cmd(dir.path(), &matrix);
            c.args(["--cell", "batched/*"]);
            c
        }),
        ("shard 2/2", {
            let mut c = matrix_cmd(dir.path(), &matrix);
            c.args(["--shard", "2/2"]);
            c
        }),
        ("empty shard", {
            // Three cells: shard 3/4 holds none of them.
            let mut c = matrix_cmd(dir.path(), &matrix);
            c.args(["--shard", "3/4"]);
            c
        }),
        ("zero jobs", {
            let mut c = matrix_cmd(dir.path(), &matrix);
            c.args(["--jobs", "0"]);
            c
        }),
    ] {
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(out.stdout.is_empty(), "{what}: nothing ran");
    }
    let out = matrix_cmd(dir.path(), &broken).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown fault \"powerloss\""),
        "names the mistake"
    );
}

#[test]
fn matrix_json_junit_and_table_describe_every_cell() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = small_matrix(dir.path());
    let junit = dir.path().join("junit.xml");
    let out = matrix_cmd(dir.path(), &matrix)
        .args(["--quick", "--json", "--junit"])
        .arg(&junit)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines = json_lines(&out.stdout);
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["begin", "cell", "cell", "cell", "summary"]);
    assert_eq!(lines[0]["quick"], true);
    assert_eq!(lines[0]["cells"].as_array().unwrap().len(), 3);
    let names: Vec<&str> = lines[1..4]
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "strict/offset/small-values",
            "strict/offset/large-values",
            "async/power-loss/small-values"
        ]
    );
    for cell in &lines[1..4] {
        assert_eq!(cell["budget_cycles"], 3, "quick: 9 / 3");
        assert_eq!(cell["cycles"], 3);
        assert_eq!(cell["findings"], 0);
        assert_eq!(cell["status"], "clean");
        assert!(cell["cycles_per_s"].as_f64().unwrap() > 0.0);
    }
    let summary = &lines[4];
    assert_eq!(summary["cycles"], 9);
    assert_eq!(summary["cells_run"], 3);
    assert_eq!(summary["red_cells"], serde_json::json!([]));
    assert_eq!(summary["per_mode_kill"]["strict/offset"]["cycles"], 6);

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert!(
        xml.contains(r#"tests="3" failures="0" errors="0""#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"name="async/power-loss/small-values""#),
        "{xml}"
    );

    // torture report merges a matrix run like any run.
    let jsonl = dir.path().join("matrix.jsonl");
    std::fs::write(&jsonl, &out.stdout).unwrap();
    let report = torture()
        .arg("report")
        .arg(&jsonl)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(report.status.code(), Some(0));
    let merged = &json_lines(&report.stdout)[0];
    assert_eq!(
        (
            merged["runs"].as_u64(),
            merged["summary"]["cycles"].as_u64()
        ),
        (Some(1), Some(9))
    );

    // Without --json: one table on stdout, a row per cell with cycles and cycles/s.
    let out = matrix_cmd(dir.path(), &matrix)
        .args(["--quick", "--cell", "strict/*"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].contains("cycles/s") && rows[0].contains("findings"),
        "{table}"
    );
    assert!(rows[1].starts_with("strict/offset/small-values") && rows[1].ends_with("clean"));
    assert!(rows[2].starts_with("strict/offset/large-values"), "{table}");
    assert!(rows[3].starts_with("2 cells, 6 cycles in "), "{table}");
}

#[test]
fn a_matrix_cell_reruns_alone_from_its_printed_command() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = small_matrix(dir.path());
    let cell_json = |args: &[&str]| {
        let mut cmd = if args[0] == "matrix" {
            torture()
        } else {
            matrix_cmd(dir.path(), &matrix)
        };
        let out = cmd.args(args).arg("--json").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        json_lines(&out.stdout)
            .into_iter()
            .filter(|l| l["type"] == "cell")
            .collect::<Vec<_>>()
    };
    // The whole matrix, then the cell alone from the command its row printed.
    let all = cell_json(&["--quick", "--seed", "0x77"]);
    let first = &all[0];
    assert_eq!(first["name"], "strict/offset/small-values");
    let repro = first["repro"].as_str().unwrap();
    let args: Vec<&str> = repro
        .split_once(" -- ")
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(args[0], "matrix", "{repro}");
    assert!(
        args.contains(&"--quick") && args.contains(&"0x77"),
        "{repro}"
    );
    let alone = cell_json(&args);
    assert_eq!(alone.len(), 1, "{repro}");
    for field in ["name", "seed", "cycles", "budget_cycles"] {
        assert_eq!(alone[0][field], first[field], "{field} after {repro}");
    }
    // Offset kills from one writer thread are bit-exact: the same kill sites.
    let sites = |args: &[&str]| {
        let out = matrix_cmd(dir.path(), &matrix)
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        json_lines(&out.stdout)
            .into_iter()
            .find(|l| l["type"] == "summary")
            .unwrap()["coverage"]
            .clone()
    };
    let cell = [
        "--quick",
        "--seed",
        "0x77",
        "--cell",
        "strict/offset/small-values",
    ];
    assert_eq!(sites(&cell), sites(&cell));
    let other_seed = [
        "--quick",
        "--seed",
        "0x78",
        "--cell",
        "strict/offset/small-values",
    ];
    assert_ne!(
        alone[0]["seed"],
        cell_json(&other_seed)[0]["seed"],
        "the cell seed follows --seed"
    );
}

#[test]
fn matrix_shards_partition_the_repository_matrix() {
    let list = |extra: &[&str]| {
        let out = torture()
            .current_dir(repo_root())
            .args(["matrix", "--list"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{extra:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let all = list(&[]);
    assert!(all.len() >= 12, "every mode x kill kind at least: {all:?}");
    let mut union = Vec::new();
    for i in 0..4 {
        let shard = list(&["--shard", &format!("{i}/4")]);
        assert!(!shard.is_empty());
        for (k, name) in shard.iter().enumerate() {
            assert_eq!(
                name,
                &all[i + 4 * k],
                "shard {i}/4 takes every 4th cell from {i}"
            );
        }
        union.extend(shard);
    }
    union.sort();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(union, sorted, "the shards cover the matrix exactly once");
    // Every mode and every kill kind has a cell of its own.
    for mode in ["strict", "batched", "async"] {
        for fault in [
            "offset",
            "watch",
            "time",
            "io-error",
            "power-loss",
            "recovery-crash",
            "corrupt",
        ] {
            assert!(
                all.iter()
                    .any(|n| n.starts_with(&format!("{mode}/{fault}/"))),
                "no {mode}/{fault} cell in ci/matrix.toml"
            );
        }
    }
}

#[test]
fn a_matrix_harness_failure_exits_3_without_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = small_matrix(dir.path());
    let junit = dir.path().join("junit.xml");
    let out = matrix_cmd(dir.path(), &matrix)
        .args(["--quick", "--json", "--min-free-mib"])
        .arg((1u64 << 40).to_string())
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let lines = json_lines(&out.stdout);
    assert!(lines.iter().any(|l| l["type"] == "error"), "{lines:?}");
    assert!(
        lines.iter().all(|l| l["type"] != "summary"),
        "torture report must count the run as incomplete: {lines:?}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"errors="1""#) && xml.contains(r#"skipped="2""#),
        "{xml}"
    );
}

#[test]
fn bench_check_quick_measures_every_figure_then_judges_it() {
    let dir = tempfile::tempdir().unwrap();
    // --check without --from measures in a child `torture bench`, passes its JSON Lines
    // through, then adds its verdict as a `check` object.
    let out = torture()
        .args(["bench", "--check", "--quick", "--json", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = json_lines(&out.stdout);
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"begin"), "{types:?}");
    assert_eq!(&types[types.len() - 2..], ["summary", "check"], "{types:?}");
    let replay: Vec<_> = lines.iter().filter(|l| l["type"] == "replay").collect();
    for order in ["ascending", "random"] {
        assert!(
            replay.iter().any(|r| r["key_order"] == order),
            "no {order} replay row"
        );
    }
    for r in &replay {
        assert!(r["replay_txn_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["wal_bytes"].as_u64().unwrap() > 0, "{r}");
    }
    for mode in ["strict", "batched", "async"] {
        let rows: Vec<_> = lines
            .iter()
            .filter(|l| l["type"] == "commit" && l["mode"] == mode)
            .collect();
        assert!(!rows.is_empty(), "no commit rows for {mode}");
        assert!(rows.iter().all(|r| r["txn_per_s"].as_f64().unwrap() > 0.0));
    }
    let check = lines.last().unwrap();
    let targets = check["targets"].as_array().unwrap();
    assert!(!targets.is_empty(), "{check}");
    let missed = targets.iter().filter(|t| t["met"] == false).count();
    assert_eq!(check["missed"], missed);
    // A debug build may miss its targets: the exit code says whether it did.
    let expected = if missed > 0 { 1 } else { 0 };
    assert_eq!(out.status.code(), Some(expected), "{check}\n{stderr}");
    if missed > 0 {
        assert!(stderr.contains("targets missed"), "{stderr}");
    }
}

#[test]
fn selftest_passes_and_reports_each_wrong_engine() {
    let out = torture().args(["selftest", "--json"]).output().unwrap();
    assert_exit(&out, 0, "");
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1);
    let report = &lines[0];
    assert_eq!(report["type"], "selftest");
    assert_eq!(report["passed"], true);
    assert_eq!(report["correct_engine_findings"], serde_json::json!([]));
    let detections = report["detections"].as_array().unwrap();
    assert!(detections.len() >= 6, "one per wrong engine: {report}");
    assert!(
        detections.iter().all(|d| d["reported_as"].is_string()),
        "{report}"
    );
    let human = torture().arg("selftest").output().unwrap();
    assert_eq!(human.status.code(), Some(0));
    assert!(!human.stdout.is_empty());
}

/// `report --html` renders a recorded run (torture/tests/fixtures/run.jsonl, from
/// `torture run --cycles 300 --jobs 2 --seed 0x7e50 --json`) as one self-contained page:
/// the totals, and an SVG cell per (record type, region) whose title names every kill
/// site of the run with its count.
#[test]
fn report_renders_a_recorded_run_as_a_self_contained_html_page() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let page_path = dir.path().join("report.html");
    let out = torture()
        .arg("report")
        .arg(&fixture)
        .arg("--html")
        .arg(&page_path)
        .output()
        .unwrap();
    assert_exit(&out, 0, "");
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("300 cycles"), "{page}");
    assert_eq!(page.matches("<svg").count(), 1);
    assert!(
        !page.contains("<script") && !page.contains("src="),
        "self-contained"
    );
    let summary: serde_json::Value = std::fs::read_to_string(&fixture)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "summary")
        .unwrap();
    let coverage = summary["coverage"].as_object().unwrap();
    assert!(coverage.len() > 5, "a run of 300 cycles reaches many sites");
    for (site, n) in coverage {
        let title = format!("<title>{site}: {} kills</title>", n.as_u64().unwrap());
        assert!(page.contains(&title), "{title} missing");
    }
    let record_types: std::collections::BTreeSet<&str> = coverage
        .keys()
        .map(|k| k.split_once('/').unwrap().1)
        .collect();
    assert!(page.matches("<rect").count() >= 5 * record_types.len());
}

/// `torture sweep`: 0 on a clean sweep (its JSON summary counts points and states), 1 on
/// findings (a writer whose fdatasyncs do nothing) with a repro line that rebuilds the
/// state alone, 2 on usage errors (a missing seed, a zero cap, a point the run lacks).
#[test]
fn sweep_exit_codes_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let small = [
        "sweep",
        "--seed",
        "0x5eed",
        "--txns-max",
        "2",
        "--ops-max",
        "1",
        "--value-len-max",
        "16",
        "--states-per-point",
        "2",
    ];
    let out = torture()
        .args(small)
        .args(["--json", "--artifacts"])
        .arg(dir.path().join("artifacts"))
        .output()
        .unwrap();
    assert_exit(&out, 0, "");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["type"], "sweep");
    assert_eq!(summary["findings"], 0);
    assert!(summary["points"].as_u64().unwrap() > 10, "{summary}");
    assert!(summary["states_checked"].as_u64().unwrap() > 0, "{summary}");

    let out = torture()
        .args(small)
        .args([
            "--wrong-engine",
            "acks-before-sync-returns",
            "--findings-max",
            "1",
            "--json",
            "--artifacts",
        ])
        .arg(dir.path().join("artifacts"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let finding: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(finding["type"], "finding");
    let repro = finding["repro"].as_str().unwrap().to_string();
    let (point, state) = (
        finding["point"].as_u64().unwrap(),
        finding["state"].as_u64().unwrap(),
    );
    assert!(
        repro.contains(&format!("--point {point} --state {state}")),
        "{repro}"
    );
    // The printed repro (plus the wrong engine) rebuilds that state and fails the same way.
    let args: Vec<&str> = repro.split(" -- ").nth(1).unwrap().split(' ').collect();
    let again = torture()
        .args(&args)
        .args([
            "--wrong-engine",
            "acks-before-sync-returns",
            "--json",
            "--artifacts",
        ])
        .arg(dir.path().join("artifacts"))
        .output()
        .unwrap();
    let again_out = String::from_utf8(again.stdout).unwrap();
    assert_eq!(again.status.code(), Some(1), "{again_out}");
    let again_finding: serde_json::Value =
        serde_json::from_str(again_out.lines().next().unwrap()).unwrap();
    assert_eq!(again_finding["kind"], finding["kind"]);
    assert_eq!(
        again_finding["state_description"],
        finding["state_description"]
    );

    for bad in [
        vec!["sweep"],
        vec!["sweep", "--seed", "1", "--states-per-point", "0"],
        vec!["sweep", "--seed", "1", "--state", "3"],
        vec!["sweep", "--seed", "1", "--wrong-engine", "drops-last-acked"],
    ] {
        let out = torture().args(&bad).output().unwrap();
        assert_exit(&out, 2, &format!("{bad:?}"));
    }
    let out = torture()
        .args(small)
        .args(["--point", "999999999", "--artifacts"])
        .arg(dir.path().join("artifacts"))
        .output()
        .unwrap();
    assert_exit(&out, 2, "");
}

/// A campaign on default settings against a wrong engine the self-test knows finds it
/// and exits 1; an unknown name is a usage error.
#[test]
fn run_against_a_wrong_engine_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = torture()
        .args(["run", "--cycles", "6", "--seed", "7", "--json"])
        .args(["--wrong-engine", "shifts-versions", "--artifacts"])
        .arg(dir.path().join("artifacts"))
        .output()
        .unwrap();
    assert_exit(&out, 1, "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"kind\":\"version-mismatch\""));
    let bad = torture()
        .args(["run", "--cycles", "1", "--wrong-engine", "no-such-engine"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
