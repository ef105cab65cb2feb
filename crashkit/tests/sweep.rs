//! `crashkit::sweep`: every crash point of one small writer run, crossed with its crash
//! states, recovered and checked.
//!
//! Property: the real engine sweeps clean, with exactly one point per trace line boundary
//! not followed by a mirrored event plus one per byte inside each write; a writer whose
//! fdatasyncs do nothing (Strict acknowledges before any sync made a commit durable) and
//! one whose directory fsyncs do nothing are both caught, and the finding's
//! `--point P --state I` rebuilds the same state and the same verdict. Pins: a sweep that
//! cannot fail, crash points silently skipped, a repro line that names another state.

use std::path::Path;

use crashkit::case::{Limits, ModeName};
use crashkit::cycle::ChildCommand;
use crashkit::finding::FindingKind;
use crashkit::sweep::{run_sweep, SweepOptions};
use crashkit::trace::{DataOp, Trace};
use crashkit::wrong_engine::WrongEngine;

fn options(work: &Path, mode: ModeName, states_per_point: usize) -> SweepOptions {
    SweepOptions {
        seed: 0x5eed,
        mode,
        // Four one-operation transactions of short values: a log of a few hundred bytes.
        limits: Limits {
            txns_max: Some(4),
            ops_max: Some(1),
            value_len_max: Some(24),
            ..Limits::default()
        },
        states_per_point,
        jobs: 2,
        work_dir: work.join("work"),
        artifacts_dir: Some(work.join("artifacts")),
        child: ChildCommand::program(env!("CARGO_BIN_EXE_crashkit-child")),
        wrong: None,
        findings_max: 1,
        only: None,
    }
}

#[test]
fn the_real_engine_sweeps_clean_over_every_boundary_and_every_written_byte() {
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let opts = options(dir.path(), ModeName::Async, 4);
    let report = run_sweep(&opts).unwrap();
    let s = &report.summary;
    assert!(report.findings.is_empty(), "{}", report.findings[0]);
    // Count the points from the trace the writer left.
    let db = opts.work_dir.join("db");
    let text = std::fs::read_to_string(crashkit::trace::trace_path(&db)).unwrap();
    let trace = Trace::parse(&text);
    let lines = text.lines().count();
    assert_eq!(s.boundary_points, lines + 1 - trace.events.len(), "{s:#?}");
    let write_bytes: u64 = trace
        .ops
        .iter()
        .filter(|o| {
            trace
                .files
                .iter()
                .any(|f| f.fid == o.fid && f.path.starts_with(&db))
        })
        .map(|o| match o.op {
            DataOp::Write { len_bytes, .. } => len_bytes.saturating_sub(1),
            _ => 0,
        })
        .sum();
    assert_eq!(s.write_byte_points as u64, write_bytes, "{s:#?}");
    assert_eq!(s.points, s.boundary_points + s.write_byte_points);
    assert_eq!(s.points_swept, s.points);
    assert_eq!(s.points_exhaustive + s.points_sampled, s.points);
    assert!(s.points_exhaustive > 0 && s.points_sampled > 0, "{s:#?}");
    assert!(s.states_exhaustive > 0 && s.states_sampled > 0, "{s:#?}");
    let workload = crashkit::workload::Workload::generate(opts.seed, &opts.limits);
    let commits = workload.txns.iter().filter(|t| !t.abort).count();
    assert!(commits >= 2, "{workload:?}");
    assert_eq!(s.commits_acked, commits, "{s:#?}");
    // Every point checks at least its process-kill state unless it equals an earlier one.
    assert!(s.states_checked + s.states_duplicate >= s.points as u64);
    assert!(s.states_checked > 0);
}

