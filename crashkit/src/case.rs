//! A case: everything one crash cycle does, as a pure function of (seed, parameters).
//!
//! The parent and the child both derive the workload and the fault details from the same
//! [`Case`], so the child needs nothing but the case to act exactly as the parent expects.

use std::fmt;
use std::str::FromStr;

use engine::DurabilityMode;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The durability mode a child writer opens its database with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    Strict,
    Batched,
    Async,
}

impl ModeName {
    pub const ALL: [ModeName; 3] = [ModeName::Strict, ModeName::Batched, ModeName::Async];

    /// Batched mode with a short interval and a small batch, so that background fsyncs
    /// happen inside a workload of a few dozen commits.
    pub fn durability(self) -> DurabilityMode {
        match self {
            ModeName::Strict => DurabilityMode::Strict,
            ModeName::Batched => DurabilityMode::Batched {
                interval_ms: 2,
                batch_size: 4,
            },
            ModeName::Async => DurabilityMode::Async,
        }
    }

    /// The engine's own name of the mode (also the CLI and JSON spelling).
    pub fn name(self) -> &'static str {
        self.durability().name()
    }
}

/// How the child writer is stopped (or faulted). Spelled (on the command line, in JSON
/// and in ci/matrix.toml) by [`KillKind::name`], which each fault's module owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KillKind {
    /// Whitebox: the child's WAL storage SIGKILLs the process after exactly K bytes.
    Offset,
    /// Blackbox: the parent SIGKILLs the child once wal.log reaches K bytes.
    Watch,
    /// Blackbox: the parent SIGKILLs the child after a random delay.
    Time,
    /// The n-th WAL write or fsync fails (half a write reaches the file); no kill.
    IoError,
}

impl KillKind {
    pub const ALL: [KillKind; 4] = [
        KillKind::Offset,
        KillKind::Watch,
        KillKind::Time,
        KillKind::IoError,
    ];

    /// The `--kill` value (and JSON spelling), owned by the fault's module.
    pub fn name(self) -> &'static str {
        crate::faults::kill_name(self)
    }
}

macro_rules! parse_by_name {
    ($t:ty) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<$t, String> {
                <$t>::ALL
                    .into_iter()
                    .find(|v| v.name() == s)
                    .ok_or_else(|| {
                        let names: Vec<_> = <$t>::ALL.iter().map(|v| v.name()).collect();
                        format!("unknown value {s:?}; expected one of {}", names.join(", "))
                    })
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
parse_by_name!(ModeName);
parse_by_name!(KillKind);
parse_by_name!(crate::workload::WorkloadShape);

impl Serialize for KillKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for KillKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<KillKind, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse()
            .map_err(|_| serde::de::Error::unknown_variant(&name, &crate::faults::KILL_NAMES))
    }
}

/// Caps applied to the generated workload; the shrinker lowers them. `None` = no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Drop the first `txns_skip` transactions (applied before `txns_max`): with it the
    /// shrinker keeps a window of the workload, not only a prefix.
    #[serde(default)]
    pub txns_skip: Option<usize>,
    /// Keep only the first `txns_max` transactions (after `txns_skip`).
    pub txns_max: Option<usize>,
    /// Then drop the transactions whose bit is set (bit i: the i-th one kept so far; the
    /// shrinker's way to take out single transactions in the middle).
    #[serde(default)]
    pub txns_drop: Option<u64>,
    /// Then drop the operations whose bit is set (bit i: the i-th operation of the
    /// workload after `ops_max`; each transaction keeps at least one).
    #[serde(default)]
    pub ops_drop: Option<u64>,
    /// Keep only the first `ops_max` operations of each transaction.
    pub ops_max: Option<usize>,
    /// Truncate string and byte values to `value_len_max` bytes.
    pub value_len_max: Option<usize>,
}

/// One crash cycle's inputs. Everything else derives from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub seed: u64,
    pub mode: ModeName,
    pub kill: KillKind,
    /// After the kill, damage the unsynced part of the WAL as a power loss could.
    pub power_loss: bool,
    /// Kill a first recovery attempt part-way, then recover again (R7).
    pub recovery_crash: bool,
    /// Flip a bit in committed history before recovery: it must be refused (R6).
    #[serde(default)]
    pub corrupt: bool,
    /// Crash-recover-check generations on the same database (0 and 1 both mean one):
    /// each later generation's writer continues on what the previous one recovered.
    #[serde(default)]
    pub generations: u8,
    /// Writer threads committing concurrently (0 and 1 both mean one). Thread `t`
    /// commits the workload's txns `t, t + threads, ...` in order.
    #[serde(default)]
    pub threads: u8,
    /// What kind of workload the seed generates (transaction sizes, key space, values).
    #[serde(default)]
    pub shape: crate::workload::WorkloadShape,
    #[serde(default)]
    pub limits: Limits,
    /// Overrides the derived kill offset (offset and watch kills); the shrinker moves it.
    #[serde(default)]
    pub kill_offset_bytes: Option<u64>,
}

impl Case {
    pub fn new(seed: u64, mode: ModeName, kill: KillKind) -> Case {
        Case {
            seed,
            mode,
            kill,
            power_loss: false,
            recovery_crash: false,
            corrupt: false,
            threads: 1,
            generations: 1,
            shape: crate::workload::WorkloadShape::Mixed,
            limits: Limits::default(),
            kill_offset_bytes: None,
        }
    }

