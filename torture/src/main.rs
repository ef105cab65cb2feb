//! `torture`: thin CLI over crashkit. Parses, runs, maps the outcome to an exit code.
//!
//! Exit codes: 0 clean, 1 findings, 2 usage error, 3 harness or environment failure.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod bench;
mod matrix;
mod report;
use crashkit::campaign::{self, CampaignOptions, Frequency, Progress};
use crashkit::case::{parse_seed, Case, KillKind, Limits, ModeName};
use crashkit::cycle::{ChildCommand, CycleEnv};
use crashkit::faults;
use crashkit::workload::WorkloadShape;

pub(crate) const EXIT_CLEAN: u8 = 0;
pub(crate) const EXIT_FINDINGS: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_HARNESS: u8 = 3;

/// The exit codes, shown under every `--help` (docs/recovery-contract.md has the same table).
const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  clean: every cycle recovered correctly (inspect: the WAL reads to a clean end)
  1  findings: a recovery broke the contract (inspect: the WAL is damaged, a torn tail or
     corruption; bench --check: a figure missed its target)
  2  usage error: bad arguments, or a path that does not exist or is not a WAL
  3  harness or environment failure (a child could not start, the work directory is short
     of free space, an I/O error outside the engine): nothing was proven either way";

#[derive(Debug, Parser)]
#[command(
    name = "torture",
    version,
    about = "Crash-torture the engine: kill writers mid-WAL, recover, check against a model",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run crash cycles over all (or the chosen) modes and kill kinds.
    #[command(after_help = EXIT_CODES_HELP)]
    Run(RunArgs),
    /// Rerun one case deterministically (and optionally shrink it).
    #[command(after_help = EXIT_CODES_HELP)]
    Repro(ReproArgs),
    /// Print a WAL record by record, and where and why reading stopped (exit 1 when it
    /// stopped at damage: a torn tail or corruption).
    #[command(after_help = EXIT_CODES_HELP)]
    Inspect(InspectArgs),
    /// Prove the checker can fail: run it against deliberately wrong engines.
    #[command(after_help = EXIT_CODES_HELP)]
    Selftest {
        /// Base seed of the wrong-engine cycles (decimal or 0x hex).
        #[arg(long, value_parser = parse_seed, default_value = "1")]
        seed: u64,
        /// One JSON object (`type` = `selftest`) on stdout instead of the report.
        #[arg(long)]
        json: bool,
        /// Instead: every wrong engine against cases of each fault kind in turn, a table
        /// of the cycles each kind needs to catch each engine (`-`: not within N cases).
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "12")]
        by_fault: Option<u64>,
    },
    /// Run the crash matrix (ci/matrix.toml): every mode x fault x workload profile cell
    /// as a campaign of its own, reported as a table, JSON Lines and JUnit XML (exit 1 when
    /// any cell has a finding).
    #[command(after_help = EXIT_CODES_HELP)]
    Matrix(matrix::MatrixArgs),
    /// The engine's performance checks.
    #[command(after_help = EXIT_CODES_HELP)]
    Bench(bench::BenchArgs),
    /// Merge the JSON Lines of several `torture run --json` outputs into one summary
    /// (exit 1 when any run had findings, 3 when a run never printed its summary).
    #[command(after_help = EXIT_CODES_HELP)]
    Report(report::ReportArgs),
    /// Run one small single-threaded workload once, then recover and check every crash
    /// point of its I/O trace (every operation boundary and every byte of every write),
    /// each crossed with the legal crash states of its unsynced sectors: all combinations
    /// up to --states-per-point, else that many drawn from the seed (exit 1 on findings).
    #[command(after_help = EXIT_CODES_HELP)]
    Sweep(SweepArgs),
    /// Internal: the child writer / recoverer process.
    #[command(hide = true)]
    Child {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    Strict,
    Batched,
    Async,
    All,
}

/// Whether `repro` applies an optional fault. A bare flag means `always`, as with `run`,
/// so the reproduce lines findings print (`--power-loss`) paste as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Toggle {
    Never,
    Always,
}

