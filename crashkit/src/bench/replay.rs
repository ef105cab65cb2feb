//! Replay figures: reopen after a crash, the read + crc32 floor, reopen + read every key,
//! and the naive log's replay and reads of the same puts (`naive.rs`).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::wal::entry::{encode_namespace_def, encode_single_op_txn, SingleOp};
use engine::{Database, DurabilityMode, Key, Namespace, RunId, Timestamp, Value};

use super::{naive, BenchError};

/// User key length of the benchmark keys (`key-`/`key_` and 16 digits).
pub(crate) const USER_KEY_LEN_BYTES: usize = 20;
/// Value length of the benchmark values.
pub(crate) const VALUE_LEN_BYTES: usize = 32;
/// Encoded batches are appended in slices of about this size.
const APPEND_CHUNK_LEN_BYTES: usize = 8 << 20;
/// Read size of the floor pass (the engine's reader uses 1 MiB too).
const FLOOR_READ_LEN_BYTES: usize = 1 << 20;

/// The order in which a benchmark WAL writes its keys.
///
/// Both are measured in every run: ascending keys take the store's append path (every
/// insert lands at the tree's right edge), random keys land anywhere, which is what real
/// keys do. A benchmark of one order alone hid a 5.8x slower replay of the other (issue 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    /// `key_` + 16 hex digits of a 64-bit bijective hash (splitmix64's finalizer) of the
    /// transaction index, and 32 incompressible bytes hashed from the index: exactly the
    /// keys and values of the peer benchmark (the team's side-by-side run of peer engines), so figures compare.
    Random,
    /// `key-` + the transaction index in 16 decimal digits, ascending, and 32 bytes derived
    /// from the index: the bench's original workload.
    Ascending,
}

impl KeyOrder {
    /// Every order, in the order the bench measures them.
    pub const ALL: [KeyOrder; 2] = [KeyOrder::Random, KeyOrder::Ascending];

    /// The name used in the table, the JSON Lines (`key_order`) and directory names.
    pub fn name(self) -> &'static str {
        match self {
            KeyOrder::Random => "random",
            KeyOrder::Ascending => "ascending",
        }
    }

    /// The user key of transaction `idx`: exactly [`USER_KEY_LEN_BYTES`] bytes.
    pub(crate) fn user_key(self, idx: u64) -> String {
        let key = match self {
            KeyOrder::Random => format!("key_{:016x}", mix(idx)),
            KeyOrder::Ascending => format!("key-{idx:016}"),
        };
        debug_assert_eq!(key.len(), USER_KEY_LEN_BYTES);
        key
    }

    /// The value of transaction `idx`: [`VALUE_LEN_BYTES`] bytes derived from `idx`.
    pub(crate) fn value(self, idx: u64) -> Value {
        let mut bytes = [0u8; VALUE_LEN_BYTES];
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let word = match self {
                KeyOrder::Random => {
                    mix(idx.wrapping_mul(4).wrapping_add(i as u64) ^ 0x5555_5555_5555_5555)
                }
                KeyOrder::Ascending => idx.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64,
            };
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        Value::Bytes(bytes.to_vec())
    }
}

