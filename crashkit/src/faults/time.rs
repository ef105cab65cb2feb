//! `--kill time` (blackbox): the parent SIGKILLs the writer after a random delay. No
//! storage hook.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The `--kill` value.
pub const NAME: &str = "time";

/// Shortest delay of a time kill (most earlier kills would land before the WAL exists).
pub const TIME_KILL_DELAY_US_MIN: u64 = 500;
/// Longest delay of a time kill.
pub const TIME_KILL_DELAY_US_MAX: u64 = 4_000;

/// Draws the delay in microseconds after spawning the writer, within
/// [`TIME_KILL_DELAY_US_MIN`]..=[`TIME_KILL_DELAY_US_MAX`]: start-up (exec, open) takes
/// about a millisecond and a small workload a few more in a release build, so kills
/// spread from before the first commit to after the usual end.
pub fn draw_delay_us(rng: &mut ChaCha8Rng) -> u64 {
    rng.gen_range(TIME_KILL_DELAY_US_MIN..=TIME_KILL_DELAY_US_MAX)
}
