//! The fault-injecting storage: the one implementation of the engine's seam
//! ([`StorageOpener`] and [`WalStorage`]) that the harness and the engine's tests put
//! under a database.
//!
//! Guarantees:
//! - every method of both seam traits is turned into one [`Op`] and reaches the inner
//!   opener or file in exactly one place ([`FaultOpener`]'s dispatch), including
//!   [`WalStorage::allocate`] (so preallocation runs under faults as it does in production)
//!   and every directory operation;
//! - the active faults are [`Hook`]s, called outermost first; a hook sees the operation
//!   and decides whether, and how, it goes on to the next hook (and finally the file). A
//!   hook never forwards trait methods itself, so adding a seam method cannot be
//!   forgotten by one of them.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use engine::wal::{FileOpener, OpenedStorage, StorageOpener, SyncCadence, WalStorage};

/// One call of the engine's seam. The first seven are calls on an open file
/// ([`WalStorage`]); the rest are calls on the opener ([`StorageOpener`]).
#[derive(Debug)]
pub enum Op<'a> {
    Len,
    Read {
        offset_bytes: u64,
        buf: &'a mut [u8],
    },
    Write {
        offset_bytes: u64,
        data: &'a [u8],
    },
    SetLen {
        len_bytes: u64,
    },
    Allocate {
        offset_bytes: u64,
        len_bytes: u64,
        cadence: SyncCadence,
    },
    SyncData,
    /// fsync of an open file's own directory ([`WalStorage::sync_dir`]).
    SyncFileDir,
    Open {
        path: &'a Path,
    },
    CreateDir {
        path: &'a Path,
    },
    /// fsync of a directory by path ([`StorageOpener::sync_dir`]).
    SyncDir {
        dir: &'a Path,
    },
    Rename {
        from: &'a Path,
        to: &'a Path,
    },
    RemoveFile {
        path: &'a Path,
    },
    FileLen {
        path: &'a Path,
    },
    OpenLockFile {
        path: &'a Path,
    },
    ListDir {
        dir: &'a Path,
    },
    ReadFile {
        path: &'a Path,
    },
}

impl Op<'_> {
    /// The operation's name (as in the seam traits).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Len => "len_bytes",
            Op::Read { .. } => "read_at",
            Op::Write { .. } => "write_at",
            Op::SetLen { .. } => "set_len",
            Op::Allocate { .. } => "allocate",
            Op::SyncData => "sync_data",
            Op::SyncFileDir => "sync_dir (file)",
            Op::Open { .. } => "open",
            Op::CreateDir { .. } => "create_dir",
            Op::SyncDir { .. } => "sync_dir",
            Op::Rename { .. } => "rename",
            Op::RemoveFile { .. } => "remove_file",
            Op::FileLen { .. } => "file_len",
            Op::OpenLockFile { .. } => "open_lock_file",
            Op::ListDir { .. } => "list_dir",
            Op::ReadFile { .. } => "read_file",
        }
    }
}

/// What an [`Op`] returned.
#[derive(Debug)]
pub enum Reply {
    /// `len_bytes`.
    Len(u64),
    /// `read_at`: bytes read.
    Read(usize),
    /// Operations that return nothing.
    Done,
    /// `allocate`: whether it allocated.
    Allocated(bool),
    Opened(OpenedStorage),
    FileLen(Option<u64>),
    LockFile(File),
    Names(Vec<OsString>),
    Contents(Option<Vec<u8>>),
}

/// An open file as hooks see it.
#[derive(Debug, Clone)]
pub struct FileRef {
    /// Unique per opener, in open order.
    pub id: u64,
    pub path: PathBuf,
    pub created: bool,
    /// The file below every hook: reading it is seen by no hook (nor the trace).
    pub raw: Arc<dyn WalStorage>,
}

impl FileRef {
    /// Whether this is the database's log (`wal.log`), the file most faults act on.
    pub fn is_wal(&self) -> bool {
        is_wal_path(&self.path)
    }
}

/// Whether `path` names the database's log.
pub fn is_wal_path(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()) == Some(engine::WAL_FILE_NAME)
}