/// splitmix64's output function: a bijection on u64 (each step, an odd multiply or an
/// xor with a right shift of itself, is invertible), so distinct indices give distinct keys
/// in an order unrelated to the indices. The same function the peer benchmark uses.
fn mix(idx: u64) -> u64 {
    let mut z = idx.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The namespace every benchmark key lives in.
pub(crate) fn namespace() -> Arc<Namespace> {
    Arc::new(Namespace::new("bench", "app", "agent", RunId(1)))
}

/// Replay figures for one WAL size (medians).
#[derive(Debug, Clone)]
pub struct ReplayFigures {
    pub n_txns: u64,
    pub key_order: KeyOrder,
    pub wal_len_bytes: u64,
    /// `Database::open` of the crashed WAL (replay with full ReplayStats, torn-tail check,
    /// fdatasync).
    pub reopen: Duration,
    /// A plain read of the WAL file with crc32 over every byte (page cache warm).
    pub floor: Duration,
    /// `Database::open` plus a `get` of every key.
    pub reopen_read_all: Duration,
    /// The naive log's replay of the same puts (read, crc32, `HashMap` insert), in a
    /// fresh process as the engine's `RecoveryMemory::open`.
    pub naive_replay: Duration,
    /// The naive log's lookup of every key after its replay (in this process).
    pub naive_read_all: Duration,
}

impl ReplayFigures {
    pub fn txns_per_second(&self) -> f64 {
        self.n_txns as f64 / self.reopen.as_secs_f64().max(1e-9)
    }

    pub fn mib_per_second(&self) -> f64 {
        self.wal_len_bytes as f64 / (1024.0 * 1024.0) / self.reopen.as_secs_f64().max(1e-9)
    }

    pub fn floor_ratio(&self) -> f64 {
        self.reopen.as_secs_f64() / self.floor.as_secs_f64().max(1e-9)
    }

    pub fn wal_bytes_per_txn(&self) -> f64 {
        self.wal_len_bytes as f64 / self.n_txns.max(1) as f64
    }
}

/// Writes `n_txns` committed single-put transactions, keys in `key_order`, into a new
/// database at `dir` and drops it without closing. Returns the WAL length.
pub fn build_crashed_wal(dir: &Path, n_txns: u64, key_order: KeyOrder) -> Result<u64, BenchError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| BenchError::io(format!("removing {}", dir.display()), e))?;
    }
    let db = Database::open_with_mode(dir, DurabilityMode::Async)
        .map_err(|e| BenchError::engine(format!("creating {}", dir.display()), e))?;
    let ns = namespace();
    let run_id = RunId(1);
    let mut out = Vec::with_capacity(APPEND_CHUNK_LEN_BYTES + 4096);
    // An Async writer syncs nothing: every record carries the synced offset of the new log.
    let framing = db.wal().framing();
    // Framed as the commit path frames a one-put transaction: the namespace's definition
    // once, then one PutTxn record per transaction.
    let (ns_id, new) = db.wal().namespace_id(&ns);
    if new {
        encode_namespace_def(&mut out, framing, ns_id, &ns);
    }
    for idx in 0..n_txns {
        // Txn ids and versions start at 1, as in a fresh database's commit path.
        let txn_id = idx + 1;
        let key = Key::kv(ns.clone(), key_order.user_key(idx));
        let op = SingleOp {
            txn_id,
            run_id,
            timestamp: Timestamp(1_700_000_000_000_000 + idx),
            version: txn_id,
            ns_id,
        };
        encode_single_op_txn(&mut out, framing, op, &key, Some(&key_order.value(idx)));
        if out.len() >= APPEND_CHUNK_LEN_BYTES {
            db.wal()
                .append_bytes(&out)
                .map_err(|e| BenchError::engine("appending the benchmark WAL", e))?;
            out.clear();
        }
    }
    db.wal()
        .append_bytes(&out)
        .map_err(|e| BenchError::engine("appending the benchmark WAL", e))?;
    let wal_len_bytes = db.wal().written_offset_bytes();
    // Dropped, not closed: what a process kill after the last write leaves on disk.
    drop(db);
    Ok(wal_len_bytes)
}

fn reopen(dir: &Path, n_txns: u64) -> Result<(Database, Duration), BenchError> {
    let started = Instant::now();
    let db = Database::open_with_mode(dir, DurabilityMode::Async)
        .map_err(|e| BenchError::engine(format!("reopening {}", dir.display()), e))?;
    let elapsed = started.elapsed();
    let stats = db.recovery_stats();
    if stats.txns_applied != n_txns || stats.writes_applied != n_txns || stats.discarded_txns != 0 {
        return Err(BenchError::Verify {
            reason: format!(
                "{}: expected {n_txns} txns and writes, replay applied {} txns and {} writes, discarded {}",
                dir.display(),
                stats.txns_applied,
                stats.writes_applied,
                stats.discarded_txns
            ),
        });
    }
    Ok((db, elapsed))
}

