//! A campaign: many cycles over a slice of the seed space, on `jobs` worker threads, with
//! a summary of what ran, what was found and where the kills landed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::case::{cycle_seed, Case, KillKind, Limits, ModeName, Purpose};
use crate::cycle::{run_cycle, ChildEnd, CycleEnv, CycleOutcome, HarnessError};
use crate::finding::Finding;

/// How often an optional fault applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    Never,
    /// On about one cycle in four.
    Sometimes,
    Always,
}

/// A campaign's parameters.
#[derive(Debug, Clone)]
pub struct CampaignOptions {
    pub base_seed: u64,
    /// Stop after this many cycles (of this shard) ...
    pub cycles: Option<u64>,
    /// ... or after this long, whichever comes first.
    pub duration: Option<Duration>,
    pub jobs: usize,
    pub modes: Vec<ModeName>,
    pub kills: Vec<KillKind>,
    pub power_loss: Frequency,
    pub recovery_crash: Frequency,
    pub corrupt: Frequency,
    /// Each cycle's writer uses 1..=threads_max threads (io-error cycles always one: with
    /// several threads an error and another thread's acknowledgement race in the ledger).
    pub threads_max: u8,
    /// Each cycle runs 1..=generations_max crash-recover-check generations on one database.
    pub generations_max: u8,
    /// (index, count): this shard runs cycle indexes `index, index + count, ...`.
    pub shard: (u64, u64),
    /// What kind of workload every cycle generates.
    pub shape: crate::workload::WorkloadShape,
    pub limits: Limits,
    /// Before the campaign and before every cycle, the work directory's file system must
    /// have this much free space, or the campaign stops with a harness error (0: never
    /// check). Running out of space mid-cycle would otherwise look like an engine bug.
    pub free_space_min_bytes: u64,
    /// Report [`Progress::Heartbeat`] this often while the campaign runs (`None`: never).
    pub heartbeat: Option<Duration>,
}

/// The case of cycle `index`: mode and kill kind rotate through every combination so that
/// each gets its share; the optional faults are drawn from the cycle seed.
pub fn case_for_index(opts: &CampaignOptions, index: u64) -> Case {
    let seed = cycle_seed(opts.base_seed, index);
    let combos = (opts.modes.len() * opts.kills.len()) as u64;
    let combo = (index % combos) as usize;
    let mut case = Case::new(
        seed,
        opts.modes[combo % opts.modes.len()],
        opts.kills[combo / opts.modes.len()],
    );
    let mut rng = case.rng(Purpose::Campaign);
    let mut draw = |f: Frequency| match f {
        Frequency::Never => false,
        Frequency::Always => true,
        Frequency::Sometimes => rng.gen_ratio(1, 4),
    };
    case.power_loss = draw(opts.power_loss);
    case.recovery_crash = draw(opts.recovery_crash);
    case.corrupt = draw(opts.corrupt);
    case.generations = rng.gen_range(1..=opts.generations_max.max(1));
    case.threads = if case.kill == KillKind::IoError {
        1
    } else {
        rng.gen_range(1..=opts.threads_max.max(1))
    };
    case.shape = opts.shape;
    case.limits = opts.limits;
    case
}

/// The campaign-wide index of the `k`-th cycle of shard `(i, n)`: shards are disjoint
/// and together cover every index.
pub fn shard_index(shard: (u64, u64), k: u64) -> u64 {
    shard.0 + k * shard.1
}

/// Clean and finding counts of one mode x kill combination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ComboCounts {
    pub cycles: u64,
    pub clean: u64,
    pub findings: u64,
    /// Cycles whose child was killed (the rest ended their workload first).
    pub killed: u64,
    pub power_loss: u64,
    pub recovery_crash: u64,
    pub corrupt: u64,
    /// Cycles whose writer saw a failed commit, flush or close.
    pub io_errors: u64,
    /// Cycles with more than one writer thread.
    pub multi_threaded: u64,
    /// Crash-recover-check generations run (a cycle may run several on one database).
    pub generations: u64,
}

