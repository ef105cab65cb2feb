//! `torture matrix`: the cells of ci/matrix.toml (crashkit::matrix), one campaign each,
//! reported as a table, JSON Lines and JUnit XML.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use crashkit::case::parse_seed;
use crashkit::cycle::CycleEnv;
use crashkit::matrix::{Matrix, RunSettings};
use crashkit::matrix_run::{run_cells, MatrixEvent};

use crate::{
    child_command, harness_failure, install_stop_handlers, json_line, parse_count, parse_shard,
    scratch_dir, EXIT_CLEAN, EXIT_FINDINGS, EXIT_HARNESS, EXIT_USAGE, INTERRUPTED,
};

#[derive(Debug, Args)]
pub(crate) struct MatrixArgs {
    /// The matrix file: profiles, faults and blocks of mode x fault x profile cells.
    #[arg(long, default_value = "ci/matrix.toml")]
    matrix: PathBuf,
    /// Run only the cells whose `mode/fault/profile` name matches this glob (`*` and `?`;
    /// repeat the flag for several).
    #[arg(long = "cell", value_name = "NAME-GLOB")]
    cells: Vec<String>,
    /// Run only the cells whose position in the matrix is i modulo n, e.g. 0/4.
    #[arg(long, value_parser = parse_shard, default_value = "0/1")]
    shard: (u64, u64),
    /// Matrix seed (decimal or 0x hex; default: the file's). Each cell's campaign seed
    /// derives from it and the cell's name.
    #[arg(long, value_parser = parse_seed)]
    seed: Option<u64>,
    /// Divide every budget as the file's `quick` says (CI's pass over every cell).
    #[arg(long)]
    quick: bool,
    /// Write a JUnit XML report here: one test case per cell, a failure per finding.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// JSON Lines on stdout: begin, finding, cell and summary objects.
    #[arg(long)]
    json: bool,
    /// Print the selected cells with their budget and seed, and run nothing.
    #[arg(long)]
    list: bool,
    /// Parallel child workers of each cell's campaign, at least 1.
    #[arg(long, default_value_t = 2, value_parser = parse_count::<usize>)]
    jobs: usize,
    /// Where findings keep their data directories.
    #[arg(long, default_value = "artifacts")]
    artifacts: PathBuf,
    /// Scratch directory for cycles (default: a fresh temporary directory, as for `run`).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Stop with exit 3 when the work directory has less free space than this (0: never
    /// check), as for `run`.
    #[arg(long, default_value_t = 64)]
    min_free_mib: u64,
    /// When stderr is not a terminal, print a line with the running cell's cycles and
    /// findings this often (0: never); a line per finished cell is printed regardless.
    #[arg(long, default_value_t = 10)]
    heartbeat_secs: u64,
}

