//! Histories the WAL format allows but the engine's own commit path never writes.
//!
//! The commit path writes each transaction as one contiguous append, in txn-id order, and
//! never an orphan. A replay that applied transactions in txn-id order, applied orphaned
//! or aborted writes, or let a re-begun id keep its earlier operations would pass every
//! crash cycle of `torture run`, because those logs never hold such histories. This module
//! generates them (proptest strategies, driven from a seed like everything else), appends
//! them record by record through the WAL API, and predicts exactly what recovery must
//! yield: the state in commit order, and the counts `ReplayStats` reports.
//!
//! What a history may hold: transactions that interleave (B begins, A begins, A commits, B
//! commits), commit in any order relative to their ids, abort, stay incomplete, begin again
//! under an id still open; orphaned writes, deletes, commits and aborts; several run ids
//! and namespaces; and format version 2's one-operation records (PutTxn, DeleteTxn after
//! their NamespaceDef) interleaved with all of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use engine::{Database, Key, Namespace, RunId, Timestamp, Value, WALEntry};
use proptest::prelude::*;

/// One event of a history, by transaction slot (slots map to txn ids when the history is
/// laid out, so ids need not follow begin or commit order).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Begin {
        slot: usize,
    },
    Put {
        slot: usize,
        key: u8,
        value: u8,
    },
    Delete {
        slot: usize,
        key: u8,
    },
    Commit {
        slot: usize,
    },
    Abort {
        slot: usize,
    },
    /// A one-put transaction in one record (format version 2).
    PutTxn {
        key: u8,
        value: u8,
    },
    /// A one-delete transaction in one record (format version 2).
    DeleteTxn {
        key: u8,
    },
}

/// A generated history: events and a permutation giving each slot its txn id.
#[derive(Debug, Clone)]
pub struct History {
    pub events: Vec<Event>,
    /// `slot_txn_ids[slot]`: the txn id slot `slot` writes under (a permutation, so commit
    /// order and id order disagree).
    pub slot_txn_ids: Vec<u64>,
}

/// Slots (transactions) a history uses; small, so ids collide with open ones.
pub const SLOTS: usize = 8;
/// Distinct keys; small, so writes collide.
pub const KEYS: u8 = 6;

/// A strategy for histories of up to `events_max` events.
pub fn history_strategy(events_max: usize) -> impl Strategy<Value = History> {
    let slot = 0..SLOTS;
    let event = prop_oneof![
        3 => slot.clone().prop_map(|slot| Event::Begin { slot }),
        4 => (slot.clone(), 0..KEYS, any::<u8>())
            .prop_map(|(slot, key, value)| Event::Put { slot, key, value }),
        2 => (slot.clone(), 0..KEYS).prop_map(|(slot, key)| Event::Delete { slot, key }),
        3 => slot.clone().prop_map(|slot| Event::Commit { slot }),
        1 => slot.prop_map(|slot| Event::Abort { slot }),
        2 => (0..KEYS, any::<u8>()).prop_map(|(key, value)| Event::PutTxn { key, value }),
        1 => (0..KEYS).prop_map(|key| Event::DeleteTxn { key }),
    ];
    (
        prop::collection::vec(event, 1..events_max),
        Just((1..=SLOTS as u64).collect::<Vec<u64>>()).prop_shuffle(),
    )
        .prop_map(|(events, slot_txn_ids)| History {
            events,
            slot_txn_ids,
        })
}

/// The key of key index `idx`: two namespaces (so NamespaceDefs and full keys mix) and two
/// run ids.
pub fn key(idx: u8) -> Key {
    let agent = if idx.is_multiple_of(2) { "even" } else { "odd" };
    let ns = Arc::new(Namespace::new("t", "a", agent, RunId(u64::from(idx % 3))));
    Key::kv(ns, vec![b'k', idx])
}

/// What recovery must yield for a history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    /// key index -> (value byte, version): the state after every commit in commit order.
    pub state: BTreeMap<u8, (u8, u64)>,
    pub txns_applied: u64,
    pub discarded_txns: u64,
    pub aborted_txns: u64,
    pub orphaned_entries: u64,
}