fn floor_pass(path: &Path) -> Result<(Duration, u32), BenchError> {
    let started = Instant::now();
    let mut file = std::fs::File::open(path)
        .map_err(|e| BenchError::io(format!("opening {}", path.display()), e))?;
    let mut buf = vec![0u8; FLOOR_READ_LEN_BYTES];
    let mut hasher = crc32fast::Hasher::new();
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| BenchError::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok((started.elapsed(), hasher.finalize()))
}

/// Checks, outside the timed passes, that every key reads back with its own value and
/// version (the timed pass only counts the keys found, as it always has).
fn verify_values(
    dir: &Path,
    n_txns: u64,
    key_order: KeyOrder,
    keys: &[Key],
) -> Result<(), BenchError> {
    let (db, _) = reopen(dir, n_txns)?;
    for (idx, key) in (0u64..).zip(keys) {
        let got = db.get(key);
        let expected = key_order.value(idx);
        if got.as_ref().map(|v| (&v.value, v.version)) != Some((&expected, idx + 1)) {
            return Err(BenchError::Verify {
                reason: format!(
                    "{} key {key} (txn {}) read back as {got:?}, expected {expected:?} at version {}",
                    key_order.name(),
                    idx + 1,
                    idx + 1
                ),
            });
        }
    }
    Ok(())
}

pub(crate) fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Builds the WAL at `dir` and measures each figure `repeats` times.
pub(crate) fn measure(
    dir: &Path,
    n_txns: u64,
    key_order: KeyOrder,
    repeats: usize,
) -> Result<ReplayFigures, BenchError> {
    let wal_len_bytes = build_crashed_wal(dir, n_txns, key_order)?;
    let wal_path = dir.join(engine::WAL_FILE_NAME);
    // Warm the page cache so that replay and floor both read from memory.
    floor_pass(&wal_path)?;
    let ns = namespace();
    let keys: Vec<Key> = (0..n_txns)
        .map(|i| Key::kv(ns.clone(), key_order.user_key(i)))
        .collect();
    let naive_path = dir.join("naive.log");
    naive::build(&naive_path, n_txns, key_order)?;
    let mut reopen_samples = Vec::new();
    let mut floor_samples = Vec::new();
    let mut read_all_samples = Vec::new();
    let mut naive_read_all_samples = Vec::new();
    for _ in 0..repeats.max(1) {
        let (db, elapsed) = reopen(dir, n_txns)?;
        reopen_samples.push(elapsed);
        drop(db);
        let (elapsed, _crc) = floor_pass(&wal_path)?;
        floor_samples.push(elapsed);
        let started = Instant::now();
        let (db, _) = reopen(dir, n_txns)?;
        let mut found = 0u64;
        for key in &keys {
            if db.get(key).is_some() {
                found += 1;
            }
        }
        read_all_samples.push(started.elapsed());
        if found != n_txns {
            return Err(BenchError::Verify {
                reason: format!(
                    "{found} of {n_txns} {} keys readable after reopen",
                    key_order.name()
                ),
            });
        }
        drop(db);
    }
    verify_values(dir, n_txns, key_order, &keys)?;
    // After the engine's passes: the naive map's two million small allocations, freed,
    // would leave this process's heap fragmented under the engine's reopens.
    for _ in 0..repeats.max(1) {
        let (map, _) = naive::replay(&naive_path)?;
        naive_read_all_samples.push(naive::read_all(&map, n_txns, key_order)?);
    }
    Ok(ReplayFigures {
        n_txns,
        key_order,
        wal_len_bytes,
        reopen: median(reopen_samples),
        floor: median(floor_samples),
        reopen_read_all: median(read_all_samples),
        naive_replay: naive::replay_fresh(&naive_path, n_txns, repeats)?,
        naive_read_all: median(naive_read_all_samples),
    })
}