pub(crate) fn matrix(args: MatrixArgs) -> u8 {
    let matrix_path = args.matrix.display().to_string();
    let text = match std::fs::read_to_string(&args.matrix) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("torture matrix: cannot read {matrix_path}: {e}");
            return EXIT_USAGE;
        }
    };
    let matrix = match Matrix::parse(&text) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("torture matrix: {matrix_path}: {e}");
            return EXIT_USAGE;
        }
    };
    let cells = matrix.select(&args.cells, args.shard);
    if cells.is_empty() {
        // A run of no cells would exit 0 having proven nothing.
        eprintln!(
            "torture matrix: no cell of {matrix_path} matches {:?} in shard {}/{}",
            args.cells, args.shard.0, args.shard.1
        );
        return EXIT_USAGE;
    }
    let base_seed = args.seed.unwrap_or(matrix.seed);
    let heartbeat = (!std::io::stderr().is_terminal() && args.heartbeat_secs > 0)
        .then(|| Duration::from_secs(args.heartbeat_secs));
    let settings = RunSettings {
        base_seed,
        quick: args.quick.then_some(matrix.quick),
        jobs: args.jobs,
        free_space_min_bytes: args.min_free_mib.saturating_mul(1024 * 1024),
        heartbeat,
    };
    if args.list {
        let mut out = std::io::stdout().lock();
        for cell in &cells {
            // A closed pipe (`| head`) ends the listing, not the process with a panic.
            if writeln!(
                out,
                "{:<40} {:>12}  seed {:#018x}",
                cell.name,
                cell.budget(settings.quick).to_string(),
                crashkit::matrix::cell_seed(base_seed, &cell.name)
            )
            .is_err()
            {
                break;
            }
        }
        return EXIT_CLEAN;
    }
    let child = match child_command() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let temp = match &args.work_dir {
        Some(_) => None,
        None => match scratch_dir("torture-matrix-") {
            Ok(t) => Some(t),
            Err(code) => return code,
        },
    };
    let work_dir = match (&args.work_dir, &temp) {
        (Some(dir), _) => dir.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => unreachable!("a temporary directory is made when none is given"),
    };
    if let Err(e) = std::fs::create_dir_all(&work_dir) {
        return harness_failure(
            &format!("cannot create the work directory {}", work_dir.display()),
            e,
        );
    }
    let env = CycleEnv {
        work_dir,
        artifacts_dir: args.artifacts.clone(),
        child,
        wrong: None,
    };
    if args.json {
        json_line(&serde_json::json!({
            "type": "begin",
            "matrix": matrix_path,
            "base_seed": format!("{base_seed:#018x}"),
            "quick": args.quick,
            "shard": format!("{}/{}", args.shard.0, args.shard.1),
            "jobs": args.jobs,
            "cells": cells.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        }));
    }
    eprintln!(
        "torture matrix: {} of {} cells of {matrix_path}, seed {base_seed:#x}{}, {} job(s)",
        cells.len(),
        matrix.cells.len(),
        if args.quick { ", quick" } else { "" },
        args.jobs
    );
    install_stop_handlers();
    let outcome = run_cells(
        &cells,
        &settings,
        &matrix_path,
        &env,
        &INTERRUPTED,
        &|event| match event {
            MatrixEvent::CellStart {
                position,
                total,
                cell,
            } => eprintln!(
                "torture matrix: [{}/{total}] {} ({})",
                position + 1,
                cell.name,
                cell.budget(settings.quick)
            ),
            MatrixEvent::Finding { cell, finding } => {
                if args.json {
                    let mut v = serde_json::to_value(finding).unwrap_or_default();
                    v["type"] = "finding".into();
                    v["cell"] = cell.name.clone().into();
                    json_line(&v);
                } else {
                    eprintln!("{finding}");
                }
            }
            MatrixEvent::Heartbeat { cell, beat } => {
                eprintln!("torture matrix: heartbeat: {}: {beat}", cell.name)
            }
            MatrixEvent::CellDone(result) => {
                if args.json {
                    json_line(&result.to_json());
                }
                eprintln!(
                    "torture matrix: {}: {} cycles, {:.1} cycles/s, {} findings",
                    result.cell.name,
                    result.summary.cycles,
                    result.summary.cycles_per_s,
                    result.summary.findings
                );
            }
        },
    );
    if let Some(path) = &args.junit {
        let xml = crashkit::junit::report(&outcome, "torture matrix");
        if let Err(e) = std::fs::write(path, xml) {
            return harness_failure(
                &format!("cannot write the JUnit report {}", path.display()),
                e,
            );
        }
    }
    if !args.json {
        print!("{outcome}");
    }
    if let Some(failed) = outcome.harness_failure() {
        let message = failed.error.as_deref().unwrap_or("?");
        if args.json {
            // No summary: `torture report` counts a run without one as incomplete.
            json_line(&serde_json::json!({
                "type": "error",
                "cell": failed.cell.name,
                "message": message,
            }));
        }
        eprintln!(
            "torture matrix: harness failure in cell {}: {message}",
            failed.cell.name
        );
        return EXIT_HARNESS;
    }
    if args.json {
        json_line(&outcome.summary_json());
    }
    if outcome.red_cells().next().is_some() {
        eprintln!(
            "torture matrix: artifacts of the findings are in {}",
            args.artifacts.display()
        );
        EXIT_FINDINGS
    } else {
        EXIT_CLEAN
    }
}
