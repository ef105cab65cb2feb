//! Findings: a typed verdict with everything needed to understand and reproduce it.

use std::fmt;
use std::path::PathBuf;

use engine::{ReplayStats, Value};
use serde::Serialize;

use crate::case::Case;
use crate::coverage::KillSite;
use crate::plan::FaultPlan;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A txn whose acknowledgement was durable under the mode is missing (R3).
    LostAckedTxn,
    /// Data that no committed or in-doubt txn wrote is present (R1/R2).
    PhantomTxn,
    /// Some but not all of a txn's writes are present (R2).
    PartialTxn,
    /// Values match a prefix but their versions do not (R4).
    VersionMismatch,
    /// The state is a prefix with one txn missing in the middle (R1).
    Hole,
    /// The state matches no prefix for another reason.
    WrongValue,
    /// Damage was not detected, reported or kept (R5): torn bytes not reported, not cut,
    /// or not kept in a sidecar.
    CorruptionNotDetected,
    /// A second recovery gave a different state (R7).
    RecoveryNotIdempotent,
    /// A txn id or version was reused after recovery (R4).
    IdReused,
    /// A commit was acknowledged after an earlier write or fsync error (poisoning).
    AckedAfterError,
    /// The child died of a signal other than the planned SIGKILL (panic, abort, segfault).
    ChildCrashed,
    /// The child exited in a way the plan does not allow (error code, or no `done`).
    UnexpectedExit,
    /// Reopening the crashed database failed for a reason other than a refusal (an I/O
    /// error), or a later step of the check failed.
    RecoveryFailed,
    /// The default open refused a legal crash state (docs/recovery-contract.md: it never
    /// may): the state a kill, a power loss or a crashed recovery left.
    LegalStateRefused,
    /// Recovery accepted log bytes it never made durable (docs/faults.md P4): a power loss
    /// after recovery could take back what the reopened database already served.
    RecoveryNotDurable,
}

impl FindingKind {
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::LostAckedTxn => "lost-acked-txn",
            FindingKind::PhantomTxn => "phantom-txn",
            FindingKind::PartialTxn => "partial-txn",
            FindingKind::VersionMismatch => "version-mismatch",
            FindingKind::Hole => "hole",
            FindingKind::WrongValue => "wrong-value",
            FindingKind::CorruptionNotDetected => "corruption-not-detected",
            FindingKind::RecoveryNotIdempotent => "recovery-not-idempotent",
            FindingKind::IdReused => "id-reused",
            FindingKind::AckedAfterError => "acked-after-error",
            FindingKind::ChildCrashed => "child-crashed",
            FindingKind::UnexpectedExit => "unexpected-exit",
            FindingKind::RecoveryFailed => "recovery-failed",
            FindingKind::LegalStateRefused => "legal-state-refused",
            FindingKind::RecoveryNotDurable => "recovery-not-durable",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One key whose recovered value differs from the closest allowed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyDiff {
    pub key: String,
    /// `value @ version`, or `None` when the key should be absent.
    pub expected: Option<String>,
    pub recovered: Option<String>,
}

/// Short human form of a value: large payloads by length and checksum.
pub fn describe_value(value: &Value, version: u64) -> String {
    let body = match value {
        Value::String(s) if s.len() > 24 => format!(
            "String(len={}, crc={:08x})",
            s.len(),
            crc32fast::hash(s.as_bytes())
        ),
        Value::Bytes(b) if b.len() > 16 => {
            format!("Bytes(len={}, crc={:08x})", b.len(), crc32fast::hash(b))
        }
        other => format!("{other:?}"),
    };
    format!("{body} @v{version}")
}

/// The parts of `ReplayStats` a finding reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsSummary {
    pub txns_applied: u64,
    pub writes_applied: u64,
    pub deletes_applied: u64,
    pub discarded_txns: u64,
    pub aborted_txns: u64,
    pub orphaned_entries: u64,
    pub final_version: u64,
    pub max_txn_id: u64,
    pub torn_tail_bytes: u64,
    pub end: String,
}

