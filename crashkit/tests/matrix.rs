//! The crash matrix end to end, with real child processes: cells of a small matrix run as
//! campaigns, a deliberately wrong engine turns its cells red with every finding kept, the
//! JUnit report carries a failure per finding with its reproduce line, a harness failure
//! stops the run with the remaining cells reported as not run, and a stop request before
//! the first cell runs nothing.
//!
//! Pins: a matrix that reports a red cell as passing (findings counted but not kept, or a
//! JUnit test case without a failure), cells whose failures lose their reproduce command,
//! and a harness failure that lets later cells run or passes for clean.
//!
//! A separate test binary from harness.rs because it owns a different noun (the matrix)
//! and runs while harness.rs's long campaign test is being reworked elsewhere.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use crashkit::cycle::{ChildCommand, CycleEnv};
use crashkit::matrix::{Matrix, RunSettings};
use crashkit::matrix_run::{run_cells, CellStatus, MatrixEvent};
use crashkit::wrong_engine::WrongEngine;

const MATRIX: &str = r#"
seed = "0x5eed"
quick = { divisor = 2, cycles_min = 2 }

[profiles.small-values]
threads = 1
generations = 1
value_len_max = 64

[profiles.generations]
threads = 1
generations = 2

[faults.offset]
kills = ["offset"]

[faults.power-loss]
kills = ["offset", "time"]
power_loss = "always"

[[cells]]
modes = ["strict", "async"]
faults = ["offset", "power-loss"]
profiles = ["small-values", "generations"]
cycles = 6
"#;

fn env(dir: &Path) -> CycleEnv {
    CycleEnv::under(
        dir,
        ChildCommand::program(env!("CARGO_BIN_EXE_crashkit-child")),
    )
}

fn settings(quick: bool) -> RunSettings {
    let matrix = Matrix::parse(MATRIX).unwrap();
    RunSettings {
        base_seed: 0x5eed,
        quick: quick.then_some(matrix.quick),
        jobs: 2,
        free_space_min_bytes: 0,
        heartbeat: None,
    }
}

#[test]
fn the_real_engine_passes_every_cell_with_its_whole_budget() {
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let env = env(dir.path());
    std::fs::create_dir_all(&env.work_dir).unwrap();
    let matrix = Matrix::parse(MATRIX).unwrap();
    let cells = matrix.select(&["*/small-values".to_string()], (0, 1));
    assert_eq!(cells.len(), 4);
    let started = Mutex::new(Vec::new());
    let outcome = run_cells(
        &cells,
        &settings(true),
        "m.toml",
        &env,
        &AtomicBool::new(false),
        &|e| {
            if let MatrixEvent::CellStart { cell, .. } = e {
                started.lock().unwrap().push(cell.name.clone());
            }
        },
    );
    assert_eq!(
        started.into_inner().unwrap(),
        cells.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        "cells run in matrix order"
    );
    for c in &outcome.cells {
        assert_eq!(
            c.status,
            CellStatus::Clean,
            "{}: {:?}",
            c.cell.name,
            c.findings
        );
        assert_eq!(
            c.summary.cycles, 3,
            "quick: 6 / 2 cycles in {}",
            c.cell.name
        );
        let row = format!("{}/{}", c.cell.mode, c.cell.fault.kills[0]);
        assert!(
            c.summary
                .per_mode_kill
                .keys()
                .all(|k| k.starts_with(&format!("{}/", c.cell.mode))),
            "{}: only its own mode ran: {:?}",
            c.cell.name,
            c.summary.per_mode_kill.keys()
        );
        assert!(c.summary.per_mode_kill.contains_key(&row), "{row}");
    }
    let power_loss: u64 = outcome.cells[1]
        .summary
        .per_mode_kill
        .values()
        .map(|c| c.power_loss)
        .sum();
    assert_eq!(outcome.cells[1].cell.name, "strict/power-loss/small-values");
    assert_eq!(power_loss, 3, "power-loss = always applies to every cycle");
    assert_eq!(outcome.totals().cycles, 12);
    assert_eq!(outcome.red_cells().count(), 0);
    let xml = crashkit::junit::report(&outcome, "m");
    assert_eq!(xml.matches("<testcase ").count(), 4);
    assert!(!xml.contains("<failure"), "{xml}");
}

