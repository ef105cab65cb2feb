//! Group commit: `WAL::sync_to` and the state behind it.
//!
//! One fdatasync covers every byte written before it started, and concurrent waiters share
//! it: the first waiter with no sync running leads (after gathering its group, when the
//! measured policy says that pays), the others park until a completed sync covers them,
//! and the completing leader wakes the ones it covered and promotes the first it did not.
//! A failed fdatasync poisons the WAL before anything else can be acknowledged.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{lock, WAL};
use crate::error::{EngineError, Result};

#[derive(Debug)]
pub(super) struct SyncState {
    synced_offset_bytes: u64,
    pub(super) sync_in_progress: bool,
    /// Threads parked until a running sync completes (see `WAL::park_until_covered`).
    parked: Vec<ParkedWaiter>,
    /// `WAL::sync_waiters` when the last sync completed: how many committers run concurrently. A
    /// leader gathers until that many appends await a sync before it starts the next one.
    group_target: usize,
    /// `WAL::appends` when the last sync started: appends after it are not covered by it.
    appends_at_sync_start: u64,
    /// Leaders waiting on `sync_arrivals` for the group to gather.
    gatherers: usize,
    /// How long the last completed fdatasync took; bounds the gathering wait.
    last_sync_duration: Duration,
    /// Whether leaders gather at all, chosen by measuring (see [`GatherPolicy`]).
    gather_policy: GatherPolicy,
}

/// Whether group-commit leaders gather, chosen by measuring both ways.
///
/// Gathering pays when committers come back fast compared with an fdatasync (a slow disk,
/// or more cores than committers): every sync then covers the whole group. When waking
/// and re-running the whole group takes about as long as a sync (8 threads on 2 busy
/// cores, a 0.2 ms fdatasync), the group is better left split in two halves that
/// alternate, one writing while the other's sync runs, so the disk never idles (measured
/// there: 22K commits/s without gathering, 20K with). The policy runs an epoch of
/// `GATHER_EPOCH_SYNCS` syncs each way, keeps the one that covered more commits per
/// second for `GATHER_EXPLOIT_EPOCHS` epochs, then measures again.
#[derive(Debug)]
struct GatherPolicy {
    gather: bool,
    phase: GatherPhase,
    epoch_syncs: u32,
    epoch_appends: u64,
    epoch_started: Option<Instant>,
    gathered_rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GatherPhase {
    TryGather,
    TryDirect,
    Exploit { epochs_left: u32 },
}

const GATHER_EPOCH_SYNCS: u32 = 64;
const GATHER_EXPLOIT_EPOCHS: u32 = 16;

impl GatherPolicy {
    fn new() -> GatherPolicy {
        GatherPolicy {
            gather: true,
            phase: GatherPhase::TryGather,
            epoch_syncs: 0,
            epoch_appends: 0,
            epoch_started: None,
            gathered_rate: 0.0,
        }
    }

    /// Records a sync about to start that covers `appends` new appends.
    fn on_sync_start(&mut self, appends: u64, now: Instant) {
        let started = *self.epoch_started.get_or_insert(now);
        self.epoch_syncs += 1;
        self.epoch_appends += appends;
        if self.epoch_syncs < GATHER_EPOCH_SYNCS {
            return;
        }
        let rate = self.epoch_appends as f64 / now.duration_since(started).as_secs_f64().max(1e-9);
        (self.gather, self.phase) = match self.phase {
            GatherPhase::TryGather => {
                self.gathered_rate = rate;
                (false, GatherPhase::TryDirect)
            }
            GatherPhase::TryDirect => (
                self.gathered_rate >= rate,
                GatherPhase::Exploit {
                    epochs_left: GATHER_EXPLOIT_EPOCHS,
                },
            ),
            GatherPhase::Exploit { epochs_left: 0 } => (true, GatherPhase::TryGather),
            GatherPhase::Exploit { epochs_left } => (
                self.gather,
                GatherPhase::Exploit {
                    epochs_left: epochs_left - 1,
                },
            ),
        };
        self.epoch_syncs = 0;
        self.epoch_appends = 0;
        self.epoch_started = Some(now);
    }
}

/// A thread waiting in `sync_to` for the running fdatasync.
#[derive(Debug)]
struct ParkedWaiter {
    offset_bytes: u64,
    thread: std::thread::Thread,
}

/// The longest a group-commit leader waits for the group to gather, as a fraction of the
/// last fdatasync's duration: waiting longer than the sync it would save costs more than
/// it gains.
const GATHER_FRACTION_OF_SYNC: u32 = 4;
/// An absolute cap on that wait, for a disk whose last fdatasync was very slow.
const GATHER_WAIT_MAX: Duration = Duration::from_millis(1);

impl SyncState {
    /// Wakes every parked waiter (the WAL was poisoned: they must see it, not wait on).
    pub(super) fn unpark_all(&mut self) {
        for waiter in self.parked.drain(..) {
            waiter.thread.unpark();
        }
    }

