//! `torture report`: several runs' JSON Lines merged into one summary.

use std::path::PathBuf;

use clap::Args;

use crate::{json_line, EXIT_CLEAN, EXIT_FINDINGS, EXIT_HARNESS, EXIT_USAGE};

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// Files written by `torture run --json` (several runs may share one file).
    #[arg(required = true, value_name = "FILE.jsonl")]
    files: Vec<PathBuf>,
    /// One JSON object on stdout (`type` = `report`) instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the report as one self-contained HTML page (tables and an SVG picture of
    /// where kills landed) to this file.
    #[arg(long, value_name = "FILE.html")]
    html: Option<PathBuf>,
}

pub(crate) fn report(args: ReportArgs) -> u8 {
    let mut merged = crashkit::merge::Merged::default();
    for path in &args.files {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("torture report: cannot read {}: {e}", path.display());
                return EXIT_USAGE;
            }
        };
        if let Err(e) = merged.add_json_lines(&path.display().to_string(), &text) {
            eprintln!("torture report: {e}");
            return EXIT_USAGE;
        }
    }
    let merged = merged.finish();
    if merged.runs == 0 && merged.incomplete_runs == 0 {
        eprintln!("torture report: no run summary in the given files");
        return EXIT_USAGE;
    }
    if let Some(path) = &args.html {
        if let Err(e) = std::fs::write(path, crashkit::html::render(&merged)) {
            eprintln!("torture report: cannot write {}: {e}", path.display());
            return EXIT_HARNESS;
        }
    }
    if args.json {
        let mut v = serde_json::to_value(&merged).unwrap_or_default();
        v["type"] = "report".into();
        json_line(&v);
    } else {
        print!("{merged}");
    }
    if merged.incomplete_runs > 0 {
        // As for `run` itself: a run that failed proves nothing, whatever the others found.
        eprintln!(
            "torture report: {} run(s) without a summary (harness failure or killed)",
            merged.incomplete_runs
        );
        EXIT_HARNESS
    } else if merged.summary.findings > 0 {
        EXIT_FINDINGS
    } else {
        EXIT_CLEAN
    }
}
