//! The naive log the engine is measured against: the baseline of the peer benchmark the
//! team runs beside sled, redb, fjall, SQLite and okaywal (its `baseline` engine), rebuilt
//! here so that `torture bench` states the engine's targets against it as ratios measured
//! in one run.
//!
//! One record per put: `[u32 LE payload length][u32 LE crc32 of the payload][payload]`,
//! the payload `[u16 LE key length][key][value]`. Commit = the record handed to the OS
//! with one `write(2)` (no fsync), as the peer benchmark's no-fsync commit. Replay reads
//! the file through a 1 MiB buffer, checks every record's crc32 and inserts key and value
//! (each its own allocation) into a `HashMap`, stopping at the first record that does not
//! check out. Nothing else: no versions, no transactions, no torn-tail handling, no order.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use engine::Value;

use super::replay::KeyOrder;
use super::BenchError;

/// Record header: payload length and payload crc32.
const HEADER_LEN_BYTES: usize = 8;
/// Buffer sizes of the peer benchmark's baseline (read 1 MiB, write 64 KiB).
const READ_BUFFER_BYTES: usize = 1 << 20;
const WRITE_BUFFER_BYTES: usize = 64 << 10;

/// The naive log's recovered state.
pub(crate) type NaiveMap = HashMap<Box<[u8]>, Box<[u8]>>;

fn value_bytes(value: &Value) -> &[u8] {
    match value {
        Value::Bytes(bytes) => bytes,
        other => panic!("bench values are bytes, got {other:?}"),
    }
}

/// Appends the record of one put to `out` (`payload` is scratch).
fn encode(
    key: &[u8],
    value: &[u8],
    payload: &mut Vec<u8>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    payload.clear();
    let key_len = u16::try_from(key.len()).expect("bench keys are short");
    payload.extend_from_slice(&key_len.to_le_bytes());
    payload.extend_from_slice(key);
    payload.extend_from_slice(value);
    let payload_len = u32::try_from(payload.len()).expect("bench records are small");
    out.write_all(&payload_len.to_le_bytes())?;
    out.write_all(&crc32fast::hash(payload).to_le_bytes())?;
    out.write_all(payload)
}

/// Writes the naive log of the `n_txns` puts a bench WAL of `key_order` holds, in the
/// same order, to `path`. Returns its length.
pub(crate) fn build(path: &Path, n_txns: u64, key_order: KeyOrder) -> Result<u64, BenchError> {
    let io = |e| BenchError::io(format!("writing {}", path.display()), e);
    let file = File::create(path).map_err(io)?;
    let mut out = BufWriter::with_capacity(READ_BUFFER_BYTES, file);
    let mut payload = Vec::new();
    for idx in 0..n_txns {
        let value = key_order.value(idx);
        encode(
            key_order.user_key(idx).as_bytes(),
            value_bytes(&value),
            &mut payload,
            &mut out,
        )
        .map_err(io)?;
    }
    out.flush().map_err(io)?;
    let len_bytes = out.get_ref().metadata().map_err(io)?.len();
    Ok(len_bytes)
}