impl From<&ReplayStats> for StatsSummary {
    fn from(s: &ReplayStats) -> StatsSummary {
        StatsSummary {
            txns_applied: s.txns_applied,
            writes_applied: s.writes_applied,
            deletes_applied: s.deletes_applied,
            discarded_txns: s.discarded_txns,
            aborted_txns: s.aborted_txns,
            orphaned_entries: s.orphaned_entries,
            final_version: s.final_version,
            max_txn_id: s.max_txn_id,
            torn_tail_bytes: s.torn_tail_bytes,
            end: s.end.as_ref().map(|e| e.to_string()).unwrap_or_default(),
        }
    }
}

/// What the checker found wrong, before the cycle adds the case and paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub kind: FindingKind,
    pub detail: String,
    /// Allowed prefix lengths: (required, attempted).
    pub n_range: Option<(usize, usize)>,
    /// The allowed prefix length closest to the recovered state.
    pub closest_n: Option<usize>,
    pub diffs: Vec<KeyDiff>,
    pub stats: Option<Box<StatsSummary>>,
}

impl Violation {
    /// The evidence lines of a finding's text: the allowed prefixes, up to five differing
    /// keys and the replay's statistics (each line indented by two spaces).
    pub fn write_evidence(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((lo, hi)) = self.n_range {
            writeln!(
                f,
                "  allowed prefix n in {lo}..={hi}, closest n = {:?}",
                self.closest_n
            )?;
        }
        for d in self.diffs.iter().take(5) {
            writeln!(
                f,
                "  key {}: expected {}, recovered {}",
                d.key,
                d.expected.as_deref().unwrap_or("absent"),
                d.recovered.as_deref().unwrap_or("absent")
            )?;
        }
        if let Some(s) = &self.stats {
            writeln!(
                f,
                "  replay: {} txns applied, {} discarded, {} orphaned, final version {}, torn {} bytes, {}",
                s.txns_applied, s.discarded_txns, s.orphaned_entries, s.final_version, s.torn_tail_bytes, s.end
            )?;
        }
        Ok(())
    }

    pub fn new(kind: FindingKind, detail: impl Into<String>) -> Violation {
        Violation {
            kind,
            detail: detail.into(),
            n_range: None,
            closest_n: None,
            diffs: Vec::new(),
            stats: None,
        }
    }
}

/// A complete finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    #[serde(flatten)]
    pub violation: Violation,
    pub case: Case,
    pub plan: FaultPlan,
    pub kill_site: Option<KillSite>,
    /// The data directory (after recovery) and the crashed WAL image, kept for inspection.
    pub artifacts_dir: Option<PathBuf>,
    pub repro: String,
    pub inspect: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.violation;
        writeln!(f, "FINDING {}: {}", v.kind, v.detail)?;
        writeln!(
            f,
            "  case: seed {:#018x}, mode {}, kill {}, power-loss {}, recovery-crash {}",
            self.case.seed,
            self.case.mode,
            self.case.kill,
            self.case.power_loss,
            self.case.recovery_crash
        )?;
        if let Some(k) = self.plan.kill_offset_bytes {
            write!(f, "  kill offset: {k}")?;
            if let Some(site) = &self.kill_site {
                write!(f, " ({site})")?;
            }
            writeln!(f)?;
        }
        v.write_evidence(f)?;
        match &self.artifacts_dir {
            Some(dir) => writeln!(f, "  artifacts: {}", dir.display())?,
            None => writeln!(
                f,
                "  artifacts: not kept (the bound on kept finding directories was reached; \
                 the reproduce line rebuilds them)"
            )?,
        }
        if let Some(cmd) = &self.inspect {
            writeln!(f, "  inspect: {cmd}")?;
        }
        write!(f, "  reproduce: {}", self.repro)
    }
}
