//! Opening a crashed database for the checker, and reading its state.

use std::collections::BTreeSet;
use std::path::Path;

use engine::{Database, Key};

use crate::finding::{describe_value, FindingKind, KeyDiff, Violation};
use crate::oracle::State;

/// Reads a store into the model's shape.
pub fn snapshot(db: &Database) -> State {
    db.storage()
        .snapshot()
        .into_iter()
        .map(|(k, v)| (k, (v.value, v.version)))
        .collect()
}

/// How long a reopen waits for a lock held by an inherited descriptor (see `open`). A
/// sibling between fork and exec normally holds it for microseconds, but a one-hour
/// campaign at nice 10 on a machine loaded 7-deep (two compilers beside it) once saw it
/// held past 2 s: `recovery-failed ... locked by another open handle`, a finding about the
/// harness's own scheduling, not the engine. Ten seconds is still far below a hang.
pub(crate) const LOCK_RETRY_MS: u64 = 10_000;

/// Opens `dir` with default options; any failure is a `recovery-failed` finding.
pub(crate) fn open(dir: &Path, what: &str) -> Result<Database, Violation> {
    open_classified(dir, what, engine::DatabaseOptions::new, |_| {
        FindingKind::RecoveryFailed
    })
}

/// The finding for a failed open of a state the crash left: any refusal is one of a
/// legal crash state (the checker's input never holds anything else); an I/O error is a
/// failed recovery.
pub(crate) fn refused(e: &engine::EngineError) -> FindingKind {
    match e {
        engine::EngineError::Io { .. } => FindingKind::RecoveryFailed,
        _ => FindingKind::LegalStateRefused,
    }
}

/// Opens `dir` with `options`, retrying while it is locked; a failure is a finding of
/// the kind `kind` gives.
pub(crate) fn open_classified(
    dir: &Path,
    what: &str,
    options: impl Fn() -> engine::DatabaseOptions,
    kind: impl Fn(&engine::EngineError) -> FindingKind,
) -> Result<Database, Violation> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LOCK_RETRY_MS);
    loop {
        match options().open(dir) {
            Ok(db) => return Ok(db),
            // With several jobs, a child forked by another worker thread briefly inherits
            // this process's lock descriptor (until its exec closes it), so the lock can
            // outlive our handle by a moment. Waiting is the harness's problem, not a finding.
            Err(engine::EngineError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => {
                return Err(Violation::new(
                    kind(&e),
                    format!("{what}: Database::open failed: {e}"),
                ))
            }
        }
    }
}

/// Up to `max` keys whose entries differ between `expected` and `recovered`.
pub fn diff_states(expected: &State, recovered: &State, max: usize) -> Vec<KeyDiff> {
    let keys: BTreeSet<&Key> = expected.keys().chain(recovered.keys()).collect();
    keys.into_iter()
        .filter(|k| expected.get(*k) != recovered.get(*k))
        .take(max)
        .map(|k| KeyDiff {
            key: k.to_string(),
            expected: expected.get(k).map(|(v, ver)| describe_value(v, *ver)),
            recovered: recovered.get(k).map(|(v, ver)| describe_value(v, *ver)),
        })
        .collect()
}

/// How many keys differ between `a` and `b`.
pub(crate) fn n_diffs(a: &State, b: &State) -> usize {
    let keys: BTreeSet<&Key> = a.keys().chain(b.keys()).collect();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).count()
}
