//! R1-R3: the recovered state equals the model after some allowed prefix of the commits;
//! when it does not, one small diagnosis per finding kind says why, tried in order.

use engine::{Key, Value};

use super::open::{diff_states, n_diffs};
use super::CheckInput;
use crate::finding::{describe_value, FindingKind, Violation};
use crate::oracle::{self, State};
use crate::workload::OpPlan;

/// The recovered state against the model's prefix states of one commit order.
pub(crate) struct PrefixCheck<'a> {
    pub input: &'a CheckInput<'a>,
    pub states: &'a [State],
    pub firsts: &'a [u64],
    pub recovered: &'a State,
}

/// A key whose recovered entry no allowed prefix explains, and the commit that wrote it
/// (ledger index), if any did.
struct Stray<'a> {
    key: &'a Key,
    value: &'a Value,
    version: u64,
    written_by: Option<usize>,
}

impl PrefixCheck<'_> {
    /// The longest allowed prefix length whose state equals the recovered one, or the
    /// violation that explains why there is none.
    pub fn matching_prefix(&self) -> Result<usize, Violation> {
        let ledger = self.input.ledger;
        let (required, attempted) = (ledger.required_prefix_len(), ledger.attempts.len());
        if let Some(n) = (required..=attempted)
            .rev()
            .find(|n| self.states[*n] == *self.recovered)
        {
            return Ok(n);
        }
        // No allowed prefix matches: find the closest state and explain the difference.
        let closest = (0..=attempted)
            .min_by_key(|n| (n_diffs(&self.states[*n], self.recovered), attempted - *n))
            .expect("at least the empty prefix");
        let exact_short = self.states[closest] == *self.recovered && closest < required;
        let target = if exact_short { required } else { closest };
        let mut v = Violation::new(FindingKind::WrongValue, String::new());
        v.n_range = Some((required, attempted));
        v.closest_n = Some(closest);
        v.diffs = diff_states(&self.states[target], self.recovered, 5);
        let stray = self.first_stray(closest);
        let (kind, detail) = self
            .lost_acked_txn(closest, exact_short)
            .or_else(|| self.version_mismatch(closest))
            .or_else(|| self.hole())
            .or_else(|| partial_txn(self, stray.as_ref()))
            .or_else(|| phantom_txn(stray.as_ref()))
            .unwrap_or_else(|| self.wrong_value());
        v.kind = kind;
        v.detail = detail;
        Err(v)
    }

    /// `lost-acked-txn`: the state is a prefix too short for what was acknowledged.
    fn lost_acked_txn(&self, closest: usize, exact_short: bool) -> Option<(FindingKind, String)> {
        if !exact_short {
            return None;
        }
        let lost = &self.input.ledger.attempts[closest];
        Some((
            FindingKind::LostAckedTxn,
            format!(
                "recovered the first {closest} commits, but commit {} (workload txn {}, txn id {:?}) was acknowledged{}",
                closest + 1,
                lost.idx,
                lost.ack.as_ref().map(|a| a.txn_id),
                if self.input.case.power_loss {
                    " durably"
                } else {
                    " (a process kill keeps every acknowledged txn)"
                }
            ),
        ))
    }

    /// `version-mismatch`: the keys and values of a prefix, with other versions.
    fn version_mismatch(&self, closest: usize) -> Option<(FindingKind, String)> {
        let expected = &self.states[closest];
        let same_values = expected.len() == self.recovered.len()
            && expected
                .iter()
                .all(|(k, (val, _))| self.recovered.get(k).map(|(v2, _)| v2) == Some(val));
        same_values.then(|| {
            (
                FindingKind::VersionMismatch,
                format!("values match the first {closest} commits, versions do not"),
            )
        })
    }

    /// `hole`: a prefix with exactly one commit skipped.
    fn hole(&self) -> Option<(FindingKind, String)> {
        let ledger = self.input.ledger;
        let attempted = ledger.attempts.len();
        for (skip, skip_state) in self.states.iter().enumerate().take(attempted) {
            let mut s = skip_state.clone();
            for m in skip + 1..=attempted {
                let a = &ledger.attempts[m - 1];
                oracle::apply(&mut s, &self.input.workload.txns[a.idx], self.firsts[m - 1]);
                if s == *self.recovered {
                    return Some((
                        FindingKind::Hole,
                        format!(
                            "the state equals the first {m} commits without commit {} (workload txn {})",
                            skip + 1,
                            ledger.attempts[skip].idx
                        ),
                    ));
                }
            }
        }
        None
    }

    /// The first recovered entry that the closest prefix does not hold and no commit
    /// before it wrote.
    fn first_stray(&self, closest: usize) -> Option<Stray<'_>> {
        let ledger = self.input.ledger;
        let written_by = |key: &Key, value: &Value, version: u64| -> Option<usize> {
            for (m, a) in ledger.attempts.iter().enumerate() {
                for (i, op) in self.input.workload.txns[a.idx].ops.iter().enumerate() {
                    if let OpPlan::Put { key: k, value: val } = op {
                        if k == key && val == value && self.firsts[m] + i as u64 == version {
                            return Some(m);
                        }
                    }
                }
            }
            None
        };
        self.recovered
            .iter()
            .filter(|(key, (value, version))| {
                self.states[closest].get(*key) != Some(&(value.clone(), *version))
            })
            .map(|(key, (value, version))| Stray {
                key,
                value,
                version: *version,
                written_by: written_by(key, value, *version),
            })
            .find(|s| s.written_by.is_none_or(|m| m >= closest))
    }

    /// `wrong-value`: nothing more specific explains the state.
    fn wrong_value(&self) -> (FindingKind, String) {
        let ledger = self.input.ledger;
        (
            FindingKind::WrongValue,
            format!(
                "the recovered state equals no prefix of the {} attempted commits (required at least {})",
                ledger.attempts.len(),
                ledger.required_prefix_len()
            ),
        )
    }
}

/// `partial-txn`: a recovered write of a commit outside the prefix whose other writes
/// are missing.
fn partial_txn(
    check: &PrefixCheck<'_>,
    stray: Option<&Stray<'_>>,
) -> Option<(FindingKind, String)> {
    let stray = stray?;
    let m = stray.written_by?;
    Some((
        FindingKind::PartialTxn,
        format!(
            "key {} holds a write of commit {} (workload txn {}), whose other writes are missing",
            stray.key,
            m + 1,
            check.input.ledger.attempts[m].idx
        ),
    ))
}

/// `phantom-txn`: a recovered value no attempted commit wrote.
fn phantom_txn(stray: Option<&Stray<'_>>) -> Option<(FindingKind, String)> {
    let stray = stray.filter(|s| s.written_by.is_none())?;
    Some((
        FindingKind::PhantomTxn,
        format!(
            "key {} holds {}, which no attempted commit wrote",
            stray.key,
            describe_value(stray.value, stray.version)
        ),
    ))
}
