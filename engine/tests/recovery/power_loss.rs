//! Legal crash states (docs/recovery-contract.md, R5 and P5-P6): after a power loss every
//! byte a completed fdatasync covered is intact, and every other written byte may come back
//! new, old (here: the zeros preallocation synced), zero or garbage, per 512-byte sector
//! and in any order across pages; a size change no sync covered may be undone.
//!
//! How: real logs written by the commit path (so every record carries the synced offset
//! the engine really had), copied as a crash leaves them; then the bytes after the last
//! completed sync are damaged in each legal shape and the database is reopened with the
//! default recovery mode. Property: the open succeeds and yields exactly a prefix of the
//! commit order holding every commit a completed sync covered; the cut non-zero bytes are
//! kept in a sidecar; a second open agrees; new commits survive another reopen. And the
//! converse: damage to bytes a completed sync covered, with later records, is refused.
//!
//! Bug pinned: format version 1 refused to open ("corruption in committed history") when
//! the middle (or first) page of an unacknowledged multi-page Strict commit was lost while
//! its later pages reached the disk, an ordinary power loss.

use std::path::Path;
use std::sync::Arc;

use engine::{
    Database, DatabaseOptions, DurabilityMode, EngineError, Key, Namespace, ReadEnd, RunId, Value,
    WAL_FILE_NAME,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{state, State};

const SECTOR_BYTES: usize = 512;
const PAGE_BYTES: usize = 4096;

/// A log as a crash left it, with the state after each commit.
struct Crashed {
    /// The WAL file's bytes at the crash (preallocated zeros included).
    image: Vec<u8>,
    /// `(end offset of the commit's records, state once it applied)`, in commit order;
    /// index 0 is the empty database.
    commits: Vec<(u64, State)>,
    /// Bytes a completed fdatasync covered at the crash.
    synced_offset_bytes: u64,
}

fn namespace() -> Arc<Namespace> {
    Arc::new(Namespace::new("t", "a", "g", RunId(1)))
}

/// Runs `txns` (each a list of `(key, value length)`; an empty value length deletes) in
/// `mode`, flushing after the commits listed in `flush_after`, and crashes: the image is
/// read while the database is open and put back after the handle is gone.
fn crash_after(
    dir: &Path,
    mode: DurabilityMode,
    txns: &[Vec<(String, usize)>],
    flush_after: &[usize],
) -> Crashed {
    let db = DatabaseOptions::new().durability(mode).open(dir).unwrap();
    let ns = namespace();
    let mut commits = vec![(db.wal().written_offset_bytes(), State::new())];
    for (idx, ops) in txns.iter().enumerate() {
        let mut txn = db.begin(RunId(1));
        for (name, len) in ops {
            let key = Key::kv(ns.clone(), name.clone());
            if *len == 0 {
                txn.delete(key).unwrap();
            } else {
                txn.put(key, Value::Bytes(vec![(idx % 251) as u8 + 1; *len]))
                    .unwrap();
            }
        }
        let info = txn.commit().unwrap();
        commits.push((info.end_offset_bytes, state(&db)));
        if flush_after.contains(&idx) {
            db.flush().unwrap();
        }
    }
    let synced_offset_bytes = db.wal().synced_offset_bytes();
    let path = dir.join(WAL_FILE_NAME);
    let image = std::fs::read(&path).unwrap();
    drop(db);
    std::fs::write(&path, &image).unwrap();
    Crashed {
        image,
        commits,
        synced_offset_bytes,
    }
}

/// Opens `dir` with the defaults (Strict, default recovery mode); a refusal is a failure.
fn reopen(dir: &Path) -> Database {
    Database::open(dir).unwrap_or_else(|e| panic!("a legal crash state was refused: {e}"))
}

/// The index of the commit whose state `got` is, at or after `durable_commits`, or a panic
/// naming what went wrong.
fn assert_legal_prefix(crashed: &Crashed, durable_commits: usize, got: &State, what: &str) {
    let matching = crashed.commits.iter().position(|(_, s)| s == got);
    match matching {
        Some(idx) => assert!(
            idx >= durable_commits,
            "{what}: recovered the state after commit {idx}, but {durable_commits} commits were durable"
        ),
        None => panic!("{what}: the recovered state is no prefix of the commit order"),
    }
}

/// Commits that a completed sync covered.
fn durable_commits(crashed: &Crashed) -> usize {
    crashed
        .commits
        .iter()
        .skip(1)
        .take_while(|(end, _)| *end <= crashed.synced_offset_bytes)
        .count()
}

/// Writes `image`, reopens, and checks: opens, legal prefix with every durable commit, a
/// second open agrees, and a commit after recovery survives a reopen. Returns the first
/// open's recovery stats.
fn check_state(
    dir: &Path,
    crashed: &Crashed,
    image: &[u8],
    what: &str,
) -> engine::recovery::ReplayStats {
    std::fs::write(dir.join(WAL_FILE_NAME), image).unwrap();
    let durable = durable_commits(crashed);
    let db = reopen(dir);
    let stats = db.recovery_stats().clone();
    let got = state(&db);
    assert_legal_prefix(crashed, durable, &got, what);
    drop(db);
    let again = reopen(dir);
    assert_eq!(state(&again), got, "{what}: a second open differs");
    let mut txn = again.begin(RunId(1));
    txn.put(Key::kv(namespace(), "after"), Value::I64(7))
        .unwrap();
    txn.commit().unwrap();
    drop(again);
    let after = reopen(dir);
    assert_eq!(
        after.storage().len(),
        got.len() + usize::from(!got.contains_key("after")),
        "{what}: the commit after recovery was lost"
    );
    stats
}

/// Ten small Strict commits, then one commit of six 3,000-byte values (about five pages of
/// log) that was being synced when the power went: its records carry the synced offset
/// of the commit before it.
fn strict_with_multi_page_last_commit(dir: &Path) -> Crashed {
    let mut txns: Vec<Vec<(String, usize)>> =
        (0..10).map(|i| vec![(format!("k{i}"), 40)]).collect();
    txns.push((0..6).map(|i| (format!("big{i}"), 3000)).collect());
    crash_after(dir, DurabilityMode::Strict, &txns, &[])
}

/// The in-flight commit's records: `[start, end)` of the last commit.
fn last_commit(crashed: &Crashed) -> (usize, usize) {
    let n = crashed.commits.len();
    (
        crashed.commits[n - 2].0 as usize,
        crashed.commits[n - 1].0 as usize,
    )
}

/// Undoes the unsynced bytes of `[from, to)` (back to the zeros preallocation synced).
fn lose(image: &mut [u8], from: usize, to: usize) {
    image[from..to].fill(0);
}

#[test]
fn p5_lost_middle_page_of_an_unacknowledged_commit_opens_at_the_commit_before() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = strict_with_multi_page_last_commit(dir.path());
    let (start, end) = last_commit(&crashed);
    assert!(end - start > 4 * PAGE_BYTES, "the last commit spans pages");
    // Treat the commit as unsynced (its fdatasync had not returned).
    let crashed = Crashed {
        synced_offset_bytes: start as u64,
        ..crashed
    };
    // The fourth page of the commit is lost; the later pages (its CommitTxn) persist.
    let page_start = (start / PAGE_BYTES + 3) * PAGE_BYTES;
    let mut image = crashed.image.clone();
    lose(&mut image, page_start, page_start + PAGE_BYTES);
    let stats = check_state(dir.path(), &crashed, &image, "lost middle page");
    assert_eq!(stats.txns_applied, 10);
    assert!(stats.torn_tail_valid_records > 0, "{stats:?}");
    let (saved, saved_len) = stats.torn_tail_saved_to.clone().expect("torn bytes kept");
    let kept = std::fs::read(&saved).unwrap();
    assert_eq!(kept.len() as u64, saved_len);
    let torn_from = stats.end.as_ref().unwrap().valid_end_offset_bytes() as usize;
    assert_eq!(&kept[..], &image[torn_from..torn_from + kept.len()]);
}