    /// Recovery cut the log at `offset_bytes` and synced it: that is the durable end now.
    pub(super) fn set_synced_offset(&mut self, offset_bytes: u64) {
        self.synced_offset_bytes = offset_bytes;
    }

    /// The state of a WAL whose first `synced_offset_bytes` are known durable.
    pub(super) fn new(synced_offset_bytes: u64) -> SyncState {
        SyncState {
            synced_offset_bytes,
            sync_in_progress: false,
            parked: Vec::new(),
            group_target: 1,
            appends_at_sync_start: 0,
            gatherers: 0,
            last_sync_duration: Duration::ZERO,
            gather_policy: GatherPolicy::new(),
        }
    }
}

impl WAL {
    /// Waits until every byte before `offset_bytes` is covered by a completed fdatasync.
    ///
    /// Group commit: if no sync is running, this caller syncs everything written so far on
    /// behalf of all waiters; otherwise it waits for the running sync and re-checks.
    ///
    /// Before it starts a sync, the leader gathers: it waits (at most a quarter of the last
    /// fdatasync's duration) until as many threads are waiting as were waiting when the last
    /// sync completed. Without this, with more committers than cores, the next leader starts
    /// as soon as it wakes and covers only the one or two commits already written, and the
    /// group splits into small batches. One committer alone never waits: its group is 1.
    pub fn sync_to(&self, offset_bytes: u64) -> Result<()> {
        if self.synced_offset_bytes.load(Ordering::Acquire) >= offset_bytes {
            return self.check_poisoned();
        }
        self.sync_waiters.fetch_add(1, Ordering::AcqRel);
        let outcome = self.sync_to_as_waiter(offset_bytes);
        self.sync_waiters.fetch_sub(1, Ordering::AcqRel);
        outcome
    }

