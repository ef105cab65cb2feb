//! `torture bench`, and `--check`: the bench's figures judged against their targets.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::{harness_failure, json_line, EXIT_CLEAN, EXIT_FINDINGS, EXIT_HARNESS, EXIT_USAGE};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    options: crashkit::bench::BenchOptions,
    /// Judge the figures against their targets (the `target >= ...` beside them) and exit
    /// 1 when any is missed. Needs the commit figures (not with --replay-only).
    #[arg(long)]
    check: bool,
    /// With --check: judge the saved output of an earlier `torture bench` (table or
    /// --json) instead of measuring.
    #[arg(long, requires = "check", value_name = "FILE")]
    from: Option<PathBuf>,
}

pub(crate) fn bench(args: BenchArgs) -> u8 {
    if !args.check || args.options.recover_only.is_some() {
        return match crashkit::bench::run_command(&args.options) {
            Ok(()) => EXIT_CLEAN,
            Err(e) => harness_failure("bench", e),
        };
    }
    let output = match &args.from {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("torture bench: cannot read {}: {e}", path.display());
                return EXIT_USAGE;
            }
        },
        None => {
            if args.options.replay_only {
                eprintln!("torture bench: --check judges the commit figures; drop --replay-only");
                return EXIT_USAGE;
            }
            match measure_bench(&args.options) {
                Ok(output) => output,
                Err(code) => return code,
            }
        }
    };
    let checks = match crashkit::bench_check::checks_from_output(&output) {
        Ok(checks) => checks,
        Err(e) => {
            eprintln!("torture bench: {e}");
            return EXIT_USAGE;
        }
    };
    if checks.is_empty() {
        eprintln!("torture bench: no figure with a target in the bench output");
        return EXIT_USAGE;
    }
    let missed = checks.iter().filter(|c| !c.met()).count();
    if args.options.json {
        let targets: Vec<_> = checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "label": c.label, "measured": c.measured,
                    "target_min": c.target_min, "met": c.met(),
                })
            })
            .collect();
        json_line(&serde_json::json!({
            "type": "check", "targets": targets, "missed": missed,
        }));
    } else {
        println!("\ntargets:");
        for c in &checks {
            println!("  {c}");
        }
    }
    if missed > 0 {
        eprintln!("torture bench: {missed} of {} targets missed", checks.len());
        EXIT_FINDINGS
    } else {
        EXIT_CLEAN
    }
}

/// Runs the bench in a child `torture bench` (it prints its report itself and returns no
/// figures), passes its output through, and returns it for judging.
fn measure_bench(options: &crashkit::bench::BenchOptions) -> Result<String, u8> {
    let exe = std::env::current_exe()
        .map_err(|e| harness_failure("cannot locate the torture executable", e))?;
    let mut command = std::process::Command::new(exe);
    command.arg("bench");
    if options.json {
        command.arg("--json");
    }
    if options.quick {
        command.arg("--quick");
    }
    if let Some(dir) = &options.dir {
        command.arg("--dir").arg(dir);
    }
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| harness_failure("cannot start the bench", e))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    print!("{text}");
    let _ = std::io::stdout().flush();
    match output.status.code() {
        Some(0) => Ok(text),
        code => {
            eprintln!("torture bench: the measuring run failed ({:?})", code);
            Err(code
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(EXIT_HARNESS))
        }
    }
}
