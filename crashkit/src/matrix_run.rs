//! Running the selected cells of a crash matrix, one campaign per cell, and what the run
//! reports: a result per cell (cycles, rate, findings), the totals, the human table and the
//! JSON Lines objects of `torture matrix --json`.
//!
//! Cells run one after another, each on all of `jobs` workers: a cell's cycles/s is then
//! its own rate, and a harness failure or a stop request ends the run between cells with
//! every finished cell already reported.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{json, Value};

use crate::campaign::{run_campaign, Progress, Summary};
use crate::cycle::CycleEnv;
use crate::finding::Finding;
use crate::matrix::{cell_seed, Budget, Cell, RunSettings};

/// How one cell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellStatus {
    /// Every cycle recovered correctly.
    Clean,
    /// At least one cycle produced a finding.
    Red,
    /// The harness failed: nothing was proven either way.
    HarnessError,
    /// The run stopped before this cell started.
    NotRun,
}

/// The result of one cell.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub cell: Cell,
    /// The campaign seed of this cell (derived from the matrix seed and the cell's name).
    pub seed: u64,
    /// The budget it ran with (after `--quick`).
    pub budget: Budget,
    pub status: CellStatus,
    /// The campaign's summary (empty when the cell did not finish).
    pub summary: Summary,
    pub findings: Vec<Finding>,
    /// The harness error that stopped this cell.
    pub error: Option<String>,
    /// The command that reruns this cell alone.
    pub repro: String,
}

impl CellResult {
    /// The `cell` object of `--json`.
    pub fn to_json(&self) -> Value {
        let (cycles_budget, duration_s_budget) = match self.budget {
            Budget::Cycles(n) => (Some(n), None),
            Budget::DurationS(s) => (None, Some(s)),
        };
        json!({
            "type": "cell",
            "name": self.cell.name,
            "index": self.cell.index,
            "mode": self.cell.mode,
            "fault": self.cell.fault_name,
            "profile": self.cell.profile_name,
            "seed": format!("{:#018x}", self.seed),
            "budget_cycles": cycles_budget,
            "budget_duration_s": duration_s_budget,
            "status": self.status,
            "cycles": self.summary.cycles,
            "clean": self.summary.clean,
            "findings": self.summary.findings,
            "elapsed_s": self.summary.elapsed_s,
            "cycles_per_s": self.summary.cycles_per_s,
            "findings_by_kind": self.summary.findings_by_kind,
            "interrupted": self.summary.interrupted,
            "error": self.error,
            "repro": self.repro,
        })
    }
}

/// What a matrix run reports while it runs.
#[derive(Debug)]
pub enum MatrixEvent<'a> {
    /// Cell `position` (from 0) of `total` is starting.
    CellStart {
        position: usize,
        total: usize,
        cell: &'a Cell,
    },
    /// A finding of the running cell, as it happens.
    Finding {
        cell: &'a Cell,
        finding: &'a Finding,
    },
    /// A heartbeat of the running cell's campaign.
    Heartbeat {
        cell: &'a Cell,
        beat: crate::campaign::Heartbeat,
    },
    CellDone(&'a CellResult),
}

/// The whole run: one result per selected cell, in order.
#[derive(Debug, Clone)]
pub struct MatrixOutcome {
    pub base_seed: u64,
    pub cells: Vec<CellResult>,
    /// A stop request (SIGINT, SIGTERM) ended the run early.
    pub interrupted: bool,
}

impl MatrixOutcome {
    pub fn red_cells(&self) -> impl Iterator<Item = &CellResult> {
        self.cells.iter().filter(|c| c.status == CellStatus::Red)
    }

    pub fn harness_failure(&self) -> Option<&CellResult> {
        self.cells
            .iter()
            .find(|c| c.status == CellStatus::HarnessError)
    }

    /// Every finished cell's summary added up, in the shape of one campaign's summary
    /// (so `torture report` merges matrix runs and plain runs alike).
    pub fn totals(&self) -> Summary {
        let mut total = Summary {
            base_seed: format!("{:#018x}", self.base_seed),
            interrupted: self.interrupted,
            ..Summary::default()
        };
        for c in &self.cells {
            add_summary(&mut total, &c.summary);
        }
        total.cycles_per_s = if total.elapsed_s > 0.0 {
            total.cycles as f64 / total.elapsed_s
        } else {
            0.0
        };
        total
    }

