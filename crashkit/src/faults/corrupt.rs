//! `--corrupt`: a bit flip in provably synced history, which the default recovery must
//! refuse at its offset and point-in-time recovery must cut exactly there
//! (docs/faults.md C1-C3, docs/recovery-contract.md R6). No storage hook: the flip is
//! applied to the crashed files. The target choice and the check live in
//! [`crate::corrupt`]; this module is the fault's entry point.

use crate::case::{Case, Purpose};
use crate::workload::RecordSpan;

pub use crate::corrupt::{check_refused, CorruptTarget};

/// The flag of `torture run` and `torture repro`.
pub const FLAG: &str = "corrupt";

/// Draws the bit to flip in the crashed log `image`, whose whole records end at
/// `valid_end_bytes` (`written`: where the writer's records lie). `None` when no record
/// lies in provably synced history with another whole record after it.
pub fn draw_target(
    case: &Case,
    written: &[RecordSpan],
    image: &[u8],
    valid_end_bytes: u64,
) -> Option<CorruptTarget> {
    let proved = crate::corrupt::proved_synced_end_bytes(image, valid_end_bytes);
    crate::corrupt::pick_target(
        written,
        valid_end_bytes,
        proved,
        &mut case.rng(Purpose::Corrupt),
    )
}
