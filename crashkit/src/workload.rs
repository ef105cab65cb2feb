//! Workloads: sequences of transactions generated from a seed by proptest strategies.
//!
//! The strategies run on a proptest `TestRunner` whose RNG is ChaCha seeded from the case
//! seed, so a seed gives the same workload on every machine. Keys come from a small space
//! spread over several namespaces, runs and type tags, so transactions collide on keys.

use std::sync::Arc;

use engine::wal::entry::{
    encode_begin, encode_delete, encode_end, encode_namespace_def, encode_single_op_txn,
    encode_write, Framing, SingleOp,
};
use engine::wal::FrameCodec;
use engine::wal::RecordType;
use engine::{Key, Namespace, RunId, Timestamp, TypeTag, Value};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::case::{Case, Limits, Purpose};

/// Transactions per workload (before limits).
pub const TXNS_MIN: usize = 5;
pub const TXNS_MAX: usize = 40;
/// Operations per transaction.
pub const OPS_MAX: usize = 6;
/// Largest generated value payload.
pub const VALUE_LEN_MAX: usize = 64 * 1024;

/// What kind of workload a seed generates. Each shape is its own generator over the same
/// namespaces; `Mixed` is the default and what every saved seed means.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadShape {
    /// 5-40 transactions of 1-6 operations, a fifth of them deletes, over 4 user keys per
    /// namespace and tag (keys collide), values from empty to 64 KiB.
    #[default]
    Mixed,
    /// 10-60 transactions, three in five operations deletes, small values: recovery must
    /// replay tombstones over keys written earlier in the same log.
    DeleteHeavy,
    /// 50-300 transactions over 4096 user keys per namespace and tag, small values: a
    /// store of hundreds of distinct keys, most written once.
    ManyKeys,
    /// 2-8 transactions of 32-256 operations each: one commit spans many records, pages
    /// and (with larger values) the replay's batches.
    LongTxns,
    /// 4-12 transactions of one or two operations with values of 64 KiB to 2 MiB, and now
    /// and then one close to the largest record the format allows (16 MiB): logs of
    /// several MiB that cross the reader's 1 MiB buffer and the replay's 256 KiB
    /// pipelining threshold many times (the kill plan aims some kills at those
    /// boundaries).
    BigLog,
}

impl WorkloadShape {
    pub const ALL: [WorkloadShape; 5] = [
        WorkloadShape::Mixed,
        WorkloadShape::DeleteHeavy,
        WorkloadShape::ManyKeys,
        WorkloadShape::LongTxns,
        WorkloadShape::BigLog,
    ];

    /// The CLI, JSON and matrix spelling.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadShape::Mixed => "mixed",
            WorkloadShape::DeleteHeavy => "delete-heavy",
            WorkloadShape::ManyKeys => "many-keys",
            WorkloadShape::LongTxns => "long-txns",
            WorkloadShape::BigLog => "big-log",
        }
    }

    /// The generator's parameters for this shape.
    fn params(self) -> ShapeParams {
        let base = ShapeParams {
            txns: TXNS_MIN..=TXNS_MAX,
            ops: 1..=OPS_MAX,
            delete_percent: 20,
            user_keys: USER_KEYS,
            values: ValueSizes::Mixed,
        };
        match self {
            WorkloadShape::Mixed => base,
            WorkloadShape::DeleteHeavy => ShapeParams {
                txns: 10..=60,
                delete_percent: 60,
                values: ValueSizes::Small,
                ..base
            },
            WorkloadShape::ManyKeys => ShapeParams {
                txns: 50..=300,
                ops: 1..=4,
                delete_percent: 10,
                user_keys: 4096,
                values: ValueSizes::Small,
            },
            WorkloadShape::LongTxns => ShapeParams {
                txns: 2..=8,
                ops: 32..=256,
                user_keys: 64,
                values: ValueSizes::UpTo4K,
                ..base
            },
            WorkloadShape::BigLog => ShapeParams {
                txns: 4..=12,
                ops: 1..=2,
                delete_percent: 10,
                values: ValueSizes::Big,
                ..base
            },
        }
    }
}

