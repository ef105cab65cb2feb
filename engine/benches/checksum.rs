//! Checksum cost: crc32 over a record-sized and a read-buffer-sized slice, and the frame
//! check (`inspect_frame`) of one encoded single-put record. Replay's floor is a crc32 pass
//! over the whole WAL, so these bound how fast validation alone can go.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::wal::format::inspect_frame;
use engine::{Key, Namespace, RunId, Value, WALEntry};
use std::sync::Arc;

fn checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32");
    for len_bytes in [128usize, 4096, 1 << 20] {
        let data = vec![0x5au8; len_bytes];
        group.throughput(Throughput::Bytes(len_bytes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len_bytes), &data, |b, data| {
            b.iter(|| crc32fast::hash(std::hint::black_box(data)))
        });
    }
    group.finish();

    let ns = Arc::new(Namespace::new("bench", "app", "agent", RunId(1)));
    let record = WALEntry::Write {
        txn_id: 1,
        run_id: RunId(1),
        key: Key::kv(ns, "key-0000000000000001"),
        value: Value::Bytes(vec![7u8; 32]),
        version: 1,
    }
    .encode();
    c.bench_function("inspect_frame/single_put_write", |b| {
        b.iter(|| inspect_frame(std::hint::black_box(&record)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(std::time::Duration::from_secs(2))
        .warm_up_time(std::time::Duration::from_millis(500));
    targets = checksum
}
criterion_main!(benches);