impl Toggle {
    fn on(self) -> bool {
        self == Toggle::Always
    }
}

/// The kill kinds `run --kill` names: one by its name, or every one for `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kills(Vec<KillKind>);

/// Parses `--kill` of `run`: the names come from the kill kinds themselves, plus `all`.
fn kills_parser() -> impl clap::builder::TypedValueParser<Value = Kills> {
    let names: Vec<&'static str> = KillKind::ALL.iter().map(|k| k.name()).collect();
    let parser = clap::builder::PossibleValuesParser::new(names.into_iter().chain(["all"]));
    clap::builder::TypedValueParser::map(parser, |name: String| {
        Kills(match name.parse::<KillKind>() {
            Ok(kill) => vec![kill],
            Err(_) => KillKind::ALL.to_vec(),
        })
    })
}

#[derive(Debug, Args)]
struct WorkloadArgs {
    /// What kind of workload each seed generates: `mixed` (5-40 txns, colliding keys,
    /// values up to 64 KiB), `delete-heavy`, `many-keys` (4096 keys per namespace),
    /// `long-txns` (32-256 ops per txn) or `big-log` (values up to 16 MiB, logs of several
    /// MiB).
    #[arg(long, value_enum, default_value_t = WorkloadShape::Mixed)]
    shape: WorkloadShape,
    /// Drop the first N transactions of each workload (before --txns-max).
    #[arg(long)]
    txns_skip: Option<usize>,
    /// Keep only the first N transactions of each workload (after --txns-skip).
    #[arg(long)]
    txns_max: Option<usize>,
    /// Then drop the transactions whose bit is set in MASK (decimal or 0x hex; bit i: the
    /// i-th transaction kept so far), as shrunk cases print it.
    #[arg(long, value_name = "MASK", value_parser = parse_seed)]
    txns_drop: Option<u64>,
    /// Then drop the operations whose bit is set in MASK (decimal or 0x hex; bit i: the
    /// i-th operation of the workload), as shrunk cases print it.
    #[arg(long, value_name = "MASK", value_parser = parse_seed)]
    ops_drop: Option<u64>,
    /// Keep only the first N operations of each transaction.
    #[arg(long)]
    ops_max: Option<usize>,
    /// Truncate string and byte values to N bytes.
    #[arg(long)]
    value_len_max: Option<usize>,
}