/// Largest value a `BigLog` workload writes: the format's largest record payload less room
/// for the record's own fields and key (the engine refuses anything larger).
pub const BIG_VALUE_LEN_MAX: usize = engine::wal::format::RECORD_PAYLOAD_LEN_MAX - 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueSizes {
    /// Mostly small, sometimes a few KiB, rarely up to 64 KiB.
    Mixed,
    /// Up to 64 bytes (strings, numbers, short bytes).
    Small,
    /// Up to 4 KiB.
    UpTo4K,
    /// 64 KiB to 2 MiB, one in twenty close to [`BIG_VALUE_LEN_MAX`].
    Big,
}

#[derive(Debug, Clone)]
struct ShapeParams {
    txns: std::ops::RangeInclusive<usize>,
    ops: std::ops::RangeInclusive<usize>,
    delete_percent: u32,
    user_keys: usize,
    values: ValueSizes,
}

const TENANTS: [&str; 2] = ["acme", "globex"];
const AGENTS: [&str; 2] = ["planner", "tool"];
const RUNS: [u64; 2] = [1, 2];
const TAGS: [TypeTag; 3] = [TypeTag::Kv, TypeTag::Event, TypeTag::State];
const USER_KEYS: usize = 4;

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpPlan {
    Put { key: Key, value: Value },
    Delete { key: Key },
}

impl OpPlan {
    pub fn key(&self) -> &Key {
        match self {
            OpPlan::Put { key, .. } | OpPlan::Delete { key } => key,
        }
    }
}

/// One transaction of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnPlan {
    pub run_id: RunId,
    pub ops: Vec<OpPlan>,
    /// Abort instead of committing (writes nothing to the WAL).
    pub abort: bool,
    /// Call `Database::flush` after this transaction.
    pub flush_after: bool,
}

/// What a txn looks like in the WAL: the length of each record, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpan {
    pub record_type: RecordType,
    pub offset_bytes: u64,
    pub len_bytes: u64,
    /// Index of the workload transaction that writes this record.
    pub txn_idx: usize,
}

/// The whole records a writer really wrote from `start_offset_bytes` on, read from the WAL
/// image it left (before any damage): exact where [`Workload::record_layout_from`] is a
/// prediction (format version 2 records carry the synced offset, whose length depends on
/// when syncs completed). Record `i` takes its `txn_idx` from `predicted[i]`; a single
/// writer writes the predicted records in the predicted order.
pub fn spans_in_image(
    image: &[u8],
    start_offset_bytes: u64,
    predicted: &[RecordSpan],
) -> Vec<RecordSpan> {
    let Some(codec) = FrameCodec::for_image(image) else {
        return Vec::new();
    };
    let mut spans = Vec::new();
    let mut at = start_offset_bytes as usize;
    while at < image.len() {
        let frame = codec.inspect(at as u64, &image[at..]);
        let (Some(len), engine::wal::format::Frame::Valid { record_type, .. }) =
            (frame.record_len(), &frame)
        else {
            break;
        };
        let Some(record_type) = RecordType::from_byte(*record_type) else {
            break;
        };
        spans.push(RecordSpan {
            record_type,
            offset_bytes: at as u64,
            len_bytes: len as u64,
            txn_idx: predicted.get(spans.len()).map_or(usize::MAX, |p| p.txn_idx),
        });
        at += len;
    }
    spans
}

/// A generated workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub txns: Vec<TxnPlan>,
}

#[derive(Debug, Clone)]
struct RawOp {
    delete: bool,
    key: (usize, usize, usize, usize, usize),
    value: RawValue,
}

#[derive(Debug, Clone)]
enum RawValue {
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    String(String),
    /// Length and a seed for the bytes: generating 64 KiB byte by byte through proptest
    /// would dominate a cycle's cost.
    Bytes(usize, u64),
}

fn value_len(sizes: ValueSizes) -> BoxedStrategy<usize> {
    match sizes {
        ValueSizes::Mixed => prop_oneof![
            8 => 0usize..=64,
            2 => 65usize..=4096,
            1 => 4097usize..=VALUE_LEN_MAX,
        ]
        .boxed(),
        ValueSizes::Small => (0usize..=64).boxed(),
        ValueSizes::UpTo4K => prop_oneof![
            4 => 0usize..=64,
            1 => 65usize..=4096,
        ]
        .boxed(),
        ValueSizes::Big => prop_oneof![
            12 => (64usize << 10)..=(512usize << 10),
            7 => (512usize << 10)..=(2usize << 20),
            1 => (BIG_VALUE_LEN_MAX - (1 << 20))..=BIG_VALUE_LEN_MAX,
        ]
        .boxed(),
    }
}