    fn sync_to_as_waiter(&self, offset_bytes: u64) -> Result<()> {
        let mut state = lock(&self.sync);
        if state.gatherers > 0 && self.group_gathered(&state) {
            // Only the arrival that completes the group wakes the leader: waking it for
            // each arrival costs a context switch per committer on a busy machine.
            self.sync_arrivals.notify_all();
        }
        let mut gather_deadline: Option<Instant> = None;
        loop {
            self.check_poisoned()?;
            if state.synced_offset_bytes >= offset_bytes {
                return Ok(());
            }
            if state.sync_in_progress {
                state.parked.push(ParkedWaiter {
                    offset_bytes,
                    thread: std::thread::current(),
                });
                drop(state);
                if self.park_until_covered(offset_bytes) {
                    return self.check_poisoned();
                }
                state = lock(&self.sync);
                continue;
            }
            if state.gather_policy.gather && !self.group_gathered(&state) {
                let now = Instant::now();
                let budget =
                    (state.last_sync_duration / GATHER_FRACTION_OF_SYNC).min(GATHER_WAIT_MAX);
                let deadline = *gather_deadline.get_or_insert(now + budget);
                if now < deadline {
                    state.gatherers += 1;
                    let (guard, _) = self
                        .sync_arrivals
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|p| p.into_inner());
                    state = guard;
                    state.gatherers -= 1;
                    continue;
                }
            }
            state.sync_in_progress = true;
            self.sync_in_flight.store(true, Ordering::Release);
            // Read before the goal: an append between the two reads is then counted as
            // uncovered though the sync covers it (a shorter gather next time), never the
            // reverse.
            let appends = self.appends.load(Ordering::Acquire);
            let new_appends = appends.saturating_sub(state.appends_at_sync_start);
            state.appends_at_sync_start = appends;
            state
                .gather_policy
                .on_sync_start(new_appends, Instant::now());
            let goal = self.written_offset_bytes();
            drop(state);
            let started = Instant::now();
            let result = self.storage.sync_data();
            let sync_duration = started.elapsed();
            if let Err(e) = result {
                // Poison at once: no commit may be written or acknowledged after a failed
                // fdatasync returned (fsyncgate; in Batched mode this thread is the flusher
                // and commits do not wait for it). `sync_in_progress` stays set, and every
                // `sync_to` returns at its poison check before looking at it.
                self.poison(format!("fdatasync up to offset {goal} failed: {e}"));
                return Err(EngineError::io(
                    format!(
                        "fdatasync of {} up to offset {goal} (the database is now poisoned; \
                         commits written since the last good sync may or may not survive a restart)",
                        self.path.display()
                    ),
                    e,
                ));
            }
            state = lock(&self.sync);
            state.sync_in_progress = false;
            self.sync_in_flight.store(false, Ordering::Release);
            state.synced_offset_bytes = state.synced_offset_bytes.max(goal);
            self.synced_offset_bytes
                .store(state.synced_offset_bytes, Ordering::Release);
            state.group_target = self.sync_waiters.load(Ordering::Acquire);
            state.last_sync_duration = sync_duration;
            // Wake every waiter this sync covered (each returns without the lock), and the
            // first one it did not, to lead the next sync; the rest stay parked for it.
            let synced = state.synced_offset_bytes;
            let mut promoted = false;
            let mut wake = Vec::with_capacity(state.parked.len());
            state.parked.retain(|waiter| {
                if waiter.offset_bytes > synced && promoted {
                    return true;
                }
                promoted |= waiter.offset_bytes > synced;
                wake.push(waiter.thread.clone());
                false
            });
            // `accept_end` and `await_sync_outcome` wait on this for the sync to finish.
            self.sync_done.notify_all();
            if state.gatherers > 0 {
                // A gathering leader may be covered now: let it see so at once.
                self.sync_arrivals.notify_all();
            }
            drop(state);
            // Outside the lock: each unpark is a syscall, and the promoted waiter needs the
            // lock at once. The leader's own offset was written before its sync started,
            // so the sync covered it.
            debug_assert!(goal >= offset_bytes);
            for thread in wake {
                thread.unpark();
            }
            return self.check_poisoned();
        }
    }

    /// Parks the calling thread (registered in `SyncState::parked`) until a sync covers
    /// `offset_bytes` or the WAL is poisoned (returns true), or a completing leader takes it
    /// off the list to lead the next sync (returns false). Covered waiters return without
    /// touching the sync lock, so a completed sync does not wake a herd that then queues
    /// on the lock.
    fn park_until_covered(&self, offset_bytes: u64) -> bool {
        loop {
            std::thread::park();
            if self.synced_offset_bytes.load(Ordering::Acquire) >= offset_bytes
                || self.poisoned.load(Ordering::Acquire)
            {
                return true;
            }
            // Promoted, or a spurious wakeup: only the list can tell.
            let me = std::thread::current().id();
            if !lock(&self.sync)
                .parked
                .iter()
                .any(|waiter| waiter.thread.id() == me)
            {
                return false;
            }
        }
    }

