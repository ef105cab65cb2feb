//! The reference model: what the database must contain after a prefix of the commits, and
//! the ledger of what the child attempted and what the engine acknowledged.

use std::collections::BTreeMap;
use std::ops::Range;

use engine::{Key, Value};

use crate::case::ModeName;
use crate::protocol::Event;
use crate::workload::{OpPlan, TxnPlan, Workload};

/// Expected contents: key -> (value, version).
pub type State = BTreeMap<Key, (Value, u64)>;

/// Applies one committed transaction whose first op got `first_version`.
pub fn apply(state: &mut State, txn: &TxnPlan, first_version: u64) {
    for (i, op) in txn.ops.iter().enumerate() {
        let version = first_version + i as u64;
        match op {
            OpPlan::Put { key, value } => {
                state.insert(key.clone(), (value.clone(), version));
            }
            OpPlan::Delete { key } => {
                state.remove(key);
            }
        }
    }
}

/// What the engine said about one committed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub txn_id: u64,
    pub versions: Range<u64>,
    pub end_offset_bytes: u64,
    pub durable: bool,
}

/// One attempted commit, in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Index into the workload.
    pub idx: usize,
    pub ack: Option<Ack>,
    /// The error `commit` returned, if it did.
    pub error: Option<String>,
    /// Whether a correct engine must have kept this txn (see [`Ledger::required`]).
    pub required: bool,
}

/// Everything the parent learned from one child.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Attempted commits in the order the child made them (= commit order: one thread).
    pub attempts: Vec<Attempt>,
    /// Largest WAL length reported as covered by a completed fdatasync.
    pub synced_offset_bytes: u64,
    pub flush_errors: Vec<(usize, String)>,
    pub open_error: Option<String>,
    pub opened: bool,
    pub done: bool,
    pub close_error: Option<String>,
    /// True once any commit or flush failed: later acks break the poisoning contract.
    pub saw_error: bool,
    /// Attempt indexes that were acknowledged after an earlier error.
    pub acked_after_error: Vec<usize>,
}

impl Ledger {
    pub fn record(&mut self, event: Event) {
        match event {
            Event::Attempt { idx } => self.attempts.push(Attempt {
                idx,
                ack: None,
                error: None,
                required: false,
            }),
            Event::Ack {
                idx,
                txn_id,
                versions,
                end_offset_bytes,
                durable,
            } => {
                if self.saw_error {
                    self.acked_after_error.push(idx);
                }
                if let Some(a) = self.attempts.iter_mut().rev().find(|a| a.idx == idx) {
                    a.ack = Some(Ack {
                        txn_id,
                        versions,
                        end_offset_bytes,
                        durable,
                    });
                }
            }
            Event::Error { idx, message } => {
                self.saw_error = true;
                if let Some(a) = self.attempts.iter_mut().rev().find(|a| a.idx == idx) {
                    a.error = Some(message);
                }
            }
            Event::Synced { offset_bytes } => {
                self.synced_offset_bytes = self.synced_offset_bytes.max(offset_bytes)
            }
            Event::FlushError { idx, message } => {
                self.saw_error = true;
                self.flush_errors.push((idx, message));
            }
            Event::OpenError { message } => self.open_error = Some(message),
            Event::Opened => self.opened = true,
            Event::Done => self.done = true,
            Event::CloseError { message } => {
                self.done = true;
                self.close_error = Some(message);
            }
        }
    }

    /// Marks which acknowledged txns a correct engine must keep. After a process kill the
    /// OS keeps every written byte, so every ack is required in every mode. After a power
    /// loss, only acks covered by a completed fdatasync: Strict acks always are; others
    /// when their end offset is within the synced length reported before the crash.
    pub fn mark_required(&mut self, mode: ModeName, power_loss: bool) {
        let synced = self.synced_offset_bytes;
        for a in &mut self.attempts {
            a.required = match &a.ack {
                None => false,
                Some(_) if !power_loss => true,
                Some(_) if mode == ModeName::Strict => true,
                Some(ack) => ack.durable || ack.end_offset_bytes <= synced,
            };
        }
    }

    /// Number of leading attempts that must be present (the last required one and all
    /// before it).
    pub fn required_prefix_len(&self) -> usize {
        self.attempts
            .iter()
            .rposition(|a| a.required)
            .map_or(0, |i| i + 1)
    }
}

/// The expected first version of each attempt. Acked attempts use what the engine said;
/// an unacknowledged attempt gets the versions the engine would have allocated next
/// (versions are consumed in commit order, even by a commit whose write fails).
pub fn first_versions(workload: &Workload, ledger: &Ledger, start_version: u64) -> Vec<u64> {
    let mut next = start_version;
    ledger
        .attempts
        .iter()
        .map(|a| {
            let first = a.ack.as_ref().map_or(next, |ack| ack.versions.start);
            next = first + workload.txns[a.idx].ops.len() as u64;
            first
        })
        .collect()
}

/// States after each prefix: `states[n]` = after the first n attempts (n = 0..=len).
pub fn prefix_states(
    workload: &Workload,
    ledger: &Ledger,
    base: &State,
    firsts: &[u64],
) -> Vec<State> {
    let mut states = Vec::with_capacity(ledger.attempts.len() + 1);
    let mut s = base.clone();
    states.push(s.clone());
    for (a, first) in ledger.attempts.iter().zip(firsts) {
        apply(&mut s, &workload.txns[a.idx], *first);
        states.push(s.clone());
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::Limits;

    #[test]
    fn later_commit_wins_and_delete_removes() {
        let w = Workload::generate(3, &Limits::default());
        let mut s = State::new();
        let txn = &w.txns[0];
        apply(&mut s, txn, 1);
        for (i, op) in txn.ops.iter().enumerate().rev() {
            // The last op on a key decides it.
            if txn.ops[i + 1..].iter().any(|o| o.key() == op.key()) {
                continue;
            }
            match op {
                OpPlan::Put { key, value } => {
                    assert_eq!(s.get(key), Some(&(value.clone(), 1 + i as u64)))
                }
                OpPlan::Delete { key } => assert_eq!(s.get(key), None),
            }
        }
    }

    #[test]
    fn required_follows_mode_and_power_loss() {
        let mut l = Ledger::default();
        for (idx, end, durable) in [(0usize, 100u64, false), (1, 200, false)] {
            l.record(Event::Attempt { idx });
            l.record(Event::Ack {
                idx,
                txn_id: idx as u64 + 1,
                versions: 1..2,
                end_offset_bytes: end,
                durable,
            });
        }
        l.record(Event::Synced { offset_bytes: 150 });
        l.record(Event::Attempt { idx: 2 });
        l.mark_required(ModeName::Async, false);
        assert_eq!(l.required_prefix_len(), 2, "a process kill keeps every ack");
        l.mark_required(ModeName::Async, true);
        assert_eq!(
            l.required_prefix_len(),
            1,
            "power loss keeps only synced acks"
        );
        l.mark_required(ModeName::Strict, true);
        assert_eq!(l.required_prefix_len(), 2);
        l.record(Event::Error {
            idx: 2,
            message: "x".into(),
        });
        l.record(Event::Attempt { idx: 3 });
        l.record(Event::Ack {
            idx: 3,
            txn_id: 4,
            versions: 5..6,
            end_offset_bytes: 300,
            durable: true,
        });
        assert_eq!(l.acked_after_error, vec![3]);
    }
}