fn raw_value(sizes: ValueSizes) -> BoxedStrategy<RawValue> {
    let bytes = (value_len(sizes), any::<u64>()).prop_map(|(len, seed)| RawValue::Bytes(len, seed));
    if sizes == ValueSizes::Big {
        // Every value large: the shape exists for its log's size.
        return bytes.boxed();
    }
    prop_oneof![
        1 => Just(RawValue::Null),
        1 => any::<bool>().prop_map(RawValue::Bool),
        2 => any::<i64>().prop_map(RawValue::I64),
        1 => any::<f64>().prop_map(RawValue::F64),
        3 => "[a-z0-9 ]{0,40}".prop_map(RawValue::String),
        3 => bytes,
    ]
    .boxed()
}

fn raw_op(p: &ShapeParams) -> impl Strategy<Value = RawOp> {
    let key = (
        0..TENANTS.len(),
        0..AGENTS.len(),
        0..RUNS.len(),
        0..TAGS.len(),
        0..p.user_keys,
    );
    (
        prop::bool::weighted(f64::from(p.delete_percent) / 100.0),
        key,
        raw_value(p.values),
    )
        .prop_map(|(delete, key, value)| RawOp { delete, key, value })
}

fn raw_txn(p: &ShapeParams) -> impl Strategy<Value = (usize, Vec<RawOp>, bool, bool)> {
    (
        0..RUNS.len(),
        prop::collection::vec(raw_op(p), p.ops.clone()),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
}

fn build_value(raw: &RawValue) -> Value {
    match raw {
        RawValue::Null => Value::Null,
        RawValue::Bool(b) => Value::Bool(*b),
        RawValue::I64(v) => Value::I64(*v),
        RawValue::F64(v) => Value::F64(*v),
        RawValue::String(s) => Value::String(s.clone()),
        RawValue::Bytes(len, seed) => {
            let mut bytes = vec![0u8; *len];
            ChaCha8Rng::seed_from_u64(*seed).fill_bytes(&mut bytes);
            Value::Bytes(bytes)
        }
    }
}

fn truncate_value(value: Value, len_max: usize) -> Value {
    match value {
        Value::String(mut s) => {
            s.truncate(len_max);
            Value::String(s)
        }
        Value::Bytes(mut b) => {
            b.truncate(len_max);
            Value::Bytes(b)
        }
        other => other,
    }
}

/// Which of `n_generated` transactions `limits` keep, ascending: drop the first
/// `txns_skip`, keep the next `txns_max`, then drop those whose bit is set in `txns_drop`
/// (bit i: the i-th transaction kept so far). At least one always stays.
pub fn kept_txn_indices(limits: &Limits, n_generated: usize) -> Vec<usize> {
    let skip = limits
        .txns_skip
        .unwrap_or(0)
        .min(n_generated.saturating_sub(1));
    let mut kept: Vec<usize> = (skip..n_generated).collect();
    if let Some(n) = limits.txns_max {
        kept.truncate(n.max(1));
    }
    if let Some(mask) = limits.txns_drop {
        let left: Vec<usize> = kept
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= 64 || mask & (1u64 << i) == 0)
            .map(|(_, idx)| *idx)
            .collect();
        if !left.is_empty() {
            kept = left;
        }
    }
    kept
}

impl Workload {
    /// The workload of `case`: generated from its seed, then cut down by its limits.
    pub fn for_case(case: &Case) -> Workload {
        Workload::generate_shaped(case.seed, case.shape, &case.limits)
    }

    /// The default ([`WorkloadShape::Mixed`]) workload of `seed`.
    pub fn generate(seed: u64, limits: &Limits) -> Workload {
        Workload::generate_shaped(seed, WorkloadShape::Mixed, limits)
    }

