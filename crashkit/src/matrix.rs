//! The crash matrix as data: `ci/matrix.toml` parsed into cells, each one durability mode x
//! fault x workload profile with a budget of cycles or seconds.
//!
//! The file names its faults (a set of kill kinds plus the optional damages) and its
//! profiles (the workload knobs crashkit really has: writer threads, generations and the
//! [`Limits`] caps), then lists blocks of cells as cross products of those names. Every
//! cell becomes one campaign ([`Cell::campaign_options`]); [`crate::matrix_run`] runs them.
//!
//! A cell's seed is a pure function of the matrix seed and the cell's name
//! ([`cell_seed`]), so a red cell reruns alone, with the same cycles, from the command
//! [`Cell::repro_command`] prints, whatever shard or selection it ran in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::campaign::{CampaignOptions, Frequency};
use crate::case::{cycle_seed, parse_seed, KillKind, Limits, ModeName};

/// Writer threads and generations a profile may ask for (the CLI's `--threads` and
/// `--generations` accept the same range).
pub const THREADS_MAX: u8 = 8;
pub const GENERATIONS_MAX: u8 = 8;

/// How `--quick` scales the budgets down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuickSpec {
    /// Each budget is divided by this ...
    pub divisor: u64,
    /// ... but a cycle budget never drops below this many cycles, nor a time budget below
    /// one second: a cell that runs nothing would pass without proving anything.
    pub cycles_min: u64,
}

/// A workload profile: the knobs the workload generator and the campaign have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Each cycle's writer commits from 1..=threads threads (`run --threads`).
    pub threads: u8,
    /// Each cycle runs 1..=generations crash-recover-check rounds on one database
    /// (`run --generations`).
    pub generations: u8,
    /// What kind of workload the generator draws (`run --shape`; `mixed` when absent).
    #[serde(default)]
    pub shape: crate::workload::WorkloadShape,
    /// Caps on the generated workload (`run --txns-max --ops-max --value-len-max`).
    #[serde(default)]
    pub txns_max: Option<usize>,
    #[serde(default)]
    pub ops_max: Option<usize>,
    #[serde(default)]
    pub value_len_max: Option<usize>,
}

impl Profile {
    pub fn limits(&self) -> Limits {
        Limits {
            txns_skip: None,
            txns_drop: None,
            ops_drop: None,
            txns_max: self.txns_max,
            ops_max: self.ops_max,
            value_len_max: self.value_len_max,
        }
    }
}

fn never() -> Frequency {
    Frequency::Never
}

/// A fault: the kill kinds its cycles rotate through and how often each optional damage
/// applies (never, unless the file says otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub kills: Vec<KillKind>,
    #[serde(default = "never")]
    pub power_loss: Frequency,
    #[serde(default = "never")]
    pub recovery_crash: Frequency,
    #[serde(default = "never")]
    pub corrupt: Frequency,
}

/// A block of cells: every mode x fault x profile it names, each with the same budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CellBlock {
    modes: Vec<ModeName>,
    faults: Vec<String>,
    profiles: Vec<String>,
    #[serde(default)]
    cycles: Option<u64>,
    #[serde(default)]
    duration_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixFile {
    seed: String,
    quick: QuickSpec,
    profiles: BTreeMap<String, Profile>,
    faults: BTreeMap<String, Fault>,
    cells: Vec<CellBlock>,
}

/// What one cell runs for: a number of cycles or a wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    Cycles(u64),
    DurationS(u64),
}

impl Budget {
    /// The budget `--quick` runs: divided, with a floor (see [`QuickSpec`]).
    pub fn quick(self, quick: QuickSpec) -> Budget {
        match self {
            Budget::Cycles(n) => Budget::Cycles(n.div_ceil(quick.divisor).max(quick.cycles_min)),
            Budget::DurationS(s) => Budget::DurationS((s / quick.divisor).max(1)),
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Cycles(n) => write!(f, "{n} cycles"),
            Budget::DurationS(s) => write!(f, "{s}s"),
        }
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// `mode/fault/profile`.
    pub name: String,
    /// Position in the whole matrix (file order), which `--shard` selects on.
    pub index: usize,
    pub mode: ModeName,
    pub fault_name: String,
    pub fault: Fault,
    pub profile_name: String,
    pub profile: Profile,
    /// The budget the file gives (before `--quick`).
    pub budget: Budget,
}

/// What a campaign of one cell needs beyond the cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSettings {
    pub base_seed: u64,
    pub quick: Option<QuickSpec>,
    pub jobs: usize,
    pub free_space_min_bytes: u64,
    pub heartbeat: Option<Duration>,
}