impl WorkloadArgs {
    fn limits(&self) -> Limits {
        Limits {
            txns_skip: self.txns_skip,
            txns_max: self.txns_max,
            txns_drop: self.txns_drop,
            ops_drop: self.ops_drop,
            ops_max: self.ops_max,
            value_len_max: self.value_len_max,
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// How long to run, e.g. 30s, 5m, 1h (default 30s unless --cycles is given); more
    /// than zero.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// How many cycles to run (of this shard), at least 1; with --duration, whichever
    /// ends first.
    #[arg(long, value_parser = parse_count::<u64>)]
    cycles: Option<u64>,
    /// Parallel child workers, at least 1.
    #[arg(long, default_value_t = 2, value_parser = parse_count::<usize>)]
    jobs: usize,
    /// Base seed (decimal or 0x hex); each cycle's seed derives from it and its index.
    #[arg(long, value_parser = parse_seed)]
    seed: Option<u64>,
    /// Durability mode the writers open the database with; `all` rotates through the three.
    #[arg(long, value_enum, default_value_t = ModeArg::All)]
    mode: ModeArg,
    /// How writers are stopped: `offset` (the writer SIGKILLs itself after exactly K WAL
    /// bytes), `watch` (SIGKILL once wal.log reaches K bytes), `time` (SIGKILL after a
    /// random delay), `io-error` (the n-th write or fsync fails); `all` rotates.
    #[arg(long, value_parser = kills_parser(), default_value = "all")]
    kill: Kills,
    /// Damage the unsynced WAL after the kill, as a power loss could (a bare flag means
    /// `always`).
    #[arg(long = faults::power_loss::FLAG, value_enum, default_value_t = Frequency::Sometimes, num_args = 0..=1, default_missing_value = "always")]
    power_loss: Frequency,
    /// Legal crash states built and checked from each power-loss crash's I/O trace (at
    /// least 1; state i is the same whatever the count, so a finding in state i replays with
    /// any count above i).
    #[arg(long, default_value_t = crashkit::power_loss::DEFAULT_STATES_PER_CRASH, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u16).range(1..), usize::from))]
    crash_states: usize,
    /// Kill a first recovery attempt, then recover again (a bare flag means `always`).
    #[arg(long = faults::recovery_crash::FLAG, value_enum, default_value_t = Frequency::Sometimes, num_args = 0..=1, default_missing_value = "always")]
    recovery_crash: Frequency,
    /// Flip a bit in committed history before recovery; it must be refused (a bare flag
    /// means `always`).
    #[arg(long = faults::corrupt::FLAG, value_enum, default_value_t = Frequency::Sometimes, num_args = 0..=1, default_missing_value = "always")]
    corrupt: Frequency,
    /// Each cycle's writer commits from 1..=N threads at once (io-error cycles use one).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=8))]
    threads: u8,
    /// Each cycle runs 1..=N crash-recover-check generations on one database.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=8))]
    generations: u8,
    /// Where findings keep their data directories.
    #[arg(long, default_value = "artifacts")]
    artifacts: PathBuf,
    /// Keep the data directories of at most N findings (later findings are still reported
    /// with their reproduce line, which rebuilds the directory): bounds the disk a long
    /// campaign against a broken engine can fill.
    #[arg(long, default_value_t = crashkit::cycle::DEFAULT_KEPT_FINDINGS_MAX)]
    keep_findings: usize,
    /// Scratch directory for cycles (default: a fresh temporary directory, on /dev/shm
    /// when it has at least 256 MiB free, else in the system temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Stop with exit 3 when the work directory has less free space than this, checked
    /// before the run and before every cycle (0: never check). A full disk would
    /// otherwise surface as a `recovery-failed` finding.
    #[arg(long, default_value_t = 64)]
    min_free_mib: u64,
    /// When stderr is not a terminal (no progress bar), print a line with the cycles,
    /// findings and elapsed time this often (0: never).
    #[arg(long, default_value_t = 10)]
    heartbeat_secs: u64,
    /// JSON Lines on stdout: begin, finding and summary objects.
    #[arg(long)]
    json: bool,
    /// Run only the slice i of n of the seed space, e.g. 0/4.
    #[arg(long, value_parser = parse_shard, default_value = "0/1")]
    shard: (u64, u64),
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Self-test only: run the campaign against a deliberately wrong engine (its
    /// kebab-case name, e.g. skips-dir-sync), to time how soon default settings catch it.
    #[arg(long, hide = true, value_parser = parse_any_wrong_engine)]
    wrong_engine: Option<crashkit::wrong_engine::WrongEngine>,
}

fn parse_any_wrong_engine(s: &str) -> Result<crashkit::wrong_engine::WrongEngine, String> {
    serde_json::from_value(s.into()).map_err(|e| format!("unknown wrong engine {s:?}: {e}"))
}

#[derive(Debug, Args)]
struct ReproArgs {
    /// The cycle seed printed with the finding.
    #[arg(long, value_parser = parse_seed)]
    seed: u64,
    /// Durability mode: strict, batched or async.
    #[arg(long, default_value = "strict")]
    mode: ModeName,
    /// Kill kind: offset, watch, time or io-error (see `torture run --help`).
    #[arg(long, default_value = "offset")]
    kill: KillKind,
    /// Damage the unsynced WAL after the kill, as a power loss could. A bare flag means
    /// `always` (the spelling reproduce lines print, and the same as `run`'s).
    #[arg(long = faults::power_loss::FLAG, value_enum, default_value_t = Toggle::Never, num_args = 0..=1, default_missing_value = "always")]
    power_loss: Toggle,
    /// Legal crash states built and checked from each power-loss crash's I/O trace (at
    /// least 1; state i is the same whatever the count, so a finding in state i replays with
    /// any count above i).
    #[arg(long, default_value_t = crashkit::power_loss::DEFAULT_STATES_PER_CRASH, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u16).range(1..), usize::from))]
    crash_states: usize,
    /// Kill a first recovery attempt, then recover again (a bare flag means `always`).
    #[arg(long = faults::recovery_crash::FLAG, value_enum, default_value_t = Toggle::Never, num_args = 0..=1, default_missing_value = "always")]
    recovery_crash: Toggle,
    /// Flip a bit in committed history before recovery (a bare flag means `always`).
    #[arg(long = faults::corrupt::FLAG, value_enum, default_value_t = Toggle::Never, num_args = 0..=1, default_missing_value = "always")]
    corrupt: Toggle,
    /// Writer threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    threads: u8,
    /// Crash-recover-check generations on one database.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    generations: u8,
    /// Kill at this WAL offset instead of the derived one (offset and watch kills).
    #[arg(long)]
    kill_offset: Option<u64>,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Rerun up to N times until the finding shows (for timing-dependent cases).
    #[arg(long, default_value_t = 1)]
    attempts: u32,
    /// Minimize the failing case; every step is a real crash cycle.
    #[arg(long)]
    shrink: bool,
    /// Append the (shrunk) failing case to this regression list.
    #[arg(long)]
    save_regression: Option<PathBuf>,
    /// Where a finding keeps its data directory and crashed WAL.
    #[arg(long, default_value = "artifacts")]
    artifacts: PathBuf,
    /// One JSON object on stdout: `type` = `finding` (the finding, as `run --json` prints
    /// it) or `clean` (the case, acknowledged commits, recovered prefix, kill site).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SweepArgs {
    /// Seed of the workload and of the sampled crash states (decimal or 0x hex).
    #[arg(long, value_parser = parse_seed)]
    seed: u64,
    /// Durability mode the writer opens the database with.
    #[arg(long, default_value = "strict")]
    mode: ModeName,
    /// About how many WAL bytes the workload writes: values are capped at an eighth of it
    /// and transactions kept while the predicted log fits (ignored with --txns-max).
    #[arg(long, default_value_t = 16 * 1024, value_parser = parse_count::<u64>)]
    log_bytes: u64,
    /// Crash states per crash point: every combination of sector fates when there are at
    /// most this many, else this many drawn from the seed (at least 1).
    #[arg(long, default_value_t = crashkit::sweep::DEFAULT_STATES_PER_POINT, value_parser = parse_count::<usize>)]
    states_per_point: usize,
    /// Threads recovering states, at least 1.
    #[arg(long, default_value_t = 2, value_parser = parse_count::<usize>)]
    jobs: usize,
    /// Stop after this many findings, at least 1.
    #[arg(long, default_value_t = crashkit::sweep::DEFAULT_FINDINGS_MAX, value_parser = parse_count::<usize>)]
    findings_max: usize,
    /// Check only this crash point (as a finding names it).
    #[arg(long)]
    point: Option<usize>,
    /// With --point: check only this state of it.
    #[arg(long, requires = "point")]
    state: Option<usize>,
    /// Where findings keep the state's files, the crashed image and the trace.
    #[arg(long, default_value = "artifacts")]
    artifacts: PathBuf,
    /// One JSON object per finding (`type` = `finding`), then the summary (`type` =
    /// `sweep`), on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Self-test only: run the writer as a deliberately wrong engine (kebab-case name of
    /// one that acts in the writer, e.g. acks-before-sync-returns).
    #[arg(long, hide = true, value_parser = parse_wrong_engine)]
    wrong_engine: Option<crashkit::wrong_engine::WrongEngine>,
}

fn parse_wrong_engine(s: &str) -> Result<crashkit::wrong_engine::WrongEngine, String> {
    let w: crashkit::wrong_engine::WrongEngine =
        serde_json::from_value(s.into()).map_err(|e| format!("unknown wrong engine {s:?}: {e}"))?;
    if !w.acts_in_writer() {
        return Err(format!("{s} does not act in the writer"));
    }
    Ok(w)
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// A WAL file, or a database directory (then its wal.log is read).
    path: PathBuf,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 30s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m or h)"
            ))
        }
    };
    let duration = Duration::from_secs_f64(secs);
    if duration.is_zero() {
        return Err(format!("duration {s:?} is zero: the run would do nothing"));
    }
    Ok(duration)
}