    pub fn generate_shaped(seed: u64, shape: WorkloadShape, limits: &Limits) -> Workload {
        let mut seed_rng = Case::new(
            seed,
            crate::case::ModeName::Strict,
            crate::case::KillKind::Offset,
        )
        .rng(Purpose::Workload);
        let mut seed_bytes = [0u8; 32];
        seed_rng.fill_bytes(&mut seed_bytes);
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
        let mut runner = TestRunner::new_with_rng(Config::default(), rng);
        let params = shape.params();
        let strategy = prop::collection::vec(raw_txn(&params), params.txns.clone());
        let raw = strategy
            .new_tree(&mut runner)
            .expect("workload strategies never reject")
            .current();
        let namespaces: Vec<Arc<Namespace>> = TENANTS
            .iter()
            .flat_map(|t| {
                AGENTS.iter().flat_map(move |a| {
                    RUNS.iter()
                        .map(move |r| Arc::new(Namespace::new(*t, "app", *a, RunId(*r))))
                })
            })
            .collect();
        let txns: Vec<TxnPlan> = raw
            .into_iter()
            .map(|(run, ops, abort, flush_after)| TxnPlan {
                run_id: RunId(RUNS[run]),
                ops: ops
                    .into_iter()
                    .map(|op| {
                        let (t, a, r, tag, user) = op.key;
                        let ns = namespaces[(t * AGENTS.len() + a) * RUNS.len() + r].clone();
                        let key = Key::new(ns, TAGS[tag], format!("k{user}").into_bytes());
                        if op.delete {
                            OpPlan::Delete { key }
                        } else {
                            OpPlan::Put {
                                key,
                                value: build_value(&op.value),
                            }
                        }
                    })
                    .collect(),
                abort,
                flush_after,
            })
            .collect();
        let kept = kept_txn_indices(limits, txns.len());
        let mut txns: Vec<TxnPlan> = txns
            .into_iter()
            .enumerate()
            .filter(|(i, _)| kept.binary_search(i).is_ok())
            .map(|(_, t)| t)
            .collect();
        let mut op_index = 0usize;
        for txn in &mut txns {
            if let Some(n) = limits.ops_max {
                txn.ops.truncate(n.max(1));
            }
            if let Some(mask) = limits.ops_drop {
                // Bit i: the i-th operation of the workload (after `ops_max`); each
                // transaction keeps at least one (its first, when the mask takes them all).
                let first = op_index;
                op_index += txn.ops.len();
                let dropped = |i: usize| i < 64 && mask & (1u64 << i) != 0;
                if (first..op_index).all(dropped) {
                    txn.ops.truncate(1);
                } else {
                    let mut i = first;
                    txn.ops.retain(|_| {
                        i += 1;
                        !dropped(i - 1)
                    });
                }
            }
            if let Some(len_max) = limits.value_len_max {
                for op in &mut txn.ops {
                    if let OpPlan::Put { value, .. } = op {
                        *value = truncate_value(std::mem::replace(value, Value::Null), len_max);
                    }
                }
            }
        }
        Workload { txns }
    }

    /// The records a fault-free run writes after the file header, in order. In the
    /// multi-operation records ids, versions and timestamps are fixed-width, so placeholders
    /// give their lengths; one-operation transactions (PutTxn/DeleteTxn) write them as
    /// LEB128, predicted here from the transaction's index and a current timestamp's size; the one variable field, the synced offset every format version 2
    /// record carries (LEB128, 1-5 bytes), is taken to be the start of the transaction,
    /// which is exact for a single Strict writer (each commit synced before the next) and
    /// off by a byte or two per record where fewer syncs happen (Async, Batched).
    pub fn record_layout(&self) -> Vec<RecordSpan> {
        self.record_layout_from(engine::wal::HEADER_LEN as u64)
    }