#[test]
fn p5_lost_first_page_of_an_unacknowledged_commit_opens_at_the_commit_before() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = strict_with_multi_page_last_commit(dir.path());
    let (start, _) = last_commit(&crashed);
    let crashed = Crashed {
        synced_offset_bytes: start as u64,
        ..crashed
    };
    let mut image = crashed.image.clone();
    // The unsynced part of the page the commit starts in.
    lose(&mut image, start, (start / PAGE_BYTES + 1) * PAGE_BYTES);
    let stats = check_state(dir.path(), &crashed, &image, "lost first page");
    assert_eq!(stats.txns_applied, 10);
    assert_eq!(
        stats.end.as_ref().unwrap().valid_end_offset_bytes(),
        start as u64
    );
}

/// Every sector of the unsynced commit independently kept, lost, zeroed or garbage, over
/// many seeds (the order pages reached the disk in is any order).
#[test]
fn p2_p5_sectors_persisted_out_of_order_open_at_a_legal_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = strict_with_multi_page_last_commit(dir.path());
    let (start, end) = last_commit(&crashed);
    let crashed = Crashed {
        synced_offset_bytes: start as u64,
        ..crashed
    };
    for seed in 0..24u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut image = crashed.image.clone();
        damage_sectors(&mut rng, &mut image, start, end);
        check_state(
            dir.path(),
            &crashed,
            &image,
            &format!("sectors seed {seed}"),
        );
    }
}

