//! `--kill watch` (blackbox): the parent SIGKILLs the writer once `wal.log` reaches K
//! bytes. No storage hook: the writer runs on plain storage, and where the kill lands
//! depends on timing.

use rand_chacha::ChaCha8Rng;

use crate::workload::Workload;

/// The `--kill` value.
pub const NAME: &str = "watch";

/// Draws K as an offset kill does ([`super::offset::draw_kill_offset`]).
pub fn draw_watch_len(workload: &Workload, rng: &mut ChaCha8Rng) -> u64 {
    super::offset::draw_kill_offset(workload, rng)
}
