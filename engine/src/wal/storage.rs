//! The one I/O seam under the WAL.
//!
//! The WAL reads and writes its file only through [`WalStorage`], and opens it only through
//! a [`StorageOpener`]. Production uses [`FileStorage`]; the crash harness wraps it in layers
//! that stop the process after exactly K bytes, track the durable (fsynced) length, or fail
//! a write or an fsync. Dynamic dispatch here costs one indirect call per syscall.
//!
//! [`FileStorage`] maps the space the WAL preallocated ([`WalStorage::allocate`]) with a
//! shared mapping, so an append inside it is a `memcpy` into the page cache instead of a
//! `pwrite` (see [`FileStorage`] for why this keeps every guarantee).

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Positional file I/O, shareable across threads: one thread appends while another fsyncs.
pub trait WalStorage: Send + Sync + Debug {
    /// Current length of the file in bytes.
    fn len_bytes(&self) -> io::Result<u64>;
    /// Reads up to `buf.len()` bytes at `offset_bytes`; returns how many were read (0 at EOF).
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `data` at `offset_bytes` (hands it to the OS; no durability implied).
    fn write_at(&self, offset_bytes: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or extends the file to `len_bytes`.
    fn set_len(&self, len_bytes: u64) -> io::Result<()>;
    /// Preallocation: makes `[offset_bytes, offset_bytes + len_bytes)` allocated file space
    /// that reads as zeros, extending the file if needed. The caller guarantees the range
    /// holds nothing it still needs. These bytes are not WAL data: layers that count or
    /// track written bytes (the crash harness's kill-at-offset) must not count them.
    ///
    /// `cadence` says how often appends into the range will be fdatasynced, so the storage
    /// can pick the cheaper way to write them.
    ///
    /// Returns `Ok(false)` when this storage does not preallocate (the default): the file is
    /// left as it is, and the WAL then grows the file with each append instead.
    fn allocate(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
        cadence: SyncCadence,
    ) -> io::Result<bool> {
        let _ = (offset_bytes, len_bytes, cadence);
        Ok(false)
    }
    /// Makes every byte written so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the file's directory entry durable (fsync of the parent directory).
    fn sync_dir(&self) -> io::Result<()>;
}

/// How often the appends into an allocated range will be followed by an fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCadence {
    /// About one fdatasync per append (Strict). Writeback write-protects the page it
    /// writes, so a mapped write after each sync takes a page fault that costs more than
    /// the `pwrite` syscall it saves (measured ~20% fewer Strict commits per second):
    /// [`FileStorage`] writes with `pwrite`.
    PerAppend,
    /// Many appends per fdatasync (Async, Batched): [`FileStorage`] copies them into a
    /// shared mapping, saving a syscall per append.
    Deferred,
}

/// The engine's file-system seam: every file and directory operation the engine performs
/// goes through it, each as a named method, so a fault layer can record the sequence of
/// operations of a whole open, commit or recovery, and fail or undo any of them.
/// Reads and writes of an opened file go through its [`WalStorage`].
///
/// The directory operations have default bodies that perform the real operation, so a
/// layer that only wraps [`StorageOpener::open`] keeps the real behaviour for the rest.
pub trait StorageOpener: Send + Sync + Debug {
    /// Opens `path` for reading and writing, creating it if missing; `created` reports
    /// whether it was created. (The new directory entry is durable only after
    /// [`StorageOpener::sync_dir`] of its directory.)
    fn open(&self, path: &Path) -> io::Result<OpenedStorage>;

    /// Creates one directory level (`mkdir`); `AlreadyExists` if it exists.
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    /// Makes the entries of directory `dir` durable (open + fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sync_directory(dir)
    }

    /// Renames `from` to `to`, replacing `to` (`rename`; durable after a directory fsync).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    /// Removes a file (`unlink`; durable after a directory fsync).
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    /// The length of the file at `path`, or `None` when there is no such file (`stat`).
    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens (creating if missing) the directory's lock file, for `flock`: the one file the
    /// engine needs as a real descriptor. It holds no data.
    fn open_lock_file(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    }

    /// The names of the entries of directory `dir` (`readdir`).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
        std::fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    /// The whole content of the file at `path`, or `None` when there is no such file.
    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A storage handle and whether opening it created the file.
#[derive(Debug)]
pub struct OpenedStorage {
    pub storage: Arc<dyn WalStorage>,
    pub created: bool,
}