/// A count that must be at least 1 (`--cycles 0` or `--jobs 0` would run nothing).
pub(crate) fn parse_count<T: std::str::FromStr + Default + PartialEq>(
    s: &str,
) -> Result<T, String> {
    let n: T = s
        .parse()
        .map_err(|_| format!("invalid count {s:?}: expected a whole number"))?;
    if n == T::default() {
        return Err("must be at least 1: zero would run nothing".to_string());
    }
    Ok(n)
}

pub(crate) fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let err = || format!("invalid shard {s:?}: expected i/n with i < n, e.g. 0/4");
    let (i, n) = s.split_once('/').ok_or_else(err)?;
    let (i, n): (u64, u64) = (i.parse().map_err(|_| err())?, n.parse().map_err(|_| err())?);
    if n == 0 || i >= n {
        return Err(err());
    }
    Ok((i, n))
}

pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // A second Ctrl-C (or SIGTERM): stop now, with the shell's code for the signal.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + signal) };
    }
}

/// The first SIGINT or SIGTERM asks the campaign to stop: cycles in flight finish, the
/// summary is printed, and the exit code says what was found.
pub(crate) fn install_stop_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls _exit, both
        // async-signal-safe.
        unsafe {
            libc::signal(
                signal,
                on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_CLEAN
            });
        }
    };
    if let Command::Child { args } = cli.command {
        crashkit::child::main_from_args(args);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off")).init();
    let code = match cli.command {
        Command::Run(args) => run(args),
        Command::Repro(args) => repro(args),
        Command::Inspect(args) => inspect(args),
        Command::Selftest {
            seed,
            json,
            by_fault,
        } => selftest(seed, json, by_fault),
        Command::Matrix(args) => matrix::matrix(args),
        Command::Bench(args) => bench::bench(args),
        Command::Report(args) => report::report(args),
        Command::Sweep(args) => sweep(args),
        Command::Child { .. } => unreachable!("handled above"),
    };
    ExitCode::from(code)
}

