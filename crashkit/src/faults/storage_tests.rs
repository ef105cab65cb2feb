//! The fault storage forwards every seam method, once, to what lies below it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;

/// Real files that count every seam call that reaches them, by method name.
#[derive(Debug, Default)]
struct Counting {
    calls: Arc<Mutex<BTreeMap<&'static str, u32>>>,
}

impl Counting {
    fn count(&self, name: &'static str) {
        *self.calls.lock().unwrap().entry(name).or_default() += 1;
    }
}

#[derive(Debug)]
struct CountingFile {
    inner: Arc<dyn WalStorage>,
    calls: Arc<Mutex<BTreeMap<&'static str, u32>>>,
}

impl CountingFile {
    fn count(&self, name: &'static str) {
        *self.calls.lock().unwrap().entry(name).or_default() += 1;
    }
}

impl WalStorage for CountingFile {
    fn len_bytes(&self) -> io::Result<u64> {
        self.count("file.len_bytes");
        self.inner.len_bytes()
    }
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.count("file.read_at");
        self.inner.read_at(offset_bytes, buf)
    }
    fn write_at(&self, offset_bytes: u64, data: &[u8]) -> io::Result<()> {
        self.count("file.write_at");
        self.inner.write_at(offset_bytes, data)
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.count("file.set_len");
        self.inner.set_len(len_bytes)
    }
    fn allocate(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
        cadence: SyncCadence,
    ) -> io::Result<bool> {
        self.count("file.allocate");
        self.inner.allocate(offset_bytes, len_bytes, cadence)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.count("file.sync_data");
        self.inner.sync_data()
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.count("file.sync_dir");
        self.inner.sync_dir()
    }
}

impl StorageOpener for Counting {
    fn open(&self, path: &Path) -> io::Result<OpenedStorage> {
        self.count("open");
        let opened = FileOpener.open(path)?;
        Ok(OpenedStorage {
            storage: Arc::new(CountingFile {
                inner: opened.storage,
                calls: self.calls.clone(),
            }),
            created: opened.created,
        })
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.count("create_dir");
        FileOpener.create_dir(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.count("sync_dir");
        FileOpener.sync_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.count("rename");
        FileOpener.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.count("remove_file");
        FileOpener.remove_file(path)
    }
    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        self.count("file_len");
        FileOpener.file_len(path)
    }
    fn open_lock_file(&self, path: &Path) -> io::Result<File> {
        self.count("open_lock_file");
        FileOpener.open_lock_file(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.count("list_dir");
        FileOpener.list_dir(dir)
    }
    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        self.count("read_file");
        FileOpener.read_file(path)
    }
}

/// Passes everything on (the default of every hook method).
#[derive(Debug)]
struct PassOn;
impl Hook for PassOn {}

/// Every method of both seam traits, called once through a [`FaultOpener`] (with no hook
/// and with two pass-on hooks), reaches the storage below exactly once, with what it was
/// given. A method the fault storage did not forward (left to the trait's default body,
/// as a wrapper that forgot `allocate` did) is missing from the counts.
#[test]
fn every_seam_method_is_forwarded_exactly_once() {
    let hook_sets: [Vec<Arc<dyn Hook>>; 2] = [vec![], vec![Arc::new(PassOn), Arc::new(PassOn)]];
    for hooks in hook_sets {
        let dir = tempfile::tempdir().unwrap();
        let counting = Arc::new(Counting::default());
        let calls = counting.calls.clone();
        let opener = FaultOpener::over(counting, hooks);
        let sub = dir.path().join("sub");
        opener.create_dir(&sub).unwrap();
        opener.sync_dir(&sub).unwrap();
        let opened = opener.open(&sub.join("f")).unwrap();
        assert!(opened.created);
        let s = opened.storage;
        s.write_at(0, b"hello").unwrap();
        let mut buf = [0u8; 5];
        assert_eq!(s.read_at(0, &mut buf).unwrap(), 5);
        assert_eq!(&buf, b"hello");
        assert!(s.allocate(5, 4096, SyncCadence::PerAppend).unwrap());
        assert_eq!(s.len_bytes().unwrap(), 4101);
        s.set_len(5).unwrap();
        s.sync_data().unwrap();
        s.sync_dir().unwrap();
        assert_eq!(opener.file_len(&sub.join("f")).unwrap(), Some(5));
        assert_eq!(
            opener.read_file(&sub.join("f")).unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        opener.rename(&sub.join("f"), &sub.join("g")).unwrap();
        assert_eq!(opener.list_dir(&sub).unwrap(), vec![OsString::from("g")]);
        opener.open_lock_file(&sub.join("LOCK")).unwrap();
        opener.remove_file(&sub.join("g")).unwrap();
        let calls = calls.lock().unwrap().clone();
        let expected: BTreeMap<&'static str, u32> = [
            "create_dir",
            "sync_dir",
            "open",
            "file.write_at",
            "file.read_at",
            "file.allocate",
            "file.len_bytes",
            "file.set_len",
            "file.sync_data",
            "file.sync_dir",
            "file_len",
            "read_file",
            "rename",
            "list_dir",
            "open_lock_file",
            "remove_file",
        ]
        .into_iter()
        .map(|name| (name, 1))
        .collect();
        assert_eq!(calls, expected);
    }
}

/// A hook that answers an operation itself keeps it from the file; one that answers with
/// the wrong kind of reply makes the call fail instead of returning nonsense.
#[test]
fn a_hook_can_answer_for_the_file_and_a_wrong_answer_is_an_error() {
    #[derive(Debug)]
    struct Answers;
    impl Hook for Answers {
        fn call(&self, _: Option<&FileRef>, op: Op<'_>, next: Next<'_>) -> io::Result<Reply> {
            match op {
                Op::SyncData => Ok(Reply::Done),
                Op::Len => Ok(Reply::Done),
                other => next(other),
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let counting = Arc::new(Counting::default());
    let calls = counting.calls.clone();
    let opener = FaultOpener::over(counting, vec![Arc::new(Answers)]);
    let s = opener.open(&dir.path().join("f")).unwrap().storage;
    s.sync_data().unwrap();
    assert!(s.len_bytes().is_err());
    assert_eq!(calls.lock().unwrap().get("file.sync_data"), None);
}