/// The rest of the chain below a hook: the next hooks, then the file.
pub type Next<'n> = &'n dyn Fn(Op<'_>) -> io::Result<Reply>;

/// One active fault (or observer) under the seam.
pub trait Hook: Send + Sync + fmt::Debug {
    /// Handles `op` (on `file`, or on the opener when `None`): pass it on with
    /// `next(op)`, change it, or answer it without passing it on. The default passes on.
    fn call(&self, file: Option<&FileRef>, op: Op<'_>, next: Next<'_>) -> io::Result<Reply> {
        let _ = file;
        next(op)
    }

    /// Called once a file was opened through the whole chain, before the engine gets it.
    fn opened(&self, file: &FileRef) -> io::Result<()> {
        let _ = file;
        Ok(())
    }
}

/// The hooks of one opener and the storage below them.
struct Chain {
    inner: Arc<dyn StorageOpener>,
    hooks: Vec<Arc<dyn Hook>>,
    next_id: AtomicU64,
}

impl Chain {
    fn run(&self, file: Option<&FileRef>, op: Op<'_>) -> io::Result<Reply> {
        self.run_from(0, file, op)
    }

    fn run_from(&self, i: usize, file: Option<&FileRef>, op: Op<'_>) -> io::Result<Reply> {
        match self.hooks.get(i) {
            Some(hook) => hook.call(file, op, &|op| self.run_from(i + 1, file, op)),
            None => self.dispatch(file, op),
        }
    }

    /// The one place where every seam method reaches the inner storage.
    fn dispatch(&self, file: Option<&FileRef>, op: Op<'_>) -> io::Result<Reply> {
        let on_file = |name: &str| -> io::Result<&dyn WalStorage> {
            file.map(|f| f.raw.as_ref())
                .ok_or_else(|| io::Error::other(format!("crashkit: {name} reached the opener")))
        };
        let inner = self.inner.as_ref();
        Ok(match op {
            Op::Len => Reply::Len(on_file("len_bytes")?.len_bytes()?),
            Op::Read { offset_bytes, buf } => {
                Reply::Read(on_file("read_at")?.read_at(offset_bytes, buf)?)
            }
            Op::Write { offset_bytes, data } => {
                on_file("write_at")?.write_at(offset_bytes, data)?;
                Reply::Done
            }
            Op::SetLen { len_bytes } => {
                on_file("set_len")?.set_len(len_bytes)?;
                Reply::Done
            }
            Op::Allocate {
                offset_bytes,
                len_bytes,
                cadence,
            } => {
                Reply::Allocated(on_file("allocate")?.allocate(offset_bytes, len_bytes, cadence)?)
            }
            Op::SyncData => {
                on_file("sync_data")?.sync_data()?;
                Reply::Done
            }
            Op::SyncFileDir => {
                on_file("sync_dir")?.sync_dir()?;
                Reply::Done
            }
            Op::Open { path } => Reply::Opened(inner.open(path)?),
            Op::CreateDir { path } => {
                inner.create_dir(path)?;
                Reply::Done
            }
            Op::SyncDir { dir } => {
                inner.sync_dir(dir)?;
                Reply::Done
            }
            Op::Rename { from, to } => {
                inner.rename(from, to)?;
                Reply::Done
            }
            Op::RemoveFile { path } => {
                inner.remove_file(path)?;
                Reply::Done
            }
            Op::FileLen { path } => Reply::FileLen(inner.file_len(path)?),
            Op::OpenLockFile { path } => Reply::LockFile(inner.open_lock_file(path)?),
            Op::ListDir { dir } => Reply::Names(inner.list_dir(dir)?),
            Op::ReadFile { path } => Reply::Contents(inner.read_file(path)?),
        })
    }
}

fn wrong_reply(op: &str, reply: Reply) -> io::Error {
    io::Error::other(format!("crashkit: a hook answered {op} with {reply:?}"))
}

/// Unpacks the reply a seam method expects, or fails with the mismatch.
macro_rules! expect_reply {
    ($reply:expr, $op:literal, $pattern:pat => $value:expr) => {
        match $reply? {
            $pattern => Ok($value),
            other => Err(wrong_reply($op, other)),
        }
    };
}

/// The [`StorageOpener`] that runs every operation through its hooks; files it opens are
/// [`FaultStorage`]s over the same hooks.
pub struct FaultOpener {
    chain: Arc<Chain>,
}

impl fmt::Debug for FaultOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultOpener")
            .field("hooks", &self.chain.hooks)
            .finish_non_exhaustive()
    }
}