impl Cell {
    /// The budget this run gives the cell.
    pub fn budget(&self, quick: Option<QuickSpec>) -> Budget {
        match quick {
            Some(q) => self.budget.quick(q),
            None => self.budget,
        }
    }

    /// The campaign that runs this cell: its one mode, its fault's kill kinds and damages,
    /// its profile's knobs, seeded from the matrix seed and the cell's name.
    pub fn campaign_options(&self, settings: &RunSettings) -> CampaignOptions {
        let (cycles, duration) = match self.budget(settings.quick) {
            Budget::Cycles(n) => (Some(n), None),
            Budget::DurationS(s) => (None, Some(Duration::from_secs(s))),
        };
        CampaignOptions {
            base_seed: cell_seed(settings.base_seed, &self.name),
            cycles,
            duration,
            jobs: settings.jobs.max(1),
            modes: vec![self.mode],
            kills: self.fault.kills.clone(),
            power_loss: self.fault.power_loss,
            recovery_crash: self.fault.recovery_crash,
            corrupt: self.fault.corrupt,
            threads_max: self.profile.threads,
            generations_max: self.profile.generations,
            shard: (0, 1),
            shape: self.profile.shape,
            limits: self.profile.limits(),
            free_space_min_bytes: settings.free_space_min_bytes,
            heartbeat: settings.heartbeat,
        }
    }

    /// The command that reruns exactly this cell (same seed, same budget).
    pub fn repro_command(&self, matrix_path: &str, base_seed: u64, quick: bool) -> String {
        format!(
            "cargo run --release -p torture -- matrix --matrix {matrix_path} --cell {} --seed {base_seed:#x}{}",
            self.name,
            if quick { " --quick" } else { "" }
        )
    }
}

/// The seed of a cell's campaign: the matrix seed mixed with a hash of the cell's name
/// (FNV-1a, then a SplitMix64 step), so adding, removing or reordering cells never changes
/// another cell's cycles.
pub fn cell_seed(base_seed: u64, name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    cycle_seed(base_seed, hash)
}

/// Why a matrix file cannot be used (a usage error: exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixError(pub String);

impl fmt::Display for MatrixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MatrixError {}

fn error<T>(message: impl Into<String>) -> Result<T, MatrixError> {
    Err(MatrixError(message.into()))
}

/// A parsed and validated matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// The default base seed (`--seed` overrides it).
    pub seed: u64,
    pub quick: QuickSpec,
    /// Every cell, in file order.
    pub cells: Vec<Cell>,
}

