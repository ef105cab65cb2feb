//! Recovery test suite: every committed transaction comes back exactly, and nothing else.
//!
//! Property: after any history the WAL can hold (hand-built with `WAL::append`, written by
//! the transaction API, cut at any byte, overwritten with zeros or garbage, damaged in the
//! middle, copied from another database, written by a future engine, or left behind by a
//! failed write or fsync) `Database::open` either yields exactly the committed prefix with
//! its original versions, or refuses with a typed error naming the offset.
//! How: hand-built WAL images with known record offsets, reopened in temporary directories
//! and compared with the expected state and `ReplayStats` field by field.
//! Bugs pinned: the original stories (incomplete, aborted and orphaned records applied;
//! versions reallocated on replay), and the docs/faults.md catalogue T1-T3, C1-C4, O1-O5, E1-E4
//! and R9 (see each module).

#[path = "../common/mod.rs"]
mod common;

mod api;
mod commit_path;
mod compact;
mod corruption;
mod durability;
mod identity;
mod io_errors;
mod power_loss;
mod seam;
mod stories;
mod torn;

use std::collections::BTreeMap;
use std::path::Path;

use engine::{Database, Value};

/// A store's content: user key -> (value, version).
pub type State = BTreeMap<String, (Value, u64)>;

/// The store's content keyed by user key, with each value's version.
pub fn state(db: &Database) -> State {
    db.storage()
        .snapshot()
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k.user_key).expect("test keys are UTF-8"),
                (v.value, v.version),
            )
        })
        .collect()
}

/// Opens the database at `dir` in Strict mode, panicking with the error if it fails.
pub fn open(dir: &Path) -> Database {
    Database::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}