pub(crate) fn harness_failure(what: &str, e: impl std::fmt::Display) -> u8 {
    eprintln!("torture: {what}: {e}");
    EXIT_HARNESS
}

pub(crate) fn child_command() -> Result<ChildCommand, u8> {
    ChildCommand::current_exe_subcommand("child")
        .map_err(|e| harness_failure("cannot locate the torture executable", e))
}

/// A fresh scratch directory named `<prefix>...` under the default work root (a RAM disk
/// when there is room), removed when dropped; the exit code of a harness failure if none.
pub(crate) fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir, u8> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(crashkit::cycle::default_work_root())
        .map_err(|e| harness_failure("cannot create a temporary directory", e))
}

pub(crate) fn json_line(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn run(args: RunArgs) -> u8 {
    crashkit::power_loss::set_crash_states_per_crash(args.crash_states);
    let child = match child_command() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let temp = match &args.work_dir {
        Some(_) => None,
        None => match scratch_dir("torture-") {
            Ok(t) => Some(t),
            Err(code) => return code,
        },
    };
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.as_ref().expect("created above").path().to_path_buf());
    if let Err(e) = std::fs::create_dir_all(&work_dir) {
        return harness_failure(
            &format!("cannot create the work directory {}", work_dir.display()),
            e,
        );
    }
    // The progress bar draws only on a terminal; elsewhere (CI logs, pipes) a heartbeat
    // line shows the run is alive.
    let heartbeat = (!std::io::stderr().is_terminal() && args.heartbeat_secs > 0)
        .then(|| Duration::from_secs(args.heartbeat_secs));
    let base_seed = args.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        crashkit::case::cycle_seed(nanos, u64::from(std::process::id()))
    });
    let opts = CampaignOptions {
        base_seed,
        cycles: args.cycles,
        duration: args.duration.or(if args.cycles.is_none() {
            Some(Duration::from_secs(30))
        } else {
            None
        }),
        jobs: args.jobs,
        modes: match args.mode {
            ModeArg::Strict => vec![ModeName::Strict],
            ModeArg::Batched => vec![ModeName::Batched],
            ModeArg::Async => vec![ModeName::Async],
            ModeArg::All => ModeName::ALL.to_vec(),
        },
        kills: args.kill.0,
        power_loss: args.power_loss,
        recovery_crash: args.recovery_crash,
        corrupt: args.corrupt,
        threads_max: args.threads,
        generations_max: args.generations,
        shard: args.shard,
        shape: args.workload.shape,
        limits: args.workload.limits(),
        free_space_min_bytes: args.min_free_mib.saturating_mul(1024 * 1024),
        heartbeat,
    };
    crashkit::cycle::set_kept_findings_max(args.keep_findings);
    let env = CycleEnv {
        work_dir,
        artifacts_dir: args.artifacts.clone(),
        child,
        wrong: args.wrong_engine,
    };
    if args.json {
        json_line(&serde_json::json!({
            "type": "begin",
            "base_seed": format!("{base_seed:#018x}"),
            "jobs": opts.jobs,
            "modes": opts.modes,
            "kills": opts.kills,
            "shard": format!("{}/{}", opts.shard.0, opts.shard.1),
            "cycles": opts.cycles,
            "duration_s": opts.duration.map(|d| d.as_secs_f64()),
        }));
    } else {
        eprintln!(
            "torture: base seed {base_seed:#018x}, {} job(s), modes {:?}, kills {:?}",
            opts.jobs,
            opts.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
            opts.kills.iter().map(|k| k.name()).collect::<Vec<_>>()
        );
    }
    install_stop_handlers();
    let bar = progress_bar(&opts);
    let started = std::time::Instant::now();
    let counts = std::sync::Mutex::new((0u64, 0u64));
    let result = campaign::run_campaign(&opts, &env, &INTERRUPTED, &|p| match p {
        Progress::Finding(f) => {
            if args.json {
                let mut v = serde_json::to_value(f).unwrap_or_default();
                v["type"] = "finding".into();
                json_line(&v);
            } else {
                bar.suspend(|| eprintln!("{f}"));
            }
        }
        Progress::Cycle(outcome) => {
            let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
            c.0 += 1;
            c.1 += u64::from(outcome.finding.is_some());
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{} cycles, {:.1}/s, {} findings",
                c.0,
                c.0 as f64 / secs,
                c.1
            ));
            match opts.duration {
                Some(d) => {
                    bar.set_position(started.elapsed().as_millis().min(d.as_millis()) as u64)
                }
                None => bar.set_position(c.0),
            }
        }
        Progress::Heartbeat(beat) => eprintln!("torture: heartbeat: {beat}"),
    });
    bar.finish_and_clear();
    let summary = match result {
        Ok(s) => s,
        Err(e) => return harness_failure("the campaign stopped", e),
    };
    if args.json {
        let mut v = serde_json::to_value(&summary).unwrap_or_default();
        v["type"] = "summary".into();
        json_line(&v);
    } else {
        print!("{summary}");
        if summary.findings > 0 {
            eprintln!(
                "torture: artifacts of the findings are in {}",
                args.artifacts.display()
            );
        }
    }
    if summary.findings > 0 {
        EXIT_FINDINGS
    } else {
        EXIT_CLEAN
    }
}