/// Replays the naive log at `path` into a map. Returns it and the time taken.
pub(crate) fn replay(path: &Path) -> Result<(NaiveMap, Duration), BenchError> {
    let io = |e| BenchError::io(format!("reading {}", path.display()), e);
    let started = Instant::now();
    let file = File::open(path).map_err(io)?;
    let mut input = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    let mut map = NaiveMap::new();
    let mut header = [0u8; HEADER_LEN_BYTES];
    let mut payload = Vec::new();
    loop {
        if input.read_exact(&mut header).is_err() {
            break;
        }
        let payload_len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        payload.resize(payload_len, 0);
        if input.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        let Some(key_len) = payload
            .get(..2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        else {
            break;
        };
        let Some(key) = payload.get(2..2 + key_len) else {
            break;
        };
        map.insert(key.into(), payload[2 + key_len..].into());
    }
    Ok((map, started.elapsed()))
}

/// Replays the naive log at `path` in this process and prints the time as one JSON line
/// (the `--naive-replay-only` mode, run in a fresh child as the engine's open is).
pub fn replay_only(path: &Path) -> Result<String, BenchError> {
    let (map, elapsed) = replay(path)?;
    Ok(serde_json::json!({
        "type": "naive_replay",
        "records": map.len(),
        "replay_s": elapsed.as_secs_f64(),
    })
    .to_string())
}

/// Replays the naive log at `path` in `repeats` fresh processes (in this one if a child
/// cannot run), each expected to recover `n_txns` records. Returns the median time.
pub(crate) fn replay_fresh(
    path: &Path,
    n_txns: u64,
    repeats: usize,
) -> Result<Duration, BenchError> {
    let runs = super::in_fresh_processes(
        repeats,
        "the naive log's replay",
        || replay_in_child(path),
        || replay(path).map(|(map, elapsed)| (map.len() as u64, elapsed)),
    )?;
    let mut samples = Vec::new();
    for (records, elapsed) in runs {
        if records != n_txns {
            return Err(BenchError::Verify {
                reason: format!(
                    "naive log {}: replayed {records} of {n_txns} records",
                    path.display()
                ),
            });
        }
        samples.push(elapsed);
    }
    Ok(super::replay::median(samples))
}

fn replay_in_child(path: &Path) -> Result<(u64, Duration), BenchError> {
    super::child_line(
        "--naive-replay-only",
        path,
        "naive replay",
        "naive_replay",
        |v| {
            Some((
                v["records"].as_u64()?,
                Duration::from_secs_f64(v["replay_s"].as_f64()?),
            ))
        },
    )
}

/// Looks up every key of a `key_order` log of `n_txns` puts in `map` and checks its
/// value. Returns the time the lookups took (keys are built before the clock starts).
pub(crate) fn read_all(
    map: &NaiveMap,
    n_txns: u64,
    key_order: KeyOrder,
) -> Result<Duration, BenchError> {
    let keys: Vec<String> = (0..n_txns).map(|idx| key_order.user_key(idx)).collect();
    let started = Instant::now();
    let mut found = Vec::with_capacity(keys.len());
    for key in &keys {
        // Copied out, as a read that returns an owned value does.
        found.push(map.get(key.as_bytes()).map(|value| value.to_vec()));
    }
    let elapsed = started.elapsed();
    for (idx, got) in (0u64..).zip(&found) {
        let expected = key_order.value(idx);
        if got.as_deref() != Some(value_bytes(&expected)) {
            return Err(BenchError::Verify {
                reason: format!(
                    "naive log: {} key {idx} read back as {got:?}",
                    key_order.name()
                ),
            });
        }
    }
    Ok(elapsed)
}

/// Commits single puts with random keys to a naive log in `dir` for `duration`, each
/// handed to the OS with one `write(2)`. Returns commits per second.
pub(crate) fn commit_loop(dir: &Path, duration: Duration) -> Result<f64, BenchError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| BenchError::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join("naive.log");
    let io = |e| BenchError::io(format!("writing {}", path.display()), e);
    let file = File::create(&path).map_err(io)?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    let mut payload = Vec::new();
    let started = Instant::now();
    let deadline = started + duration;
    let mut commits = 0u64;
    loop {
        if commits.is_multiple_of(16) && Instant::now() >= deadline {
            break;
        }
        // Keys and values are built per commit, as the engine's commit loop builds them.
        let key = KeyOrder::Random.user_key(commits);
        let value = KeyOrder::Random.value(commits);
        encode(key.as_bytes(), value_bytes(&value), &mut payload, &mut out).map_err(io)?;
        out.flush().map_err(io)?;
        commits += 1;
    }
    let elapsed = started.elapsed();
    drop(out);
    std::fs::remove_dir_all(dir)
        .map_err(|e| BenchError::io(format!("removing {}", dir.display()), e))?;
    Ok(commits as f64 / elapsed.as_secs_f64().max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive log replays every put it was built from, stops at a damaged record, and
    /// its read pass checks values (a wrong map fails it).
    #[test]
    fn naive_log_round_trips_and_stops_at_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("naive.log");
        let len_bytes = build(&path, 1000, KeyOrder::Random).unwrap();
        assert_eq!(len_bytes, 1000 * (8 + 2 + 20 + 32));
        let (map, _) = replay(&path).unwrap();
        assert_eq!(map.len(), 1000);
        read_all(&map, 1000, KeyOrder::Random).unwrap();
        // Damage the 501st record's payload: replay keeps the first 500.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[500 * 62 + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (map, _) = replay(&path).unwrap();
        assert_eq!(map.len(), 500);
        assert!(read_all(&map, 1000, KeyOrder::Random).is_err());
    }

    #[test]
    fn commit_loop_commits() {
        let dir = tempfile::tempdir().unwrap();
        let rate = commit_loop(&dir.path().join("c"), Duration::from_millis(20)).unwrap();
        assert!(rate > 0.0);
        assert!(!dir.path().join("c").exists());
    }
}
