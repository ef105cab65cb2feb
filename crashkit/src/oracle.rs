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
    /// Number of attempts reported before the first failed fdatasync.
    pub sync_failed_before_attempt: Option<usize>,
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
                let position = self.attempts.iter().rposition(|a| a.idx == idx);
                let after_failed_sync = matches!(
                    (self.sync_failed_before_attempt, position),
                    (Some(failed), Some(p)) if p >= failed
                );
                if self.saw_error || after_failed_sync {
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
            Event::SyncFailed => {
                // Attempts from here on started after the failure: none may be acked.
                // (A commit already in flight may still be: it began before.)
                self.sync_failed_before_attempt
                    .get_or_insert(self.attempts.len());
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

        // A failed fdatasync: a commit attempted before it may still be acked, one
        // attempted after it may not.
        let ack = |idx: usize| Event::Ack {
            idx,
            txn_id: idx as u64 + 1,
            versions: idx as u64 + 1..idx as u64 + 2,
            end_offset_bytes: 60 + idx as u64,
            durable: false,
        };
        let mut l = Ledger::default();
        l.record(Event::Attempt { idx: 0 });
        l.record(Event::SyncFailed);
        l.record(ack(0));
        assert!(l.acked_after_error.is_empty());
        l.record(Event::Attempt { idx: 1 });
        l.record(ack(1));
        assert_eq!(l.acked_after_error, vec![1]);
    }
}

/// Most candidate commit orders the checker tries for a multi-threaded writer.
pub const COMMIT_ORDERS_MAX: usize = 4096;
/// Most in-doubt attempts placed by search; beyond this they all go to the end.
pub const IN_DOUBT_PLACED_MAX: usize = 6;

impl Ledger {
    /// The same ledger with its attempts in `order` (indexes into `attempts`).
    pub fn reordered(&self, order: &[usize]) -> Ledger {
        let mut l = self.clone();
        l.attempts = order.iter().map(|i| self.attempts[*i].clone()).collect();
        l
    }
}

/// The orders in which the attempts may have committed (their CommitTxn order in the log),
/// as permutations of indexes into `ledger.attempts`.
///
/// One writer thread commits in attempt order: one candidate. With several threads,
/// acknowledged txns are ordered by their versions (the engine allocates versions in log
/// order, under the lock that appends). An in-doubt txn (attempted, never acknowledged:
/// the kill came first) sits either in a gap of that version sequence whose size equals its
/// operation count, or after every acknowledged txn; each placement is a candidate.
pub fn commit_orders(
    ledger: &Ledger,
    workload: &Workload,
    threads: usize,
    start_version: u64,
) -> Vec<Vec<usize>> {
    let all: Vec<usize> = (0..ledger.attempts.len()).collect();
    if threads <= 1 {
        return vec![all];
    }
    let mut acked: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| ledger.attempts[*i].ack.is_some())
        .collect();
    acked.sort_by_key(|i| ledger.attempts[*i].ack.as_ref().map(|a| a.versions.start));
    let doubt: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| ledger.attempts[*i].ack.is_none())
        .collect();
    // Gaps in the acknowledged version sequence: (position in `acked`, size in versions).
    let mut gaps = Vec::new();
    let mut next = start_version;
    for (p, i) in acked.iter().enumerate() {
        let v = &ledger.attempts[*i].ack.as_ref().expect("acked").versions;
        if v.start > next {
            gaps.push((p, v.start - next));
        }
        next = next.max(v.end);
    }
    let n_ops = |i: usize| workload.txns[ledger.attempts[i].idx].ops.len() as u64;
    if doubt.len() > IN_DOUBT_PLACED_MAX {
        let mut order = acked;
        order.extend(doubt);
        return vec![order];
    }
    // Assign each in-doubt txn to a gap (0..gaps.len()) or the tail (gaps.len()).
    let mut assignments = Vec::new();
    let slots = gaps.len() + 1;
    let mut choice = vec![0usize; doubt.len()];
    loop {
        let mut filled = vec![0u64; gaps.len()];
        for (d, slot) in doubt.iter().zip(&choice) {
            if *slot < gaps.len() {
                filled[*slot] += n_ops(*d);
            }
        }
        if filled.iter().zip(&gaps).all(|(f, (_, size))| f == size) {
            assignments.push(choice.clone());
        }
        // Next assignment (odometer over slots).
        let mut k = 0;
        while k < choice.len() {
            choice[k] += 1;
            if choice[k] < slots {
                break;
            }
            choice[k] = 0;
            k += 1;
        }
        if k == choice.len() {
            break;
        }
    }
    let mut orders = Vec::new();
    for assignment in assignments {
        // Members of each slot, then every order of each slot's members.
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); slots];
        for (d, slot) in doubt.iter().zip(&assignment) {
            members[*slot].push(*d);
        }
        let per_slot: Vec<Vec<Vec<usize>>> = members.iter().map(|m| permutations(m)).collect();
        let mut pick = vec![0usize; slots];
        loop {
            let mut order = Vec::with_capacity(all.len());
            let mut gap_iter = gaps.iter().enumerate().peekable();
            for (p, i) in acked.iter().enumerate() {
                while let Some((g, _)) = gap_iter.next_if(|(_, (gp, _))| *gp == p) {
                    order.extend(&per_slot[g][pick[g]]);
                }
                order.push(*i);
            }
            order.extend(&per_slot[gaps.len()][pick[gaps.len()]]);
            orders.push(order);
            if orders.len() >= COMMIT_ORDERS_MAX {
                return orders;
            }
            let mut k = 0;
            while k < slots {
                pick[k] += 1;
                if pick[k] < per_slot[k].len() {
                    break;
                }
                pick[k] = 0;
                k += 1;
            }
            if k == slots {
                break;
            }
        }
    }
    if orders.is_empty() {
        // No placement explains the gaps (an engine bug the checker will report): keep
        // the plain order so the report compares against something sensible.
        let mut order = acked;
        order.extend(doubt);
        orders.push(order);
    }
    orders
}

fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for (i, first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, *first);
            out.push(tail);
        }
    }
    out
}

#[cfg(test)]
mod order_tests {
    use super::*;
    use crate::case::Limits;

    #[test]
    fn in_doubt_txns_fill_version_gaps_or_go_last() {
        let w = Workload::generate(
            11,
            &Limits {
                txns_skip: None,
                txns_drop: None,
                ops_drop: None,
                txns_max: Some(6),
                ops_max: Some(1),
                value_len_max: None,
            },
        );
        let mut l = Ledger::default();
        // Threads committed idx 0 (v1), 1 (in doubt, v2), 2 (v3), 3 (in doubt, after all).
        for idx in 0..4 {
            l.record(Event::Attempt { idx });
        }
        for (idx, v) in [(0usize, 1u64), (2, 3)] {
            l.record(Event::Ack {
                idx,
                txn_id: v,
                versions: v..v + 1,
                end_offset_bytes: 100 * v,
                durable: true,
            });
        }
        assert_eq!(commit_orders(&l, &w, 1, 1), vec![vec![0, 1, 2, 3]]);
        let orders = commit_orders(&l, &w, 2, 1);
        assert!(orders.contains(&vec![0, 1, 2, 3]), "{orders:?}");
        assert!(orders.contains(&vec![0, 3, 2, 1]), "{orders:?}");
        assert!(orders.iter().all(|o| o[0] == 0 && o.len() == 4));
        assert!(
            !orders.contains(&vec![0, 2, 1, 3]),
            "a one-version gap needs exactly one txn"
        );
    }
}
