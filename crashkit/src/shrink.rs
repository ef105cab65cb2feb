//! Shrinking a failing case: fewer transactions, fewer operations, smaller values, each
//! candidate checked by a real crash cycle. A candidate is kept when it still produces a
//! finding of the same kind. The kill offset is pinned to the original one (clamped to the
//! smaller workload), so cutting transactions after the kill point changes nothing before it.

use crate::case::Case;
use crate::cycle::{run_cycle, CycleEnv, HarnessError};
use crate::finding::Finding;
use crate::workload::Workload;

/// Crash cycles a shrink may spend.
pub const SHRINK_CYCLES_MAX: usize = 80;

fn candidates(case: &Case, workload: &Workload) -> Vec<Case> {
    let mut out = Vec::new();
    let n_txns = workload.txns.len();
    let mut n = n_txns / 2;
    while n >= 1 {
        let mut c = *case;
        c.limits.txns_max = Some(n);
        out.push(c);
        n /= 2;
    }
    for n in (1..n_txns).rev().take(8) {
        let mut c = *case;
        c.limits.txns_max = Some(n);
        out.push(c);
    }
    let ops_now = workload.txns.iter().map(|t| t.ops.len()).max().unwrap_or(1);
    for n in 1..ops_now {
        let mut c = *case;
        c.limits.ops_max = Some(n);
        out.push(c);
    }
    for len in [0usize, 8, 64, 512, 4096] {
        if case.limits.value_len_max.is_none_or(|cur| len < cur) {
            let mut c = *case;
            c.limits.value_len_max = Some(len);
            out.push(c);
        }
    }
    out
}

/// Pins the kill offset inside the candidate's (possibly smaller) WAL.
fn pin_kill_offset(candidate: &mut Case, kill_offset_bytes: Option<u64>) {
    if let Some(k) = kill_offset_bytes {
        let expected = Workload::for_case(candidate).expected_wal_len_bytes();
        let header = engine::wal::HEADER_LEN as u64;
        candidate.kill_offset_bytes = Some(k.min(expected).max(header + 1));
    }
}

/// Minimizes `finding`'s case; returns the smallest failing case's finding.
pub fn shrink(
    finding: &Finding,
    env: &CycleEnv,
    on_step: &mut dyn FnMut(String),
) -> Result<Finding, HarnessError> {
    let kind = finding.violation.kind;
    let mut best = finding.clone();
    let mut spent = 0;
    loop {
        let workload = Workload::for_case(&best.case);
        let mut improved = false;
        for mut candidate in candidates(&best.case, &workload) {
            if spent >= SHRINK_CYCLES_MAX {
                on_step(format!("budget of {SHRINK_CYCLES_MAX} cycles spent"));
                return Ok(best);
            }
            pin_kill_offset(&mut candidate, best.plan.kill_offset_bytes);
            let smaller = Workload::for_case(&candidate);
            if (
                smaller.txns.len(),
                smaller.n_ops(),
                smaller.expected_wal_len_bytes(),
            ) >= (
                workload.txns.len(),
                workload.n_ops(),
                workload.expected_wal_len_bytes(),
            ) {
                continue;
            }
            spent += 1;
            let outcome = run_cycle(&candidate, env)?;
            if let Some(f) = outcome.finding.filter(|f| f.violation.kind == kind) {
                on_step(format!(
                    "still {kind} with {} txns, {} ops, {} WAL bytes: {}",
                    smaller.txns.len(),
                    smaller.n_ops(),
                    smaller.expected_wal_len_bytes(),
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