/// The unsynced tail zeroed; and the file's size rolled back to the synced length (no
/// preallocation, so the commit's appends grew the file and no sync covered the size).
#[test]
fn p2_p6_zeroed_tail_and_rolled_back_size_open_at_the_synced_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = strict_with_multi_page_last_commit(dir.path());
    let (start, _) = last_commit(&crashed);
    let crashed = Crashed {
        synced_offset_bytes: start as u64,
        ..crashed
    };
    let mut zeroed = crashed.image.clone();
    let zeroed_len = zeroed.len();
    lose(&mut zeroed, start, zeroed_len);
    let stats = check_state(dir.path(), &crashed, &zeroed, "zeroed tail");
    assert!(stats.torn_tail_zero_filled);
    assert!(stats.torn_tail_saved_to.is_none(), "zeros are not kept");
    for cut in [start, start + 100, start + 5000] {
        let rolled_back = &crashed.image[..cut];
        let stats = check_state(dir.path(), &crashed, rolled_back, "rolled-back size");
        assert_eq!(stats.txns_applied, 10, "cut at {cut}");
    }
}

/// A torn commit across the 1 MiB read buffer and, separately, across the 256 KiB
/// threshold from which replay reads on a second thread: both paths classify the same.
#[test]
fn c4_p5_torn_commit_across_the_read_buffer_and_the_pipelining_threshold() {
    for boundary in [256usize << 10, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        // ~9 KiB commits up to just before the boundary, then a 60 KiB commit across it.
        let n_small = boundary / 9200;
        let mut txns: Vec<Vec<(String, usize)>> = (0..n_small)
            .map(|i| vec![(format!("k{i}"), 9000)])
            .collect();
        txns.push((0..20).map(|i| (format!("big{i}"), 3000)).collect());
        let crashed = crash_after(dir.path(), DurabilityMode::Strict, &txns, &[]);
        let (start, end) = last_commit(&crashed);
        assert!(
            start < boundary && end > boundary,
            "{start}..{end} spans {boundary}"
        );
        let crashed = Crashed {
            synced_offset_bytes: start as u64,
            ..crashed
        };
        // The page holding the boundary is lost; everything after it persisted.
        let mut image = crashed.image.clone();
        lose(&mut image, boundary - PAGE_BYTES, boundary);
        let stats = check_state(dir.path(), &crashed, &image, "across a boundary");
        assert_eq!(stats.txns_applied, n_small as u64, "boundary {boundary}");
        assert!(stats.torn_tail_valid_records > 0);
    }
}