    /// A PRNG for one purpose of this case. Each purpose gets its own stream so that, for
    /// example, shrinking the workload does not change the power-loss choice.
    pub fn rng(&self, purpose: Purpose) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(purpose as u64);
        rng
    }

    /// The PRNG of item `index` of one purpose (crash state `index` of a power loss):
    /// its own stream, so that each item replays alone and bit-exactly.
    pub fn rng_indexed(&self, purpose: Purpose, index: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(((index + 1) << 8) | purpose as u64);
        rng
    }

    /// The arguments of `torture repro` that rerun exactly this case.
    pub fn repro_args(&self) -> String {
        let mut s = format!(
            "--seed {:#018x} --mode {} --kill {}",
            self.seed, self.mode, self.kill
        );
        s.push_str(&crate::faults::Damage::repro_flags(self));
        if self.n_generations() > 1 {
            s.push_str(&format!(" --generations {}", self.generations));
        }
        if self.writer_threads() > 1 {
            s.push_str(&format!(" --threads {}", self.threads));
        }
        if self.shape != crate::workload::WorkloadShape::Mixed {
            s.push_str(&format!(" --shape {}", self.shape));
        }
        if let Some(n) = self.limits.txns_skip {
            s.push_str(&format!(" --txns-skip {n}"));
        }
        if let Some(n) = self.limits.txns_max {
            s.push_str(&format!(" --txns-max {n}"));
        }
        if let Some(mask) = self.limits.txns_drop {
            s.push_str(&format!(" --txns-drop {mask:#x}"));
        }
        if let Some(n) = self.limits.ops_max {
            s.push_str(&format!(" --ops-max {n}"));
        }
        if let Some(mask) = self.limits.ops_drop {
            s.push_str(&format!(" --ops-drop {mask:#x}"));
        }
        if let Some(n) = self.limits.value_len_max {
            s.push_str(&format!(" --value-len-max {n}"));
        }
        if let Some(k) = self.kill_offset_bytes {
            s.push_str(&format!(" --kill-offset {k}"));
        }
        s
    }

    /// Number of generations (at least one).
    pub fn n_generations(&self) -> usize {
        usize::from(self.generations.max(1))
    }

    /// The case of generation `g`: generation 0 is the case itself; later ones get their
    /// own seed (so their own workload and kill point) and the same parameters.
    pub fn generation(&self, g: usize) -> Case {
        let mut sub = *self;
        sub.generations = 1;
        if g > 0 {
            sub.seed = cycle_seed(self.seed, 1_000_000 + g as u64);
            sub.kill_offset_bytes = None;
        }
        sub
    }

    /// Number of writer threads (at least one).
    pub fn writer_threads(&self) -> usize {
        usize::from(self.threads.max(1))
    }

    /// Whether the harness knows where each record lands in the WAL. With several writer
    /// threads the log order is only known after the fact, so layout-based checks (kill
    /// site, exact torn bytes, bit flips at record offsets) are skipped.
    pub fn layout_known(&self) -> bool {
        self.writer_threads() == 1
    }

    /// Whether a rerun takes exactly the same path: an offset kill with one writer
    /// thread and no background flusher (Batched fsync timing varies between runs).
    pub fn bit_exact(&self) -> bool {
        self.kill == KillKind::Offset
            && self.writer_threads() == 1
            && self.mode != ModeName::Batched
    }

    /// The one-line command that reproduces this case (with retries when its timing
    /// varies between runs).
    pub fn repro_command(&self) -> String {
        let retries = if self.bit_exact() {
            ""
        } else {
            " --attempts 20"
        };
        format!(
            "cargo run --release -p torture -- repro {}{retries}",
            self.repro_args()
        )
    }
}

/// Independent random streams of one case.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub enum Purpose {
    Workload = 1,
    KillPoint = 2,
    PowerLoss = 3,
    RecoveryCrash = 4,
    PostRecovery = 5,
    Campaign = 6,
    Corrupt = 7,
    /// The sampled crash states (and garbage bytes) of `torture sweep` ([`crate::sweep`]).
    Sweep = 8,
}

/// The seed of cycle `index` of a campaign with base seed `base`: a SplitMix64 step, so
/// neighbouring indices give unrelated seeds and every index maps to a distinct seed.
pub fn cycle_seed(base: u64, index: u64) -> u64 {
    let mut z = base.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Picks uniformly from a non-empty slice.
pub fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    assert!(!items.is_empty(), "pick from an empty set");
    items[rng.gen_range(0..items.len())]
}

/// Parses a seed written in decimal or as 0x-prefixed hex.
pub fn parse_seed(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => s.replace('_', "").parse::<u64>(),
    };
    parsed.map_err(|e| format!("invalid seed {s:?}: {e} (decimal or 0x-prefixed hex)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_seeds_parse_in_both_bases() {
        for m in ModeName::ALL {
            assert_eq!(m.name().parse::<ModeName>().unwrap(), m);
        }
        for k in KillKind::ALL {
            assert_eq!(k.name().parse::<KillKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<KillKind>(&json).unwrap(), k);
        }
        assert!("fast".parse::<ModeName>().is_err());
        assert_eq!(parse_seed("0x10").unwrap(), 16);
        assert_eq!(parse_seed("16").unwrap(), 16);
        assert!(parse_seed("0xzz").is_err());
        assert_ne!(cycle_seed(1, 0), cycle_seed(1, 1));
    }
}
