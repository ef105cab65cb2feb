//! Shrinking a failing case: fewer transactions (a window of the workload: transactions cut
//! from its end and from its start), fewer operations, smaller values, fewer generations
//! and damages, each candidate checked by a real crash cycle. A candidate is kept when it
//! still produces a finding of the same kind. The kill offset is pinned to the original
//! one (moved back by the bytes of transactions cut from the start, clamped to the smaller
//! workload), so the kill lands at the same place relative to the transactions kept.

use crate::case::Case;
use crate::case::Limits;
use crate::cycle::{run_cycle, CycleEnv, HarnessError};
use crate::finding::Finding;
use crate::workload::{kept_txn_indices, Workload};

/// Crash cycles a shrink may spend.
pub const SHRINK_CYCLES_MAX: usize = 150;

/// Smaller cases to try, most promising (largest cut) first.
fn candidates(case: &Case, workload: &Workload) -> Vec<Case> {
    let mut out = Vec::new();
    let n_txns = workload.txns.len();
    let with = |f: &dyn Fn(&mut Case)| {
        let mut c = *case;
        f(&mut c);
        c
    };
    // Damages and generations first: each makes every later cycle cheaper.
    if case.n_generations() > 1 {
        out.push(with(&|c| c.generations = 1));
    }
    for flag in [0, 1, 2] {
        let on = [case.corrupt, case.recovery_crash, case.power_loss][flag];
        if on {
            out.push(with(&|c| match flag {
                0 => c.corrupt = false,
                1 => c.recovery_crash = false,
                _ => c.power_loss = false,
            }));
        }
    }
    // Transactions: a window halved from either end, then chunks of the kept ones
    // dropped (delta debugging: halves, quarters, ... single transactions), last first.
    let mut n = n_txns / 2;
    while n >= 1 {
        out.push(keep_window(case, n_txns, 0, n));
        out.push(keep_window(case, n_txns, n_txns - n, n));
        n /= 2;
    }
    let mut chunk = n_txns.div_ceil(2);
    while chunk >= 1 && n_txns > 1 {
        let mut start = n_txns;
        while start > 0 {
            let from = start.saturating_sub(chunk);
            if let Some(c) = drop_kept(case, n_txns, from..start) {
                out.push(c);
            }
            start = from;
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    // Operations: chunks of the workload's operations dropped, halves down to single
    // ones, last first (within the 64 a mask holds; once there are that few).
    let n_ops = workload.n_ops();
    if (2..=64).contains(&n_ops) {
        let mut chunk = n_ops.div_ceil(2);
        loop {
            let mut start = n_ops;
            while start > 0 {
                let from = start.saturating_sub(chunk);
                out.push(drop_ops(case, from..start));
                start = from;
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
    let ops_now = workload.txns.iter().map(|t| t.ops.len()).max().unwrap_or(1);
    let mut n = ops_now / 2;
    while n >= 1 {
        out.push(with(&|c| c.limits.ops_max = Some(n)));
        n /= 2;
    }
    for n in (1..ops_now).rev().take(4) {
        out.push(with(&|c| c.limits.ops_max = Some(n)));
    }
    for len in [0usize, 8, 64, 512, 4096] {
        if case.limits.value_len_max.is_none_or(|cur| len < cur) {
            out.push(with(&|c| c.limits.value_len_max = Some(len)));
        }
    }
    out
}

/// `case` with the operations at positions `positions` (of the workload's, in order)
/// dropped too, as one mask over the operations the current limits keep.
fn drop_ops(case: &Case, positions: std::ops::Range<usize>) -> Case {
    // The mask indexes the operations left after `ops_max`, before any mask: walk those,
    // tell which ones the current mask keeps (by the workload's own rule, a transaction
    // whose operations are all dropped keeps its first), and drop the kept ones at
    // `positions` too.
    let unmasked = Workload::generate_shaped(
        case.seed,
        case.shape,
        &Limits {
            ops_drop: None,
            ..case.limits
        },
    );
    let old = case.limits.ops_drop.unwrap_or(0);
    let dropped = |i: usize| i < 64 && old & (1u64 << i) != 0;
    let mut mask = old;
    let (mut index, mut position) = (0usize, 0usize);
    for txn in &unmasked.txns {
        let ops = index..index + txn.ops.len();
        let all_dropped = ops.clone().all(dropped);
        for i in ops {
            let kept = !dropped(i) || (all_dropped && i == index);
            if kept {
                if positions.contains(&position) && i < 64 {
                    mask |= 1 << i;
                }
                position += 1;
            }
        }
        index += txn.ops.len();
    }
    let mut c = *case;
    c.limits.ops_drop = (mask != 0).then_some(mask);
    c
}

/// `case` keeping only `len` of its `n_kept` transactions, from the `from`-th kept one.
fn keep_window(case: &Case, n_kept: usize, from: usize, len: usize) -> Case {
    // Expressed as a drop mask over what is kept now, so it composes with earlier cuts.
    let dropped = (0..from).chain(from + len..n_kept);
    drop_kept(case, n_kept, dropped).unwrap_or(*case)
}

/// `case` with the kept transactions at positions `positions` (of `n_kept`) dropped too;
/// `None` when that would drop them all or a position lies beyond what a mask holds.
fn drop_kept(
    case: &Case,
    n_kept: usize,
    positions: impl IntoIterator<Item = usize>,
) -> Option<Case> {
    let generated = Workload::generate_shaped(case.seed, case.shape, &Limits::default());
    let kept = kept_txn_indices(&case.limits, generated.txns.len());
    debug_assert_eq!(kept.len(), n_kept);
    let drop: Vec<usize> = positions.into_iter().collect();
    let left: Vec<usize> = kept
        .iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, idx)| *idx)
        .collect();
    let (first, last) = (*left.first()?, *left.last()?);
    // The new window: skip up to the first kept, keep through the last, mask the gaps.
    let mut mask = 0u64;
    for idx in first..=last {
        if left.binary_search(&idx).is_err() {
            let bit = idx - first;
            if bit >= 64 {
                return None;
            }
            mask |= 1 << bit;
        }
    }
    let mut c = *case;
    c.limits.txns_skip = (first > 0).then_some(first);
    c.limits.txns_max = Some(last - first + 1);
    c.limits.txns_drop = (mask != 0).then_some(mask);
    Some(c)
}

/// Pins the kill offset inside the candidate's (possibly smaller) WAL: the kill lands at
/// the same distance into the same generated transaction as in `current`, or at the start
/// of the next transaction the candidate keeps when it dropped that one.
fn pin_kill_offset(candidate: &mut Case, current: &Case, kill_offset_bytes: Option<u64>) {
    let Some(k) = kill_offset_bytes else {
        return;
    };
    let header = engine::wal::HEADER_LEN as u64;
    let n_generated = Workload::generate_shaped(current.seed, current.shape, &Limits::default())
        .txns
        .len();
    let (from_idx, to_idx) = (
        kept_txn_indices(&current.limits, n_generated),
        kept_txn_indices(&candidate.limits, n_generated),
    );
    let from_layout = Workload::for_case(current).record_layout();
    let to_layout = Workload::for_case(candidate).record_layout();
    let expected = Workload::for_case(candidate).expected_wal_len_bytes();
    // The generated index of the transaction whose record holds the kill, and how far in.
    let at = from_layout
        .iter()
        .rev()
        .find(|s| s.offset_bytes < k)
        .map(|s| {
            let first = from_layout
                .iter()
                .find(|f| f.txn_idx == s.txn_idx)
                .map_or(s.offset_bytes, |f| f.offset_bytes);
            (from_idx.get(s.txn_idx).copied(), k - first)
        });
    let pinned = match at {
        Some((Some(generated), into)) => {
            let target = to_idx.iter().position(|i| *i >= generated);
            match target.and_then(|pos| to_layout.iter().find(|s| s.txn_idx == pos)) {
                Some(start) if to_idx[start.txn_idx] == generated => start.offset_bytes + into,
                Some(start) => start.offset_bytes,
                None => expected,
            }
        }
        _ => k,
    };
    candidate.kill_offset_bytes = Some(pinned.min(expected).max(header + 1));
}

/// A case's size, compared lexicographically: a candidate must be smaller to be tried.
fn size(case: &Case) -> (usize, usize, u64, usize) {
    let w = Workload::for_case(case);
    let damages = usize::from(case.power_loss)
        + usize::from(case.recovery_crash)
        + usize::from(case.corrupt)
        + case.n_generations();
    (w.n_ops(), w.txns.len(), w.expected_wal_len_bytes(), damages)
}

/// Minimizes `finding`'s case; returns the smallest failing case's finding. Says, through
/// `on_step`, each step kept and whether it ended minimal or on its budget of
/// [`SHRINK_CYCLES_MAX`] cycles.
pub fn shrink(
    finding: &Finding,
    env: &CycleEnv,
    on_step: &mut dyn FnMut(String),
) -> Result<Finding, HarnessError> {
    let kind = finding.violation.kind;
    let mut best = finding.clone();
    let mut spent = 0;
    // Candidates already run without the finding: never run twice.
    let mut failed: Vec<Case> = Vec::new();
    loop {
        let workload = Workload::for_case(&best.case);
        let best_size = size(&best.case);
        let mut improved = false;
        for mut candidate in candidates(&best.case, &workload) {
            if spent >= SHRINK_CYCLES_MAX {
                on_step(format!(
                    "stopped on budget: {SHRINK_CYCLES_MAX} cycles spent; smallest so far: {}",
                    best.repro
                ));
                return Ok(best);
            }
            pin_kill_offset(&mut candidate, &best.case, best.plan.kill_offset_bytes);
            let candidate_size = size(&candidate);
            if candidate_size >= best_size || candidate == best.case || failed.contains(&candidate)
            {
                continue;
            }
            spent += 1;
            let outcome = run_cycle(&candidate, env)?;
            if outcome
                .finding
                .as_ref()
                .is_none_or(|f| f.violation.kind != kind)
            {
                failed.push(candidate);
            }
            if let Some(f) = outcome.finding.filter(|f| f.violation.kind == kind) {
                on_step(format!(
                    "still {kind} with {} txns, {} ops, {} WAL bytes: {}",
                    candidate_size.1,
                    candidate_size.0,
                    candidate_size.2,
                    candidate.repro_args()
                ));
                best = f;
                improved = true;
                break;
            }
        }
        if !improved {
            on_step(format!("minimal after {spent} cycles: {}", best.repro));
            return Ok(best);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{KillKind, ModeName};

    /// Every operation of the current workload, dropped alone, disappears and nothing else
    /// does, also after earlier drops emptied a transaction (which keeps its first).
    #[test]
    fn dropping_an_operation_removes_exactly_that_one() {
        let mut case = Case::new(11, ModeName::Strict, KillKind::Offset);
        case.limits.txns_max = Some(4);
        let first_len = Workload::for_case(&case).txns[0].ops.len();
        // Empty the first transaction by mask: it keeps its first operation.
        case.limits.ops_drop = Some((1u64 << first_len) - 1);
        let before = Workload::for_case(&case);
        let flat: Vec<_> = before.txns.iter().flat_map(|t| t.ops.clone()).collect();
        for p in 0..flat.len() {
            let after = Workload::for_case(&drop_ops(&case, p..p + 1));
            let left: Vec<_> = after.txns.iter().flat_map(|t| t.ops.clone()).collect();
            let txn_of_p = before
                .txns
                .iter()
                .scan(0, |n, t| {
                    *n += t.ops.len();
                    Some(*n)
                })
                .position(|end| p < end)
                .unwrap();
            if before.txns[txn_of_p].ops.len() == 1 {
                // A transaction keeps one operation (its first, once all are dropped).
                assert_eq!(left.len(), flat.len(), "position {p}");
            } else {
                let mut expected = flat.clone();
                expected.remove(p);
                assert_eq!(left, expected, "position {p}");
            }
        }
    }
}
