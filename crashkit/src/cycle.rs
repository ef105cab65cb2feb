//! One crash cycle, parent side: spawn the writer, kill it as planned, damage the WAL if
//! the case says so, optionally crash a first recovery, then run the checker.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::case::{Case, KillKind, Purpose};
use crate::checker::{self, Base, CheckInput};
use crate::child::{child_args, Role};
use crate::coverage::{self, KillSite};
use crate::crash_state::DiskModel;
use crate::finding::{Finding, FindingKind, Violation};
use crate::oracle::Ledger;
use crate::plan::FaultPlan;
use crate::protocol::{Event, ParseError};
use crate::side_files::SideFiles;
use crate::workload::Workload;
use crate::wrong_engine::WrongEngine;

/// How often a watch kill polls the WAL's length.
const WATCH_POLL_US: u64 = 10;
/// Timer slack of the polling thread, so that its short sleeps stay short.
const WATCH_TIMER_SLACK_NS: libc::c_ulong = 1_000;

/// The executable (and leading arguments) that runs `crashkit::child::main_from_args`.
#[derive(Debug, Clone)]
pub struct ChildCommand {
    pub program: PathBuf,
    pub args_prefix: Vec<String>,
}

impl ChildCommand {
    /// This executable's hidden `child` subcommand (what `torture` uses).
    pub fn current_exe_subcommand(subcommand: &str) -> std::io::Result<ChildCommand> {
        Ok(ChildCommand {
            program: std::env::current_exe()?,
            args_prefix: vec![subcommand.to_string()],
        })
    }

    /// A program that is the child itself (no leading arguments), such as the tests'
    /// `crashkit-child` binary.
    pub fn program(program: impl Into<PathBuf>) -> ChildCommand {
        ChildCommand {
            program: program.into(),
            args_prefix: Vec::new(),
        }
    }
}

/// Where scratch directories for cycles go by default: `/dev/shm` when it is a writable
/// tmpfs with room (`space::SHM_MIN_FREE_BYTES`: a stock container's is 64 MiB), else the
/// system temporary directory. The checker never relies on the medium (a SIGKILL keeps
/// the page cache, and power loss is simulated by the harness), so a RAM disk changes no
/// verdict; it only makes fdatasync free, which triples cycles per second.
pub fn default_work_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let writable = shm.is_dir()
        && crate::space::free_bytes(shm).is_ok_and(|b| b >= crate::space::SHM_MIN_FREE_BYTES)
        && tempfile::Builder::new()
            .prefix(".torture-probe-")
            .tempfile_in(shm)
            .is_ok();
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Finding directories a process keeps unless [`set_kept_findings_max`] says otherwise.
pub const DEFAULT_KEPT_FINDINGS_MAX: usize = 32;

static KEPT_FINDINGS_MAX: AtomicUsize = AtomicUsize::new(DEFAULT_KEPT_FINDINGS_MAX);
static KEPT_FINDINGS: AtomicUsize = AtomicUsize::new(0);

/// Bounds how many findings of this process keep their data directory under the
/// artifacts folder: an eight-hour campaign against a badly broken engine finds on every
/// cycle, and each kept directory holds a database and its crash states. Later findings are
/// still reported (with their reproduce line, which rebuilds the directory), but keep
/// nothing. Returns the previous bound.
pub fn set_kept_findings_max(n: usize) -> usize {
    KEPT_FINDINGS_MAX.swap(n, Ordering::Relaxed)
}