/// The real file.
///
/// Writes that fall inside the preallocated region go through a `MAP_SHARED` mapping of
/// `[0, mapped_len)`: a `memcpy` into the kernel's page cache, about ten times cheaper than
/// a `pwrite` syscall for a small record. This keeps every promise of `write_at`:
/// - a process kill loses nothing: the dirty pages belong to the kernel, not the process;
/// - `fdatasync` on the file writes back pages dirtied through any shared mapping of it
///   (Linux tracks them with write-protect faults), so Strict and `flush` cover them;
/// - `pread` sees the bytes at once (one page cache);
/// - no SIGBUS: the mapping only ever covers bytes the file holds. It is created by
///   `allocate` after the file has been extended, and `set_len` drops it before shrinking
///   the file. The database directory's lock keeps other processes from truncating it.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    dir: PathBuf,
    map: Mutex<Mapping>,
}

/// A shared read-write mapping of the start of the file (`len == 0`: none).
#[derive(Debug)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with the kernel's page cache; every access to
// it goes through the `Mutex<Mapping>` in `FileStorage`, which serialises them.
unsafe impl Send for Mapping {}

impl Mapping {
    const NONE: Mapping = Mapping {
        ptr: std::ptr::null_mut(),
        len: 0,
    };

    fn unmap(&mut self) {
        if self.len > 0 {
            // SAFETY: `ptr..ptr + len` is a mapping this struct created and nothing else
            // refers to (all users hold the mutex around this struct).
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
        // Field by field: assigning a whole `Mapping` would drop (and unmap) the old one.
        self.ptr = std::ptr::null_mut();
        self.len = 0;
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        self.unmap();
    }
}

impl FileStorage {
    /// Opens `path` for reading and writing, creating it if missing.
    pub fn open(path: &Path) -> io::Result<(FileStorage, bool)> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok((
            FileStorage {
                file,
                dir,
                map: Mutex::new(Mapping::NONE),
            },
            !existed,
        ))
    }

    /// Bytes currently reachable through the shared mapping (0: none).
    pub fn mapped_len_bytes(&self) -> u64 {
        lock_map(&self.map).len as u64
    }

    /// Reserves real blocks for the range (`fallocate`: the space is there, or ENOSPC
    /// now), then writes zeros over it with `pwrite`.
    ///
    /// Why the zeros: `fallocate` leaves the blocks "unwritten", and the first writeback
    /// into each block has to record the conversion, metadata that a Strict commit's
    /// fdatasync would carry about once per 4 KiB of records; zeros written now are
    /// converted once, by the fdatasync after the allocation. And they put the pages in
    /// the page cache in one syscall, so a mapped append's first touch of a page is a
    /// minor fault instead of a page allocation (Async, one thread, three runs each:
    /// 1.19/1.39/1.47M txn/s with zeros, 0.84/1.01/1.24M prefaulting fallocated space
    /// with `MADV_POPULATE_WRITE` instead).
    fn reserve(&self, offset_bytes: u64, len_bytes: u64) -> io::Result<()> {
        // SAFETY: fallocate(2) on an fd we own; no memory is passed.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                0,
                offset_bytes as libc::off_t,
                len_bytes as libc::off_t,
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            // A file system without fallocate gets the zeros only.
            if !matches!(
                err.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
            ) {
                return Err(err);
            }
        }
        const ZERO_WRITE_LEN_MAX: u64 = 1 << 20;
        let zeros = vec![0u8; ZERO_WRITE_LEN_MAX.min(len_bytes) as usize];
        let end = offset_bytes + len_bytes;
        let mut at = offset_bytes;
        while at < end {
            let len = (end - at).min(ZERO_WRITE_LEN_MAX) as usize;
            self.file.write_all_at(&zeros[..len], at)?;
            at += len as u64;
        }
        Ok(())
    }

    /// Makes the mapping cover `[0, len_bytes)`; the file must already be that long. A
    /// failure leaves the old mapping (or none): writes then fall back to `pwrite`.
    fn map_to(&self, map: &mut Mapping, len_bytes: usize) {
        if len_bytes <= map.len {
            return;
        }
        let ptr = if map.len == 0 {
            // SAFETY: a fresh shared mapping of our own fd; the kernel picks the address.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len_bytes,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    self.file.as_raw_fd(),
                    0,
                )
            }
        } else {
            // SAFETY: grows the mapping this struct owns; no reference into it outlives
            // the mutex guard the caller holds, so it may move.
            unsafe { libc::mremap(map.ptr.cast(), map.len, len_bytes, libc::MREMAP_MAYMOVE) }
        };
        if ptr == libc::MAP_FAILED {
            log::warn!(
                "mapping {len_bytes} bytes of the WAL failed ({}); appends use pwrite",
                io::Error::last_os_error()
            );
            return;
        }
        // Field by field: assigning a whole `Mapping` would drop the old value and unmap
        // an address range that `mremap` already moved (or that now belongs to the new one).
        map.ptr = ptr.cast();
        map.len = len_bytes;
    }
}