/// The summary of a campaign (the `summary` object of `--json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub base_seed: String,
    pub cycles: u64,
    pub clean: u64,
    pub findings: u64,
    pub elapsed_s: f64,
    pub cycles_per_s: f64,
    /// Legal crash states recovered and checked (power loss), and their rate.
    pub crash_states: u64,
    pub crash_states_per_s: f64,
    /// Crash states that lost bytes in the middle of the unsynced bytes and kept later ones.
    pub crash_states_damaged_in_middle: u64,
    /// Keyed `mode/kill`.
    pub per_mode_kill: BTreeMap<String, ComboCounts>,
    /// Where offset, watch and time kills landed, keyed `region/record type`.
    pub coverage: BTreeMap<String, u64>,
    pub findings_by_kind: BTreeMap<String, u64>,
    /// True when Ctrl-C (or a harness error) ended the campaign early.
    pub interrupted: bool,
}

impl Summary {
    pub fn record(&mut self, outcome: &CycleOutcome) {
        self.cycles += 1;
        self.crash_states += outcome.crash_states_checked;
        self.crash_states_damaged_in_middle += outcome.crash_states_damaged_in_middle;
        let key = format!("{}/{}", outcome.case.mode, outcome.case.kill);
        let combo = self.per_mode_kill.entry(key).or_default();
        combo.cycles += 1;
        combo.killed += u64::from(outcome.end == ChildEnd::Killed);
        combo.power_loss += u64::from(outcome.case.power_loss);
        combo.recovery_crash += u64::from(outcome.case.recovery_crash);
        combo.corrupt += u64::from(outcome.corrupted);
        combo.io_errors += u64::from(outcome.saw_error);
        combo.multi_threaded += u64::from(outcome.case.writer_threads() > 1);
        combo.generations += outcome.case.n_generations() as u64;
        match &outcome.finding {
            Some(f) => {
                combo.findings += 1;
                self.findings += 1;
                *self
                    .findings_by_kind
                    .entry(f.violation.kind.name().to_string())
                    .or_default() += 1;
            }
            None => {
                combo.clean += 1;
                self.clean += 1;
            }
        }
        if let Some(site) = &outcome.kill_site {
            *self.coverage.entry(site.key()).or_default() += 1;
        }
    }

    fn finish(&mut self, elapsed: Duration) {
        self.elapsed_s = elapsed.as_secs_f64();
        self.cycles_per_s = if self.elapsed_s > 0.0 {
            self.cycles as f64 / self.elapsed_s
        } else {
            0.0
        };
        self.crash_states_per_s = if self.elapsed_s > 0.0 {
            self.crash_states as f64 / self.elapsed_s
        } else {
            0.0
        };
    }
}

/// The human summary: totals, a mode x kill table, kill sites, findings by kind.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} cycles in {:.1}s ({:.1} cycles/s): {} clean, {} findings{}",
            self.cycles,
            self.elapsed_s,
            self.cycles_per_s,
            self.clean,
            self.findings,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "{} crash states checked ({:.1}/s), {} with damage in the middle of unsynced bytes",
            self.crash_states, self.crash_states_per_s, self.crash_states_damaged_in_middle
        )?;
        let columns = [
            "cycles",
            "clean",
            "findings",
            "killed",
            "power-loss",
            "recovery-crash",
            "corrupt",
            "io-errors",
            "threaded",
            "generations",
        ];
        write!(f, "{:<20}", "mode/kill")?;
        for c in columns {
            write!(f, " {c:>w$}", w = c.len().max(7))?;
        }
        writeln!(f)?;
        for (k, c) in &self.per_mode_kill {
            let values = [
                c.cycles,
                c.clean,
                c.findings,
                c.killed,
                c.power_loss,
                c.recovery_crash,
                c.corrupt,
                c.io_errors,
                c.multi_threaded,
                c.generations,
            ];
            write!(f, "{k:<20}")?;
            for (name, v) in columns.iter().zip(values) {
                write!(f, " {v:>w$}", w = name.len().max(7))?;
            }
            writeln!(f)?;
        }
        if !self.coverage.is_empty() {
            writeln!(f, "kill sites (last generation of each cycle):")?;
            for (k, n) in &self.coverage {
                writeln!(f, "  {k:<28} {n}")?;
            }
        }
        for (k, n) in &self.findings_by_kind {
            writeln!(f, "finding {k}: {n}")?;
        }
        Ok(())
    }
}

