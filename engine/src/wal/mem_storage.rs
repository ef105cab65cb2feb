//! `MemStorage`: a file held in memory behind the seam ([`WalStorage`]), for tools and
//! tests that read or recover thousands of images without a file system (the crash
//! harness's sweep, the reader's property tests).
//!
//! Guarantees: reads, writes and size changes act on the bytes exactly as on a file
//! (writing past the end zero-fills the gap; reading past the end returns fewer bytes).
//! Nothing is ever lost: `sync_data` only records the length it covered
//! ([`MemStorage::synced_len_bytes`]), so a caller can check what a recovery made durable.

use std::io;
use std::sync::{Mutex, MutexGuard};

use super::storage::WalStorage;

/// A file held in memory.
#[derive(Debug, Default)]
pub struct MemStorage {
    data: Mutex<Vec<u8>>,
    /// The file's length when its last `sync_data` ran (`None`: never synced).
    synced_len_bytes: Mutex<Option<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemStorage {
    /// A file holding `bytes`, never synced.
    pub fn new(bytes: Vec<u8>) -> MemStorage {
        MemStorage {
            data: Mutex::new(bytes),
            synced_len_bytes: Mutex::new(None),
        }
    }

    /// A copy of the file's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        lock(&self.data).clone()
    }

    /// The file's length when its last `sync_data` ran (`None`: never synced).
    pub fn synced_len_bytes(&self) -> Option<u64> {
        *lock(&self.synced_len_bytes)
    }
}

impl WalStorage for MemStorage {
    fn len_bytes(&self) -> io::Result<u64> {
        Ok(lock(&self.data).len() as u64)
    }

    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        let data = lock(&self.data);
        let from = usize::try_from(offset_bytes).map_or(data.len(), |at| at.min(data.len()));
        let n = buf.len().min(data.len() - from);
        buf[..n].copy_from_slice(&data[from..from + n]);
        Ok(n)
    }

    fn write_at(&self, offset_bytes: u64, bytes: &[u8]) -> io::Result<()> {
        let too_far = || io::Error::new(io::ErrorKind::InvalidInput, "write past usize");
        let from = usize::try_from(offset_bytes).map_err(|_| too_far())?;
        let end = from.checked_add(bytes.len()).ok_or_else(too_far)?;
        let mut data = lock(&self.data);
        if data.len() < end {
            data.resize(end, 0);
        }
        data[from..end].copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        let len = usize::try_from(len_bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length past usize"))?;
        lock(&self.data).resize(len, 0);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let len = lock(&self.data).len() as u64;
        *lock(&self.synced_len_bytes) = Some(len);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes past the end zero-fill, reads past the end come back short, a cut drops
    /// bytes, and a sync records the length it covered.
    #[test]
    fn behaves_as_a_file_and_records_its_syncs() {
        let file = MemStorage::new(b"abc".to_vec());
        file.write_at(5, b"xy").unwrap();
        assert_eq!(file.bytes(), b"abc\0\0xy");
        let mut buf = [0u8; 4];
        assert_eq!(file.read_at(5, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"xy");
        assert_eq!(file.read_at(100, &mut buf).unwrap(), 0);
        assert_eq!(file.synced_len_bytes(), None);
        file.sync_data().unwrap();
        file.set_len(2).unwrap();
        assert_eq!(
            (file.bytes(), file.synced_len_bytes()),
            (b"ab".to_vec(), Some(7))
        );
    }
}
