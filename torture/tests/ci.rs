//! The CI around `torture`: the scripts under ci/ (run in a sandbox with a `cargo` that only
//! logs, so nothing builds) and the GitHub workflows under .github/workflows.
//!
//! Properties: the scripts honour CARGO_TARGET_DIR and end with the test runner's summary
//! line; the coverage gate fails under its percentage and names each crate's number; every
//! `torture` subcommand and flag a workflow invokes exists (checked against `torture <sub>
//! --help`), every script a workflow runs exists, and the campaign's shard list matches the
//! `i/n` it passes. Pins: CI scripts that assumed `target/`, a gate that passes whatever the
//! number, and workflows that call flags renamed since (they would fail only at night).
//!
//! The workflows are read with a small line-based reader of the YAML subset they use
//! (`run:` values, plain or `|` blocks, `\` continuations) rather than a YAML crate.

use std::path::{Path, PathBuf};
use std::process::Command;

fn torture() -> Command {
    Command::new(env!("CARGO_BIN_EXE_torture"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A copy of `ci/<file>`s in a fresh tree, with a `cargo` on PATH that only logs its
/// arguments (printing a test result line for `cargo test` and `cargo llvm-cov --workspace`,
/// and the file `$FAKE_COVERAGE` for `cargo llvm-cov report`) and a `rustup` that reports
/// llvm-tools installed, so that the scripts run without building.
fn ci_sandbox(files: &[&str]) -> tempfile::TempDir {
    let sandbox = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(sandbox.path().join("ci")).unwrap();
    std::fs::create_dir_all(sandbox.path().join("bin")).unwrap();
    for file in files {
        std::fs::copy(
            repo_root().join("ci").join(file),
            sandbox.path().join("ci").join(file),
        )
        .unwrap();
    }
    let write_exe = |name: &str, body: &str| {
        let path = sandbox.path().join("bin").join(name);
        std::fs::write(&path, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write_exe(
        "cargo",
        "#!/bin/sh\necho \"cargo $*\" >> \"$(dirname \"$0\")/cargo.log\"\n\
         case \"$1 $2\" in\n\
         \"test \"*|\"llvm-cov --workspace\") echo 'test result: ok. 3 passed; 0 failed; 1 ignored' ;;\n\
         \"llvm-cov report\") cat \"$FAKE_COVERAGE\" ;;\n\
         esac\nexit 0\n",
    );
    write_exe(
        "rustup",
        "#!/bin/sh\necho llvm-tools-x86_64-unknown-linux-gnu\n",
    );
    sandbox
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// An llvm-cov table: crashkit 160 of 200 lines, engine `engine_covered` of 300.
fn coverage_table(engine_covered: u64) -> String {
    let row = |file: &str, lines: u64, missed: u64| {
        format!(
            "{file:<30} 10 1 90.00% 2 0 100.00% {lines} {missed} {:.2}% 0 0 -\n",
            100.0 * (lines - missed) as f64 / lines as f64
        )
    };
    let total = 500;
    let missed = 40 + 300 - engine_covered;
    format!(
        "Filename Regions Missed-Regions Cover Functions Missed-Functions Executed Lines Missed-Lines Cover Branches Missed-Branches Cover\n\
         ------\n{}{}------\n{}",
        row("crashkit/src/a.rs", 200, 40),
        row("engine/src/b.rs", 300, 300 - engine_covered),
        row("TOTAL", total, missed)
    )
}

#[test]
fn crash_matrix_runs_the_binary_under_cargo_target_dir() {
    let sandbox = ci_sandbox(&["crash-matrix.sh", "matrix.toml"]);
    let target = sandbox.path().join("elsewhere");
    std::fs::create_dir_all(target.join("debug")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_torture"), target.join("debug/torture"))
        .unwrap();
    let out = Command::new("bash")
        .arg(sandbox.path().join("ci/crash-matrix.sh"))
        .args(["--quick", "--cell", "strict/offset/small-values"])
        .env("CARGO_TARGET_DIR", &target)
        .env("PATH", path_with(&sandbox.path().join("bin")))
        .env_remove("ARTIFACTS_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("strict/offset/small-values") && stdout.contains("1 cells, 8 cycles"),
        "the table of the one selected cell with its quick budget: {stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "artifacts under {}",
            target.join("crash-artifacts").display()
        )),
        "{stderr}"
    );
    let junit = std::fs::read_to_string(target.join("crash-matrix.junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 1, "{junit}");
    let log = std::fs::read_to_string(sandbox.path().join("bin/cargo.log")).unwrap();
    assert_eq!(log.trim(), "cargo build -q -p torture");
    assert!(
        !sandbox.path().join("target").exists(),
        "nothing under ./target"
    );
}

#[test]
fn check_script_runs_every_stage_and_ends_with_the_test_summary() {
    let sandbox = ci_sandbox(&["check.sh", "coverage.sh"]);
    // The crash matrix is the other test's subject; here it only has to be called.
    std::fs::write(
        sandbox.path().join("ci/crash-matrix.sh"),
        "echo \"crash-matrix $*\" >> \"$(dirname \"$0\")/../bin/cargo.log\"\n",
    )
    .unwrap();
    let table = sandbox.path().join("coverage-table.txt");
    std::fs::write(&table, coverage_table(290)).unwrap();
    let target = sandbox.path().join("elsewhere");
    let out = Command::new("bash")
        .arg(sandbox.path().join("ci/check.sh"))
        .env("CARGO_TARGET_DIR", &target)
        .env("PATH", path_with(&sandbox.path().join("bin")))
        .env("FAKE_COVERAGE", &table)
        .env_remove("COVERAGE_MIN_LINES")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().last(),
        Some("3 passed, 0 failed, 1 skipped"),
        "{stdout}"
    );
    let log = std::fs::read_to_string(sandbox.path().join("bin/cargo.log")).unwrap();
    let stages: Vec<&str> = log.lines().collect();
    assert_eq!(
        stages,
        [
            "cargo fmt --all -- --check",
            "cargo clippy --workspace --all-targets -- -D warnings",
            "crash-matrix --quick",
            "cargo llvm-cov --version",
            "cargo llvm-cov --workspace --no-report",
            "cargo llvm-cov report",
            "cargo test --workspace",
        ],
        "coverage, then the README's test command, whose summary ends the output"
    );
    assert!(target.join("ci-test.log").is_file());
    assert!(target.join("coverage.txt").is_file());
    assert!(
        !sandbox.path().join("target").exists(),
        "nothing under ./target"
    );
}

#[test]
fn coverage_gate_fails_under_its_percentage_and_names_each_crate() {
    let sandbox = ci_sandbox(&["coverage.sh"]);
    let table = sandbox.path().join("coverage-table.txt");
    let run = |engine_covered: u64, min: Option<&str>| {
        std::fs::write(&table, coverage_table(engine_covered)).unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(sandbox.path().join("ci/coverage.sh"))
            .env("CARGO_TARGET_DIR", sandbox.path().join("t"))
            .env("PATH", path_with(&sandbox.path().join("bin")))
            .env("FAKE_COVERAGE", &table)
            .env_remove("COVERAGE_MIN_LINES");
        if let Some(min) = min {
            cmd.env("COVERAGE_MIN_LINES", min);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // 160 + 290 of 500 lines: 90%.
    let (code, text) = run(290, None);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("line coverage crashkit    80.00% (160 of 200 lines)"),
        "{text}"
    );
    assert!(
        text.contains("line coverage engine      96.67% (290 of 300 lines)"),
        "{text}"
    );
    assert!(
        text.contains("line coverage workspace   90.00% (450 of 500 lines), gate 90%"),
        "{text}"
    );
    // 160 + 280 of 500: 88%, under the default gate.
    let (code, text) = run(280, None);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("88.00% is under the 90% gate"), "{text}");
    // The gate is the environment's when given.
    assert_eq!(run(280, Some("85")).0, Some(0));
}

/// One `run:` command of a workflow, with the file and line it starts on.
#[derive(Debug)]
struct RunStep {
    at: String,
    script: String,
}

/// The `run:` values of a workflow: a plain value, or a `|` / `>` block (every following
/// line indented deeper than the key).
fn run_steps(path: &Path) -> Vec<RunStep> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let body = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let Some(value) = body.strip_prefix("run:") else {
            i += 1;
            continue;
        };
        let key_indent = line.len() - body.len();
        let value = value.trim();
        let at = format!("{}:{}", path.display(), i + 1);
        if value.starts_with('|') || value.starts_with('>') {
            let mut block = Vec::new();
            i += 1;
            while i < lines.len() {
                let l = lines[i];
                let indent = l.len() - l.trim_start().len();
                if !l.trim().is_empty() && indent <= key_indent {
                    break;
                }
                block.push(l.trim());
                i += 1;
            }
            steps.push(RunStep {
                at,
                script: block.join("\n"),
            });
        } else {
            steps.push(RunStep {
                at,
                script: value.to_string(),
            });
            i += 1;
        }
    }
    steps
}

/// Shell words of one line, with simple quoting; `${{ ... }}` expressions stay one word.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut braces = 0;
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, '$') if chars.get(i + 1) == Some(&'{') && chars.get(i + 2) == Some(&'{') => {
                braces += 1;
                word.push_str("${{");
                i += 2;
            }
            (None, '}') if braces > 0 && chars.get(i + 1) == Some(&'}') => {
                braces -= 1;
                word.push_str("}}");
                i += 1;
            }
            (None, c) if c.is_whitespace() && braces == 0 => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
        i += 1;
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// A `torture` invocation: its subcommand and the flags given to it.
#[derive(Debug, PartialEq)]
struct Invocation {
    at: String,
    subcommand: String,
    flags: Vec<String>,
}

/// The commands of a `run:` script (continuations joined, split at `;`, `&&`, `||`, `|`),
/// as shell words.
fn commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let line = line.split(" #").next().unwrap_or("");
        if line.trim_start().starts_with('#') {
            continue;
        }
        let mut current = Vec::new();
        for w in words(line) {
            if [";", "&&", "||", "|"].contains(&w.as_str()) {
                out.push(std::mem::take(&mut current));
            } else {
                current.push(w);
            }
        }
        out.push(current);
    }
    out.retain(|c| !c.is_empty());
    out
}

/// The torture invocations and script paths of a workflow.
fn invocations_and_scripts(path: &Path) -> (Vec<Invocation>, Vec<(String, String)>) {
    let mut invocations = Vec::new();
    let mut scripts = Vec::new();
    for step in run_steps(path) {
        for words in commands(&step.script) {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            // Arguments up to the first redirection.
            let args_from = |start: usize| -> Vec<String> {
                words[start..]
                    .iter()
                    .take_while(|w| !w.starts_with('>') && !w.starts_with('<'))
                    .filter(|w| w.starts_with("--") && **w != "--")
                    .map(|w| w.split('=').next().unwrap().to_string())
                    .collect()
            };
            let mut push = |sub_at: usize| {
                if let Some(sub) = words.get(sub_at) {
                    invocations.push(Invocation {
                        at: step.at.clone(),
                        subcommand: sub.to_string(),
                        flags: args_from(sub_at + 1),
                    });
                }
            };
            if let Some(p) = words.windows(2).position(|w| w == ["-p", "torture"]) {
                if let Some(dashes) = words[p..].iter().position(|w| *w == "--") {
                    push(p + dashes + 1);
                }
            } else if let Some(pos) = words
                .iter()
                .position(|w| Path::new(w).file_name().is_some_and(|n| n == "torture"))
            {
                push(pos + 1);
            }
            if matches!(words.first(), Some(&("bash" | "sh"))) {
                if let Some(script) = words.iter().skip(1).find(|w| !w.starts_with('-')) {
                    scripts.push((step.at.clone(), script.to_string()));
                    if script.ends_with("ci/crash-matrix.sh") {
                        // Its arguments (after an optional --release) go to `torture matrix`.
                        let at = words.iter().position(|w| w == script).unwrap() + 1;
                        let mut flags = args_from(at);
                        flags.retain(|f| f != "--release");
                        invocations.push(Invocation {
                            at: step.at.clone(),
                            subcommand: "matrix".to_string(),
                            flags,
                        });
                    }
                }
            }
        }
    }
    (invocations, scripts)
}

/// Problems with a workflow's invocations: unknown subcommands, flags `--help` does not
/// list, scripts that do not exist.
fn problems(path: &Path) -> Vec<String> {
    let (invocations, scripts) = invocations_and_scripts(path);
    let mut found = Vec::new();
    for inv in &invocations {
        let out = torture()
            .arg(&inv.subcommand)
            .arg("--help")
            .output()
            .unwrap();
        if out.status.code() != Some(0) {
            found.push(format!(
                "{}: no subcommand `torture {}`",
                inv.at, inv.subcommand
            ));
            continue;
        }
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in &inv.flags {
            let listed = help.match_indices(flag.as_str()).any(|(i, _)| {
                let after = help[i + flag.len()..].chars().next();
                !after.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_')
            });
            if !listed {
                found.push(format!(
                    "{}: `torture {}` has no flag {flag}",
                    inv.at, inv.subcommand
                ));
            }
        }
    }
    for (at, script) in &scripts {
        if !repo_root().join(script).is_file() {
            found.push(format!("{at}: script {script} does not exist"));
        }
    }
    found
}

fn workflow(name: &str) -> PathBuf {
    repo_root().join(".github/workflows").join(name)
}

#[test]
fn workflows_invoke_only_existing_torture_flags_and_scripts() {
    for name in ["ci.yml", "campaign.yml"] {
        let problems = problems(&workflow(name));
        assert!(problems.is_empty(), "{problems:#?}");
    }
    // The reader sees what the workflows run (else the check above is vacuous).
    let (ci, ci_scripts) = invocations_and_scripts(&workflow("ci.yml"));
    let subs: Vec<_> = ci.iter().map(|i| i.subcommand.as_str()).collect();
    assert_eq!(subs, ["matrix", "report"], "{ci:#?}");
    assert_eq!(ci[0].flags, ["--quick", "--json"]);
    let ci_scripts: Vec<_> = ci_scripts.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(ci_scripts, ["ci/crash-matrix.sh", "ci/coverage.sh"]);
    let (campaign, _) = invocations_and_scripts(&workflow("campaign.yml"));
    let matrix = campaign
        .iter()
        .find(|i| i.subcommand == "matrix" && !i.flags.iter().any(|f| f == "--list"))
        .expect("the campaign runs torture matrix");
    for flag in ["--shard", "--seed", "--json", "--junit", "--artifacts"] {
        assert!(
            matrix.flags.iter().any(|f| f == flag),
            "{matrix:?} lacks {flag}"
        );
    }
    assert!(campaign.iter().any(|i| i.subcommand == "report"));
}

#[test]
fn the_workflow_check_catches_a_renamed_flag_and_a_missing_script() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yml");
    std::fs::write(
        &path,
        "jobs:\n  a:\n    steps:\n      - run: cargo run -p torture -- matrix --quik\n      \
         - name: b\n        run: |\n          ./target/release/torture report a.jsonl \\\n            \
         --jsn > out\n          bash ci/no-such-script.sh\n      - run: torture frobnicate\n",
    )
    .unwrap();
    let found = problems(&path);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found[0].ends_with("`torture matrix` has no flag --quik"),
        "{found:#?}"
    );
    assert!(
        found[1].ends_with("`torture report` has no flag --jsn"),
        "{found:#?}"
    );
    assert!(
        found[2].ends_with("no subcommand `torture frobnicate`"),
        "{found:#?}"
    );
    assert!(
        found[3].ends_with("script ci/no-such-script.sh does not exist"),
        "{found:#?}"
    );
}

#[test]
fn the_campaign_shards_cover_every_index_modulo_their_count() {
    let text = std::fs::read_to_string(workflow("campaign.yml")).unwrap();
    let list = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("shard: ["))
        .expect("a shard list in the job matrix");
    let shards: Vec<u64> = list
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let (campaign, _) = invocations_and_scripts(&workflow("campaign.yml"));
    assert!(campaign.iter().any(|i| i.subcommand == "matrix"));
    let n = shards.len() as u64;
    assert!(
        text.contains(&format!("--shard ${{{{ matrix.shard }}}}/{n}")),
        "the job matrix lists {n} shards; --shard must divide by {n}"
    );
    assert_eq!(shards, (0..n).collect::<Vec<_>>());
}
