//! The bench's output: one human table, or the same figures as JSON Lines.

use super::commit::CommitFigures;
use super::memory::RecoveryMemory;
use super::replay::ReplayFigures;

const MIB: f64 = 1024.0 * 1024.0;

/// The naive log's replay over the engine's open, both in fresh processes: the open
/// target is at least 2 (open after a crash at most half the naive log's, issue 11).
fn naive_to_open(r: &ReplayFigures, m: &RecoveryMemory) -> f64 {
    r.naive_replay.as_secs_f64() / m.open.as_secs_f64().max(1e-9)
}

/// Everything one `torture bench` run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub quick: bool,
    pub replay: Vec<(ReplayFigures, RecoveryMemory)>,
    pub commit: Option<CommitFigures>,
}

impl Report {
    pub fn new(quick: bool) -> Report {
        Report {
            quick,
            ..Report::default()
        }
    }

    pub fn print(&self, json: bool) {
        if json {
            for line in self.json_lines() {
                println!("{line}");
            }
        } else {
            print!("{}", self.table());
        }
    }

    /// JSON Lines: `begin`, one `replay` per size and key order (`key_order`), one `commit` per cell, `summary`.
    pub fn json_lines(&self) -> Vec<String> {
        let mut lines = vec![serde_json::json!({"type": "begin", "quick": self.quick}).to_string()];
        for (r, m) in &self.replay {
            lines.push(
                serde_json::json!({
                    "type": "replay",
                    "txns": r.n_txns,
                    "key_order": r.key_order.name(),
                    "wal_bytes": r.wal_len_bytes,
                    "wal_bytes_per_txn": r.wal_bytes_per_txn(),
                    "reopen_s": r.reopen.as_secs_f64(),
                    "replay_txn_per_s": r.txns_per_second(),
                    "replay_mib_per_s": r.mib_per_second(),
                    "floor_read_crc32_s": r.floor.as_secs_f64(),
                    "replay_to_floor_ratio": r.floor_ratio(),
                    "reopen_read_all_s": r.reopen_read_all.as_secs_f64(),
                    "fresh_open_s": m.open.as_secs_f64(),
                    "naive_replay_s": r.naive_replay.as_secs_f64(),
                    "naive_read_all_s": r.naive_read_all.as_secs_f64(),
                    "naive_to_fresh_open_ratio": naive_to_open(r, m),
                    "recovery_peak_rss_delta_bytes": m.peak_delta_bytes(),
                    "store_rss_delta_bytes": m.store_delta_bytes(),
                    "peak_to_store_ratio": m.peak_to_store_ratio(),
                    "rss_method": m.method,
                })
                .to_string(),
            );
        }
        if let Some(c) = &self.commit {
            for cell in &c.cells {
                lines.push(
                    serde_json::json!({
                        "type": "commit",
                        "mode": cell.mode,
                        "threads": cell.threads,
                        "commits": cell.commits,
                        "elapsed_s": cell.elapsed.as_secs_f64(),
                        "txn_per_s": cell.txns_per_second(),
                        "wal_bytes_per_txn": cell.wal_bytes_per_txn,
                    })
                    .to_string(),
                );
            }
            let group = c.strict_group_commit_ratio("strict");
            let group_append = c.strict_group_commit_ratio("strict-append");
            lines.push(
                serde_json::json!({
                    "type": "summary",
                    "naive_to_fresh_open_ratio": self.largest_random().map(|(r, m)| naive_to_open(r, m)),
                    "naive_write_per_s": c.naive_write_per_second,
                    "async_1t_to_naive_ratio": c.async_to_naive_ratio(),
                    "plain_append_fdatasync_per_s": c.plain_fdatasync_per_second,
                    "plain_record_len_bytes": c.plain_record_len_bytes,
                    "strict_1t_to_plain_ratio": c.strict_to_plain_ratio("strict"),
                    "strict_append_1t_to_plain_ratio": c.strict_to_plain_ratio("strict-append"),
                    "strict_group_commit_threads": group.map(|g| g.0),
                    "strict_group_commit_ratio": group.map(|g| g.1),
                    "strict_append_group_commit_ratio": group_append.map(|g| g.1),
                })
                .to_string(),
            );
        }
        lines
    }