/// What a campaign reports while it runs.
#[derive(Debug)]
pub enum Progress<'a> {
    Cycle(&'a CycleOutcome),
    Finding(&'a Finding),
    /// Every `CampaignOptions::heartbeat`, whether or not a cycle completed since.
    Heartbeat(Heartbeat),
}

/// A periodic sign of life: the counts so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heartbeat {
    pub cycles: u64,
    pub findings: u64,
    pub elapsed: Duration,
}

impl fmt::Display for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} cycles, {} findings, {:.0}s elapsed ({:.1} cycles/s)",
            self.cycles,
            self.findings,
            secs,
            if secs > 0.0 {
                self.cycles as f64 / secs
            } else {
                0.0
            }
        )
    }
}

fn free_space_error(source: std::io::Error) -> HarnessError {
    HarnessError::Io {
        context: "checking free space before a cycle".to_string(),
        source,
    }
}

/// Runs a campaign until its cycle count or duration is reached, or `stop` is set (cycles
/// in flight finish first). The first harness error stops every worker and is returned;
/// so does too little free space in the work directory, checked before the first cycle
/// and before every other one.
pub fn run_campaign(
    opts: &CampaignOptions,
    env: &CycleEnv,
    stop: &AtomicBool,
    on_progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<Summary, HarnessError> {
    assert!(
        !opts.modes.is_empty() && !opts.kills.is_empty(),
        "empty mode or kill set"
    );
    assert!(
        opts.shard.1 > 0 && opts.shard.0 < opts.shard.1,
        "invalid shard"
    );
    crate::space::ensure_free(&env.work_dir, opts.free_space_min_bytes)
        .map_err(free_space_error)?;
    let started = Instant::now();
    let deadline = opts.duration.map(|d| started + d);
    let next = AtomicU64::new(0);
    let summary = Mutex::new(Summary {
        base_seed: format!("{:#018x}", opts.base_seed),
        ..Summary::default()
    });
    let failure: Mutex<Option<HarnessError>> = Mutex::new(None);
    let halt = AtomicBool::new(false);
    let workers_done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        if let Some(interval) = opts.heartbeat.filter(|d| !d.is_zero()) {
            let (summary, workers_done) = (&summary, &workers_done);
            scope.spawn(move || {
                // Sleeps in short steps so that the campaign ends without waiting for a
                // whole interval.
                let step = interval.min(Duration::from_millis(100));
                let mut next_beat = started + interval;
                while !workers_done.load(Ordering::Acquire) {
                    std::thread::sleep(step);
                    if Instant::now() < next_beat {
                        continue;
                    }
                    next_beat += interval;
                    let (cycles, findings) = {
                        let s = summary.lock().unwrap_or_else(|p| p.into_inner());
                        (s.cycles, s.findings)
                    };
                    on_progress(Progress::Heartbeat(Heartbeat {
                        cycles,
                        findings,
                        elapsed: started.elapsed(),
                    }));
                }
            });
        }
        let workers: Vec<_> = (0..opts.jobs.max(1))
            .map(|_| {
                scope.spawn(|| loop {
                    if stop.load(Ordering::Acquire) || halt.load(Ordering::Acquire) {
                        return;
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return;
                    }
                    let k = next.fetch_add(1, Ordering::AcqRel);
                    if opts.cycles.is_some_and(|n| k >= n) {
                        return;
                    }
                    if let Err(e) =
                        crate::space::ensure_free(&env.work_dir, opts.free_space_min_bytes)
                    {
                        halt.store(true, Ordering::Release);
                        failure
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(free_space_error(e));
                        return;
                    }
                    let index = shard_index(opts.shard, k);
                    let case = case_for_index(opts, index);
                    match run_cycle(&case, env) {
                        Ok(outcome) => {
                            summary
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .record(&outcome);
                            if let Some(f) = &outcome.finding {
                                on_progress(Progress::Finding(f));
                            }
                            on_progress(Progress::Cycle(&outcome));
                        }
                        Err(e) => {
                            halt.store(true, Ordering::Release);
                            failure
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            return;
                        }
                    }
                })
            })
            .collect();
        let panicked: Vec<_> = workers.into_iter().filter_map(|w| w.join().err()).collect();
        // The heartbeat thread ends once the workers have, even when one of them panicked
        // (its panic is raised again here, as the scope would have).
        workers_done.store(true, Ordering::Release);
        if let Some(panic) = panicked.into_iter().next() {
            std::panic::resume_unwind(panic);
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut summary = summary.into_inner().unwrap_or_else(|p| p.into_inner());
    summary.interrupted = stop.load(Ordering::Acquire);
    summary.finish(started.elapsed());
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn shards_are_disjoint_and_cover_the_seed_space() {
        let mut seen = BTreeSet::new();
        for i in 0..3 {
            for k in 0..10 {
                assert!(
                    seen.insert(shard_index((i, 3), k)),
                    "index reused across shards"
                );
            }
        }
        assert_eq!(seen, (0..30).collect());
        let opts = CampaignOptions {
            base_seed: 9,
            cycles: None,
            duration: None,
            jobs: 1,
            modes: ModeName::ALL.to_vec(),
            kills: KillKind::ALL.to_vec(),
            power_loss: Frequency::Sometimes,
            recovery_crash: Frequency::Never,
            corrupt: Frequency::Never,
            threads_max: 3,
            generations_max: 2,
            shard: (0, 1),
            shape: crate::workload::WorkloadShape::Mixed,
            limits: Limits::default(),
            free_space_min_bytes: 0,
            heartbeat: None,
        };
        let cases: Vec<Case> = (0..12).map(|i| case_for_index(&opts, i)).collect();
        let combos: BTreeSet<_> = cases.iter().map(|c| (c.mode, c.kill)).collect();
        assert_eq!(
            combos.len(),
            12,
            "twelve consecutive cycles cover every mode x kill"
        );
        assert_eq!(
            case_for_index(&opts, 5),
            cases[5],
            "a cycle's case depends only on its index"
        );
        assert!(cases.iter().all(|c| !c.recovery_crash && !c.corrupt));
        assert!(cases
            .iter()
            .filter(|c| c.kill == KillKind::IoError)
            .all(|c| c.writer_threads() == 1));
    }

    #[test]
    fn too_little_free_space_stops_the_campaign_before_any_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let env = CycleEnv {
            work_dir: dir.path().to_path_buf(),
            artifacts_dir: dir.path().join("artifacts"),
            // Never started: the check comes first.
            child: crate::cycle::ChildCommand {
                program: "/nonexistent/torture".into(),
                args_prefix: Vec::new(),
            },
            wrong: None,
        };
        let opts = CampaignOptions {
            base_seed: 1,
            cycles: Some(5),
            duration: None,
            jobs: 1,
            modes: vec![ModeName::Strict],
            kills: vec![KillKind::Offset],
            power_loss: Frequency::Never,
            recovery_crash: Frequency::Never,
            corrupt: Frequency::Never,
            threads_max: 1,
            generations_max: 1,
            shard: (0, 1),
            shape: crate::workload::WorkloadShape::Mixed,
            limits: Limits::default(),
            free_space_min_bytes: u64::MAX,
            heartbeat: Some(Duration::from_millis(1)),
        };
        let cycles = AtomicU64::new(0);
        let result = run_campaign(&opts, &env, &AtomicBool::new(false), &|p| {
            if let Progress::Cycle(_) = p {
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        });
        let err = result.expect_err("u64::MAX bytes are never free");
        assert!(err.to_string().contains("MiB free in"), "{err}");
        assert_eq!(cycles.load(Ordering::Relaxed), 0, "no cycle ran");
    }
}
