//! Which fault kind catches which wrong engine: every wrong engine of the self-test
//! against cases of one fault kind at a time (Strict, one writer thread), counting the
//! cycles until it is reported. The real engine runs every case first and must be clean.
//! `torture selftest --by-fault` prints the table; the closing notes of the crash-state
//! work quote it.

use std::fmt;

use serde::Serialize;

use crate::case::{cycle_seed, Case, KillKind, ModeName};
use crate::cycle::{run_cycle, CycleEnv, HarnessError};
use crate::wrong_engine::WrongEngine;

/// A fault kind as the crash matrix names it: a kind of kill, maybe with a damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FaultKind {
    pub name: &'static str,
    kill: KillKind,
    power_loss: bool,
    recovery_crash: bool,
    corrupt: bool,
}

impl FaultKind {
    const fn kill(name: &'static str, kill: KillKind) -> FaultKind {
        FaultKind {
            name,
            kill,
            power_loss: false,
            recovery_crash: false,
            corrupt: false,
        }
    }

    /// The seven fault kinds of `ci/matrix.toml` (damages ride on offset kills here), and
    /// an eighth: a power loss while an interrupted recovery ran (power loss and recovery
    /// crash in one case: the crash states of recovery's own I/O, docs/faults.md P4, P6,
    /// P7), the only one that shows a wrong engine acting in the recovering child.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::kill("offset", KillKind::Offset),
        FaultKind::kill("watch", KillKind::Watch),
        FaultKind::kill("time", KillKind::Time),
        FaultKind::kill("io-error", KillKind::IoError),
        FaultKind {
            power_loss: true,
            ..FaultKind::kill("power-loss", KillKind::Offset)
        },
        FaultKind {
            recovery_crash: true,
            ..FaultKind::kill("recovery-crash", KillKind::Offset)
        },
        FaultKind {
            corrupt: true,
            ..FaultKind::kill("corrupt", KillKind::Offset)
        },
        FaultKind {
            power_loss: true,
            recovery_crash: true,
            ..FaultKind::kill("recovery-power-loss", KillKind::Offset)
        },
    ];

    /// Case `i` of this fault kind under `base_seed`.
    pub fn case(&self, base_seed: u64, i: u64) -> Case {
        let mut case = Case::new(cycle_seed(base_seed, i), ModeName::Strict, self.kill);
        case.power_loss = self.power_loss;
        case.recovery_crash = self.recovery_crash;
        case.corrupt = self.corrupt;
        case
    }
}

/// One row: a wrong engine, and per fault kind the cycles it took to be reported (`None`:
/// not within the budget).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub wrong_engine: String,
    pub cycles_to_catch: Vec<Option<u64>>,
}

/// The table, with how many cases ran in all and any finding against the real engine.
#[derive(Debug, Clone, Serialize)]
pub struct ByFault {
    pub faults: Vec<&'static str>,
    pub rows: Vec<Row>,
    pub seeds_max: u64,
    pub cases_run: u64,
    pub correct_engine_findings: Vec<String>,
}