/// Takes one of the kept-directory slots; `false` once [`set_kept_findings_max`]'s bound
/// is reached.
fn take_kept_finding_slot() -> bool {
    let max = KEPT_FINDINGS_MAX.load(Ordering::Relaxed);
    KEPT_FINDINGS
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// Where cycles run and where findings go.
#[derive(Debug, Clone)]
pub struct CycleEnv {
    /// Scratch space; each cycle uses and removes its own subdirectory.
    pub work_dir: PathBuf,
    /// Findings keep their data here.
    pub artifacts_dir: PathBuf,
    pub child: ChildCommand,
    /// Self-test only: simulate a wrong engine.
    pub wrong: Option<WrongEngine>,
}

impl CycleEnv {
    /// Scratch in `<root>/work`, artifacts in `<root>/artifacts`, children run by `child`,
    /// the real engine.
    pub fn under(root: &Path, child: ChildCommand) -> CycleEnv {
        CycleEnv {
            work_dir: root.join("work"),
            artifacts_dir: root.join("artifacts"),
            child,
            wrong: None,
        }
    }
}

/// The harness itself failed (not the engine): exit code 3 territory.
#[derive(Debug)]
#[non_exhaustive]
pub enum HarnessError {
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    Io {
        context: String,
        source: std::io::Error,
    },
    Protocol(ParseError),
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::Spawn { program, source } => {
                write!(f, "cannot start child {}: {source}", program.display())
            }
            HarnessError::Io { context, source } => {
                write!(f, "I/O error while {context}: {source}")
            }
            HarnessError::Protocol(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HarnessError {}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

/// How the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChildEnd {
    /// The planned SIGKILL.
    Killed,
    /// The workload ended before the kill point.
    Ended,
    /// Anything else (a finding).
    Abnormal,
}

/// The result of one cycle.
#[derive(Debug, Clone)]
pub struct CycleOutcome {
    pub case: Case,
    pub end: ChildEnd,
    pub kill_site: Option<KillSite>,
    /// The recovered prefix length, on a clean verdict.
    pub recovered_n: Option<usize>,
    pub acked: usize,
    /// Whether the writer saw a failed commit, flush or close (io-error faults).
    pub saw_error: bool,
    /// Whether a bit flip in committed history was checked (needs two whole records).
    pub corrupted: bool,
    /// Distinct legal crash states recovered and checked (power-loss cycles; a plain
    /// kill's state is not counted).
    pub crash_states_checked: u64,
    /// Of those, states in which bytes were lost in the middle of the unsynced bytes
    /// while later new bytes reached the disk (docs/faults.md P5).
    pub crash_states_damaged_in_middle: u64,
    /// Each checked crash state as its finding would name it (which units kept, lost,
    /// zeroed, torn or garbage; size undone or not): a pure function of the seed and the
    /// trace, so a replay of the case lists the same states.
    pub crash_state_descriptions: Vec<String>,
    pub finding: Option<Finding>,
    pub elapsed: Duration,
}

struct ChildRun {
    ledger: Ledger,
    status: std::process::ExitStatus,
    killed_by_parent: bool,
    stderr_path: PathBuf,
}

fn run_child(
    env: &CycleEnv,
    role: Role,
    case: &Case,
    db_dir: &Path,
    scratch: &Path,
    plan: &FaultPlan,
) -> Result<ChildRun, HarnessError> {
    let stderr_path = scratch.join(format!("{}.stderr", role.name()));
    let stderr =
        std::fs::File::create(&stderr_path).map_err(io_err("creating the child's stderr file"))?;
    let mut child = Command::new(&env.child.program)
        .args(&env.child.args_prefix)
        .args(child_args(role, db_dir, case))
        .args(
            match env.wrong.filter(|w| match role {
                Role::Writer => w.acts_in_writer(),
                Role::Recoverer => w.acts_in_recoverer(),
            }) {
                Some(w) => vec![
                    "--wrong".to_string(),
                    serde_json::to_string(&w).expect("a wrong engine serializes"),
                ],
                None => Vec::new(),
            },
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        // Its own process group: a Ctrl-C in the terminal stops the parent's campaign
        // (which finishes its cycles), and must not kill children with SIGINT, which
        // would look like a child crash.
        .process_group(0)
        .spawn()
        .map_err(|source| HarnessError::Spawn {
            program: env.child.program.clone(),
            source,
        })?;
    let pid = child.id() as libc::pid_t;
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    // The killer thread never outlives the unreaped child (it is joined before `wait`),
    // so the pid it signals cannot have been reused.
    let killer = (role == Role::Writer)
        .then(|| match case.kill {
            KillKind::Watch => plan.kill_offset_bytes.map(|k| {
                let (stop, killed, wal) = (
                    stop.clone(),
                    killed.clone(),
                    db_dir.join(engine::WAL_FILE_NAME),
                );
                std::thread::spawn(move || {
                    // A whole small workload takes a few milliseconds; the default 50 us
                    // timer slack would let most of it pass between two polls.
                    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
                    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, WATCH_TIMER_SLACK_NS) };
                    while !stop.load(Ordering::Acquire) {
                        if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) >= k {
                            // SAFETY: kill(2) has no memory-safety preconditions.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                            killed.store(true, Ordering::Release);
                            return;
                        }
                        std::thread::sleep(Duration::from_micros(WATCH_POLL_US));
                    }
                })
            }),
            KillKind::Time => plan.delay_us.map(|us| {
                let (stop, killed) = (stop.clone(), killed.clone());
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_micros(us);
                    while !stop.load(Ordering::Acquire) {
                        let now = Instant::now();
                        if now >= deadline {
                            // SAFETY: as above.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                            killed.store(true, Ordering::Release);
                            return;
                        }
                        std::thread::sleep((deadline - now).min(Duration::from_micros(500)));
                    }
                })
            }),
            KillKind::Offset | KillKind::IoError => None,
        })
        .flatten();
    let mut ledger = Ledger::default();
    let mut protocol_error = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(io_err("reading the child's events"))?;
            match Event::parse(&line) {
                Ok(event) => ledger.record(event),
                Err(e) => {
                    protocol_error.get_or_insert(e);
                }
            }
        }
    }
    stop.store(true, Ordering::Release);
    if let Some(k) = killer {
        let _ = k.join();
    }
    let status = child.wait().map_err(io_err("waiting for the child"))?;
    if let Some(e) = protocol_error {
        return Err(HarnessError::Protocol(e));
    }
    Ok(ChildRun {
        ledger,
        status,
        killed_by_parent: killed.load(Ordering::Acquire),
        stderr_path,
    })
}

fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: String = text
        .chars()
        .rev()
        .take(600)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    tail.trim().to_string()
}

/// Classifies a child's exit. `Err` is a finding.
fn classify_exit(
    run: &ChildRun,
    self_kill_planned: bool,
    role: Role,
) -> Result<ChildEnd, Violation> {
    let status = run.status;
    if let Some(sig) = status.signal() {
        if sig == libc::SIGKILL && (self_kill_planned || run.killed_by_parent) {
            return Ok(ChildEnd::Killed);
        }
        // The harness never sends these; they come from outside: a Ctrl-C (or a shutdown)
        // sent to the harness's process group can reach a child spawned in that instant,
        // before it moves to its own group. Its default action ends the process as a kill
        // does (the page cache keeps what it wrote), so the recovery is checked like any
        // other crash, not reported as a crashed child.
        if sig == libc::SIGINT || sig == libc::SIGTERM {
            return Ok(ChildEnd::Killed);
        }
        return Err(Violation::new(
            FindingKind::ChildCrashed,
            format!(
                "the {} child died of signal {sig}{}; stderr: {}",
                role.name(),
                if status.core_dumped() {
                    " (core dumped)"
                } else {
                    ""
                },
                stderr_tail(&run.stderr_path)
            ),
        ));
    }
    let finished = match role {
        Role::Writer => run.ledger.done,
        Role::Recoverer => run.ledger.opened,
    };
    if status.code() == Some(0) && finished {
        return Ok(ChildEnd::Ended);
    }
    let kind = if run.ledger.open_error.is_some() && role == Role::Recoverer {
        FindingKind::RecoveryFailed
    } else {
        FindingKind::UnexpectedExit
    };
    Err(Violation::new(
        kind,
        format!(
            "the {} child exited with {status} ({}); open error: {}; stderr: {}",
            role.name(),
            if finished {
                "after finishing"
            } else {
                "without finishing"
            },
            run.ledger.open_error.as_deref().unwrap_or("none"),
            stderr_tail(&run.stderr_path)
        ),
    ))
}

