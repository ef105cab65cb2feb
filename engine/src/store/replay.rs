//! `ReplayApplier`: how replay's committed operations reach the map.
//!
//! Keys above every key in the map are appended down its rightmost path (no search); logs
//! that write ascending keys never take another path. Any other operation starts a buffer:
//! from then on operations are collected in commit order, sorted into runs of
//! `RUN_LEN_MAX` (keeping each key's last operation), and the runs are merged with the
//! map's entries into a new map with full leaves (`merge.rs`) when they hold as many
//! entries as the map (at least `MERGE_ENTRIES_MIN`), and at the end of replay. A merge
//! before the end runs on a thread of its own (`wal-replay-merge`) while decoding goes on
//! into new runs; the next merge, or the end, waits for it. Measured on
//! 1M single-put transactions with random keys (same run): open 1.04 s inserting one key
//! at a time, 0.35 s this way; the store 127 MiB with half-empty leaves, 86 MiB with full
//! ones, 78 MiB with keys that leave their namespace to the tree (`spaces.rs`).
//!
//! Memory: a merge frees its inputs as it builds the new map, so when keys are new the
//! peak is about the store it builds (1M: 1.03x, 100K: 1.19x). Merging once the runs reach
//! the map's size bounds the buffered entries by about the map (plus `MERGE_ENTRIES_MIN`),
//! so a log that overwrites the same keys far apart peaks within about twice its store
//! plus ~45 MiB.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, RwLockWriteGuard};
use std::thread::JoinHandle;

use super::key::StoredKey;
use super::merge::{merge_spaces, Run, RunBuilder, Unsorted};
use super::spaces::Spaces;
use super::value::{StoredPayload, StoredValue};
use super::{Contents, UnifiedStore};
use crate::types::Timestamp;
use crate::wal::entry::{KeyRef, ValueRef};

/// Operations per sorted run (a run of 88-byte entries is ~2.8 MiB: sorting it stays in
/// the cache, and 1M operations make 31 runs for the merge). Measured against 8K: 25%
/// slower on 1M operations (a deeper merge), though 8K put a 100K replay's peak lower.
const RUN_LEN_MAX: usize = if cfg!(test) { 16 } else { 32 * 1024 };
/// Runs are merged into the map once they hold this many entries, or as many as the map,
/// whichever is more (so merges double the map: each entry moves a bounded number of
/// times). 512K (~45 MiB) merges 1M operations once midway; 128K merged 1.9M entries in
/// all where this merges 1.5M.
const MERGE_ENTRIES_MIN: usize = if cfg!(test) { 40 } else { 512 * 1024 };

/// Applies replayed, committed operations in commit order, holding the store's write lock
/// from start to finish (readers see the store before replay or after it, never between).
#[derive(Debug)]
pub(crate) struct ReplayApplier<'a> {
    store: &'a UnifiedStore,
    contents: RwLockWriteGuard<'a, Contents>,
    /// A merge running on its own thread, with the number of entries it merges at most;
    /// while it runs, `contents.map` is empty and every operation is buffered.
    merging: Option<(JoinHandle<Spaces<StoredValue>>, usize)>,
    version_max: u64,
    /// Operations not yet in a run or the map, in commit order.
    pending: RunBuilder<StoredKey, StoredValue>,
    /// Sorted runs not yet merged, oldest first; all newer than the map.
    runs: Vec<Run<StoredKey, StoredValue>>,
    /// Entries in `runs`.
    runs_len: usize,
    /// Sorts runs on a helper thread (started at the first run; `Err` if it could not
    /// start: runs are then sorted here).
    sorter: Option<Result<Sorter, ()>>,
}

type ReplayRun = Run<StoredKey, StoredValue>;

/// A helper thread that sorts runs while replay goes on decoding and collecting the next
/// one, handing them back in the order it got them. It allocates only its sort's scratch
/// (the run's buffer comes from and goes back to the replaying thread).
#[derive(Debug)]
struct Sorter {
    to_sort: mpsc::SyncSender<Unsorted<StoredKey, StoredValue>>,
    sorted: mpsc::Receiver<ReplayRun>,
    thread: Option<JoinHandle<()>>,
    /// Operations in each run handed over and not yet back, oldest first.
    in_flight: VecDeque<usize>,
}

