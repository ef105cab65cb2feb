//! The checker's self-test: crash cycles against deliberately wrong engines (simulated on
//! top of the real one, see [`WrongEngine`]), each of which must be reported, while the
//! same cases against the real engine must be clean. A checker that cannot fail proves
//! nothing.

use serde::Serialize;

use crate::case::{Case, KillKind, ModeName};
use crate::cycle::{run_cycle, CycleEnv, HarnessError};
use crate::finding::Finding;
use crate::wrong_engine::WrongEngine;

/// Seeds tried before a wrong engine counts as undetected. Most are caught by the first;
/// the one only an out-of-order crash state shows (RefusesOutOfOrderStates) takes about 7
/// with seed 1, and with several writer threads the cycles are not bit-exact, so the bound
/// leaves room (seen undetected within 24 once, under load). Seeds past a detection are
/// never run, so the bound costs nothing while every wrong engine is caught.
pub const SEEDS_MAX: u64 = 64;

/// The verdict on one wrong engine.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub wrong_engine: String,
    /// The finding kind it was reported as, if it was.
    pub reported_as: Option<String>,
    pub seed: Option<String>,
    /// How many seeds it took (cases of its kind run against it).
    pub cycles: Option<u64>,
}

/// The self-test's result.
#[derive(Debug, Clone, Serialize)]
pub struct SelfTestReport {
    pub detections: Vec<Detection>,
    /// Findings against the real engine on the same cases (must be empty).
    pub correct_engine_findings: Vec<String>,
    pub cases_run: u64,
}

impl SelfTestReport {
    pub fn passed(&self) -> bool {
        self.correct_engine_findings.is_empty()
            && self.detections.iter().all(|d| d.reported_as.is_some())
    }
}

impl std::fmt::Display for SelfTestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for d in &self.detections {
            match (&d.reported_as, &d.seed) {
                (Some(kind), Some(seed)) => writeln!(
                    f,
                    "{:<46} reported as {kind} (seed {seed}, after {} cycles)",
                    d.wrong_engine,
                    d.cycles.unwrap_or(0)
                )?,
                _ => writeln!(f, "{:<46} NOT DETECTED", d.wrong_engine)?,
            }
        }
        for finding in &self.correct_engine_findings {
            writeln!(f, "finding against the real engine: {finding}")?;
        }
        writeln!(
            f,
            "self-test {} after {} crash cycles",
            if self.passed() { "passed" } else { "FAILED" },
            self.cases_run
        )
    }
}

/// Runs the self-test in `env` (its `wrong` field is ignored): once with one writer
/// thread and once with three (where the checker must search commit orders).
pub fn run(env: &CycleEnv, base_seed: u64) -> Result<SelfTestReport, HarnessError> {
    let mut detections = Vec::new();
    let mut correct_engine_findings = Vec::new();
    let mut cases_run = 0;
    for threads in [1u8, 3] {
        let mut found: Vec<Detection> = WrongEngine::ALL
            .iter()
            .map(|w| Detection {
                wrong_engine: format!(
                    "{w:?} ({threads} writer thread{})",
                    if threads == 1 { "" } else { "s" }
                ),
                reported_as: None,
                seed: None,
                cycles: None,
            })
            .collect();
        for i in 0..SEEDS_MAX {
            if found.iter().all(|d| d.reported_as.is_some()) {
                break;
            }
            // Wrong engines acting in the writer show only in crash states: their cases
            // lose power after the kill; those acting in the recovering child show only in
            // an interrupted recovery's crash states: their cases also crash recovery; the
            // others' cases do neither. The real engine runs each case first and must be
            // clean.
            for needs in [(false, false), (true, false), (true, true)] {
                let (power_loss, recovery_crash) = needs;
                let wanted: Vec<usize> = (0..WrongEngine::ALL.len())
                    .filter(|w| {
                        WrongEngine::ALL[*w].needs() == needs && found[*w].reported_as.is_none()
                    })
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                let mut case = Case::new(
                    crate::case::cycle_seed(base_seed, i),
                    ModeName::Strict,
                    KillKind::Offset,
                );
                case.threads = threads;
                case.power_loss = power_loss;
                case.recovery_crash = recovery_crash;
                let correct = run_cycle(
                    &case,
                    &CycleEnv {
                        wrong: None,
                        ..env.clone()
                    },
                )?;
                cases_run += 1;
                if let Some(f) = correct.finding {
                    correct_engine_findings.push(describe(&f));
                    continue;
                }
                for w in wanted {
                    let outcome = run_cycle(
                        &case,
                        &CycleEnv {
                            wrong: Some(WrongEngine::ALL[w]),
                            ..env.clone()
                        },
                    )?;
                    cases_run += 1;
                    if let Some(f) = outcome.finding {
                        let detection = &mut found[w];
                        detection.reported_as = Some(f.violation.kind.name().to_string());
                        detection.seed = Some(format!("{:#018x}", case.seed));
                        detection.cycles = Some(i + 1);
                        if let Some(dir) = &f.artifacts_dir {
                            // Self-test findings are expected; their artifacts are noise.
                            let _ = std::fs::remove_dir_all(dir);
                        }
                    }
                }
            }
        }
        detections.extend(found);
    }
    Ok(SelfTestReport {
        detections,
        correct_engine_findings,
        cases_run,
    })
}

fn describe(f: &Finding) -> String {
    format!("{}: {} ({})", f.violation.kind, f.violation.detail, f.repro)
}