    /// The `summary` object of `--json`: the totals plus the matrix's own counts.
    pub fn summary_json(&self) -> Value {
        let mut v = serde_json::to_value(self.totals()).unwrap_or_default();
        v["type"] = "summary".into();
        v["cells"] = self.cells.len().into();
        v["cells_run"] = self
            .cells
            .iter()
            .filter(|c| c.status != CellStatus::NotRun)
            .count()
            .into();
        v["red_cells"] = self
            .red_cells()
            .map(|c| c.cell.name.clone())
            .collect::<Vec<_>>()
            .into();
        v
    }
}

fn add_summary(into: &mut Summary, s: &Summary) {
    into.cycles += s.cycles;
    into.clean += s.clean;
    into.findings += s.findings;
    into.elapsed_s += s.elapsed_s;
    for (key, c) in &s.per_mode_kill {
        let t = into.per_mode_kill.entry(key.clone()).or_default();
        t.cycles += c.cycles;
        t.clean += c.clean;
        t.findings += c.findings;
        t.killed += c.killed;
        t.power_loss += c.power_loss;
        t.recovery_crash += c.recovery_crash;
        t.corrupt += c.corrupt;
        t.io_errors += c.io_errors;
        t.multi_threaded += c.multi_threaded;
        t.generations += c.generations;
    }
    for (key, n) in &s.coverage {
        *into.coverage.entry(key.clone()).or_default() += n;
    }
    for (key, n) in &s.findings_by_kind {
        *into.findings_by_kind.entry(key.clone()).or_default() += n;
    }
}