    /// The layout when the first record goes at `start_offset_bytes` (a later generation
    /// appends after an earlier one's records).
    pub fn record_layout_from(&self, start_offset_bytes: u64) -> Vec<RecordSpan> {
        let mut spans = Vec::new();
        let mut offset = start_offset_bytes;
        let mut buf = Vec::new();
        let mut namespaces: Vec<engine::Namespace> = Vec::new();
        let mut push = |spans: &mut Vec<RecordSpan>, t: RecordType, len: usize, idx: usize| {
            spans.push(RecordSpan {
                record_type: t,
                offset_bytes: offset,
                len_bytes: len as u64,
                txn_idx: idx,
            });
            offset += len as u64;
        };
        for (idx, txn) in self.txns.iter().enumerate() {
            if txn.abort {
                continue;
            }
            let framing = Framing {
                codec: FrameCodec::v2(0),
                synced_offset_bytes: spans.last().map_or(start_offset_bytes, |s: &RecordSpan| {
                    s.offset_bytes + s.len_bytes
                }),
            };
            if let [op] = txn.ops.as_slice() {
                // One operation: a NamespaceDef the first time its namespace appears in the
                // log (as far as this layout knows), then one PutTxn or DeleteTxn.
                let (key, value) = match op {
                    OpPlan::Put { key, value } => (key, Some(value)),
                    OpPlan::Delete { key } => (key, None),
                };
                if !namespaces.contains(&*key.namespace) {
                    namespaces.push((*key.namespace).clone());
                    buf.clear();
                    let ns_id = namespaces.len() as u64 - 1;
                    let len = encode_namespace_def(&mut buf, framing, ns_id, &key.namespace);
                    push(&mut spans, RecordType::NamespaceDef, len, idx);
                }
                let ns_id = namespaces
                    .iter()
                    .position(|n| *n == *key.namespace)
                    .unwrap_or(0);
                let single = SingleOp {
                    txn_id: idx as u64 + 1,
                    run_id: txn.run_id,
                    timestamp: Timestamp(1_700_000_000_000_000),
                    version: idx as u64 + 1,
                    ns_id: ns_id as u64,
                };
                buf.clear();
                let len = encode_single_op_txn(&mut buf, framing, single, key, value);
                let t = if value.is_some() {
                    RecordType::PutTxn
                } else {
                    RecordType::DeleteTxn
                };
                push(&mut spans, t, len, idx);
                continue;
            }
            buf.clear();
            let len = encode_begin(&mut buf, framing, 0, txn.run_id, Timestamp(0));
            push(&mut spans, RecordType::BeginTxn, len, idx);
            for op in &txn.ops {
                buf.clear();
                let (t, len) = match op {
                    OpPlan::Put { key, value } => (
                        RecordType::Write,
                        encode_write(&mut buf, framing, 0, txn.run_id, key, value, 0),
                    ),
                    OpPlan::Delete { key } => (
                        RecordType::Delete,
                        encode_delete(&mut buf, framing, 0, txn.run_id, key, 0),
                    ),
                };
                push(&mut spans, t, len, idx);
            }
            buf.clear();
            let len = encode_end(&mut buf, framing, RecordType::CommitTxn, 0, txn.run_id);
            push(&mut spans, RecordType::CommitTxn, len, idx);
        }
        spans
    }

    /// Size of the WAL after a fault-free run of the whole workload.
    pub fn expected_wal_len_bytes(&self) -> u64 {
        self.record_layout()
            .last()
            .map(|s| s.offset_bytes + s.len_bytes)
            .unwrap_or(engine::wal::HEADER_LEN as u64)
    }

