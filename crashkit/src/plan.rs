//! The fault plan of a case: the concrete kill point, delay, failing call, power-loss
//! damage and recovery kill, all drawn from the case seed.

use rand::Rng;
use serde::Serialize;

use engine::wal::RECORD_HEADER_LEN;

use crate::case::{Case, KillKind, Purpose};
use crate::seam::{FailOp, Layers};
use crate::workload::Workload;
use crate::wrong_engine::WrongEngine;

/// Shortest delay of a time kill (most earlier kills would land before the WAL exists).
pub const TIME_KILL_DELAY_US_MIN: u64 = 500;
/// Longest delay of a time kill.
pub const TIME_KILL_DELAY_US_MAX: u64 = 4_000;

/// Kill points of long logs cluster around multiples of this: the replay's pipelining
/// threshold, a quarter of the reader's 1 MiB buffer (engine/src/wal/reader.rs).
pub const BOUNDARY_BYTES: u64 = 256 * 1024;

/// A power loss after the kill: the writer traces its I/O, and the parent checks this
/// many legal crash states built from the trace ([`crate::power_loss`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PowerLossPlan {
    pub crash_states: usize,
}

/// Concrete fault parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FaultPlan {
    /// Offset and watch kills: the WAL length at which the child dies.
    pub kill_offset_bytes: Option<u64>,
    /// Time kills: microseconds after spawning the child.
    pub delay_us: Option<u64>,
    /// io-error faults: which call fails.
    #[serde(skip)]
    pub fail: Option<(FailOp, u64)>,
    pub power_loss: Option<PowerLossPlan>,
    /// Recovery crash: the first recovery dies at this storage call.
    pub recovery_kill_call: Option<u64>,
    /// Self-test only: a wrong engine acting in the writer (its storage or options),
    /// handed to the child on its command line, never derived from the case.
    #[serde(skip)]
    pub wrong: Option<WrongEngine>,
}

impl FaultPlan {
    pub fn derive(case: &Case, workload: &Workload) -> FaultPlan {
        let mut rng = case.rng(Purpose::KillPoint);
        let header = engine::wal::HEADER_LEN as u64;
        let expected = workload.expected_wal_len_bytes().max(header + 1);
        let mut plan = FaultPlan {
            kill_offset_bytes: None,
            delay_us: None,
            fail: None,
            power_loss: None,
            recovery_kill_call: None,
            wrong: None,
        };
        match case.kill {
            KillKind::Offset | KillKind::Watch => {
                // Half the kills are uniform over the expected WAL (mostly payload bytes,
                // since values are large); the other half land within the frame header
                // or checksum of a random record, or exactly on its boundary, which
                // uniform draws would rarely hit.
                let layout = workload.record_layout();
                // Logs longer than the replay's 256 KiB pipelining threshold (and so, in
                // steps of four, the reader's 1 MiB buffer) get a third of their kills a
                // few bytes around a multiple of 256 KiB, where a reader's buffer refill
                // or a batch hand-off splits a record.
                let boundaries = expected / BOUNDARY_BYTES;
                let k = if boundaries > 0 && rng.gen_ratio(1, 3) {
                    let at = rng.gen_range(1..=boundaries) * BOUNDARY_BYTES;
                    let around = RECORD_HEADER_LEN as u64 + 1;
                    (at + rng.gen_range(0..=2 * around) - around).clamp(header + 1, expected)
                } else if layout.is_empty() || rng.gen_bool(0.5) {
                    rng.gen_range(header + 1..=expected)
                } else {
                    let span = &layout[rng.gen_range(0..layout.len())];
                    let within = rng.gen_range(0..=RECORD_HEADER_LEN as u64);
                    (span.offset_bytes + within).clamp(header + 1, expected)
                };
                plan.kill_offset_bytes = Some(case.kill_offset_bytes.unwrap_or(k));
            }
            KillKind::Time => {
                // Start-up (exec, open) takes about a millisecond and a small workload a
                // few more in a release build: spread kills from before the first commit
                // to after the usual end.
                plan.delay_us =
                    Some(rng.gen_range(TIME_KILL_DELAY_US_MIN..=TIME_KILL_DELAY_US_MAX));
            }
            KillKind::IoError => {
                let commits = workload.txns.iter().filter(|t| !t.abort).count().max(1) as u64;
                let op = if rng.gen_bool(0.5) {
                    FailOp::Write
                } else {
                    FailOp::Sync
                };
                plan.fail = Some((op, rng.gen_range(1..=commits)));
            }
        }
        if case.power_loss {
            plan.power_loss = Some(PowerLossPlan {
                crash_states: crate::power_loss::crash_states_per_crash(),
            });
        }
        if case.recovery_crash {
            let mut rng = case.rng(Purpose::RecoveryCrash);
            // A recovery makes a handful of storage calls (length, header, record reads,
            // truncate, fdatasync); draws past the last call let recovery finish and the
            // process exit before any new write (docs/faults.md T4).
            plan.recovery_kill_call = Some(rng.gen_range(1..=12));
        }
        plan
    }

    /// The seam layers the writer child stacks under its WAL.
    pub fn writer_layers(&self, case: &Case) -> Layers {
        Layers {
            kill_at_offset_bytes: if case.kill == KillKind::Offset {
                self.kill_offset_bytes
            } else {
                None
            },
            fail: self.fail,
            kill_after_calls: None,
            trace: self.power_loss.is_some(),
            sync_returns_early: self.wrong == Some(WrongEngine::AcksBeforeSyncReturns),
            skip_dir_sync: self.wrong == Some(WrongEngine::SkipsDirSync),
        }
    }

    /// The format version the writer creates a new database with.
    pub fn writer_format_version(&self) -> u32 {
        if self.wrong == Some(WrongEngine::RefusesOutOfOrderStates) {
            1
        } else {
            engine::wal::FORMAT_VERSION
        }
    }
}