/// Lays a history out as WAL entries (ids from the slot permutation, versions in record
/// order, one run id per slot) and predicts recovery of the whole log. `ns_id` gives the
/// id the writer's log uses for a key's namespace (and whether it is new: then a
/// NamespaceDef is laid out first).
pub fn lay_out(
    history: &History,
    mut ns_id: impl FnMut(&Arc<Namespace>) -> (u64, bool),
) -> (Vec<WALEntry>, Expected) {
    let mut entries = Vec::new();
    let mut expected = Expected::default();
    // slot -> ops of the open transaction (None: not open).
    let mut open: Vec<Option<Vec<PendingOp>>> = vec![None; SLOTS];
    let mut version = 0u64;
    // One-record transactions take ids above every slot's.
    let mut next_single_txn_id = SLOTS as u64 + 1;
    let run = |slot: usize| RunId(100 + slot as u64 % 3);
    let ts = |n: u64| Timestamp(1_700_000_000_000_000 + n);
    for event in &history.events {
        match *event {
            Event::Begin { slot } => {
                if open[slot].is_some() {
                    expected.discarded_txns += 1;
                }
                open[slot] = Some(Vec::new());
                entries.push(WALEntry::BeginTxn {
                    txn_id: history.slot_txn_ids[slot],
                    run_id: run(slot),
                    timestamp: ts(entries.len() as u64),
                });
            }
            Event::Put {
                slot,
                key: k,
                value,
            } => {
                version += 1;
                match &mut open[slot] {
                    Some(ops) => ops.push((k, Some(value), version)),
                    None => expected.orphaned_entries += 1,
                }
                entries.push(WALEntry::Write {
                    txn_id: history.slot_txn_ids[slot],
                    run_id: run(slot),
                    key: key(k),
                    value: Value::Bytes(vec![value]),
                    version,
                });
            }
            Event::Delete { slot, key: k } => {
                version += 1;
                match &mut open[slot] {
                    Some(ops) => ops.push((k, None, version)),
                    None => expected.orphaned_entries += 1,
                }
                entries.push(WALEntry::Delete {
                    txn_id: history.slot_txn_ids[slot],
                    run_id: run(slot),
                    key: key(k),
                    version,
                });
            }
            Event::Commit { slot } => {
                match open[slot].take() {
                    Some(ops) => {
                        expected.txns_applied += 1;
                        for (k, value, v) in ops {
                            apply(&mut expected.state, k, value, v);
                        }
                    }
                    None => expected.orphaned_entries += 1,
                }
                entries.push(WALEntry::CommitTxn {
                    txn_id: history.slot_txn_ids[slot],
                    run_id: run(slot),
                });
            }
            Event::Abort { slot } => {
                match open[slot].take() {
                    Some(_) => expected.aborted_txns += 1,
                    None => expected.orphaned_entries += 1,
                }
                entries.push(WALEntry::AbortTxn {
                    txn_id: history.slot_txn_ids[slot],
                    run_id: run(slot),
                });
            }
            Event::PutTxn { key: k, value } => {
                version += 1;
                let key = key(k);
                let (id, new) = ns_id(&key.namespace);
                if new {
                    entries.push(WALEntry::NamespaceDef {
                        ns_id: id,
                        namespace: key.namespace.clone(),
                    });
                }
                expected.txns_applied += 1;
                apply(&mut expected.state, k, Some(value), version);
                entries.push(WALEntry::PutTxn {
                    txn_id: next_single_txn_id,
                    run_id: RunId(9),
                    timestamp: ts(entries.len() as u64),
                    version,
                    ns_id: id,
                    key,
                    value: Value::Bytes(vec![value]),
                });
                next_single_txn_id += 1;
            }
            Event::DeleteTxn { key: k } => {
                version += 1;
                let key = key(k);
                let (id, new) = ns_id(&key.namespace);
                if new {
                    entries.push(WALEntry::NamespaceDef {
                        ns_id: id,
                        namespace: key.namespace.clone(),
                    });
                }
                expected.txns_applied += 1;
                apply(&mut expected.state, k, None, version);
                entries.push(WALEntry::DeleteTxn {
                    txn_id: next_single_txn_id,
                    run_id: RunId(9),
                    timestamp: ts(entries.len() as u64),
                    version,
                    ns_id: id,
                    key,
                });
                next_single_txn_id += 1;
            }
        }
    }
    expected.discarded_txns += open.iter().filter(|o| o.is_some()).count() as u64;
    (entries, expected)
}

/// An operation of an open transaction: key index, value byte (None: delete), version.
type PendingOp = (u8, Option<u8>, u64);

fn apply(state: &mut BTreeMap<u8, (u8, u64)>, key: u8, value: Option<u8>, version: u64) {
    match value {
        Some(v) => {
            state.insert(key, (v, version));
        }
        None => {
            state.remove(&key);
        }
    }
}

/// The recovered state in the form [`Expected::state`] uses.
pub fn recovered_state(db: &Database) -> BTreeMap<u8, (u8, u64)> {
    db.storage()
        .snapshot()
        .into_iter()
        .map(|(k, v)| {
            let idx = k.user_key[1];
            let byte = match v.value {
                Value::Bytes(b) => b[0],
                other => panic!("history values are one byte, got {other:?}"),
            };
            (idx, (byte, v.version))
        })
        .collect()
}

/// Appends a history to a fresh database at `dir` through the WAL API, drops it without
/// closing (a process kill), reopens it, and returns the verdict: `Ok` when recovery
/// yields exactly the predicted state and counts, or a description of the difference.
pub fn check_history(dir: &std::path::Path, history: &History) -> Result<(), String> {
    let db = Database::open_with_mode(dir, engine::DurabilityMode::Async)
        .map_err(|e| format!("open: {e}"))?;
    let wal = db.wal();
    let (entries, expected) = lay_out(history, |ns| wal.namespace_id(ns));
    for entry in &entries {
        wal.append(entry)
            .map_err(|e| format!("append {entry}: {e}"))?;
    }
    drop(db);
    let db = Database::open(dir).map_err(|e| format!("reopen: {e}"))?;
    let stats = db.recovery_stats();
    let got = Expected {
        state: recovered_state(&db),
        txns_applied: stats.txns_applied,
        discarded_txns: stats.discarded_txns,
        aborted_txns: stats.aborted_txns,
        orphaned_entries: stats.orphaned_entries,
    };
    if got != expected {
        return Err(format!(
            "recovered {got:?}\nexpected  {expected:?}\nlog:\n{}",
            entries
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    Ok(())
}
