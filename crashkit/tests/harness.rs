//! End-to-end checks of the crash harness with real child processes and real SIGKILL.
//!
//! Property: the checker reports every deliberately wrong engine and stays silent on the
//! real one; a short campaign over every mode x kill kind (with power loss and crashed
//! recoveries mixed in) is clean; offset kills always kill; a case replays exactly; the
//! saved regression list replays clean. Pins: a checker that cannot fail, a harness whose
//! whitebox kill point drifts from its layout, and recovery bugs once found.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crashkit::campaign::{run_campaign, CampaignOptions, Frequency};
use crashkit::case::{Case, KillKind, Limits, ModeName};
use crashkit::cycle::{run_cycle, ChildCommand, ChildEnd, CycleEnv};
use crashkit::side_files::BESIDE_THE_LOG;

fn env(dir: &std::path::Path) -> CycleEnv {
    CycleEnv::under(
        dir,
        ChildCommand::program(env!("CARGO_BIN_EXE_crashkit-child")),
    )
}

/// A campaign of `cycles` cycles over every mode x kill kind, with power loss, crashed
/// recoveries and bit flips sometimes, up to 3 writer threads and 2 generations.
fn every_mode_and_kill(base_seed: u64, cycles: u64) -> CampaignOptions {
    CampaignOptions {
        base_seed,
        cycles: Some(cycles),
        duration: None,
        jobs: 2,
        modes: ModeName::ALL.to_vec(),
        kills: KillKind::ALL.to_vec(),
        power_loss: Frequency::Sometimes,
        recovery_crash: Frequency::Sometimes,
        corrupt: Frequency::Sometimes,
        threads_max: 3,
        generations_max: 2,
        shard: (0, 1),
        shape: crashkit::workload::WorkloadShape::Mixed,
        limits: Limits::default(),
        free_space_min_bytes: 0,
        heartbeat: None,
    }
}

#[test]
fn checker_reports_every_wrong_engine_and_not_the_real_one() {
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let report = crashkit::selftest::run(&env(dir.path()), 1).unwrap();
    assert!(
        report.correct_engine_findings.is_empty(),
        "{:#?}",
        report.correct_engine_findings
    );
    for d in &report.detections {
        assert!(
            d.reported_as.is_some(),
            "wrong engine {} was not reported",
            d.wrong_engine
        );
    }
    assert!(report.passed());
}

#[test]
fn short_campaign_over_all_modes_and_kills_is_clean() {
    // A few hundred crash generations: every mode x kill combination 14 times (1-2
    // generations each), with power loss,
    // crashed recoveries, bit flips and multi-threaded writers mixed in.
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let opts = every_mode_and_kill(0xc0ffee, 168);
    let summary = run_campaign(&opts, &env(dir.path()), &AtomicBool::new(false), &|_| {}).unwrap();
    assert_eq!(summary.cycles, 168);
    assert_eq!(summary.findings, 0, "{summary:#?}");
    assert_eq!(
        summary.per_mode_kill.len(),
        12,
        "every mode x kill combination ran"
    );
    for (combo, counts) in &summary.per_mode_kill {
        if combo.ends_with("/offset") {
            assert_eq!(
                counts.killed, counts.cycles,
                "{combo}: an offset kill must always fire"
            );
        }
    }
    assert!(!summary.coverage.is_empty());
}

#[test]
fn power_loss_checks_several_crash_states_and_some_lose_the_middle_of_unsynced_bytes() {
    // Async offset kills leave everything after the last flush unsynced, so the trace
    // gives room for holes: states that lose a sector while later ones reach the disk.
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let (mut states, mut in_middle, mut cycles) = (0, 0, 0);
    for i in 0..8 {
        let mut case = Case::new(
            crashkit::case::cycle_seed(0x5eed, i),
            ModeName::Async,
            KillKind::Offset,
        );
        case.power_loss = true;
        let outcome = run_cycle(&case, &env(dir.path())).unwrap();
        assert!(outcome.finding.is_none(), "{}", outcome.finding.unwrap());
        assert!(outcome.crash_states_checked >= 1, "{case:?}");
        assert!(
            outcome.crash_states_checked <= crashkit::power_loss::crash_states_per_crash() as u64
        );
        states += outcome.crash_states_checked;
        in_middle += outcome.crash_states_damaged_in_middle;
        cycles += 1;
    }
    assert!(states > 2 * cycles, "{states} states in {cycles} cycles");
    assert!(
        in_middle > 0,
        "no state lost the middle of the unsynced bytes"
    );
}