fn progress_bar(opts: &CampaignOptions) -> indicatif::ProgressBar {
    let bar = match (opts.cycles, opts.duration) {
        (_, Some(d)) => indicatif::ProgressBar::new(d.as_millis() as u64),
        (Some(n), None) => indicatif::ProgressBar::new(n),
        (None, None) => indicatif::ProgressBar::no_length(),
    };
    // indicatif draws nothing when stderr is not a terminal.
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {msg} (eta {eta})",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn repro(args: ReproArgs) -> u8 {
    crashkit::power_loss::set_crash_states_per_crash(args.crash_states);
    let child = match child_command() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let temp = match scratch_dir("torture-repro-") {
        Ok(t) => t,
        Err(code) => return code,
    };
    let env = CycleEnv {
        work_dir: temp.path().to_path_buf(),
        artifacts_dir: args.artifacts.clone(),
        child,
        wrong: None,
    };
    let case = Case {
        seed: args.seed,
        mode: args.mode,
        kill: args.kill,
        power_loss: args.power_loss.on(),
        recovery_crash: args.recovery_crash.on(),
        corrupt: args.corrupt.on(),
        threads: args.threads,
        generations: args.generations,
        shape: args.workload.shape,
        limits: args.workload.limits(),
        kill_offset_bytes: args.kill_offset,
    };
    // Timing-dependent cases (watch and time kills, several writer threads, background
    // fsync failures) may need a few tries; offset kills with one thread reproduce at once.
    let mut outcome = None;
    for attempt in 1..=args.attempts.max(1) {
        let o = match crashkit::cycle::run_cycle(&case, &env) {
            Ok(o) => o,
            Err(e) => return harness_failure("the cycle failed", e),
        };
        let found = o.finding.is_some();
        outcome = Some(o);
        if found {
            if attempt > 1 {
                eprintln!("torture: reproduced on attempt {attempt}");
            }
            break;
        }
    }
    let outcome = outcome.expect("at least one attempt");
    let Some(finding) = outcome.finding else {
        if args.json {
            json_line(&serde_json::json!({
                "type": "clean",
                "case": case,
                "recovered_n": outcome.recovered_n,
                "acked": outcome.acked,
                "kill_site": outcome.kill_site.map(|s| s.key()),
            }));
        } else {
            println!(
                "clean: seed {:#018x} ({} acked, recovered prefix n = {:?}, kill site {})",
                case.seed,
                outcome.acked,
                outcome.recovered_n,
                outcome
                    .kill_site
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "none".into())
            );
        }
        return EXIT_CLEAN;
    };
    let finding = if args.shrink {
        match crashkit::shrink::shrink(&finding, &env, &mut |step| eprintln!("shrink: {step}")) {
            Ok(f) => f,
            Err(e) => return harness_failure("shrinking failed", e),
        }
    } else {
        finding
    };
    // Then the crash state of a power-loss finding: as little damage as still fails.
    let shrunk_state = if args.shrink && finding.case.power_loss {
        match crashkit::state_shrink::shrink_state(&finding, &env, &mut |step| {
            eprintln!("shrink state: {step}")
        }) {
            Ok(s) => Some(s),
            Err(e @ crashkit::state_shrink::StateShrinkError::NotApplicable { .. }) => {
                eprintln!("shrink state: {e}");
                None
            }
            Err(e) => return harness_failure("shrinking the crash state failed", e),
        }
    } else {
        None
    };
    if let Some(path) = &args.save_regression {
        if let Err(e) = crashkit::regressions::append(path, &finding.case, finding.violation.kind) {
            return harness_failure("cannot save the regression", e);
        }
        eprintln!("torture: saved to {}", path.display());
    }
    if args.json {
        let mut v = serde_json::to_value(&finding).unwrap_or_default();
        v["type"] = "finding".into();
        if let Some(s) = &shrunk_state {
            v["shrunk_state"] = serde_json::to_value(s).unwrap_or_default();
        }
        json_line(&v);
    } else {
        println!("{finding}");
        if let Some(s) = &shrunk_state {
            println!(
                "  shrunk crash state ({} -> {} units not kept, {} -> {} torn or garbage, {} checks): {}",
                s.non_kept_before, s.non_kept_after, s.mixed_before, s.mixed_after, s.checks, s.after
            );
            println!("  its verdict: {}", s.detail);
        }
    }
    EXIT_FINDINGS
}

