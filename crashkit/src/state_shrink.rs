//! Shrinking the crash state of a power-loss finding: after the workload is as small as
//! it gets ([`crate::shrink`]), make the failing state as close to "everything reached
//! the disk" as the finding allows, so that what is left damaged is what matters.
//!
//! The finding's case runs once more (the writer, its kill, its trace: only cases that
//! replay bit-exactly qualify, see [`Case::bit_exact`]), the state is found again among the
//! case's drawn states by its description ([`CrashState::describe`], which the finding's
//! detail starts with), and then, one change at a time, each kept only while the checker
//! still reports a finding of the same kind on a fresh copy of the crashed directory:
//!
//! 1. an undone size change is kept instead;
//! 2. each unit that is not kept (lost, zeroed, garbage, torn) is kept instead;
//! 3. each torn or garbage unit is lost instead (old bytes rather than a mix or noise).
//!
//! The passes repeat until none changes anything or [`STATE_SHRINK_CHECKS_MAX`] checks
//! were spent. Garbage bytes of a rebuilt state come from the state's own ChaCha8 stream
//! restarted ([`Case::rng_indexed`] with [`Purpose::PowerLoss`]), so the shrunk state is
//! itself a pure function of the case and its printed fates.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::case::{Case, KillKind, Purpose};
use crate::checker::{self, Base, CheckInput};
use crate::crash_state::DiskModel;
use crate::cycle::CycleEnv;
use crate::finding::{Finding, FindingKind, Violation};
use crate::power_loss::{self, CrashState, Fate, Shape};
use crate::sweep::SweepError;
use crate::workload::Workload;

/// Checks a state shrink may spend.
pub const STATE_SHRINK_CHECKS_MAX: usize = 400;

/// The result of shrinking a finding's crash state.
#[derive(Debug, Clone, Serialize)]
pub struct ShrunkState {
    pub kind: FindingKind,
    /// The state as the finding had it, and as shrunk.
    pub before: String,
    pub after: String,
    /// Units not kept (lost, zeroed, garbage, torn) before and after.
    pub non_kept_before: usize,
    pub non_kept_after: usize,
    /// Torn or garbage units before and after.
    pub mixed_before: usize,
    pub mixed_after: usize,
    /// Checks spent.
    pub checks: usize,
    /// The violation the shrunk state gives.
    pub detail: String,
}

/// Why a finding's state could not be shrunk (nothing to do, or the harness failed).
#[derive(Debug)]
#[non_exhaustive]
pub enum StateShrinkError {
    /// The finding comes from no drawn power-loss state this shrinker can rebuild (no power
    /// loss, a timing-dependent case, several generations or threads, directory entries
    /// undone, a crashed recovery or a bit flip in play), or the state alone does not give
    /// the finding again.
    NotApplicable { reason: String },
    /// The writer or a file operation failed.
    Harness(SweepError),
}