/// Damage to bytes a completed sync covered, with records written after that sync, is
/// damage to committed history: refused by default, naming the offset, in every mode.
#[test]
fn r6_damage_to_synced_history_is_refused_in_every_mode() {
    for mode in [
        DurabilityMode::Strict,
        DurabilityMode::Batched {
            interval_ms: 60_000,
            batch_size: 1_000_000,
        },
        DurabilityMode::Async,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let txns: Vec<Vec<(String, usize)>> =
            (0..12).map(|i| vec![(format!("k{i}"), 300)]).collect();
        // A flush after commit 5 covers it and everything before: later records carry it.
        let crashed = crash_after(dir.path(), mode, &txns, &[5]);
        let damage = crashed.commits[3].0 as usize - 20;
        assert!(damage < crashed.synced_offset_bytes as usize);
        let mut image = crashed.image.clone();
        image[damage] ^= 0x10;
        std::fs::write(dir.path().join(WAL_FILE_NAME), &image).unwrap();
        match Database::open(dir.path()) {
            Err(EngineError::Corruption { offset_bytes, .. }) => {
                assert!(offset_bytes <= damage as u64, "{mode:?}: {offset_bytes}");
                assert!(
                    offset_bytes >= crashed.commits[2].0,
                    "{mode:?}: {offset_bytes}"
                );
            }
            other => panic!("{mode:?}: expected Corruption, got {:?}", other.map(|_| ())),
        }
        // The same damage after the last completed sync is a torn tail in Async/Batched
        // (nothing later proves it synced); in Strict every commit was synced.
        if mode != DurabilityMode::Strict {
            let mut image = crashed.image.clone();
            let unsynced = crashed.commits[9].0 as usize - 20;
            assert!(unsynced > crashed.synced_offset_bytes as usize);
            image[unsynced] ^= 0x10;
            let stats = check_state(dir.path(), &crashed, &image, "unsynced damage");
            assert_eq!(stats.txns_applied, 8, "{mode:?}");
            assert!(matches!(stats.end, Some(ReadEnd::TornTail { .. })));
        }
    }
}