fn inspect(args: InspectArgs) -> u8 {
    let mut out = std::io::stdout().lock();
    match crashkit::inspect::dump(&args.path, &mut out) {
        Ok(crashkit::inspect::Verdict::Clean) => EXIT_CLEAN,
        Ok(_) => EXIT_FINDINGS,
        Err(e) if e.is_usage() => {
            eprintln!("torture inspect: {e}");
            EXIT_USAGE
        }
        Err(e) => harness_failure("inspect failed", e),
    }
}

fn selftest(seed: u64, json: bool, by_fault: Option<u64>) -> u8 {
    let child = match child_command() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let temp = match tempfile::Builder::new()
        .prefix("torture-selftest-")
        .tempdir()
    {
        Ok(t) => t,
        Err(e) => return harness_failure("cannot create a temporary directory", e),
    };
    let env = CycleEnv {
        work_dir: temp.path().to_path_buf(),
        artifacts_dir: temp.path().join("artifacts"),
        child,
        wrong: None,
    };
    if let Some(seeds_max) = by_fault {
        let table = match crashkit::selftest_faults::run(&env, seed, seeds_max.max(1)) {
            Ok(t) => t,
            Err(e) => return harness_failure("the self-test failed to run", e),
        };
        if json {
            let mut v = serde_json::to_value(&table).unwrap_or_default();
            v["type"] = "selftest-by-fault".into();
            json_line(&v);
        } else {
            print!("{table}");
        }
        // Not every kind can catch every engine; only a finding against the real one fails.
        return if table.correct_engine_findings.is_empty() {
            EXIT_CLEAN
        } else {
            EXIT_FINDINGS
        };
    }
    let report = match crashkit::selftest::run(&env, seed) {
        Ok(r) => r,
        Err(e) => return harness_failure("the self-test failed to run", e),
    };
    if json {
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        v["type"] = "selftest".into();
        v["passed"] = report.passed().into();
        json_line(&v);
    } else {
        print!("{report}");
    }
    if report.passed() {
        EXIT_CLEAN
    } else {
        EXIT_FINDINGS
    }
}