/// Runs `cells` in order, each as one campaign. Stops before the next cell when `stop` is
/// set or a cell's harness failed; the cells not run are reported as [`CellStatus::NotRun`].
/// `matrix_path` and `quick` only shape the printed reproduce commands.
pub fn run_cells(
    cells: &[Cell],
    settings: &RunSettings,
    matrix_path: &str,
    env: &CycleEnv,
    stop: &AtomicBool,
    on_event: &(dyn Fn(MatrixEvent<'_>) + Sync),
) -> MatrixOutcome {
    let mut results = Vec::with_capacity(cells.len());
    let mut halted = false;
    for (position, cell) in cells.iter().enumerate() {
        let mut result = CellResult {
            cell: cell.clone(),
            seed: cell_seed(settings.base_seed, &cell.name),
            budget: cell.budget(settings.quick),
            status: CellStatus::NotRun,
            summary: Summary::default(),
            findings: Vec::new(),
            error: None,
            repro: cell.repro_command(matrix_path, settings.base_seed, settings.quick.is_some()),
        };
        if halted || stop.load(Ordering::Acquire) {
            results.push(result);
            continue;
        }
        on_event(MatrixEvent::CellStart {
            position,
            total: cells.len(),
            cell,
        });
        let findings = Mutex::new(Vec::new());
        let opts = cell.campaign_options(settings);
        let outcome = run_campaign(&opts, env, stop, &|p| match p {
            Progress::Finding(f) => {
                on_event(MatrixEvent::Finding { cell, finding: f });
                findings
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(f.clone());
            }
            Progress::Heartbeat(beat) => on_event(MatrixEvent::Heartbeat { cell, beat }),
            Progress::Cycle(_) => {}
        });
        match outcome {
            Ok(summary) => {
                result.status = if summary.findings > 0 {
                    CellStatus::Red
                } else {
                    CellStatus::Clean
                };
                result.summary = summary;
            }
            Err(e) => {
                result.status = CellStatus::HarnessError;
                result.error = Some(e.to_string());
                halted = true;
            }
        }
        result.findings = findings.into_inner().unwrap_or_else(|p| p.into_inner());
        on_event(MatrixEvent::CellDone(&result));
        results.push(result);
    }
    MatrixOutcome {
        base_seed: settings.base_seed,
        cells: results,
        interrupted: stop.load(Ordering::Acquire),
    }
}

/// The human report: one row per cell, the totals, then how to rerun each red cell.
impl fmt::Display for MatrixOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .cells
            .iter()
            .map(|c| c.cell.name.len())
            .max()
            .unwrap_or(0)
            .max("cell".len());
        writeln!(
            f,
            "{:<width$}  {:<18}  {:>8}  {:>9}  {:>8}  result",
            "cell", "seed", "cycles", "cycles/s", "findings"
        )?;
        for c in &self.cells {
            let result = match c.status {
                CellStatus::Clean => "clean",
                CellStatus::Red => "RED",
                CellStatus::HarnessError => "harness error",
                CellStatus::NotRun => "not run",
            };
            writeln!(
                f,
                "{:<width$}  {:<18}  {:>8}  {:>9.1}  {:>8}  {result}",
                c.cell.name,
                format!("{:#018x}", c.seed),
                c.summary.cycles,
                c.summary.cycles_per_s,
                c.summary.findings
            )?;
        }
        let totals = self.totals();
        let red = self.red_cells().count();
        writeln!(
            f,
            "{} cells, {} cycles in {:.1}s ({:.1} cycles/s): {} findings in {red} red cell(s){}",
            self.cells.len(),
            totals.cycles,
            totals.elapsed_s,
            totals.cycles_per_s,
            totals.findings,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )?;
        for (kind, n) in &totals.findings_by_kind {
            writeln!(f, "finding {kind}: {n}")?;
        }
        for c in self.red_cells() {
            writeln!(f, "red cell {}: rerun it with {}", c.cell.name, c.repro)?;
        }
        if let Some(c) = self.harness_failure() {
            writeln!(
                f,
                "harness failure in cell {}: {}",
                c.cell.name,
                c.error.as_deref().unwrap_or("?")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::ComboCounts;
    use crate::matrix::Matrix;

    const ONE_BLOCK: &str = r#"
seed = "0x5eed"
quick = { divisor = 4, cycles_min = 1 }
[profiles.p]
threads = 1
generations = 1
[faults.offset]
kills = ["offset"]
[[cells]]
modes = ["strict", "async"]
faults = ["offset"]
profiles = ["p"]
cycles = 8
"#;

    fn result(cell: &Cell, status: CellStatus, cycles: u64, findings: u64) -> CellResult {
        let mut summary = Summary {
            cycles,
            clean: cycles - findings,
            findings,
            elapsed_s: 2.0,
            cycles_per_s: cycles as f64 / 2.0,
            ..Summary::default()
        };
        summary.per_mode_kill.insert(
            format!("{}/offset", cell.mode),
            ComboCounts {
                cycles,
                clean: cycles - findings,
                findings,
                ..ComboCounts::default()
            },
        );
        if findings > 0 {
            summary.findings_by_kind.insert("hole".into(), findings);
        }
        CellResult {
            cell: cell.clone(),
            seed: cell_seed(0x5eed, &cell.name),
            budget: cell.budget,
            status,
            summary,
            findings: Vec::new(),
            error: None,
            repro: cell.repro_command("ci/matrix.toml", 0x5eed, false),
        }
    }

    #[test]
    fn totals_add_up_the_cells_and_the_table_names_red_cells() {
        let m = Matrix::parse(ONE_BLOCK).unwrap();
        let outcome = MatrixOutcome {
            base_seed: 0x5eed,
            cells: vec![
                result(&m.cells[0], CellStatus::Clean, 8, 0),
                result(&m.cells[1], CellStatus::Red, 8, 2),
            ],
            interrupted: false,
        };
        let totals = outcome.totals();
        assert_eq!((totals.cycles, totals.clean, totals.findings), (16, 14, 2));
        assert_eq!(totals.elapsed_s, 4.0);
        assert_eq!(totals.cycles_per_s, 4.0);
        assert_eq!(totals.per_mode_kill["async/offset"].findings, 2);
        assert_eq!(totals.findings_by_kind["hole"], 2);
        let json = outcome.summary_json();
        assert_eq!(json["type"], "summary");
        assert_eq!(json["red_cells"], json!(["async/offset/p"]));
        assert!(json["per_mode_kill"].is_object(), "torture report reads it");

        let text = outcome.to_string();
        let rows: Vec<_> = text.lines().collect();
        assert!(rows[0].starts_with("cell"), "{text}");
        assert!(rows[1].starts_with("strict/offset/p") && rows[1].ends_with("clean"));
        assert!(rows[2].starts_with("async/offset/p") && rows[2].ends_with("RED"));
        assert!(
            text.contains("2 cells, 16 cycles in 4.0s (4.0 cycles/s): 2 findings in 1 red cell(s)"),
            "{text}"
        );
        assert!(
            text.contains(
                "red cell async/offset/p: rerun it with cargo run --release -p torture -- \
                 matrix --matrix ci/matrix.toml --cell async/offset/p --seed 0x5eed"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_cell_object_carries_its_seed_budget_and_repro() {
        let m = Matrix::parse(ONE_BLOCK).unwrap();
        let v = result(&m.cells[1], CellStatus::Red, 8, 2).to_json();
        assert_eq!(v["type"], "cell");
        assert_eq!(v["name"], "async/offset/p");
        assert_eq!(v["status"], "red");
        assert_eq!(v["budget_cycles"], 8);
        assert_eq!(v["budget_duration_s"], Value::Null);
        assert_eq!(
            v["seed"],
            format!("{:#018x}", cell_seed(0x5eed, "async/offset/p"))
        );
        assert!(v["repro"].as_str().unwrap().ends_with("--seed 0x5eed"));
    }
}