    /// The replay of the most random-order transactions: the one the open target is
    /// judged on (the peer benchmark's 1M; small logs are dominated by open's fixed costs).
    fn largest_random(&self) -> Option<&(ReplayFigures, RecoveryMemory)> {
        self.replay
            .iter()
            .filter(|(r, _)| r.key_order == super::replay::KeyOrder::Random)
            .max_by_key(|(r, _)| r.n_txns)
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "torture bench{}: single-put txns, 20-byte keys, 32-byte values, medians\n\n",
            if self.quick { " --quick" } else { "" }
        ));
        out.push_str(&format!(
            "{:>9} {:>9} {:>10} {:>8} {:>10} {:>11} {:>9} {:>9} {:>8} {:>11} {:>10} {:>10} {:>6} {:>9} {:>9} {:>9}\n",
            "txns",
            "keys",
            "WAL MiB",
            "B/txn",
            "reopen s",
            "txn/s",
            "MiB/s",
            "floor s",
            "x floor",
            "read-all s",
            "peak MiB",
            "store MiB",
            "peak/st",
            "fresh s",
            "naive s",
            "n.read s"
        ));
        for (r, m) in &self.replay {
            out.push_str(&format!(
                "{:>9} {:>9} {:>10.1} {:>8.1} {:>10.3} {:>11.0} {:>9.0} {:>9.4} {:>8.1} {:>11.3} {:>10.1} {:>10.1} {:>6.2} {:>9.3} {:>9.3} {:>9.3}\n",
                r.n_txns,
                r.key_order.name(),
                r.wal_len_bytes as f64 / MIB,
                r.wal_bytes_per_txn(),
                r.reopen.as_secs_f64(),
                r.txns_per_second(),
                r.mib_per_second(),
                r.floor.as_secs_f64(),
                r.floor_ratio(),
                r.reopen_read_all.as_secs_f64(),
                m.peak_delta_bytes() as f64 / MIB,
                m.store_delta_bytes() as f64 / MIB,
                m.peak_to_store_ratio(),
                m.open.as_secs_f64(),
                r.naive_replay.as_secs_f64(),
                r.naive_read_all.as_secs_f64(),
            ));
        }
        if !self.replay.is_empty() {
            out.push_str(
                "(keys: random = `key_` + 16 hex digits of splitmix64(i), the peer benchmark's; \
                 ascending = `key-` + i in 16 digits, the store's append path)\n\
                 (fresh = open in a fresh process; naive = the peer benchmark's baseline log of \
                 the same puts replayed into a HashMap in a fresh process; n.read = its reads)\n",
            );
        }
        if let Some((r, m)) = self.largest_random() {
            out.push_str(&format!(
                "naive log replay / open, {} random, fresh processes: {:.2}x (target >= 2x)\n",
                r.n_txns,
                naive_to_open(r, m)
            ));
        }
        if let Some((_, m)) = self.replay.first() {
            out.push_str(&format!(
                "(RSS measured {}: peak = VmHWM - VmRSS before open; store = VmRSS after open and malloc_trim - VmRSS before)\n",
                if m.method == "child" { "in a fresh child process" } else { "in-process after resetting VmHWM" }
            ));
        }
        if let Some(c) = &self.commit {
            out.push_str("\ncommit throughput (txn/s)\n");
            let mut threads: Vec<usize> = c.cells.iter().map(|cell| cell.threads).collect();
            threads.sort_unstable();
            threads.dedup();
            out.push_str(&format!("{:>16}", "mode"));
            for t in &threads {
                out.push_str(&format!(" {:>12}", format!("{t} thr")));
            }
            out.push_str(&format!(" {:>8}\n", "B/txn"));
            for mode in super::commit::ROW_NAMES {
                out.push_str(&format!("{mode:>16}"));
                let mut bytes_per_txn = 0.0;
                for t in &threads {
                    match c
                        .cells
                        .iter()
                        .find(|cell| cell.mode == mode && cell.threads == *t)
                    {
                        Some(cell) => {
                            out.push_str(&format!(" {:>12.0}", cell.txns_per_second()));
                            bytes_per_txn = cell.wal_bytes_per_txn;
                        }
                        None => out.push_str(&format!(" {:>12}", "-")),
                    }
                }
                out.push_str(&format!(" {bytes_per_txn:>8.1}\n"));
            }
            out.push_str(&format!(
                "plain pwrite({} B, appending) + fdatasync loop: {:.0}/s\n",
                c.plain_record_len_bytes, c.plain_fdatasync_per_second
            ));
            out.push_str(&format!(
                "naive log write(2) loop (random keys, no fsync): {:.0}/s\n",
                c.naive_write_per_second
            ));
            if let Some(ratio) = c.async_to_naive_ratio() {
                out.push_str(&format!(
                    "async 1 thread / naive write loop: {ratio:.2}x (target >= 1x)\n"
                ));
            }
            for row in ["strict", "strict-append"] {
                if let Some(ratio) = c.strict_to_plain_ratio(row) {
                    out.push_str(&format!(
                        "{row} 1 thread / plain loop: {ratio:.2}x (target >= 1.3x)\n"
                    ));
                }
                if let Some((t, ratio)) = c.strict_group_commit_ratio(row) {
                    out.push_str(&format!(
                        "{row} {t} threads / 1 thread: {ratio:.2}x (target >= 5x)\n"
                    ));
                }
            }
        }
        out
    }
}
