//! Durability and recovery policies. Each variant documents exactly what it promises.

/// When `commit` returns, and what survives which failure.
///
/// No mode keeps acknowledged records in a user-space buffer: every acknowledged commit has
/// been handed to the operating system, so a process kill (SIGKILL, panic, abort) never loses
/// an acknowledged transaction in any mode. The modes differ only under power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurabilityMode {
    /// `commit` returns after its records are written and covered by a completed fdatasync.
    /// Concurrent commits share one fdatasync (group commit).
    /// Survives process kill: every acknowledged txn. Survives power loss: every
    /// acknowledged txn.
    Strict,
    /// `commit` returns after its records are written (`write` returned); a background
    /// flusher fdatasyncs at least every `interval_ms`, and sooner once `batch_size`
    /// commits are waiting.
    /// Survives process kill: every acknowledged txn. Survives power loss: every txn
    /// acknowledged before the last completed background fsync or `flush()`.
    Batched { interval_ms: u64, batch_size: usize },
    /// `commit` returns after its records are written.
    /// Survives process kill: every acknowledged txn. Survives power loss: only what
    /// `flush()` or `close()` covered.
    Async,
}

impl Default for DurabilityMode {
    /// `Strict`: the only mode whose acknowledgement means "survives power loss".
    fn default() -> DurabilityMode {
        DurabilityMode::Strict
    }
}

impl DurabilityMode {
    /// A batched mode with the given interval and a batch size of 1024 commits.
    pub fn batched(interval_ms: u64) -> DurabilityMode {
        DurabilityMode::Batched {
            interval_ms,
            batch_size: 1024,
        }
    }

    /// Short lowercase name, as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            DurabilityMode::Strict => "strict",
            DurabilityMode::Batched { .. } => "batched",
            DurabilityMode::Async => "async",
        }
    }
}

/// What recovery does when committed history is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Default. A torn or zero-filled tail (damage with no valid record after it) is cut
    /// off and reported; damage followed by valid records refuses to open with
    /// `EngineError::Corruption { offset_bytes, .. }` and changes nothing on disk.
    #[default]
    TolerateCorruptTail,
    /// Opens at the last good record before the damage. The bytes from the damage to the
    /// end are first copied to `wal.log.dropped-<offset>` (fsynced), then cut from the log;
    /// `ReplayStats::corruption` reports the offset, the reason and the bytes dropped.
    /// Nothing after the damage is applied.
    PointInTime,
}