/// Keeps, loses (old: zeros), zeroes or fills with garbage each 512-byte sector of
/// `[from, to)` independently.
fn damage_sectors(rng: &mut ChaCha8Rng, image: &mut [u8], from: usize, to: usize) {
    let mut at = from;
    while at < to {
        let sector_end = ((at / SECTOR_BYTES + 1) * SECTOR_BYTES).min(to);
        match rng.gen_range(0..4) {
            0 => {}
            1 | 2 => image[at..sector_end].fill(0),
            _ => rng.fill(&mut image[at..sector_end]),
        }
        at = sector_end;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random workloads in Strict or Async mode (with flushes), crashed, then a random
    /// legal crash state of the bytes after the last completed sync (each sector kept,
    /// lost, zeroed or garbage; sometimes the size rolled back): the default open always
    /// succeeds, yields a legal prefix with every durable commit, and a second open agrees.
    #[test]
    fn any_legal_crash_state_opens_at_a_legal_prefix(
        strict in any::<bool>(),
        sizes in prop::collection::vec((0usize..6, 1usize..4, 0usize..5000), 1..16),
        flush_every in 2usize..6,
        damage_seed in any::<u64>(),
        roll_back in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let txns: Vec<Vec<(String, usize)>> = sizes
            .iter()
            .map(|(key, n_ops, len)| {
                (0..*n_ops).map(|op| (format!("k{}", (key + op) % 6), *len)).collect()
            })
            .collect();
        let mode = if strict { DurabilityMode::Strict } else { DurabilityMode::Async };
        let flush_after: Vec<usize> = (0..txns.len()).filter(|i| i % flush_every == 0).collect();
        let crashed = crash_after(dir.path(), mode, &txns, &flush_after);
        let mut rng = ChaCha8Rng::seed_from_u64(damage_seed);
        let synced = crashed.synced_offset_bytes as usize;
        let mut image = crashed.image.clone();
        let written_end = crashed.commits.last().unwrap().0 as usize;
        damage_sectors(&mut rng, &mut image, synced, written_end);
        if roll_back {
            let len = rng.gen_range(synced..=image.len());
            image.truncate(len);
        }
        check_state(dir.path(), &crashed, &image, &format!("seed {damage_seed}"));
    }
}

/// A torn Write whose value holds a byte-exact copy of one of the log's own records (an
/// application that stores log records as values): the copy carries an old synced offset,
/// so it proves nothing and the tear is a torn tail. Format version 1 refused to open here.
#[test]
fn a_torn_write_holding_a_valid_record_in_its_value_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let ns = namespace();
    let mut txn = db.begin(RunId(1));
    txn.put(Key::kv(ns.clone(), "first"), Value::I64(1))
        .unwrap();
    let first_end = txn.commit().unwrap().end_offset_bytes as usize;
    let path = dir.path().join(WAL_FILE_NAME);
    let first_records = std::fs::read(&path).unwrap()[32..first_end].to_vec();
    let mut value = vec![0xeeu8; 100];
    value.extend_from_slice(&first_records);
    value.extend_from_slice(&[0xee; 100]);
    let mut txn = db.begin(RunId(1));
    txn.put(Key::kv(ns, "holder"), Value::Bytes(value)).unwrap();
    let end = txn.commit().unwrap().end_offset_bytes as usize;
    let image = std::fs::read(&path).unwrap();
    drop(db);
    // Torn after the embedded copy, before the end of the value.
    let torn = &image[..end - 60];
    std::fs::write(&path, torn).unwrap();
    let db = reopen(dir.path());
    assert_eq!(db.recovery_stats().txns_applied, 1);
    // The torn record's length runs past the end, so the scan looks inside it and finds
    // the two embedded records (NamespaceDef, PutTxn): valid, but written before a sync
    // covered the damage.
    assert_eq!(db.recovery_stats().torn_tail_valid_records, 2);
    assert_eq!(state(&db).len(), 1);
}

/// A bit flip in the last acknowledged commit (bit rot: nothing after it proves it was
/// synced) is cut as a torn tail, the one case the log cannot tell from a power loss; but
/// its bytes are kept, byte for byte, in a sidecar named in the stats (pins the finding
/// that they were truncated with no copy kept).
#[test]
fn a_flip_in_the_last_acknowledged_commit_is_cut_but_kept_in_a_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let txns: Vec<Vec<(String, usize)>> = (0..3).map(|i| vec![(format!("k{i}"), 50)]).collect();
    let crashed = crash_after(dir.path(), DurabilityMode::Strict, &txns, &[]);
    let (start, end) = last_commit(&crashed);
    let mut image = crashed.image.clone();
    image[end - 3] ^= 0x04;
    std::fs::write(dir.path().join(WAL_FILE_NAME), &image).unwrap();
    let db = reopen(dir.path());
    let stats = db.recovery_stats().clone();
    assert_eq!(stats.txns_applied, 2);
    assert_eq!(state(&db), crashed.commits[2].1);
    let (saved, len) = stats.torn_tail_saved_to.expect("the cut bytes are kept");
    let kept = std::fs::read(saved).unwrap();
    assert_eq!(len as usize, image.len() - start);
    assert_eq!(&kept[..end - start], &image[start..end]);
}