/// Copies `data` to `dst` strictly in ascending address order, so that a process killed
/// in the middle of the copy leaves a prefix of `data` behind, as an interrupted `pwrite`
/// does. `memcpy` gives no such order (for 33..256 bytes glibc loads both ends and may
/// store the end first), and a SIGKILL between its stores leaves the end of a record with
/// zeros before it: a hole followed by valid records, which recovery must take for
/// corruption of committed history (found by `torture run`, watch kills, Batched and
/// Async). Volatile stores keep the compiler from reordering or merging them into a
/// `memcpy`; the CPU retires them in program order before any interrupt is taken.
///
/// # Safety
/// `dst..dst + data.len()` must be valid for writes and must not overlap `data`.
unsafe fn copy_in_address_order(data: &[u8], dst: *mut u8) {
    const WORD: usize = std::mem::size_of::<u64>();
    let len = data.len();
    let mut at = 0;
    // Bytes up to the first 8-byte-aligned destination address.
    let head = dst.align_offset(WORD).min(len);
    while at < head {
        // SAFETY: `at < len`; the caller guarantees `dst..dst + len` is writable.
        unsafe { dst.add(at).write_volatile(data[at]) };
        at += 1;
    }
    while at + WORD <= len {
        let word = u64::from_ne_bytes(data[at..at + WORD].try_into().expect("8 bytes"));
        // SAFETY: `dst + at` is 8-byte aligned (the head loop) and `at + 8 <= len`.
        unsafe { dst.add(at).cast::<u64>().write_volatile(word) };
        at += WORD;
    }
    while at < len {
        // SAFETY: as in the head loop.
        unsafe { dst.add(at).write_volatile(data[at]) };
        at += 1;
    }
}

fn lock_map(m: &Mutex<Mapping>) -> std::sync::MutexGuard<'_, Mapping> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WalStorage for FileStorage {
    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, offset_bytes) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn write_at(&self, offset_bytes: u64, data: &[u8]) -> io::Result<()> {
        let map = lock_map(&self.map);
        let end = offset_bytes.checked_add(data.len() as u64);
        if end.is_some_and(|end| end <= map.len as u64) {
            // SAFETY: `offset_bytes + data.len() <= map.len`, so the destination lies inside
            // the live mapping, which is file-backed up to `map.len` (see the type's doc),
            // and the guard keeps it from being moved or unmapped during the copy. `data`
            // is a caller's buffer, never the mapping itself, so they cannot overlap.
            unsafe { copy_in_address_order(data, map.ptr.add(offset_bytes as usize)) };
            return Ok(());
        }
        drop(map);
        self.file.write_all_at(data, offset_bytes)
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        let mut map = lock_map(&self.map);
        if len_bytes < map.len as u64 {
            // A mapping past the new end would fault (SIGBUS) on the next copy into it.
            map.unmap();
        }
        self.file.set_len(len_bytes)
    }

    fn allocate(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
        cadence: SyncCadence,
    ) -> io::Result<bool> {
        let end = offset_bytes.checked_add(len_bytes).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "allocation end overflows u64")
        })?;
        let mut map = lock_map(&self.map);
        if len_bytes > 0 {
            self.reserve(offset_bytes, len_bytes)?;
        }
        if cadence == SyncCadence::Deferred {
            // Map only what the file is known to hold: `reserve` extended it to `end`.
            let file_len = self.file.metadata()?.len();
            if let Ok(map_len) = usize::try_from(end.min(file_len)) {
                self.map_to(&mut map, map_len);
            }
        }
        Ok(true)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_dir(&self) -> io::Result<()> {
        sync_directory(&self.dir)
    }
}

/// fsyncs a directory so that entries created or renamed in it survive power loss.
pub fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens real files.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileOpener;