impl Matrix {
    /// Parses and validates a matrix file's text: every name a block uses is defined and
    /// every definition is used, no cell appears twice, each block has exactly one
    /// non-zero budget, and no cell asks for a knob its fault ignores.
    pub fn parse(text: &str) -> Result<Matrix, MatrixError> {
        let file: MatrixFile = toml::from_str(text).map_err(|e| MatrixError(e.to_string()))?;
        let seed = parse_seed(&file.seed).map_err(MatrixError)?;
        if file.quick.divisor == 0 || file.quick.cycles_min == 0 {
            return error("quick.divisor and quick.cycles_min must be at least 1");
        }
        for (name, p) in &file.profiles {
            validate_profile(name, p)?;
        }
        for (name, f) in &file.faults {
            if f.kills.is_empty() {
                return error(format!("fault {name:?} has no kill kinds"));
            }
        }
        let mut cells = Vec::new();
        let mut names = BTreeSet::new();
        let (mut used_faults, mut used_profiles) = (BTreeSet::new(), BTreeSet::new());
        for (block_idx, block) in file.cells.iter().enumerate() {
            let at = format!("cells[{block_idx}]");
            let budget = match (block.cycles, block.duration_s) {
                (Some(0), _) | (_, Some(0)) => {
                    return error(format!("{at}: a zero budget would run nothing"))
                }
                (Some(n), None) => Budget::Cycles(n),
                (None, Some(s)) => Budget::DurationS(s),
                _ => return error(format!("{at}: give exactly one of cycles and duration_s")),
            };
            if block.modes.is_empty() || block.faults.is_empty() || block.profiles.is_empty() {
                return error(format!(
                    "{at}: modes, faults and profiles must not be empty"
                ));
            }
            for mode in &block.modes {
                for fault_name in &block.faults {
                    let Some(fault) = file.faults.get(fault_name) else {
                        return error(format!("{at}: unknown fault {fault_name:?}"));
                    };
                    for profile_name in &block.profiles {
                        let Some(profile) = file.profiles.get(profile_name) else {
                            return error(format!("{at}: unknown profile {profile_name:?}"));
                        };
                        let name = format!("{mode}/{fault_name}/{profile_name}");
                        if fault.kills.iter().all(|k| *k == KillKind::IoError)
                            && profile.threads > 1
                        {
                            return error(format!(
                                "{at}: cell {name}: io-error cycles always write from one \
                                 thread, so profile {profile_name:?} (threads = {}) would \
                                 change nothing",
                                profile.threads
                            ));
                        }
                        if !names.insert(name.clone()) {
                            return error(format!("{at}: cell {name} is listed twice"));
                        }
                        used_faults.insert(fault_name.clone());
                        used_profiles.insert(profile_name.clone());
                        cells.push(Cell {
                            name,
                            index: cells.len(),
                            mode: *mode,
                            fault_name: fault_name.clone(),
                            fault: fault.clone(),
                            profile_name: profile_name.clone(),
                            profile: *profile,
                            budget,
                        });
                    }
                }
            }
        }
        if cells.is_empty() {
            return error("the matrix has no cells");
        }
        for (kind, defined, used) in [
            (
                "fault",
                file.faults.keys().collect::<Vec<_>>(),
                &used_faults,
            ),
            ("profile", file.profiles.keys().collect(), &used_profiles),
        ] {
            if let Some(unused) = defined.into_iter().find(|n| !used.contains(*n)) {
                return error(format!("{kind} {unused:?} is defined but no cell uses it"));
            }
        }
        Ok(Matrix {
            seed,
            quick: file.quick,
            cells,
        })
    }

    /// The cells of shard `(i, n)` (index modulo n equals i) whose name matches one of the
    /// globs (all cells when there are none), in matrix order.
    pub fn select(&self, globs: &[String], shard: (u64, u64)) -> Vec<Cell> {
        assert!(shard.1 > 0 && shard.0 < shard.1, "invalid shard");
        self.cells
            .iter()
            .filter(|c| c.index as u64 % shard.1 == shard.0)
            .filter(|c| globs.is_empty() || globs.iter().any(|g| glob_match(g, &c.name)))
            .cloned()
            .collect()
    }
}

fn validate_profile(name: &str, p: &Profile) -> Result<(), MatrixError> {
    if !(1..=THREADS_MAX).contains(&p.threads) {
        return error(format!(
            "profile {name:?}: threads must be in 1..={THREADS_MAX}"
        ));
    }
    if !(1..=GENERATIONS_MAX).contains(&p.generations) {
        return error(format!(
            "profile {name:?}: generations must be in 1..={GENERATIONS_MAX}"
        ));
    }
    if [p.txns_max, p.ops_max].contains(&Some(0)) {
        return error(format!(
            "profile {name:?}: txns_max and ops_max must be at least 1 (0 writes nothing)"
        ));
    }
    Ok(())
}