impl std::fmt::Display for StateShrinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateShrinkError::NotApplicable { reason } => {
                write!(f, "the crash state cannot be shrunk: {reason}")
            }
            StateShrinkError::Harness(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StateShrinkError {}

fn not_applicable(reason: impl Into<String>) -> StateShrinkError {
    StateShrinkError::NotApplicable {
        reason: reason.into(),
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StateShrinkError {
    let context = context.into();
    move |source| StateShrinkError::Harness(SweepError::Io { context, source })
}

fn non_kept(state: &CrashState) -> usize {
    state.fates.iter().filter(|(_, f)| *f != Fate::Kept).count()
}

fn mixed(state: &CrashState) -> usize {
    state
        .fates
        .iter()
        .filter(|(_, f)| matches!(f, Fate::Garbage | Fate::Torn { .. }))
        .count()
}

/// What checking one candidate state needs: the crashed run and its oracle.
struct Crashed<'a> {
    case: &'a Case,
    env: &'a CycleEnv,
    db_dir: PathBuf,
    scratch: PathBuf,
    model: DiskModel,
    workload: Workload,
    ledger: crate::oracle::Ledger,
    written: Vec<crate::workload::RecordSpan>,
    crash_len_bytes: u64,
}

impl Crashed<'_> {
    /// Recovers `state` on a fresh copy of the crashed directory and checks it.
    fn check(&self, state: &CrashState) -> Result<Result<(), Violation>, StateShrinkError> {
        let dir = self.scratch.join("candidate");
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&self.db_dir, &dir)?;
        std::fs::write(dir.join(engine::WAL_FILE_NAME), &state.image)
            .map_err(io(format!("writing {}", dir.display())))?;
        let base = Base::empty();
        let header = engine::wal::HEADER_LEN as u64;
        let expected_end = (self.crash_len_bytes >= header).then(|| {
            crate::coverage::boundary_at_or_before(
                &self.written,
                state.first_changed_bytes.min(self.crash_len_bytes),
                header,
            )
        });
        let engine = crate::wrong_engine::WrongEngine::under_test(self.env.wrong);
        let input = CheckInput {
            case: self.case,
            workload: &self.workload,
            ledger: &self.ledger,
            crashed_wal: &state.image,
            expected_valid_end_bytes: expected_end,
            expect_exact_torn_bytes: true,
            corrupt_at: None,
            reference_state: None,
            base: &base,
            layout: &self.written,
            engine: engine.as_ref(),
        };
        let verdict = checker::check(&dir, &input).map(|_| ());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(verdict)
    }

    fn rebuild(&self, from: &CrashState, fates: Vec<(u64, Fate)>, size_undone: bool) -> CrashState {
        let mut rng = self.case.rng_indexed(Purpose::PowerLoss, from.index as u64);
        power_loss::build(
            &self.model,
            from.index,
            Shape::Enumerated,
            from.unit_bytes,
            size_undone,
            fates,
            &mut rng,
        )
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), StateShrinkError> {
    std::fs::create_dir_all(to).map_err(io(format!("creating {}", to.display())))?;
    for entry in std::fs::read_dir(from).map_err(io(format!("listing {}", from.display())))? {
        let entry = entry.map_err(io(format!("listing {}", from.display())))?;
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .map_err(io(format!("copying {}", entry.path().display())))?;
        }
    }
    Ok(())
}