    /// True when at least as many appends await a sync as committers were waiting when the
    /// last sync completed.
    fn group_gathered(&self, state: &SyncState) -> bool {
        let uncovered_appends = self
            .appends
            .load(Ordering::Acquire)
            .saturating_sub(state.appends_at_sync_start);
        uncovered_appends >= state.group_target as u64
    }

    /// Waits until no fdatasync is in flight, then fails if the WAL is poisoned.
    ///
    /// Commits that do not sync (Batched, Async) call this before acknowledging. A failed
    /// fdatasync keeps `sync_in_progress` set until it has poisoned the WAL, so a commit that
    /// starts after the failure returned always sees the poison: without this wait it could
    /// be written and acknowledged in the instant between the failure and the poisoning
    /// (found by `torture run --mode batched --kill io-error`, seed 0x73a7659c90216165).
    /// Costs one uncontended lock when no sync is running.
    pub fn await_sync_outcome(&self) -> Result<()> {
        // Fast path without the sync lock: `sync_in_flight` is set (under the lock) before
        // an fdatasync starts and cleared only after it succeeded, so reading it false
        // means no sync that could fail has returned unseen; the poison check follows.
        if !self.sync_in_flight.load(Ordering::Acquire) {
            return self.check_poisoned();
        }
        let mut state = lock(&self.sync);
        while state.sync_in_progress && !self.poisoned.load(Ordering::Acquire) {
            state = self
                .sync_done
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        drop(state);
        self.check_poisoned()
    }

    /// fdatasyncs everything written so far.
    pub fn sync(&self) -> Result<()> {
        self.sync_to(self.written_offset_bytes())
    }
}

/// The gather policy keeps whichever way covered more commits per second: fed synthetic
/// epochs (64 syncs each, a fixed number of appends per sync over a fixed time), it must
/// choose gathering when gathering's epoch was faster, not gathering otherwise, and
/// measure both ways again after its exploit epochs.
#[cfg(test)]
mod gather_policy_tests {
    use std::time::{Duration, Instant};

    use super::{GatherPhase, GatherPolicy, GATHER_EPOCH_SYNCS, GATHER_EXPLOIT_EPOCHS};

    /// Runs one epoch of syncs covering `appends_per_sync` each, one every `sync_us`.
    fn epoch(policy: &mut GatherPolicy, now: &mut Instant, appends_per_sync: u64, sync_us: u64) {
        for _ in 0..GATHER_EPOCH_SYNCS {
            *now += Duration::from_micros(sync_us);
            policy.on_sync_start(appends_per_sync, *now);
        }
    }

    fn choice_after(gathered: (u64, u64), direct: (u64, u64)) -> GatherPolicy {
        let mut policy = GatherPolicy::new();
        let mut now = Instant::now();
        policy.on_sync_start(0, now); // opens the first epoch
        assert!(policy.gather, "measuring starts with gathering");
        epoch(&mut policy, &mut now, gathered.0, gathered.1);
        assert_eq!(policy.phase, GatherPhase::TryDirect);
        assert!(!policy.gather);
        epoch(&mut policy, &mut now, direct.0, direct.1);
        assert!(matches!(policy.phase, GatherPhase::Exploit { .. }));
        policy
    }

    #[test]
    fn keeps_the_faster_way_then_measures_again() {
        // 8 per 400 us (20K/s) against 4 per 180 us (22K/s): direct wins.
        let policy = choice_after((8, 400), (4, 180));
        assert!(!policy.gather);
        // A slow disk: 8 per 4 ms against 4 per 4 ms: gathering wins.
        let mut policy = choice_after((8, 4000), (4, 4000));
        assert!(policy.gather);
        let mut now = Instant::now() + Duration::from_secs(1);
        for _ in 0..=GATHER_EXPLOIT_EPOCHS {
            assert!(policy.gather, "the choice holds while exploiting");
            epoch(&mut policy, &mut now, 8, 4000);
        }
        assert_eq!(
            policy.phase,
            GatherPhase::TryGather,
            "then it measures again"
        );
    }
}