/// Shell-style matching of a whole name: `*` matches any run of characters (`/` too),
/// `?` any one character, everything else itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point (the last `*`): linear in practice.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((star_pi, star_ni)) = star {
            pi = star_pi + 1;
            ni = star_ni + 1;
            star = Some((star_pi, star_ni + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
seed = "0x5eed"
quick = { divisor = 10, cycles_min = 2 }

[profiles.small-values]
threads = 1
generations = 1
value_len_max = 64

[profiles.threads]
threads = 3
generations = 1

[faults.offset]
kills = ["offset"]

[faults.io-error]
kills = ["io-error"]

[faults.power-loss]
kills = ["offset", "watch", "time"]
power_loss = "always"

[[cells]]
modes = ["strict", "async"]
faults = ["offset", "power-loss"]
profiles = ["small-values", "threads"]
cycles = 45

[[cells]]
modes = ["batched"]
faults = ["io-error"]
profiles = ["small-values"]
duration_s = 30
"#;

    #[test]
    fn blocks_expand_to_named_cells_in_file_order() {
        let m = Matrix::parse(SMALL).unwrap();
        assert_eq!(m.seed, 0x5eed);
        let names: Vec<_> = m.cells.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "strict/offset/small-values",
                "strict/offset/threads",
                "strict/power-loss/small-values",
                "strict/power-loss/threads",
                "async/offset/small-values",
                "async/offset/threads",
                "async/power-loss/small-values",
                "async/power-loss/threads",
                "batched/io-error/small-values",
            ]
        );
        assert!(m.cells.iter().enumerate().all(|(i, c)| c.index == i));
        let last = &m.cells[8];
        assert_eq!(last.budget, Budget::DurationS(30));
        assert_eq!(last.fault.kills, [KillKind::IoError]);
        assert_eq!(
            last.fault.power_loss,
            Frequency::Never,
            "damages default to never"
        );
    }

    #[test]
    fn a_cell_becomes_a_campaign_with_its_knobs() {
        let m = Matrix::parse(SMALL).unwrap();
        let cell = &m.cells[3];
        assert_eq!(cell.name, "strict/power-loss/threads");
        let settings = RunSettings {
            base_seed: 7,
            quick: None,
            jobs: 2,
            free_space_min_bytes: 1,
            heartbeat: None,
        };
        let opts = cell.campaign_options(&settings);
        assert_eq!(opts.modes, [ModeName::Strict]);
        assert_eq!(
            opts.kills,
            [KillKind::Offset, KillKind::Watch, KillKind::Time]
        );
        assert_eq!(opts.power_loss, Frequency::Always);
        assert_eq!(opts.recovery_crash, Frequency::Never);
        assert_eq!((opts.threads_max, opts.generations_max), (3, 1));
        assert_eq!((opts.cycles, opts.duration), (Some(45), None));
        assert_eq!(opts.base_seed, cell_seed(7, "strict/power-loss/threads"));
        let small = m.cells[0].campaign_options(&settings);
        assert_eq!(small.limits.value_len_max, Some(64));
        assert_eq!(small.limits.txns_max, None);

        let quick = RunSettings {
            quick: Some(m.quick),
            ..settings
        };
        assert_eq!(
            cell.campaign_options(&quick).cycles,
            Some(5),
            "45 / 10, rounded up"
        );
        let timed = m.cells[8].campaign_options(&quick);
        assert_eq!(
            (timed.cycles, timed.duration),
            (None, Some(Duration::from_secs(3)))
        );
        assert_eq!(
            Budget::Cycles(3).quick(m.quick),
            Budget::Cycles(2),
            "never below cycles_min"
        );
        assert_eq!(Budget::DurationS(5).quick(m.quick), Budget::DurationS(1));
    }

    #[test]
    fn cell_seeds_depend_on_the_base_seed_and_the_name_only() {
        let a = cell_seed(1, "strict/offset/small-values");
        assert_eq!(a, cell_seed(1, "strict/offset/small-values"));
        assert_ne!(a, cell_seed(2, "strict/offset/small-values"));
        assert_ne!(a, cell_seed(1, "strict/offset/threads"));
        // The same cell keeps its seed when the matrix around it changes.
        let m = Matrix::parse(SMALL).unwrap();
        let fewer =
            Matrix::parse(&SMALL.replace("modes = [\"strict\", \"async\"]", "modes = [\"async\"]"))
                .unwrap();
        let seed_of = |m: &Matrix, name: &str| {
            let cell = m.cells.iter().find(|c| c.name == name).unwrap();
            cell.campaign_options(&RunSettings {
                base_seed: 9,
                quick: None,
                jobs: 1,
                free_space_min_bytes: 0,
                heartbeat: None,
            })
            .base_seed
        };
        assert_ne!(m.cells.len(), fewer.cells.len());
        assert_eq!(
            seed_of(&m, "async/offset/threads"),
            seed_of(&fewer, "async/offset/threads")
        );
    }

    #[test]
    fn shards_partition_the_cells_and_globs_filter_them() {
        let m = Matrix::parse(SMALL).unwrap();
        let mut seen = Vec::new();
        for i in 0..4 {
            let shard = m.select(&[], (i, 4));
            assert!(shard.iter().all(|c| c.index % 4 == i as usize));
            seen.extend(shard.into_iter().map(|c| c.index));
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..m.cells.len()).collect::<Vec<_>>());

        let strict = m.select(&["strict/*".to_string()], (0, 1));
        assert_eq!(strict.len(), 4);
        let threads = m.select(&["*/threads".to_string(), "batched/*".to_string()], (0, 1));
        let names: Vec<_> = threads.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "strict/offset/threads",
                "strict/power-loss/threads",
                "async/offset/threads",
                "async/power-loss/threads",
                "batched/io-error/small-values",
            ]
        );
        assert!(m.select(&["nothing/*".to_string()], (0, 1)).is_empty());
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_match("*", "strict/offset/small-values"));
        assert!(glob_match(
            "strict/*/small-values",
            "strict/offset/small-values"
        ));
        assert!(glob_match("*/io-error/*", "async/io-error/large-values"));
        assert!(glob_match("strict/offse?/*", "strict/offset/x"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(
            !glob_match("strict", "strict/offset/x"),
            "a prefix is not a match"
        );
        assert!(!glob_match("*/watch/*", "strict/offset/x"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
    }

    #[test]
    fn files_that_would_mislead_are_refused_with_the_reason() {
        let refused = |from: &str, to: &str, reason: &str| {
            let text = SMALL.replacen(from, to, 1);
            assert_ne!(text, SMALL, "the edit {from:?} applies");
            let err = Matrix::parse(&text).expect_err(reason);
            assert!(err.0.contains(reason), "{err} lacks {reason:?}");
        };
        refused(
            "profiles = [\"small-values\"]\nduration_s",
            "profiles = [\"threads\"]\nduration_s",
            "would change nothing",
        );
        refused(
            "\"power-loss\"]",
            "\"power-loss\", \"offset\"]",
            "listed twice",
        );
        refused(
            "\"power-loss\"]",
            "\"power-lose\"]",
            "unknown fault \"power-lose\"",
        );
        refused("\"threads\"]", "\"thread\"]", "unknown profile \"thread\"");
        refused(
            "cycles = 45",
            "cycles = 45\nduration_s = 4",
            "exactly one of",
        );
        refused("cycles = 45", "", "exactly one of");
        refused("cycles = 45", "cycles = 0", "zero budget");
        refused("threads = 3", "threads = 9", "threads must be in 1..=8");
        refused(
            "generations = 1\nvalue",
            "generations = 0\nvalue",
            "generations must be",
        );
        refused("value_len_max = 64", "txns_max = 0", "at least 1");
        refused("kills = [\"offset\"]", "kills = []", "no kill kinds");
        refused(
            "kills = [\"offset\"]",
            "kills = [\"sigstop\"]",
            "unknown variant",
        );
        refused("seed = \"0x5eed\"", "seed = \"0xzz\"", "invalid seed");
        refused("divisor = 10", "divisor = 0", "at least 1");
        refused(
            "value_len_max = 64",
            "value_len_max = 64\nvalue_len = 3",
            "unknown field",
        );
        refused(
            "[faults.offset]",
            "[faults.unused]\nkills = [\"time\"]\n\n[faults.offset]",
            "fault \"unused\" is defined but no cell uses it",
        );
    }
}