/// Runs every wrong engine against up to `seeds_max` cases of every fault kind.
pub fn run(env: &CycleEnv, base_seed: u64, seeds_max: u64) -> Result<ByFault, HarnessError> {
    let mut rows: Vec<Row> = WrongEngine::ALL
        .iter()
        .map(|w| Row {
            wrong_engine: format!("{w:?}"),
            cycles_to_catch: vec![None; FaultKind::ALL.len()],
        })
        .collect();
    let (mut cases_run, mut correct_engine_findings) = (0, Vec::new());
    for (f, fault) in FaultKind::ALL.iter().enumerate() {
        for i in 0..seeds_max {
            let wanted: Vec<usize> = (0..rows.len())
                .filter(|w| rows[*w].cycles_to_catch[f].is_none())
                .collect();
            if wanted.is_empty() {
                break;
            }
            let case = fault.case(base_seed, i);
            let real = CycleEnv {
                wrong: None,
                ..env.clone()
            };
            cases_run += 1;
            if let Some(finding) = run_cycle(&case, &real)?.finding {
                correct_engine_findings.push(format!(
                    "{}: {} ({})",
                    finding.violation.kind, finding.violation.detail, finding.repro
                ));
                continue;
            }
            for w in wanted {
                let wrong = CycleEnv {
                    wrong: Some(WrongEngine::ALL[w]),
                    ..env.clone()
                };
                cases_run += 1;
                if let Some(finding) = run_cycle(&case, &wrong)?.finding {
                    rows[w].cycles_to_catch[f] = Some(i + 1);
                    if let Some(dir) = &finding.artifacts_dir {
                        // Expected findings: their artifacts are noise.
                        let _ = std::fs::remove_dir_all(dir);
                    }
                }
            }
        }
    }
    Ok(ByFault {
        faults: FaultKind::ALL.iter().map(|f| f.name).collect(),
        rows,
        seeds_max,
        cases_run,
        correct_engine_findings,
    })
}

impl ByFault {
    /// How many wrong engines each fault kind catches.
    pub fn caught_per_fault(&self) -> Vec<usize> {
        (0..self.faults.len())
            .map(|f| {
                self.rows
                    .iter()
                    .filter(|r| r.cycles_to_catch[f].is_some())
                    .count()
            })
            .collect()
    }
}

/// A table: one row per wrong engine, one column per fault kind, each cell the cycles to
/// catch it (`-`: not within the budget), then how many each kind catches.
impl fmt::Display for ByFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<28}", "wrong engine")?;
        for name in &self.faults {
            write!(f, " {name:>w$}", w = name.len().max(6))?;
        }
        writeln!(f)?;
        for row in &self.rows {
            write!(f, "{:<28}", row.wrong_engine)?;
            for (name, cell) in self.faults.iter().zip(&row.cycles_to_catch) {
                let text = cell.map_or("-".to_string(), |n| n.to_string());
                write!(f, " {text:>w$}", w = name.len().max(6))?;
            }
            writeln!(f)?;
        }
        write!(f, "{:<28}", "caught")?;
        for (name, n) in self.faults.iter().zip(self.caught_per_fault()) {
            let text = format!("{n}/{}", self.rows.len());
            write!(f, " {text:>w$}", w = name.len().max(6))?;
        }
        writeln!(f)?;
        for finding in &self.correct_engine_findings {
            writeln!(f, "finding against the real engine: {finding}")?;
        }
        writeln!(
            f,
            "cells: crash cycles until the wrong engine was reported (Strict, one writer thread, \
             at most {} cases per fault kind; -: not reported); {} cycles run",
            self.seeds_max, self.cases_run
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_kinds_build_their_cases_and_the_table_counts_catches() {
        let power = FaultKind::ALL
            .iter()
            .find(|f| f.name == "power-loss")
            .unwrap();
        let case = power.case(1, 0);
        assert!(case.power_loss && !case.recovery_crash && !case.corrupt);
        assert_eq!(case.kill, KillKind::Offset);
        assert_eq!(FaultKind::ALL[3].case(1, 0).kill, KillKind::IoError);
        let both = FaultKind::ALL.last().unwrap().case(1, 0);
        assert!(both.power_loss && both.recovery_crash && !both.corrupt);
        let table = ByFault {
            faults: vec!["offset", "power-loss"],
            rows: vec![
                Row {
                    wrong_engine: "A".into(),
                    cycles_to_catch: vec![Some(1), Some(2)],
                },
                Row {
                    wrong_engine: "B".into(),
                    cycles_to_catch: vec![None, Some(7)],
                },
            ],
            seeds_max: 12,
            cases_run: 5,
            correct_engine_findings: Vec::new(),
        };
        assert_eq!(table.caught_per_fault(), vec![1, 2]);
        let text = table.to_string();
        assert!(text.contains("1/2") && text.contains("2/2"), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with('B') && l.contains('-')),
            "{text}"
        );
    }
}