#[test]
fn a_writer_whose_fdatasyncs_do_nothing_is_caught_and_the_state_replays() {
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let mut opts = options(dir.path(), ModeName::Strict, 2);
    opts.wrong = Some(WrongEngine::AcksBeforeSyncReturns);
    opts.findings_max = 64;
    let report = run_sweep(&opts).unwrap();
    assert!(
        !report.findings.is_empty(),
        "the wrong engine was not caught"
    );
    // Its unsynced header gives other findings too; an acknowledged commit lost to a
    // power loss is the one that names the bug.
    let f = report
        .findings
        .iter()
        .find(|f| f.violation.kind == FindingKind::LostAckedTxn)
        .unwrap_or_else(|| panic!("no lost-acked-txn among {}", report.findings[0]));
    assert!(
        f.repro
            .contains(&format!("--point {} --state {}", f.point, f.state)),
        "{}",
        f.repro
    );
    let state_dir = f.artifacts_dir.as_ref().unwrap().join("state");
    assert!(state_dir.join("wal.log").exists(), "{f}");
    // The same point and state, alone: the same bytes, the same verdict.
    opts.findings_max = 1;
    opts.only = Some((f.point, Some(f.state)));
    let again = run_sweep(&opts).unwrap();
    let g = again.findings.first().expect("the state did not replay");
    assert_eq!(g.violation.kind, f.violation.kind);
    assert_eq!(g.state_description, f.state_description);
    assert_eq!(g.point_description, f.point_description);
    assert_eq!(again.summary.points_swept, 1);
    let replayed = g.artifacts_dir.as_ref().unwrap().join("state/wal.log");
    assert_eq!(
        std::fs::read(replayed).unwrap(),
        std::fs::read(state_dir.join("wal.log")).unwrap()
    );
    // The real engine on the same point and state is clean.
    opts.wrong = None;
    opts.only = None;
    assert!(run_sweep(&opts).unwrap().findings.is_empty());
}

#[test]
fn a_writer_that_skips_directory_fsyncs_is_caught_by_undone_entries() {
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let mut opts = options(dir.path(), ModeName::Strict, 1);
    opts.wrong = Some(WrongEngine::SkipsDirSync);
    let report = run_sweep(&opts).unwrap();
    assert!(report.summary.states_entries_undone > 0);
    let f = report
        .findings
        .first()
        .expect("the wrong engine was not caught");
    assert!(
        f.state_description
            .contains("directory entries no fsync covered undone"),
        "{f}"
    );
}

/// `torture repro --shrink`'s second stage: the crash state of a power-loss finding made
/// of a writer whose fdatasyncs do nothing shrinks to fewer damaged units, and still fails
/// the same way.
#[test]
fn a_power_loss_state_shrinks_to_fewer_damaged_units() {
    use crashkit::case::{cycle_seed, Case, KillKind};
    use crashkit::cycle::{run_cycle, CycleEnv};
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let env = CycleEnv {
        wrong: Some(WrongEngine::AcksBeforeSyncReturns),
        ..CycleEnv::under(
            dir.path(),
            ChildCommand::program(env!("CARGO_BIN_EXE_crashkit-child")),
        )
    };
    std::fs::create_dir_all(&env.work_dir).unwrap();
    for i in 0..48 {
        let mut case = Case::new(cycle_seed(0x57a7e, i), ModeName::Strict, KillKind::Offset);
        case.power_loss = true;
        case.limits.value_len_max = Some(2048);
        let outcome = run_cycle(&case, &env).unwrap();
        let Some(finding) = outcome.finding else {
            continue;
        };
        if !finding.violation.detail.starts_with("crash state") {
            continue;
        }
        let shrunk = match crashkit::state_shrink::shrink_state(&finding, &env, &mut |_| {}) {
            Ok(s) => s,
            Err(crashkit::state_shrink::StateShrinkError::NotApplicable { .. }) => continue,
            Err(e) => panic!("{e}"),
        };
        if shrunk.non_kept_before < 2 {
            continue;
        }
        assert_eq!(shrunk.kind, finding.violation.kind);
        assert!(
            shrunk.non_kept_after < shrunk.non_kept_before,
            "{shrunk:#?}"
        );
        assert!(shrunk.mixed_after <= shrunk.mixed_before, "{shrunk:#?}");
        assert!(shrunk.after.starts_with("crash state"), "{}", shrunk.after);
        eprintln!("seed {:#x}: {shrunk:#?}", case.seed);
        return;
    }
    panic!("no seed gave a power-loss finding with a state of two or more damaged units");
}
