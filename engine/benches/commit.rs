//! Commit cost per durability mode (one thread, single-put transactions of a 20-byte key
//! and a 32-byte value), and the raw `WAL::append` of one encoded record per mode. Strict
//! includes an fdatasync per commit, so its figure is the disk's, not the engine's.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::{Database, DurabilityMode, Key, Namespace, RunId, Value, WALEntry, WAL};

fn modes() -> [(&'static str, DurabilityMode); 3] {
    [
        ("strict", DurabilityMode::Strict),
        ("batched_10ms", DurabilityMode::batched(10)),
        ("async", DurabilityMode::Async),
    ]
}

fn commit(c: &mut Criterion) {
    let ns = Arc::new(Namespace::new("bench", "app", "agent", RunId(1)));
    let mut group = c.benchmark_group("commit_single_put");
    group.throughput(Throughput::Elements(1));
    for (name, mode) in modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open_with_mode(dir.path(), mode).expect("open");
        let mut idx = 0u64;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                idx += 1;
                let mut txn = db.begin(RunId(1));
                txn.put(
                    Key::kv(ns.clone(), format!("key-{idx:016}")),
                    Value::Bytes(vec![7u8; 32]),
                )
                .expect("put");
                txn.commit().expect("commit")
            })
        });
        db.close().expect("close");
    }
    group.finish();

    let mut group = c.benchmark_group("wal_append_write_record");
    group.throughput(Throughput::Elements(1));
    for (name, mode) in modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = WAL::open(dir.path().join("wal.log"), mode).expect("open WAL");
        let entry = WALEntry::Write {
            txn_id: 1,
            run_id: RunId(1),
            key: Key::kv(ns.clone(), "key-0000000000000001"),
            value: Value::Bytes(vec![7u8; 32]),
            version: 1,
        };
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| wal.append(&entry).expect("append"))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(std::time::Duration::from_secs(2))
        .warm_up_time(std::time::Duration::from_millis(300));
    targets = commit
}
criterion_main!(benches);