/// Shrinks the crash state of `finding` (see the module comment); `on_step` hears each
/// kept change. Works in a scratch directory under `env.work_dir`.
pub fn shrink_state(
    finding: &Finding,
    env: &CycleEnv,
    on_step: &mut dyn FnMut(String),
) -> Result<ShrunkState, StateShrinkError> {
    let case = &finding.case;
    let kind = finding.violation.kind;
    if !case.power_loss {
        return Err(not_applicable("the case has no power loss"));
    }
    if case.recovery_crash || case.corrupt {
        return Err(not_applicable(
            "a crashed recovery or a bit flip is part of the case",
        ));
    }
    if !(case.bit_exact() || case.kill == KillKind::IoError)
        || case.n_generations() > 1
        || case.writer_threads() > 1
    {
        return Err(not_applicable(
            "only single-generation, single-threaded cases whose writer replays exactly (offset kills, not Batched) are rebuilt",
        ));
    }
    if finding
        .violation
        .detail
        .contains("directory entries no fsync covered undone")
    {
        return Err(not_applicable(
            "the state undoes directory entries: no unit fates to shrink",
        ));
    }
    let scratch = env.work_dir.join(format!(
        "state-shrink-{:016x}-{}",
        case.seed,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(io(format!("creating {}", scratch.display())))?;
    let result = shrink_in(finding, env, &scratch, kind, on_step);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn shrink_in(
    finding: &Finding,
    env: &CycleEnv,
    scratch: &Path,
    kind: FindingKind,
    on_step: &mut dyn FnMut(String),
) -> Result<ShrunkState, StateShrinkError> {
    let case = &finding.case;
    let db_dir = scratch.join("db");
    let mut ledger = crate::sweep::run_writer_child(&env.child, case, &db_dir, env.wrong, false)
        .map_err(StateShrinkError::Harness)?;
    let wal_path = db_dir.join(engine::WAL_FILE_NAME);
    let crashed =
        std::fs::read(&wal_path).map_err(io(format!("reading {}", wal_path.display())))?;
    let trace = crate::trace::Trace::read_for(&db_dir)
        .map_err(io(format!("reading the trace of {}", db_dir.display())))?;
    let model = DiskModel::build(&trace, engine::WAL_FILE_NAME, crashed.clone());
    let states = power_loss::draw_states(&model, case, power_loss::crash_states_per_crash());
    let Some(start) = states
        .into_iter()
        .find(|s| finding.violation.detail.starts_with(&s.describe(&model)))
    else {
        return Err(not_applicable(
            "no drawn crash state of the rerun case is the one the finding names (was --crash-states lower than the state's index?)",
        ));
    };
    ledger.mark_required(case.mode, true);
    let workload = Workload::for_case(case);
    let header = engine::wal::HEADER_LEN as u64;
    let layout = workload.record_layout_from(header);
    let crashed_ctx = Crashed {
        case,
        env,
        written: crate::workload::spans_in_image(&crashed, header, &layout),
        crash_len_bytes: crate::seam::written_end_bytes(&crashed),
        db_dir,
        scratch: scratch.to_path_buf(),
        model,
        workload,
        ledger,
    };
    let mut checks = 1;
    let mut detail = match crashed_ctx.check(&start)? {
        Err(v) if v.kind == kind => v.detail,
        Err(v) => {
            return Err(not_applicable(format!(
                "the state alone gives {} now, not {kind}",
                v.kind
            )))
        }
        Ok(()) => return Err(not_applicable("the state alone is clean")),
    };
    let mut best = start.clone();
    loop {
        let mut changed = false;
        // Changes, smallest first, each applied to the best state so far: the size kept,
        // each unit kept, each mixed unit lost.
        let mut changes: Vec<(Option<usize>, Fate)> = vec![(None, Fate::Kept)];
        changes.extend((0..best.fates.len()).map(|i| (Some(i), Fate::Kept)));
        changes.extend((0..best.fates.len()).map(|i| (Some(i), Fate::Lost)));
        for (unit, to) in changes {
            let (mut fates, mut size_undone) = (best.fates.clone(), best.size_undone);
            let what = match unit {
                None if size_undone => {
                    size_undone = false;
                    "size kept".to_string()
                }
                None => continue,
                Some(i) => {
                    let (start_bytes, fate) = fates[i];
                    let applies = match to {
                        Fate::Kept => fate != Fate::Kept,
                        _ => matches!(fate, Fate::Garbage | Fate::Torn { .. }),
                    };
                    if !applies {
                        continue;
                    }
                    fates[i].1 = to;
                    format!("[{start_bytes}..) {to} (was {fate})")
                }
            };
            if checks >= STATE_SHRINK_CHECKS_MAX {
                on_step(format!("budget of {STATE_SHRINK_CHECKS_MAX} checks spent"));
                break;
            }
            let candidate = crashed_ctx.rebuild(&best, fates, size_undone);
            checks += 1;
            if let Err(v) = crashed_ctx.check(&candidate)? {
                if v.kind == kind {
                    on_step(format!(
                        "still {kind} with {what}: {} units not kept",
                        non_kept(&candidate)
                    ));
                    detail = v.detail;
                    best = candidate;
                    changed = true;
                }
            }
        }
        if !changed || checks >= STATE_SHRINK_CHECKS_MAX {
            break;
        }
    }
    let model = &crashed_ctx.model;
    on_step(format!(
        "minimal state after {checks} checks: {}",
        best.describe(model)
    ));
    Ok(ShrunkState {
        kind,
        before: start.describe(model),
        after: best.describe(model),
        non_kept_before: non_kept(&start),
        non_kept_after: non_kept(&best),
        mixed_before: mixed(&start),
        mixed_after: mixed(&best),
        checks,
        detail,
    })
}
