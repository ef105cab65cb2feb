//! Replay cost: `Database::open` of a WAL of N committed single-put transactions (20-byte
//! keys, 32-byte values), as a process kill leaves it, and the decode of one record. The
//! WAL is built once per size by encoding records directly and appending them as one write.
//! Keys are written in ascending order (the store's append path) and in random order (the
//! peer benchmark's keys: `key_` and 16 hex digits of splitmix64(i)), since a benchmark of
//! ascending keys alone hid a 5.8x slower replay of random ones (issue 11).

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::wal::entry::{encode_begin, encode_end, encode_write};
use engine::wal::format::RECORD_HEADER_LEN;
use engine::wal::{NamespaceCache, RecordType};
use engine::{Database, DurabilityMode, Key, Namespace, RunId, Timestamp, Value, WALEntry};

/// splitmix64's output function: a bijection on u64, so the random keys are distinct.
fn mix(idx: u64) -> u64 {
    let mut z = idx.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn user_key(idx: u64, random: bool) -> String {
    if random {
        format!("key_{:016x}", mix(idx))
    } else {
        format!("key-{idx:016}")
    }
}

fn build_wal(dir: &Path, n_txns: u64, random: bool) {
    let db = Database::open_with_mode(dir, DurabilityMode::Async).expect("create");
    let ns = Arc::new(Namespace::new("bench", "app", "agent", RunId(1)));
    let mut out = Vec::new();
    let framing = db.wal().framing();
    for idx in 0..n_txns {
        let txn_id = idx + 1;
        encode_begin(&mut out, framing, txn_id, RunId(1), Timestamp(idx));
        let key = Key::kv(ns.clone(), user_key(idx, random));
        encode_write(
            &mut out,
            framing,
            txn_id,
            RunId(1),
            &key,
            &Value::Bytes(vec![7u8; 32]),
            txn_id,
        );
        encode_end(&mut out, framing, RecordType::CommitTxn, txn_id, RunId(1));
    }
    db.wal().append_bytes(&out).expect("append");
    // Dropped without close: the bytes a process kill leaves.
    drop(db);
}

fn replay(c: &mut Criterion) {
    let mut group = c.benchmark_group("replay_open");
    group.sample_size(10);
    for random in [true, false] {
        let order = if random { "random" } else { "ascending" };
        for n_txns in [10_000u64, 100_000] {
            let dir = tempfile::tempdir().expect("tempdir");
            build_wal(dir.path(), n_txns, random);
            group.throughput(Throughput::Elements(n_txns));
            group.bench_with_input(BenchmarkId::new(order, n_txns), &n_txns, |b, &n| {
                b.iter(|| {
                    let db = Database::open_with_mode(dir.path(), DurabilityMode::Async)
                        .expect("reopen");
                    assert_eq!(db.recovery_stats().txns_applied, n);
                    db
                })
            });
        }
    }
    group.finish();

    let ns = Arc::new(Namespace::new("bench", "app", "agent", RunId(1)));
    let entry = WALEntry::Write {
        txn_id: 1,
        run_id: RunId(1),
        key: Key::kv(ns, "key-0000000000000001"),
        value: Value::Bytes(vec![7u8; 32]),
        version: 1,
    };
    let bytes = entry.encode();
    let mut cache = NamespaceCache::default();
    c.bench_function("decode_payload/single_put_write", |b| {
        b.iter(|| {
            WALEntry::decode_payload(
                RecordType::Write,
                std::hint::black_box(&bytes[RECORD_HEADER_LEN..]),
                &mut cache,
            )
            .expect("decodes")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_millis(500));
    targets = replay
}
criterion_main!(benches);