impl Sorter {
    fn start() -> Option<Sorter> {
        // One run queued while another is sorted: the replaying thread waits rather than
        // buffer more (memory stays what sorting here would hold, plus one run).
        let (to_sort, to_sort_rx) = mpsc::sync_channel::<Unsorted<StoredKey, StoredValue>>(1);
        let (sorted_tx, sorted) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wal-replay-sort".to_string())
            .spawn(move || {
                for unsorted in to_sort_rx {
                    if sorted_tx.send(unsorted.sort()).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Sorter {
            to_sort,
            sorted,
            thread: Some(thread),
            in_flight: VecDeque::new(),
        })
    }

    /// Operations handed over and not yet back.
    fn in_flight_len(&self) -> usize {
        self.in_flight.iter().sum()
    }

    fn hand_over(&mut self, unsorted: Unsorted<StoredKey, StoredValue>) {
        self.in_flight.push_back(unsorted.len());
        if self.to_sort.send(unsorted).is_err() {
            self.died();
        }
    }

    /// The next sorted run: waits for it if `wait`, else only takes one that is ready.
    fn take(&mut self, wait: bool) -> Option<ReplayRun> {
        if self.in_flight.is_empty() {
            return None;
        }
        let run = if wait {
            self.sorted.recv().ok()
        } else {
            match self.sorted.try_recv() {
                Ok(run) => Some(run),
                Err(mpsc::TryRecvError::Empty) => return None,
                Err(mpsc::TryRecvError::Disconnected) => None,
            }
        };
        match run {
            Some(run) => {
                self.in_flight.pop_front();
                Some(run)
            }
            None => self.died(),
        }
    }

    /// The thread hung up with runs outstanding: it panicked; the panic goes on here.
    fn died(&mut self) -> ! {
        let thread = self.thread.take().expect("joined only once");
        match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the sort thread ends only when the applier hangs up"),
        }
    }

    /// Hangs up and waits for the thread to end.
    fn stop(mut self) {
        let thread = self.thread.take().expect("joined only once");
        drop(self);
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// One replayed operation, already in the store's own form: replay builds it from the
/// borrowed record (one copy of the key and value bytes, no allocation for short ones) and
/// holds it until its transaction's CommitTxn.
#[derive(Debug, Clone)]
pub(crate) enum ReplayOp {
    Put {
        key: StoredKey,
        payload: StoredPayload,
        version: u64,
    },
    Delete {
        key: StoredKey,
        version: u64,
    },
}

impl ReplayOp {
    /// A Write record's operation.
    pub(crate) fn put(key: KeyRef<'_>, value: ValueRef<'_>, version: u64) -> ReplayOp {
        ReplayOp::Put {
            key: StoredKey::new(key.namespace, key.type_tag, key.user_key),
            payload: StoredPayload::from_ref(value),
            version,
        }
    }

    /// A Delete record's operation.
    pub(crate) fn delete(key: KeyRef<'_>, version: u64) -> ReplayOp {
        ReplayOp::Delete {
            key: StoredKey::new(key.namespace, key.type_tag, key.user_key),
            version,
        }
    }

    pub(crate) fn is_put(&self) -> bool {
        matches!(self, ReplayOp::Put { .. })
    }
}

impl<'a> ReplayApplier<'a> {
    pub(super) fn new(
        store: &'a UnifiedStore,
        contents: RwLockWriteGuard<'a, Contents>,
    ) -> ReplayApplier<'a> {
        ReplayApplier {
            store,
            contents,
            merging: None,
            version_max: 0,
            pending: RunBuilder::new(RUN_LEN_MAX),
            runs: Vec::new(),
            runs_len: 0,
            sorter: None,
        }
    }

    /// True when every operation so far is in the map.
    fn nothing_buffered(&self) -> bool {
        self.pending.is_empty()
            && self.runs.is_empty()
            && self.in_flight_len() == 0
            && self.merging.is_none()
    }

    /// Entries of the map, or at most that many while a merge builds it.
    fn map_len(&self) -> usize {
        match &self.merging {
            Some((_, len_max)) => *len_max,
            None => self.contents.map.len(),
        }
    }

    fn in_flight_len(&self) -> usize {
        match &self.sorter {
            Some(Ok(sorter)) => sorter.in_flight_len(),
            _ => 0,
        }
    }

    /// Applies one committed operation with its transaction's BeginTxn timestamp.
    pub(crate) fn apply(&mut self, op: ReplayOp, timestamp: Timestamp) {
        let entry = match op {
            ReplayOp::Put {
                key,
                payload,
                version,
            } => {
                self.version_max = self.version_max.max(version);
                let value = StoredValue::from_payload(payload, version, timestamp);
                if self.nothing_buffered() {
                    match self.contents.map.try_append(key, value) {
                        Ok(()) => return,
                        Err((key, value)) => (key, Some(value)),
                    }
                } else {
                    (key, Some(value))
                }
            }
            ReplayOp::Delete { key, version } => {
                self.version_max = self.version_max.max(version);
                if self.nothing_buffered() {
                    // Nothing buffered: deleting now keeps logs of ascending puts and
                    // deletes on the append path instead of buffering from here on.
                    self.contents.map.remove_key(&key);
                    return;
                }
                (key, None)
            }
        };
        self.pending.push(entry.0, entry.1);
        if self.pending.len() == RUN_LEN_MAX {
            self.seal_run();
            let buffered = self.runs_len + self.in_flight_len();
            if buffered >= MERGE_ENTRIES_MIN.max(self.map_len()) {
                self.merge_behind();
            }
        }
    }

    /// Sorts the pending operations into a run: on the sort thread, or here if it did not
    /// start. Measured on 1M single-put transactions with random keys: sorting is ~15% of
    /// the replaying thread's instructions.
    fn seal_run(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let unsorted = self.pending.take_unsorted();
        if unsorted.len() < RUN_LEN_MAX && self.sorter.is_none() {
            // A short run (the last one of a small log): sorting it here costs less than
            // starting a thread and waiting for it.
            let run = unsorted.sort();
            self.runs_len += run.len();
            self.runs.push(run);
            return;
        }
        match self.sorter.get_or_insert_with(|| Sorter::start().ok_or(())) {
            Ok(sorter) => {
                sorter.hand_over(unsorted);
                while let Some(run) = sorter.take(false) {
                    self.runs_len += run.len();
                    self.runs.push(run);
                }
            }
            Err(()) => {
                let run = unsorted.sort();
                self.runs_len += run.len();
                self.runs.push(run);
            }
        }
    }

    /// Waits for every run the sort thread still has.
    fn take_sorted_runs(&mut self) {
        if let Some(Ok(sorter)) = &mut self.sorter {
            while let Some(run) = sorter.take(true) {
                self.runs_len += run.len();
                self.runs.push(run);
            }
        }
    }

    /// Merges every run into the map.
    /// Merges the runs into the map here and now.
    fn merge(&mut self) {
        self.join_merge();
        self.take_sorted_runs();
        let map = std::mem::take(&mut self.contents.map);
        let runs = std::mem::take(&mut self.runs);
        self.contents.map = Spaces::from_maps(merge_spaces(map.into_maps(), runs));
        self.runs_len = 0;
    }

    /// Starts merging the runs into the map on a thread of its own, while this one goes on
    /// decoding and buffering (a 1M random-key replay spent ~70 ms of its ~320 ms in the
    /// midway merge with the decoding stopped). Merges here if no thread can be started.
    fn merge_behind(&mut self) {
        self.join_merge();
        self.take_sorted_runs();
        let map = std::mem::take(&mut self.contents.map);
        let runs = std::mem::take(&mut self.runs);
        let len_max = map.len() + self.runs_len;
        // The thread gets its inputs through a slot it takes them from, so that if it
        // cannot start they are still here.
        let inputs = std::sync::Arc::new(std::sync::Mutex::new(Some((map, runs))));
        let for_thread = std::sync::Arc::clone(&inputs);
        let spawned = std::thread::Builder::new()
            .name("wal-replay-merge".to_string())
            .spawn(move || {
                let (map, runs) = for_thread
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .take()
                    .expect("the inputs are taken once");
                Spaces::from_maps(merge_spaces(map.into_maps(), runs))
            });
        self.runs_len = 0;
        match spawned {
            Ok(thread) => self.merging = Some((thread, len_max)),
            Err(_) => {
                let (map, runs) = inputs
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .take()
                    .expect("a thread that never started took nothing");
                self.contents.map = Spaces::from_maps(merge_spaces(map.into_maps(), runs));
            }
        }
    }

    /// Waits for a merge running behind and installs the map it built.
    fn join_merge(&mut self) {
        if let Some((thread, _)) = self.merging.take() {
            match thread.join() {
                Ok(map) => self.contents.map = map,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    }

    /// Merges what is still buffered, raises the global version and releases the lock.
    pub(crate) fn finish(mut self) {
        self.seal_run();
        self.take_sorted_runs();
        if let Some(Ok(sorter)) = self.sorter.take() {
            sorter.stop();
        }
        if self.runs.is_empty() {
            self.join_merge();
        } else {
            self.merge();
        }
        self.store
            .version
            .fetch_max(self.version_max, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOp;
    use crate::types::{Key, Namespace, RunId, Value};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn ns(run: u64) -> Arc<Namespace> {
        Arc::new(Namespace::new("tenant", "app", "agent", RunId(run)))
    }

    fn replay_op(op: StoreOp, timestamp: Timestamp) -> ReplayOp {
        match op {
            StoreOp::Put {
                key,
                value,
                version,
            } => ReplayOp::Put {
                key: StoredKey::from_key(key),
                payload: StoredValue::new(value, version, timestamp).into_payload(),
                version,
            },
            StoreOp::Delete { key, version } => ReplayOp::Delete {
                key: StoredKey::from_key(key),
                version,
            },
        }
    }

    /// Operations over few keys in two namespaces (so a run holds the same key several
    /// times, runs overlap, and keys come back after a delete), with user keys on both
    /// sides of the inline limit, and a share of ascending keys (the append path, which
    /// must stop as soon as anything is buffered).
    fn ops_strategy() -> impl Strategy<Value = Vec<(u8, u8, u16, bool)>> {
        proptest::collection::vec((0u8..2, 0u8..4, 0u16..400, any::<bool>()), 0..700)
    }

    proptest! {
        /// Whatever the order of keys, the applier leaves exactly the state (every key,
        /// value, version and timestamp, and the global version) that applying each
        /// operation by itself leaves. Runs of 16 and merges from 40 entries (test sizes)
        /// make a few hundred operations seal runs, merge mid-replay and at the end.
        #[test]
        fn applier_equals_one_by_one_application(ops in ops_strategy(), start_ascending in 0usize..300) {
            let namespaces = [ns(2), ns(1)];
            let mut store_ops = Vec::new();
            // An ascending prefix takes the append path first.
            for idx in 0..start_ascending {
                store_ops.push(StoreOp::Put {
                    key: Key::kv(namespaces[1].clone(), format!("a{idx:05}")),
                    value: Value::I64(idx as i64),
                    version: store_ops.len() as u64 + 1,
                });
            }
            for (ns_idx, kind, key_idx, long) in ops {
                let user_key = if long {
                    format!("k{key_idx:05}-padded-past-the-inline-limit")
                } else {
                    format!("k{key_idx:05}")
                };
                let key = Key::kv(namespaces[usize::from(ns_idx)].clone(), user_key);
                let version = store_ops.len() as u64 + 1;
                store_ops.push(if kind == 0 {
                    StoreOp::Delete { key, version }
                } else {
                    StoreOp::Put { key, value: Value::I64(i64::from(key_idx) * 10 + i64::from(kind)), version }
                });
            }
            let expected = UnifiedStore::new();
            let store = UnifiedStore::new();
            let mut applier = store.replay_applier();
            for (idx, op) in store_ops.into_iter().enumerate() {
                // Transactions of a few operations share a timestamp.
                let timestamp = Timestamp(idx as u64 / 3);
                expected.apply_batch([op.clone()], timestamp);
                applier.apply(replay_op(op, timestamp), timestamp);
            }
            applier.finish();
            prop_assert_eq!(store.current_version(), expected.current_version());
            prop_assert_eq!(store.len(), expected.len());
            prop_assert_eq!(store.snapshot(), expected.snapshot());
            store.contents.read().unwrap().map.check_invariants();
        }
    }

    /// Versions need not follow log order for the last write of a key to win: a later
    /// commit with a lower version still replaces an earlier one, also inside one run.
    #[test]
    fn later_commit_wins_whatever_its_version() {
        let store = UnifiedStore::new();
        let mut applier = store.replay_applier();
        let key = |name: &str| Key::kv(ns(1), name);
        let ops = [
            (key("b"), 9),
            (key("a"), 1),
            (key("b"), 3),
            (key("c"), 5),
            (key("b"), 2),
        ];
        for (k, version) in ops {
            let op = StoreOp::Put {
                key: k,
                value: Value::I64(version as i64),
                version,
            };
            applier.apply(replay_op(op, Timestamp(version)), Timestamp(version));
        }
        applier.finish();
        let got = store.get(&key("b")).expect("stored");
        assert_eq!(
            (got.value, got.version, got.timestamp),
            (Value::I64(2), 2, Timestamp(2))
        );
        assert_eq!(store.current_version(), 9);
        assert_eq!(store.len(), 3);
    }
}