impl StorageOpener for FileOpener {
    fn open(&self, path: &Path) -> io::Result<OpenedStorage> {
        let (storage, created) = FileStorage::open(path)?;
        Ok(OpenedStorage {
            storage: Arc::new(storage),
            created,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_storage_reads_back_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let opened = FileOpener.open(&path).unwrap();
        assert!(opened.created);
        let s = opened.storage;
        s.write_at(0, b"hello").unwrap();
        s.write_at(5, b" world").unwrap();
        s.sync_data().unwrap();
        s.sync_dir().unwrap();
        assert_eq!(s.len_bytes().unwrap(), 11);
        let mut buf = [0u8; 32];
        let n = s.read_at(6, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"world");
        s.set_len(5).unwrap();
        assert_eq!(s.len_bytes().unwrap(), 5);
        assert!(!FileOpener.open(&path).unwrap().created);
    }

    /// Appends into preallocated space are copies into a shared mapping: `pread` and other
    /// readers of the file see them at once, a write across the mapping's end still lands
    /// whole, and shrinking the file drops the mapping first, so a later write past the new
    /// end extends the file instead of faulting (SIGBUS).
    #[test]
    fn mapped_appends_are_the_file_and_truncate_drops_the_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let (s, _) = FileStorage::open(&path).unwrap();
        s.write_at(0, b"head").unwrap();
        assert_eq!(
            s.mapped_len_bytes(),
            0,
            "nothing mapped before an allocation"
        );
        assert!(s.allocate(4, 8192 - 4, SyncCadence::Deferred).unwrap());
        assert_eq!(s.len_bytes().unwrap(), 8192);
        assert_eq!(s.mapped_len_bytes(), 8192);
        s.write_at(100, b"mapped").unwrap();
        let mut buf = [0u8; 6];
        assert_eq!(s.read_at(100, &mut buf).unwrap(), 6);
        assert_eq!(&buf, b"mapped");
        assert_eq!(&std::fs::read(&path).unwrap()[100..106], b"mapped");
        // Straddles the mapping's end: written with pwrite, all of it.
        s.write_at(8188, b"straddle").unwrap();
        assert_eq!(s.len_bytes().unwrap(), 8196);
        assert_eq!(&std::fs::read(&path).unwrap()[8188..], b"straddle");
        // Growing the mapping keeps what was written through the old one.
        assert!(s
            .allocate(8196, 65536 - 8196, SyncCadence::Deferred)
            .unwrap());
        assert_eq!(s.mapped_len_bytes(), 65536);
        s.write_at(60000, b"grown").unwrap();
        let image = std::fs::read(&path).unwrap();
        assert_eq!(&image[100..106], b"mapped");
        assert_eq!(&image[60000..60005], b"grown");
        s.sync_data().unwrap();

        s.set_len(50).unwrap();
        assert_eq!(
            s.mapped_len_bytes(),
            0,
            "a mapping past the end would SIGBUS"
        );
        s.write_at(60, b"after").unwrap();
        assert_eq!(s.len_bytes().unwrap(), 65);
        let image = std::fs::read(&path).unwrap();
        assert_eq!(&image[..4], b"head");
        assert!(image[4..60].iter().all(|b| *b == 0));
        assert_eq!(&image[60..], b"after");
    }

    /// The mapped copy (volatile, ascending) writes exactly the bytes of `data`, for every
    /// destination alignment and every length around the 8-byte word, and nothing
    /// outside them.
    #[test]
    fn copy_in_address_order_copies_exactly_at_every_alignment() {
        let data: Vec<u8> = (1..=40u8).collect();
        for dst_offset in 0..16 {
            for len in 0..data.len() {
                let mut dst = vec![0u8; 64];
                // SAFETY: `dst_offset + len <= 16 + 40 <= 64`, and `dst` is not `data`.
                unsafe { copy_in_address_order(&data[..len], dst.as_mut_ptr().add(dst_offset)) };
                assert_eq!(&dst[dst_offset..dst_offset + len], &data[..len]);
                assert!(dst[..dst_offset].iter().all(|b| *b == 0));
                assert!(dst[dst_offset + len..].iter().all(|b| *b == 0));
            }
        }
    }

    /// Strict appends (one fdatasync each) keep using `pwrite`: allocating for them maps
    /// nothing. Allocation never changes bytes already in the file.
    #[test]
    fn per_append_cadence_allocates_without_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = FileStorage::open(&dir.path().join("f")).unwrap();
        s.write_at(0, b"records").unwrap();
        assert!(s.allocate(7, 4096, SyncCadence::PerAppend).unwrap());
        assert_eq!(s.len_bytes().unwrap(), 4103);
        assert_eq!(s.mapped_len_bytes(), 0);
        let mut buf = [0xffu8; 16];
        assert_eq!(s.read_at(0, &mut buf).unwrap(), 16);
        assert_eq!(&buf[..7], b"records");
        assert!(buf[7..].iter().all(|b| *b == 0));
    }
}