/// `n` Async offset-kill cycles with a power loss and a crashed recovery (so recovery's
/// own crash states are checked), each asserted clean.
fn clean_recovery_power_loss_cycles(seed: u64, n: u64) -> Vec<crashkit::cycle::CycleOutcome> {
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    (0..n)
        .map(|i| {
            let mut case = Case::new(
                crashkit::case::cycle_seed(seed, i),
                ModeName::Async,
                KillKind::Offset,
            );
            case.power_loss = true;
            case.recovery_crash = true;
            let outcome = run_cycle(&case, &env(dir.path())).unwrap();
            assert!(outcome.finding.is_none(), "{}", outcome.finding.unwrap());
            outcome
        })
        .collect()
}

#[test]
fn a_power_loss_during_recovery_undoes_its_unsynced_cut_and_recovers_the_same_state() {
    // Async offset kills leave a torn tail for recovery to cut; a recovery killed after
    // some of its calls leaves its own unsynced operations, whose crash states (the cut
    // undone among them) must recover to what an uninterrupted recovery gives (R7).
    let (mut during_recovery, mut cut_undone) = (0, 0);
    for outcome in clean_recovery_power_loss_cycles(0x2ec0, 24) {
        for d in &outcome.crash_state_descriptions {
            if d.starts_with("power loss during recovery") {
                during_recovery += 1;
                // The log's part only: a sidecar's own size may be undone too (P7).
                let log_part = d.split(BESIDE_THE_LOG).next().unwrap();
                cut_undone += usize::from(log_part.contains("size undone"));
            }
        }
    }
    assert!(during_recovery > 0, "no recovery left anything unsynced");
    assert!(cut_undone > 0, "no crash state undid recovery's cut");
}

#[test]
fn a_power_loss_while_recovery_writes_a_sidecar_damages_it_and_recovery_still_opens() {
    // A recovery killed while it copies a torn tail into a sidecar, before the sidecar's
    // fdatasync, leaves the sidecar's bytes unsynced: a power loss may lose or tear them
    // (P7). The log was not cut yet (the cut waits for the sidecar to be durable), so the
    // next recovery must open, save the tail again and recover the same state (R7).
    let (mut sidecar_damaged, mut states) = (0, 0);
    for outcome in clean_recovery_power_loss_cycles(0x51de, 48) {
        states += outcome.crash_states_checked;
        sidecar_damaged += outcome
            .crash_state_descriptions
            .iter()
            .filter(|d| d.starts_with("power loss during recovery"))
            .filter_map(|d| d.split_once(BESIDE_THE_LOG))
            .filter(|(_, beside)| beside.contains("wal.log.torn-"))
            .count();
    }
    assert!(
        sidecar_damaged > 0,
        "no crash state damaged a sidecar recovery was writing ({states} states checked)"
    );
}

#[test]
fn a_case_replays_exactly() {
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    // Offset kill, one thread, no background flusher: bit-exact (see `Case::bit_exact`).
    let mut case = Case::new(0xfeed, ModeName::Async, KillKind::Offset);
    case.power_loss = true;
    assert!(case.bit_exact());
    let a = run_cycle(&case, &env(dir.path())).unwrap();
    let b = run_cycle(&case, &env(dir.path())).unwrap();
    assert_eq!(a.end, ChildEnd::Killed);
    assert_eq!(
        (a.end, a.kill_site, a.acked, a.recovered_n),
        (b.end, b.kill_site, b.acked, b.recovered_n)
    );
    // The states (which units kept, lost, zeroed, torn, garbage; size undone) replay
    // exactly. Whether a state happens to damage bytes in the middle depends on byte
    // values too, and commit timestamps differ from run to run, so that count may not.
    assert_eq!(
        a.crash_state_descriptions, b.crash_state_descriptions,
        "the same trace gives the same crash states"
    );
    assert!(a.crash_states_checked > 1, "{}", a.crash_states_checked);
    assert!(a.finding.is_none(), "{}", a.finding.unwrap());
}