#[test]
fn a_wrong_engine_turns_cells_red_and_junit_carries_each_finding_with_its_repro() {
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let env = CycleEnv {
        wrong: Some(WrongEngine::ShiftsVersions),
        ..env(dir.path())
    };
    std::fs::create_dir_all(&env.work_dir).unwrap();
    let matrix = Matrix::parse(MATRIX).unwrap();
    let cells = matrix.select(&["strict/offset/*".to_string()], (0, 1));
    assert_eq!(cells.len(), 2);
    let seen = Mutex::new(0usize);
    let outcome = run_cells(
        &cells,
        &settings(false),
        "m.toml",
        &env,
        &AtomicBool::new(false),
        &|e| {
            if let MatrixEvent::Finding { .. } = e {
                *seen.lock().unwrap() += 1;
            }
        },
    );
    let red: Vec<_> = outcome.red_cells().collect();
    assert_eq!(red.len(), 2, "{outcome}");
    let mut failures = 0;
    for c in &red {
        assert_eq!(c.summary.cycles, 6);
        assert!(c.summary.findings > 0);
        assert_eq!(
            c.findings.len() as u64,
            c.summary.findings,
            "every finding kept"
        );
        failures += c.findings.len();
    }
    assert_eq!(
        *seen.lock().unwrap(),
        failures,
        "every finding reported as it happened"
    );
    let xml = crashkit::junit::report(&outcome, "m");
    assert_eq!(xml.matches("<testcase ").count(), 2);
    assert_eq!(xml.matches("<failure ").count(), failures, "{xml}");
    assert!(xml.contains(r#"failures="2""#), "two red test cases: {xml}");
    for f in red.iter().flat_map(|c| &c.findings) {
        let repro = format!("reproduce: {}", f.repro);
        assert!(xml.contains(&repro), "{repro} missing from {xml}");
    }
    assert!(xml.contains(
        "rerun the cell: cargo run --release -p torture -- matrix --matrix m.toml \
         --cell strict/offset/small-values --seed 0x5eed"
    ));
    let text = outcome.to_string();
    assert!(text.contains("in 2 red cell(s)"), "{text}");
}

#[test]
fn a_harness_failure_stops_the_run_and_a_stop_request_runs_nothing() {
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let env = env(dir.path());
    std::fs::create_dir_all(&env.work_dir).unwrap();
    let matrix = Matrix::parse(MATRIX).unwrap();
    let cells = matrix.select(&[], (0, 1));
    let no_space = RunSettings {
        free_space_min_bytes: u64::MAX,
        ..settings(true)
    };
    let outcome = run_cells(
        &cells,
        &no_space,
        "m.toml",
        &env,
        &AtomicBool::new(false),
        &|_| {},
    );
    let statuses: Vec<_> = outcome.cells.iter().map(|c| c.status).collect();
    assert_eq!(statuses[0], CellStatus::HarnessError);
    assert!(
        statuses[1..].iter().all(|s| *s == CellStatus::NotRun),
        "{statuses:?}"
    );
    assert!(outcome.cells[0]
        .error
        .as_deref()
        .unwrap()
        .contains("MiB free in"));
    let xml = crashkit::junit::report(&outcome, "m");
    assert_eq!(xml.matches("<error ").count(), 1);
    assert_eq!(xml.matches("<skipped ").count(), cells.len() - 1);

    let stopped = run_cells(
        &cells,
        &settings(true),
        "m.toml",
        &env,
        &AtomicBool::new(true),
        &|_| {},
    );
    assert!(stopped.interrupted);
    assert!(stopped.cells.iter().all(|c| c.status == CellStatus::NotRun));
    assert_eq!(stopped.totals().cycles, 0);
}
