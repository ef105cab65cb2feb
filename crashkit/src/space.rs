//! Free space of the file system under the harness's scratch directories.
//!
//! A cycle that runs out of space fails inside the engine (a write or fsync returns
//! ENOSPC, or recovery cannot truncate and sync) and would be reported as a finding about
//! the engine. The campaign checks free space before it starts and before every cycle, so
//! a full disk stops the run as an environment failure (exit 3) instead.

use std::io;
use std::path::Path;

const MIB: u64 = 1024 * 1024;

/// Below this much free space a campaign stops before the next cycle (`--min-free-mib`).
/// A cycle writes at most a few MiB (40 transactions of values up to 64 KiB, a copy of
/// the crashed WAL, preallocation up to 1 MiB), times `jobs`; findings keep more.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * MIB;

/// `/dev/shm` serves as the default scratch root only with at least this much free: a
/// stock container mounts a 64 MiB one, which a few parallel cycles (and the threshold
/// above) would exhaust.
pub const SHM_MIN_FREE_BYTES: u64 = 256 * MIB;

/// Bytes available to an unprivileged user on the file system holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    // The field types differ between platforms (u32 on some 32-bit targets).
    #[allow(clippy::useless_conversion)]
    let free = u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size()));
    Ok(free)
}

/// Fails with a message naming the directory, the free space and the threshold when the
/// file system holding `dir` has less than `min_free_bytes` available.
pub fn ensure_free(dir: &Path, min_free_bytes: u64) -> io::Result<()> {
    if min_free_bytes == 0 {
        return Ok(());
    }
    let free = free_bytes(dir)?;
    if free < min_free_bytes {
        return Err(io::Error::other(format!(
            "only {:.1} MiB free in {}, below the {:.1} MiB minimum (free space, point \
             --work-dir elsewhere, or lower --min-free-mib)",
            free as f64 / MIB as f64,
            dir.display(),
            min_free_bytes as f64 / MIB as f64
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_measured_and_compared_with_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0, "a writable temporary directory has some space");
        ensure_free(dir.path(), 0).unwrap();
        ensure_free(dir.path(), 1).unwrap();
        let err = ensure_free(dir.path(), u64::MAX).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("MiB free in"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(free_bytes(Path::new("/nonexistent/dir")).is_err());
    }
}