    pub fn n_ops(&self) -> usize {
        self.txns.iter().map(|t| t.ops.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn same_seed_gives_same_workload_and_seeds_differ() {
        let a = Workload::generate(42, &Limits::default());
        let b = Workload::generate(42, &Limits::default());
        assert_eq!(a, b);
        let c = Workload::generate(43, &Limits::default());
        assert_ne!(a, c);
        assert!((TXNS_MIN..=TXNS_MAX).contains(&a.txns.len()));
    }

    #[test]
    fn workload_fingerprint_is_stable_across_machines() {
        // A fixed seed pins the generated workload (its size and a checksum of its ops,
        // which also covers the Debug form of keys and values): if proptest, rand or the strategies
        // change what a seed means, saved regression seeds stop reproducing their bugs.
        let w = Workload::generate(0x5eed, &Limits::default());
        let mut h = crc32fast::Hasher::new();
        for txn in &w.txns {
            h.update(&txn.run_id.0.to_le_bytes());
            h.update(&[txn.abort as u8, txn.flush_after as u8]);
            for op in &txn.ops {
                h.update(format!("{:?}", op).as_bytes());
            }
        }
        let fingerprint = (w.txns.len(), w.n_ops(), h.finalize());
        let again = Workload::generate(0x5eed, &Limits::default());
        assert_eq!(again, w);
        assert_eq!(fingerprint, (24, 95, 3246995506), "{fingerprint:?}");
    }

    #[test]
    fn keys_collide_and_limits_cut_the_workload() {
        let w = Workload::generate(7, &Limits::default());
        let keys: Vec<_> = w
            .txns
            .iter()
            .flat_map(|t| t.ops.iter().map(|o| o.key().clone()))
            .collect();
        let distinct: BTreeSet<_> = keys.iter().cloned().collect();
        assert!(
            distinct.len() < keys.len() || keys.len() < 4,
            "no key collisions in {} ops",
            keys.len()
        );
        let cut = Workload::generate(
            7,
            &Limits {
                txns_skip: None,
                txns_drop: None,
                ops_drop: None,
                txns_max: Some(2),
                ops_max: Some(1),
                value_len_max: Some(3),
            },
        );
        assert_eq!(cut.txns.len(), 2);
        assert!(cut.txns.iter().all(|t| t.ops.len() == 1));
        for op in cut.txns.iter().flat_map(|t| &t.ops) {
            if let OpPlan::Put { value, .. } = op {
                assert!(value.payload_len_bytes() <= 8);
            }
        }
    }

    #[test]
    fn windows_and_drop_masks_pick_transactions_and_operations() {
        let limits = Limits {
            txns_skip: Some(2),
            txns_max: Some(5),
            txns_drop: Some(0b01010),
            ..Limits::default()
        };
        assert_eq!(kept_txn_indices(&limits, 10), vec![2, 4, 6]);
        // Never empty: a skip past the end keeps the last, a mask over all keeps all.
        let past = Limits {
            txns_skip: Some(50),
            ..Limits::default()
        };
        assert_eq!(kept_txn_indices(&past, 10), vec![9]);
        let all = Limits {
            txns_max: Some(3),
            txns_drop: Some(0b111),
            ..Limits::default()
        };
        assert_eq!(kept_txn_indices(&all, 10), vec![0, 1, 2]);

        let full = Workload::generate(11, &Limits::default());
        let w = Workload::generate(11, &limits);
        assert_eq!(
            w.txns,
            vec![
                full.txns[2].clone(),
                full.txns[4].clone(),
                full.txns[6].clone()
            ]
        );
        // Dropping the first operation of the workload keeps the rest in order, and a
        // transaction whose operations are all dropped keeps its first.
        let one = Limits {
            txns_max: Some(2),
            ..Limits::default()
        };
        let base = Workload::generate(11, &one);
        let first_len = base.txns[0].ops.len();
        let dropped = Workload::generate(
            11,
            &Limits {
                ops_drop: Some(1),
                ..one
            },
        );
        if first_len > 1 {
            assert_eq!(dropped.txns[0].ops, base.txns[0].ops[1..].to_vec());
        }
        let emptied = Workload::generate(
            11,
            &Limits {
                ops_drop: Some((1u64 << first_len) - 1),
                ..one
            },
        );
        assert_eq!(emptied.txns[0].ops, base.txns[0].ops[..1].to_vec());
        assert_eq!(emptied.txns[1], base.txns[1]);
    }

    #[test]
    fn layout_matches_the_engines_encoding() {
        let w = Workload::generate(9, &Limits::default());
        let layout = w.record_layout();
        let committed = w.txns.iter().filter(|t| !t.abort).count();
        // Each committed transaction starts with a BeginTxn, or is one PutTxn/DeleteTxn.
        let starts = layout
            .iter()
            .filter(|s| {
                matches!(
                    s.record_type,
                    RecordType::BeginTxn | RecordType::PutTxn | RecordType::DeleteTxn
                )
            })
            .count();
        assert_eq!(starts, committed);
        for pair in layout.windows(2) {
            assert_eq!(
                pair[0].offset_bytes + pair[0].len_bytes,
                pair[1].offset_bytes
            );
        }
    }
}