impl FaultOpener {
    /// Real files under `hooks` (outermost first).
    pub fn new(hooks: Vec<Arc<dyn Hook>>) -> FaultOpener {
        FaultOpener::over(Arc::new(FileOpener), hooks)
    }

    /// `inner`'s files under `hooks` (outermost first).
    pub fn over(inner: Arc<dyn StorageOpener>, hooks: Vec<Arc<dyn Hook>>) -> FaultOpener {
        FaultOpener {
            chain: Arc::new(Chain {
                inner,
                hooks,
                next_id: AtomicU64::new(1),
            }),
        }
    }
}

impl StorageOpener for FaultOpener {
    fn open(&self, path: &Path) -> io::Result<OpenedStorage> {
        let opened =
            expect_reply!(self.chain.run(None, Op::Open { path }), "open", Reply::Opened(o) => o)?;
        let file = FileRef {
            id: self.chain.next_id.fetch_add(1, Ordering::Relaxed),
            path: path.to_path_buf(),
            created: opened.created,
            raw: opened.storage,
        };
        for hook in &self.chain.hooks {
            hook.opened(&file)?;
        }
        Ok(OpenedStorage {
            created: file.created,
            storage: Arc::new(FaultStorage {
                chain: self.chain.clone(),
                file,
            }),
        })
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        expect_reply!(self.chain.run(None, Op::CreateDir { path }), "create_dir", Reply::Done => ())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        expect_reply!(self.chain.run(None, Op::SyncDir { dir }), "sync_dir", Reply::Done => ())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        expect_reply!(self.chain.run(None, Op::Rename { from, to }), "rename", Reply::Done => ())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        expect_reply!(self.chain.run(None, Op::RemoveFile { path }), "remove_file", Reply::Done => ())
    }
    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        expect_reply!(self.chain.run(None, Op::FileLen { path }), "file_len", Reply::FileLen(n) => n)
    }
    fn open_lock_file(&self, path: &Path) -> io::Result<File> {
        expect_reply!(self.chain.run(None, Op::OpenLockFile { path }), "open_lock_file", Reply::LockFile(f) => f)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        expect_reply!(self.chain.run(None, Op::ListDir { dir }), "list_dir", Reply::Names(n) => n)
    }
    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        expect_reply!(self.chain.run(None, Op::ReadFile { path }), "read_file", Reply::Contents(c) => c)
    }
}

/// A file opened by a [`FaultOpener`]: every call goes through the opener's hooks.
pub struct FaultStorage {
    chain: Arc<Chain>,
    file: FileRef,
}

impl fmt::Debug for FaultStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultStorage")
            .field("path", &self.file.path)
            .finish_non_exhaustive()
    }
}

impl FaultStorage {
    fn run(&self, op: Op<'_>) -> io::Result<Reply> {
        self.chain.run(Some(&self.file), op)
    }
}

impl WalStorage for FaultStorage {
    fn len_bytes(&self) -> io::Result<u64> {
        expect_reply!(self.run(Op::Len), "len_bytes", Reply::Len(n) => n)
    }
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        expect_reply!(self.run(Op::Read { offset_bytes, buf }), "read_at", Reply::Read(n) => n)
    }
    fn write_at(&self, offset_bytes: u64, data: &[u8]) -> io::Result<()> {
        expect_reply!(self.run(Op::Write { offset_bytes, data }), "write_at", Reply::Done => ())
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        expect_reply!(self.run(Op::SetLen { len_bytes }), "set_len", Reply::Done => ())
    }
    fn allocate(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
        cadence: SyncCadence,
    ) -> io::Result<bool> {
        let op = Op::Allocate {
            offset_bytes,
            len_bytes,
            cadence,
        };
        expect_reply!(self.run(op), "allocate", Reply::Allocated(a) => a)
    }
    fn sync_data(&self) -> io::Result<()> {
        expect_reply!(self.run(Op::SyncData), "sync_data", Reply::Done => ())
    }
    fn sync_dir(&self) -> io::Result<()> {
        expect_reply!(self.run(Op::SyncFileDir), "sync_dir", Reply::Done => ())
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