#[test]
fn saved_regressions_replay_clean() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("regressions.txt");
    let cases = crashkit::regressions::load(&path).unwrap();
    assert!(
        !cases.is_empty(),
        "the regression list lost its pinned cases"
    );
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    for r in cases {
        let outcome = run_cycle(&r.case, &env(dir.path())).unwrap();
        assert!(
            outcome.finding.is_none(),
            "regression {:?} (was {}) fails again:\n{}",
            r.case,
            r.found,
            outcome.finding.unwrap()
        );
    }
}

#[test]
fn shrinking_keeps_the_finding_and_cuts_the_workload() {
    use crashkit::workload::Workload;
    use crashkit::wrong_engine::WrongEngine;
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let wrong_env = CycleEnv {
        wrong: Some(WrongEngine::DropsLastAcked),
        ..env(dir.path())
    };
    // The first seed whose workload acknowledges something before the kill.
    let finding = (0..20)
        .find_map(|i| {
            let case = Case::new(
                crashkit::case::cycle_seed(5, i),
                ModeName::Strict,
                KillKind::Offset,
            );
            run_cycle(&case, &wrong_env).unwrap().finding
        })
        .expect("a wrong engine that drops the last ack is reported");
    let before = Workload::for_case(&finding.case);
    let mut steps = Vec::new();
    let shrunk = crashkit::shrink::shrink(&finding, &wrong_env, &mut |s| steps.push(s)).unwrap();
    let after = Workload::for_case(&shrunk.case);
    assert_eq!(shrunk.violation.kind, finding.violation.kind);
    assert!(
        after.txns.len() < before.txns.len() || after.n_ops() < before.n_ops(),
        "nothing was shrunk: {steps:#?}"
    );
    assert!(
        shrunk.repro.contains("--txns-max")
            || shrunk.repro.contains("--txns-skip")
            || shrunk.repro.contains("--ops-max"),
        "{}",
        shrunk.repro
    );
    // The bar: a single-threaded finding shrinks to at most 10 operations within
    // the default budget.
    assert!(
        after.n_ops() <= 10,
        "{} ops left ({} txns): {steps:#?}",
        after.n_ops(),
        after.txns.len()
    );
    let last = steps.last().expect("the shrink reports how it ended");
    assert!(
        last.starts_with("minimal after") || last.starts_with("stopped on budget"),
        "{last}"
    );
}

/// Wrong engines found on workloads of 30 to 90 operations (Strict and Async offset kills,
/// some with a power loss or a crashed recovery) shrink to at most 10 operations within
/// the default budget: these need transactions dropped from the middle and single
/// operations dropped, which prefix cuts alone cannot do (they stopped at 16 and 11).
#[test]
fn shrinking_reaches_ten_operations_for_several_wrong_engines() {
    use crashkit::workload::Workload;
    use crashkit::wrong_engine::WrongEngine;
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    for wrong in [
        WrongEngine::AppliesInWrongOrder,
        WrongEngine::AcksBeforeSyncReturns,
    ] {
        let wrong_env = CycleEnv {
            wrong: Some(wrong),
            ..env(dir.path())
        };
        let finding = (0..60u64)
            .find_map(|i| {
                let mut case = Case::new(
                    crashkit::case::cycle_seed(0x9999, i),
                    [ModeName::Strict, ModeName::Async][(i % 2) as usize],
                    KillKind::Offset,
                );
                case.power_loss = i % 3 == 0;
                case.recovery_crash = i % 5 == 0;
                let f = run_cycle(&case, &wrong_env).unwrap().finding?;
                (Workload::for_case(&f.case).n_ops() > 10).then_some(f)
            })
            .unwrap_or_else(|| panic!("{wrong:?} is reported on a workload of over 10 ops"));
        let mut steps = Vec::new();
        let shrunk =
            crashkit::shrink::shrink(&finding, &wrong_env, &mut |s| steps.push(s)).unwrap();
        let after = Workload::for_case(&shrunk.case);
        assert_eq!(shrunk.violation.kind, finding.violation.kind);
        assert!(
            after.n_ops() <= 10,
            "{wrong:?}: {} ops left: {steps:#?}",
            after.n_ops()
        );
    }
}

#[test]
#[ignore = "long: about a minute in debug; run with --ignored in the long CI job"]
fn long_campaign_is_clean() {
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let opts = every_mode_and_kill(0x1077, 1200);
    let summary = run_campaign(&opts, &env(dir.path()), &AtomicBool::new(false), &|_| {}).unwrap();
    assert_eq!(summary.findings, 0, "{summary:#?}");
}