fn sweep(args: SweepArgs) -> u8 {
    let child = match child_command() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let temp = match scratch_dir("torture-sweep-") {
        Ok(t) => t,
        Err(code) => return code,
    };
    let limits = if args.workload.txns_max.is_some() {
        args.workload.limits()
    } else {
        let derived = crashkit::sweep::limits_for_log_bytes(args.seed, args.log_bytes);
        Limits {
            ops_max: args.workload.ops_max,
            value_len_max: args.workload.value_len_max.or(derived.value_len_max),
            ..derived
        }
    };
    let opts = crashkit::sweep::SweepOptions {
        seed: args.seed,
        mode: args.mode,
        limits,
        states_per_point: args.states_per_point,
        jobs: args.jobs,
        work_dir: temp.path().to_path_buf(),
        artifacts_dir: Some(args.artifacts.clone()),
        child,
        wrong: args.wrong_engine,
        findings_max: args.findings_max,
        only: args.point.map(|p| (p, args.state)),
    };
    let report = match crashkit::sweep::run_sweep(&opts) {
        Ok(r) => r,
        Err(e @ crashkit::sweep::SweepError::NoSuchPoint { .. }) => {
            eprintln!("torture sweep: {e}");
            return EXIT_USAGE;
        }
        Err(e) => return harness_failure("the sweep failed", e),
    };
    for f in &report.findings {
        if args.json {
            let mut v = serde_json::to_value(f).unwrap_or_default();
            v["type"] = "finding".into();
            json_line(&v);
        } else {
            eprintln!("{f}");
        }
    }
    if args.json {
        let mut v = serde_json::to_value(&report.summary).unwrap_or_default();
        v["type"] = "sweep".into();
        json_line(&v);
    } else {
        print!("{}", report.summary);
    }
    if report.findings.is_empty() {
        EXIT_CLEAN
    } else {
        EXIT_FINDINGS
    }
}