/// Runs one crash cycle of `case`: one crash-recover-check generation per
/// `case.generations`, each continuing on the database the previous one left.
pub fn run_cycle(case: &Case, env: &CycleEnv) -> Result<CycleOutcome, HarnessError> {
    let started = Instant::now();
    let scratch = env
        .work_dir
        .join(format!("cycle-{:016x}-{}", case.seed, std::process::id()));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .map_err(io_err(format!("removing {}", scratch.display())))?;
    }
    std::fs::create_dir_all(&scratch).map_err(io_err(format!("creating {}", scratch.display())))?;
    let mut outcome = CycleOutcome {
        case: *case,
        end: ChildEnd::Abnormal,
        kill_site: None,
        recovered_n: None,
        acked: 0,
        saw_error: false,
        corrupted: false,
        crash_states_checked: 0,
        crash_states_damaged_in_middle: 0,
        crash_state_descriptions: Vec::new(),
        finding: None,
        elapsed: Duration::ZERO,
    };
    let mut base = Base::empty();
    for g in 0..case.n_generations() {
        match run_generation(case, g, env, &scratch, &base, &mut outcome)? {
            Ok(next) => base = next,
            Err((mut v, plan, crashed_wal)) => {
                if case.n_generations() > 1 {
                    v.detail = format!(
                        "generation {} of {}: {}",
                        g + 1,
                        case.n_generations(),
                        v.detail
                    );
                }
                let dir = if take_kept_finding_slot() {
                    Some(keep_artifacts(env, case, &v, &scratch, &crashed_wal)?)
                } else {
                    None
                };
                let inspect = dir.as_ref().map(|dir| {
                    format!(
                        "cargo run --release -p torture -- inspect {}",
                        dir.join("wal.log.crashed").display()
                    )
                });
                outcome.finding = Some(Finding {
                    violation: v,
                    case: *case,
                    plan,
                    kill_site: outcome.kill_site,
                    artifacts_dir: dir,
                    repro: case.repro_command(),
                    inspect,
                });
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// A generation's verdict: the base for the next one, or the violation with the plan and
/// the crashed WAL image.
type GenerationVerdict = Result<Base, (Violation, FaultPlan, Vec<u8>)>;

fn run_generation(
    top: &Case,
    g: usize,
    env: &CycleEnv,
    scratch: &Path,
    base: &Base,
    outcome: &mut CycleOutcome,
) -> Result<GenerationVerdict, HarnessError> {
    let case = &top.generation(g);
    // A wrong engine that acts in the writer goes to the child on its command line; the
    // checker never learns of it.
    let engine = WrongEngine::under_test(env.wrong);
    let workload = Workload::for_case(case);
    let mut plan = FaultPlan::derive(case, &workload);
    // The plan counts WAL bytes as if only the header preceded this generation's records.
    let shift = base.wal_len_bytes - engine::wal::HEADER_LEN as u64;
    plan.kill_offset_bytes = plan.kill_offset_bytes.map(|k| k + shift);
    let layout = workload.record_layout_from(base.wal_len_bytes);
    let db_dir = scratch.join("db");
    let wal_path = db_dir.join(engine::WAL_FILE_NAME);

    // A trace left by an earlier generation's writer must not pass for this one's (the
    // child may die before it creates its own).
    let trace_path = crate::trace::trace_path(&db_dir);
    match std::fs::remove_file(&trace_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_err(format!("removing {}", trace_path.display()))(e))
        }
        _ => {}
    }
    let writer = run_child(env, Role::Writer, case, &db_dir, scratch, &plan)?;
    let mut ledger = writer.ledger.clone();
    outcome.acked += ledger.attempts.iter().filter(|a| a.ack.is_some()).count();
    outcome.saw_error |= ledger.saw_error || ledger.close_error.is_some();
    let crashed_wal = std::fs::read(&wal_path).unwrap_or_default();
    // Where the writer stopped, not the file length: the engine preallocates its WAL, so
    // zeros it never wrote follow the log.
    let crash_len = crate::seam::written_end_bytes(&crashed_wal);
    if case.kill != KillKind::IoError {
        if case.layout_known() {
            let offset = if case.kill == KillKind::Offset {
                plan.kill_offset_bytes.unwrap_or(crash_len)
            } else {
                crash_len
            };
            outcome.kill_site = Some(coverage::classify(&layout, offset));
        } else if crashed_wal.len() >= engine::wal::HEADER_LEN {
            outcome.kill_site = Some(coverage::classify_image(&crashed_wal[..crash_len as usize]));
        }
    }
    match classify_exit(&writer, case.kill == KillKind::Offset, Role::Writer) {
        Ok(end) => outcome.end = end,
        Err(v) => return Ok(Err((v, plan, crashed_wal))),
    }

    // What the writer really wrote (exact record lengths; the layout is a prediction).
    let written = crate::workload::spans_in_image(&crashed_wal, base.wal_len_bytes, &layout);
    ledger.mark_required(case.mode, plan.power_loss.is_some());
    let expected_end_for = |first_damaged: u64| {
        (crash_len >= base.wal_len_bytes && case.layout_known()).then(|| {
            coverage::boundary_at_or_before(
                &written,
                first_damaged.min(crash_len),
                base.wal_len_bytes,
            )
        })
    };
    let mut first_damaged = crash_len;
    let mut primary_state = None;
    if let (Some(power_loss), true) = (plan.power_loss, wal_path.exists()) {
        let trace = crate::trace::Trace::read_for(&db_dir).map_err(io_err(format!(
            "reading the I/O trace of {}",
            db_dir.display()
        )))?;
        let model = DiskModel::build(&trace, engine::WAL_FILE_NAME, crashed_wal.clone());
        let states = crate::power_loss::draw_states(&model, case, power_loss.crash_states);
        let side = SideFiles::build(&trace, &db_dir, case, power_loss.crash_states).map_err(
            io_err(format!("reading the files beside {}", wal_path.display())),
        )?;
        // Every state but the first is recovered and checked on its own copy of the
        // crashed directory; the first goes on in place (recovery crash, bit flip, next
        // generation).
        for state in states.iter().skip(1) {
            let dir = scratch.join(format!("state-{}", state.index));
            lay_out_state(&db_dir, &dir, &state.image, &[])?;
            let beside = lay_out_side_files(&side, &dir, state.index)?;
            let input = CheckInput {
                case,
                workload: &workload,
                ledger: &ledger,
                crashed_wal: &state.image,
                expected_valid_end_bytes: expected_end_for(state.first_changed_bytes),
                corrupt_at: None,
                reference_state: None,
                base,
                layout: &written,
                expect_exact_torn_bytes: true,
                engine: engine.as_ref(),
            };
            let description = format!("{}{beside}", state.describe(&model));
            if let Err(v) =
                check_laid_out_state(&dir, &input, description, state.damage_in_middle, outcome)
            {
                return Ok(Err((v, plan, state.image.clone())));
            }
        }
        // Directory entries no directory fsync covered (P3) may vanish too: one more
        // state, the first one's bytes with every such entry undone.
        let undos = crate::crash_state::uncovered_entries(&trace);
        if let (false, Some(state)) = (undos.is_empty(), states.first()) {
            let dir = scratch.join("state-entries");
            let mut undone = lay_out_state(&db_dir, &dir, &state.image, &undos)?;
            if !undone.is_empty() {
                undone.push_str(&lay_out_side_files(&side, &dir, state.index)?);
            }
            if undone.is_empty() {
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                // A log whose creation was undone is gone: nothing to read, no end to expect
                // (a correct engine acknowledged nothing before its creation was durable).
                let wal_kept = dir.join(engine::WAL_FILE_NAME).exists();
                let input = CheckInput {
                    case,
                    workload: &workload,
                    ledger: &ledger,
                    crashed_wal: if wal_kept { &state.image } else { &[] },
                    expected_valid_end_bytes: expected_end_for(state.first_changed_bytes)
                        .filter(|_| wal_kept),
                    corrupt_at: None,
                    reference_state: None,
                    base,
                    layout: &written,
                    expect_exact_torn_bytes: true,
                    engine: engine.as_ref(),
                };
                let description = format!("{}{undone}", state.describe(&model));
                // Counted as a state, not as damage in the middle: its bytes are state 0's.
                if let Err(v) = check_laid_out_state(&dir, &input, description, false, outcome) {
                    return Ok(Err((v, plan, state.image.clone())));
                }
            }
        }
        if let Some(state) = states.into_iter().next() {
            std::fs::write(&wal_path, &state.image).map_err(io_err(format!(
                "writing crash state {} to {}",
                state.index,
                wal_path.display()
            )))?;
            let beside = lay_out_side_files(&side, &db_dir, state.index)?;
            first_damaged = state.first_changed_bytes.min(crash_len);
            outcome.crash_states_checked += 1;
            outcome.crash_states_damaged_in_middle += u64::from(state.damage_in_middle);
            let description = format!("{}{beside}", state.describe(&model));
            outcome.crash_state_descriptions.push(description.clone());
            primary_state = Some((description, state.image));
        }
    }
    let mut reference_state = None;
    if plan.recovery_kill_call.is_some() && db_dir.exists() {
        // An uninterrupted recovery of a copy is the reference for R7.
        let reference_dir = scratch.join("reference");
        let _ = std::fs::remove_dir_all(&reference_dir);
        copy_tree(&db_dir, &reference_dir)?;
        match engine::Database::open(&reference_dir) {
            Ok(db) => reference_state = Some(checker::snapshot(&db)),
            Err(e) => {
                let v = Violation::new(
                    FindingKind::RecoveryFailed,
                    format!("recovering a copy of the crashed database failed: {e}"),
                );
                return Ok(Err((v, plan, crashed_wal)));
            }
        }
    }
    if plan.recovery_kill_call.is_some() {
        let recoverer = run_child(env, Role::Recoverer, case, &db_dir, scratch, &plan)?;
        if let Err(v) = classify_exit(&recoverer, true, Role::Recoverer) {
            return Ok(Err((v, plan, crashed_wal)));
        }
    }
    let (primary_state, damaged_image) = match primary_state {
        Some((describe, image)) => (Some(describe), image),
        None => (None, crashed_wal.clone()),
    };
    let expected_valid_end_bytes = expected_end_for(first_damaged);
    let corrupt_at = match (case.corrupt, expected_valid_end_bytes) {
        (true, Some(end)) => {
            let proved = crate::corrupt::proved_synced_end_bytes(&damaged_image, end);
            crate::corrupt::pick_target(&written, end, proved, &mut case.rng(Purpose::Corrupt))
        }
        _ => None,
    };
    outcome.corrupted |= corrupt_at.is_some();
    let input = CheckInput {
        case,
        workload: &workload,
        ledger: &ledger,
        crashed_wal: &damaged_image,
        expected_valid_end_bytes,
        corrupt_at,
        reference_state: reference_state.as_ref(),
        base,
        layout: &written,
        expect_exact_torn_bytes: plan.recovery_kill_call.is_none(),
        engine: engine.as_ref(),
    };
    if plan.power_loss.is_some() && plan.recovery_kill_call.is_some() {
        let states_input = CheckInput {
            corrupt_at: None,
            ..input
        };
        if let Err(found) = check_recovery_crash_states(
            &db_dir,
            scratch,
            &states_input,
            plan.power_loss.map_or(1, |p| p.crash_states),
            outcome,
        )? {
            return Ok(Err((found.0, plan, found.1)));
        }
    }
    Ok(match checker::check(&db_dir, &input) {
        Ok(report) => {
            outcome.recovered_n = Some(report.n);
            Ok(report.next)
        }
        Err(mut v) => {
            if let Some(state) = primary_state {
                v.detail = format!("{state}: {}", v.detail);
            }
            Err((v, plan, damaged_image))
        }
    })
}

/// Writes the side files' crash states number `index` into `dir` (P7); returns the
/// description suffix of what changed.
fn lay_out_side_files(side: &SideFiles, dir: &Path, index: usize) -> Result<String, HarnessError> {
    side.lay_out(dir, index).map_err(io_err(format!(
        "writing the files beside the log in {}",
        dir.display()
    )))
}

/// Lays out a crash state on its own copy of the crashed directory: `db_dir` copied to
/// `dir`, `wal.log` replaced by `image`, and the directory entries in `undos` undone.
/// Returns the description of what the undos changed (empty when nothing did).
fn lay_out_state(
    db_dir: &Path,
    dir: &Path,
    image: &[u8],
    undos: &[crate::crash_state::EntryUndo],
) -> Result<String, HarnessError> {
    let _ = std::fs::remove_dir_all(dir);
    copy_tree(db_dir, dir)?;
    std::fs::write(dir.join(engine::WAL_FILE_NAME), image).map_err(io_err(format!(
        "writing the crash state in {}",
        dir.display()
    )))?;
    if undos.is_empty() {
        return Ok(String::new());
    }
    let changed = crate::crash_state::apply_entry_undos(db_dir, dir, undos).map_err(io_err(
        format!("undoing directory entries in {}", dir.display()),
    ))?;
    Ok(if changed.is_empty() {
        String::new()
    } else {
        format!(
            ", and directory entries no fsync covered undone: {}",
            changed.join("; ")
        )
    })
}

/// Recovers and checks the crash state laid out in `dir`, counts it in `outcome` and
/// removes `dir` when it is clean. A violation's detail starts with `description`.
fn check_laid_out_state(
    dir: &Path,
    input: &CheckInput<'_>,
    description: String,
    damaged_in_middle: bool,
    outcome: &mut CycleOutcome,
) -> Result<(), Violation> {
    outcome.crash_states_checked += 1;
    outcome.crash_states_damaged_in_middle += u64::from(damaged_in_middle);
    outcome.crash_state_descriptions.push(description.clone());
    if let Err(mut v) = checker::check(dir, input) {
        v.detail = format!("{description}: {}", v.detail);
        return Err(v);
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// A power loss while recovery ran (docs/faults.md P4, P6): the legal crash states of the
/// interrupted recovery's own trace (its cut of a torn tail before or after the sync that
/// makes the cut durable, its sidecar, its directory entries), each recovered on its own
/// copy and checked like the crash it came from, against an uninterrupted recovery's state
/// (R7). Returns the violation and the state's WAL image when one fails.
fn check_recovery_crash_states(
    db_dir: &Path,
    scratch: &Path,
    input: &CheckInput<'_>,
    n_states: usize,
    outcome: &mut CycleOutcome,
) -> Result<Result<(), (Violation, Vec<u8>)>, HarnessError> {
    let trace_path = crate::trace::recovery_trace_path(db_dir);
    let trace = crate::trace::Trace::read_path(&trace_path)
        .map_err(io_err(format!("reading {}", trace_path.display())))?;
    let wal_path = db_dir.join(engine::WAL_FILE_NAME);
    let Ok(wal_now) = std::fs::read(&wal_path) else {
        return Ok(Ok(()));
    };
    let model = DiskModel::build(&trace, engine::WAL_FILE_NAME, wal_now);
    let undos = crate::crash_state::uncovered_entries(&trace);
    let sub = crate::faults::power_loss::recovery_states_case(input.case);
    let side = SideFiles::build(&trace, db_dir, &sub, n_states).map_err(io_err(format!(
        "reading the files beside {}",
        wal_path.display()
    )))?;
    if model.uncovered_ops == 0 && undos.is_empty() && side.is_empty() {
        return Ok(Ok(()));
    }
    let states = crate::faults::power_loss::crash_states(&model, &sub, n_states);
    // A recovery killed before it changed the log (while it wrote a sidecar) leaves one
    // log state: the side files' states still get a round each.
    let rounds = if side.is_empty() {
        states.len()
    } else {
        states.len().max(n_states)
    };
    for i in 0..rounds {
        let state = &states[i % states.len()];
        let dir = scratch.join(format!("recovery-state-{i}"));
        // The first state also loses the directory entries recovery's fsyncs did not cover.
        let entries = if i == 0 { &undos[..] } else { &[] };
        let undone = lay_out_state(db_dir, &dir, &state.image, entries)?;
        let beside = lay_out_side_files(&side, &dir, i)?;
        let description = format!(
            "power loss during recovery, {}{undone}{beside}",
            state.describe(&model)
        );
        if let Err(v) =
            check_laid_out_state(&dir, input, description, state.damage_in_middle, outcome)
        {
            return Ok(Err((v, state.image.clone())));
        }
    }
    Ok(Ok(()))
}

/// Moves the cycle's directory under the artifacts folder and saves the crashed WAL image.
fn keep_artifacts(
    env: &CycleEnv,
    case: &Case,
    v: &Violation,
    scratch: &Path,
    crashed_wal: &[u8],
) -> Result<PathBuf, HarnessError> {
    let dir = env
        .artifacts_dir
        .join(format!("{}-{:016x}", v.kind, case.seed));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))?;
    }
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    for entry in std::fs::read_dir(scratch).map_err(io_err("listing the cycle directory"))? {
        let entry = entry.map_err(io_err("listing the cycle directory"))?;
        copy_tree(&entry.path(), &dir.join(entry.file_name()))?;
    }
    std::fs::write(dir.join("wal.log.crashed"), crashed_wal)
        .map_err(io_err("saving the crashed WAL image"))?;
    std::fs::write(
        dir.join("case.json"),
        serde_json::to_string_pretty(case).expect("a case serializes"),
    )
    .map_err(io_err("saving case.json"))?;
    Ok(dir)
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), HarnessError> {
    if from.is_dir() {
        std::fs::create_dir_all(to).map_err(io_err(format!("creating {}", to.display())))?;
        for entry in
            std::fs::read_dir(from).map_err(io_err(format!("listing {}", from.display())))?
        {
            let entry = entry.map_err(io_err(format!("listing {}", from.display())))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else {
        std::fs::copy(from, to).map_err(io_err(format!("copying {}", from.display())))?;
    }
    Ok(())
}
