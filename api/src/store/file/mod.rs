//! The `file:DIR` store: the embedded default for one host and for labs whose nodes share one
//! machine. No server; many processes may use one directory at once.
//!
//! ```text
//! DIR/lock                                   flock: shared to read, exclusive to write
//! DIR/journal                                commit log, one JSON line per write (journal.rs)
//! DIR/objects/<group>/<plural>/<name>.json             cluster-scoped objects
//! DIR/objects/<group>/<plural>/<namespace>/<name>.json namespaced objects
//! ```
//!
//! A write, under the exclusive lock: (1) finish whatever a dead writer left (cut a torn journal
//! line, apply the last entry if its object file is behind); (2) check the expected revision;
//! (3) append the entry to the journal and fsync it: the commit point; (4) write the object file
//! (temporary file, fsync, rename, fsync of the directory) or unlink it. A process killed at any
//! point leaves a store that the next reader or writer completes, with nothing half-written:
//! either the whole write happened or none of it. A transaction ([`Store::transact`]) is the
//! same with several entries in one journal line: one fsync, all of them or none. Readers take the shared lock, so a list and
//! its revision are one consistent snapshot. Watches poll the journal (every 50 ms by default).
//!
//! Never: a write without the exclusive lock, an object file written in place, an object that
//! fails to parse skipped in silence.

mod checkpoint;
mod journal;
mod watch;

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::journal::{Change, Entry, EntryKey, io_error};
use super::{
    Key, Kind, Object, ObjectList, Revision, Store, StoreError, WatchStream, Write, check_kind, distinct_keys,
    normalize,
};

/// Tunables of a [`FileStore`].
#[derive(Debug, Clone)]
pub struct FileStoreOptions {
    /// When the journal grows past this many bytes, the oldest half is compacted away.
    pub journal_limit_bytes: u64,
    /// How often a watch looks for new journal entries.
    pub watch_poll: Duration,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            journal_limit_bytes: 64 << 20,
            watch_poll: Duration::from_millis(50),
        }
    }
}

/// The `file:DIR` backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    options: FileStoreOptions,
    /// This boot's id; `None` where it cannot be read, and then object files are fsynced.
    boot_id: Option<String>,
    /// Set once this process has made sure no reboot lost object files (checkpoint.rs).
    boot_checked: std::sync::OnceLock<()>,
    /// The journal as this process last found it complete (no torn line, its last entry
    /// applied). While the file is unchanged nothing was written since, so a read or write
    /// skips parsing the journal's tail and checking the last entry's object file: a read then
    /// costs the lock, one stat and the object itself.
    clean: std::sync::Mutex<Option<JournalMark>>,
    /// A periodic checkpoint this process claimed, to be taken once the lock is released.
    checkpoint_due: std::sync::Mutex<Option<Revision>>,
}

/// What identifies one state of the journal file (appends change its length and ctime,
/// compaction its inode) and of the object files of its last line's entries (which recovery
/// restores when damaged, so a change to one needs a full check again).
#[derive(Debug, Clone, PartialEq, Eq)]
struct JournalMark {
    journal: Option<FileStamp>,
    last_objects: Vec<(PathBuf, Option<FileStamp>)>,
    head: Revision,
}

/// Inode, length and ctime of a file.
type FileStamp = (u64, u64, i64, i64);

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).ok()?;
    Some((meta.ino(), meta.len(), meta.ctime(), meta.ctime_nsec()))
}

impl JournalMark {
    fn of(journal: &Path, last_objects: Vec<PathBuf>, head: Revision) -> JournalMark {
        JournalMark {
            journal: stamp(journal),
            last_objects: last_objects
                .into_iter()
                .map(|path| {
                    let stamp = stamp(&path);
                    (path, stamp)
                })
                .collect(),
            head,
        }
    }

    /// Whether the files are as they were when the mark was taken.
    fn still_holds(&self, journal: &Path) -> bool {
        self.journal.is_some()
            && stamp(journal) == self.journal
            && self
                .last_objects
                .iter()
                .all(|(path, stamp_then)| stamp(path) == *stamp_then)
    }
}

/// The object file's content.
#[derive(Serialize, Deserialize)]
struct ObjectFile {
    revision: Revision,
    object: Value,
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir`, finishing any write a dead process left.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileStore, StoreError> {
        FileStore::open_with(dir, FileStoreOptions::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, options: FileStoreOptions) -> Result<FileStore, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(dir.join("objects")).map_err(io_error("create", &dir))?;
        let store = FileStore {
            inner: Arc::new(Inner {
                dir,
                options,
                boot_id: checkpoint::boot_id(),
                boot_checked: std::sync::OnceLock::new(),
                clean: std::sync::Mutex::new(None),
                checkpoint_due: std::sync::Mutex::new(None),
            }),
        };
        let inner = &store.inner;
        let _lock = inner.lock(FlockArg::LockExclusive)?;
        let journal = inner.journal_path();
        if !journal.exists() {
            journal::create(&journal, Revision(0))?;
        }
        inner.recover()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// One write, committed alone.
    async fn write_one(&self, write: Write) -> Result<Object, StoreError> {
        let mut written = self.transact(vec![write]).await?;
        written.pop().ok_or_else(|| StoreError::Invalid {
            key: self.inner.describe(),
            reason: "a write committed nothing".into(),
        })
    }

    async fn blocking<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        // A single-threaded runtime (a CNI plugin's, a CLI's) has nothing else to run while it
        // waits for the disk: handing the work to another thread would only add latency.
        if tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
        {
            return operation(&inner);
        }
        tokio::task::spawn_blocking(move || operation(&inner))
            .await
            .map_err(|error| StoreError::Backend {
                store: self.describe(),
                message: "a store task failed".into(),
                source: Some(Box::new(error)),
            })?
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content; with
/// `durable`, also a power loss (the file and its directory are fsynced).
pub(super) fn atomic_write(path: &Path, bytes: &[u8], durable: bool) -> Result<(), StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let temporary = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = File::create(&temporary).map_err(io_error("create", &temporary))?;
        file.write_all(bytes).map_err(io_error("write", &temporary))?;
        if durable {
            file.sync_data().map_err(io_error("fsync", &temporary))?;
        }
        fs::rename(&temporary, path).map_err(io_error("rename onto", path))?;
        if durable { sync_dir(dir) } else { Ok(()) }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync directory", dir))
}

fn entry_key(key: &Key) -> EntryKey {
    EntryKey {
        api_version: key.kind.api_version(),
        kind: key.kind.kind.clone(),
        plural: key.kind.plural.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    }
}

impl Inner {
    fn journal_path(&self) -> PathBuf {
        self.dir.join("journal")
    }

    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }

    /// The head revision, if the journal is as this process last found it complete. Needs a
    /// lock (shared or exclusive), so no writer changes the file meanwhile.
    fn clean_head(&self) -> Option<Revision> {
        let known = self.clean.lock().ok()?.clone()?;
        known.still_holds(&self.journal_path()).then_some(known.head)
    }

    /// Records the journal as complete at `head`, the objects of its last line's entries at
    /// `last_objects`. Needs a lock.
    fn mark_clean(&self, head: Revision, last_objects: Vec<PathBuf>) {
        let mark = JournalMark::of(&self.journal_path(), last_objects, head);
        if let Ok(mut clean) = self.clean.lock() {
            *clean = Some(mark);
        }
    }

    fn lock(&self, mode: FlockArg) -> Result<Flock<File>, StoreError> {
        let path = self.dir.join("lock");
        // A new open file description per lock: flock does not exclude two locks taken
        // through the same description, as threads of one process sharing a descriptor would.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error("open", &path))?;
        Flock::lock(file, mode).map_err(|(_, errno)| StoreError::Io {
            operation: "lock",
            path: path.display().to_string(),
            source: errno.into(),
        })
    }

    fn kind_dir(&self, kind: &Kind) -> PathBuf {
        let group = if kind.group.is_empty() { "core" } else { &kind.group };
        self.dir.join("objects").join(group).join(&kind.plural)
    }

    fn object_path(&self, key: &Key) -> PathBuf {
        let mut path = self.kind_dir(&key.kind);
        if let Some(namespace) = &key.namespace {
            path.push(namespace);
        }
        path.push(format!("{}.json", key.name));
        path
    }

    fn entry_path(&self, key: &EntryKey) -> PathBuf {
        let group = key.api_version.rsplit_once('/').map_or("core", |(group, _)| group);
        let mut path = self.dir.join("objects").join(group).join(&key.plural);
        if let Some(namespace) = &key.namespace {
            path.push(namespace);
        }
        path.push(format!("{}.json", key.name));
        path
    }

    /// Reads an object file: `None` when it does not exist.
    fn read_file(path: &Path) -> Result<Option<ObjectFile>, StoreError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("read", path)(error)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| StoreError::Corrupt {
                location: path.display().to_string(),
                reason: format!("not a stored object ({error}); restore it from a backup or delete the file"),
            })
    }

    /// Reads and checks the object stored at `key`.
    fn read_object(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        let path = self.object_path(key);
        let Some(file) = Self::read_file(&path)? else {
            return Ok(None);
        };
        let location = path.display().to_string();
        check_kind(&key.kind, &file.object, &location)?;
        let found = Key::of_value(&key.kind, &file.object).map_err(|error| StoreError::Corrupt {
            location: location.clone(),
            reason: error.to_string(),
        })?;
        if found != *key {
            return Err(StoreError::Corrupt {
                location,
                reason: format!("the file belongs to {key} but holds {found}"),
            });
        }
        Ok(Some(Object::new(found, file.revision, file.object)))
    }

    fn write_object(&self, path: &Path, revision: Revision, object: &Value) -> Result<(), StoreError> {
        let dir = path.parent().unwrap_or(&self.dir);
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(io_error("create", dir))?;
            if let (Some(parent), true) = (dir.parent(), self.durable_objects()) {
                sync_dir(parent)?;
            }
        }
        let bytes = serde_json::to_vec(&ObjectFile {
            revision,
            object: object.clone(),
        })
        .map_err(|error| StoreError::Invalid {
            key: path.display().to_string(),
            reason: error.to_string(),
        })?;
        atomic_write(path, &bytes, self.durable_objects())
    }

    /// Whether object files are fsynced on every write (no boot id to detect a reboot by).
    fn durable_objects(&self) -> bool {
        self.boot_id.is_none()
    }

    fn remove_object(&self, path: &Path) -> Result<(), StoreError> {
        match fs::remove_file(path) {
            Ok(()) if self.durable_objects() => sync_dir(path.parent().unwrap_or(Path::new("."))),
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io_error("remove", path)(error)),
        }
    }

    /// True when a dead writer left work behind: a torn line or an entry not yet applied.
    fn needs_recovery(&self, tail: &journal::Tail) -> Result<bool, StoreError> {
        if tail.committed_len < tail.file_len {
            return Ok(true);
        }
        for entry in &tail.last {
            if self.behind(entry)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether the object file of a committed entry is not (yet) what the entry made it. A
    /// damaged file counts as behind: it is rewritten from the journal, which holds that key's
    /// newest state.
    fn behind(&self, entry: &Entry) -> Result<bool, StoreError> {
        let current = match Self::read_file(&self.entry_path(&entry.key)) {
            Ok(file) => file.map(|file| file.revision),
            Err(StoreError::Corrupt { .. }) => return Ok(true),
            Err(error) => return Err(error),
        };
        Ok(match entry.change {
            Change::Create | Change::Update => current != Some(entry.revision),
            Change::Delete => current.is_some_and(|revision| revision < entry.revision),
        })
    }

    fn last_objects(&self, tail: &journal::Tail) -> Vec<PathBuf> {
        tail.last.iter().map(|entry| self.entry_path(&entry.key)).collect()
    }

    /// Completes what a dead writer left. Needs the exclusive lock.
    fn recover(&self) -> Result<Revision, StoreError> {
        if self.boot_checked.get().is_some()
            && let Some(head) = self.clean_head()
        {
            return Ok(head);
        }
        let path = self.journal_path();
        let tail = journal::read_tail(&path)?;
        if tail.committed_len < tail.file_len {
            tracing::warn!(journal = %path.display(), "cutting off a torn journal line left by a dead writer");
            journal::truncate(&path, tail.committed_len)?;
        }
        if self.boot_checked.get().is_none() {
            self.check_boot(tail.head)?;
            let _ = self.boot_checked.set(());
        }
        // The entries of the last line are applied in order: a batch may hold a key twice.
        if self.needs_recovery(&tail)? {
            for entry in &tail.last {
                let object_path = self.entry_path(&entry.key);
                tracing::warn!(revision = %entry.revision, object = %object_path.display(), "applying a committed write a dead writer left unfinished");
                match entry.change {
                    Change::Create | Change::Update => {
                        self.write_object(&object_path, entry.revision, &entry.object)?
                    }
                    Change::Delete => self.remove_object(&object_path)?,
                }
                if let Some(dir) = object_path.parent() {
                    remove_temporaries(dir);
                }
            }
        }
        self.mark_clean(tail.head, self.last_objects(&tail));
        Ok(tail.head)
    }

    /// After a reboot since the last checkpoint, applies every later journal entry whose
    /// object file is behind, missing or damaged, then records a new checkpoint. Needs the
    /// exclusive lock.
    fn check_boot(&self, head: Revision) -> Result<(), StoreError> {
        let Some(boot_id) = &self.boot_id else {
            return Ok(());
        };
        let recorded = checkpoint::read(&self.dir);
        if recorded.as_ref().is_some_and(|c| &c.boot_id == boot_id) {
            return Ok(());
        }
        let since = recorded.map_or(Revision(0), |c| c.revision);
        let path = self.journal_path();
        let bytes = fs::read(&path).map_err(io_error("read", &path))?;
        let mut offset = 0u64;
        let mut replayed = 0usize;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let line_offset = offset;
            offset += line.len() as u64;
            if !line.ends_with(b"\n") {
                break;
            }
            let journal::Line::Entries(entries) = journal::parse_line(&path, line_offset, &line[..line.len() - 1])?
            else {
                continue;
            };
            for entry in entries.iter().filter(|entry| entry.revision > since) {
                let object_path = self.entry_path(&entry.key);
                let current = Self::read_file(&object_path).ok().flatten().map(|f| f.revision);
                match entry.change {
                    Change::Create | Change::Update if current.is_none_or(|r| r < entry.revision) => {
                        self.write_object(&object_path, entry.revision, &entry.object)?;
                        replayed += 1;
                    }
                    Change::Delete if current.is_some_and(|r| r < entry.revision) => {
                        self.remove_object(&object_path)?;
                        replayed += 1;
                    }
                    _ => {}
                }
            }
        }
        if replayed > 0 {
            tracing::warn!(since = %since, replayed, "restored object files from the journal after a reboot");
        }
        checkpoint::write(&self.dir, head, boot_id)
    }

    /// Records a checkpoint when enough writes went by since the last one. `force` (before a
    /// compaction): now, under the caller's lock. Otherwise the checkpoint is claimed here and
    /// taken by [`Inner::write_locked`] once the lock is released: it syncs the whole file
    /// system, which can take 100 ms on a busy disk, and every other writer would wait for it.
    /// Taking it later is still right: every object file up to `head` was written before the
    /// lock was released, so the sync that follows covers them.
    fn maybe_checkpoint(&self, head: Revision, force: bool) -> Result<(), StoreError> {
        let Some(boot_id) = &self.boot_id else {
            return Ok(());
        };
        if force {
            return checkpoint::write(&self.dir, head, boot_id);
        }
        let since = checkpoint::read(&self.dir)
            .map_or(Revision(0), |c| c.revision)
            .max(checkpoint::claimed(&self.dir));
        if head.0.saturating_sub(since.0) >= checkpoint::CHECKPOINT_EVERY {
            // So that the writers that follow while it is taken do not take one too.
            checkpoint::claim(&self.dir, head)?;
            if let Ok(mut due) = self.checkpoint_due.lock() {
                *due = Some(head);
            }
        }
        Ok(())
    }

    /// Runs `read` under the shared lock, after recovery if a dead writer left work.
    fn read_locked<T>(&self, read: impl FnOnce(Revision) -> Result<T, StoreError>) -> Result<T, StoreError> {
        {
            let _lock = self.lock(FlockArg::LockShared)?;
            if let Some(head) = self.clean_head() {
                return read(head);
            }
            let tail = journal::read_tail(&self.journal_path())?;
            if !self.needs_recovery(&tail)? {
                self.mark_clean(tail.head, self.last_objects(&tail));
                return read(tail.head);
            }
        }
        let _lock = self.lock(FlockArg::LockExclusive)?;
        let head = self.recover()?;
        read(head)
    }

    /// Checks a write's condition against the stored objects (under the exclusive lock) and
    /// returns the change to commit.
    fn prepare(&self, write: Write) -> Result<(Change, Key, Value), StoreError> {
        let key = write.key()?;
        let current = self.read_object(&key)?;
        write.check(&key, current.as_ref().map(|object| object.revision))?;
        Ok(match write {
            Write::Create { kind, value } => (Change::Create, key, normalize(&kind, value)),
            Write::Update { kind, value, .. } => (Change::Update, key, normalize(&kind, value)),
            Write::Delete { .. } => {
                let mut last = current.map(|object| object.value).unwrap_or_default();
                if let Some(metadata) = last.get_mut("metadata").and_then(Value::as_object_mut) {
                    metadata.remove("resourceVersion");
                }
                (Change::Delete, key, last)
            }
        })
    }

    /// Commits changes together under the exclusive lock: one journal line, one fsync, the
    /// revisions after `head` in order.
    fn commit_all(&self, head: Revision, changes: Vec<(Change, Key, Value)>) -> Result<Vec<Object>, StoreError> {
        let entries: Vec<Entry> = changes
            .iter()
            .zip(head.0 + 1..)
            .map(|((change, key, object), revision)| Entry {
                revision: Revision(revision),
                change: *change,
                key: entry_key(key),
                object: object.clone(),
            })
            .collect();
        let Some(newest) = entries.last().map(|entry| entry.revision) else {
            return Ok(Vec::new());
        };
        let journal_path = self.journal_path();
        let journal_len = journal::append(&journal_path, &entries)?;
        let mut paths = Vec::with_capacity(entries.len());
        for entry in &entries {
            let path = self.entry_path(&entry.key);
            match entry.change {
                Change::Create | Change::Update => self.write_object(&path, entry.revision, &entry.object)?,
                Change::Delete => self.remove_object(&path)?,
            }
            paths.push(path);
        }
        let compact = journal_len > self.options.journal_limit_bytes;
        // Everything a compaction drops from the journal must be on disk first.
        self.maybe_checkpoint(newest, compact)?;
        if compact {
            journal::compact(&journal_path, self.options.journal_limit_bytes / 2)?;
        }
        self.mark_clean(newest, paths);
        Ok(changes
            .into_iter()
            .zip(entries)
            .map(|((_, key, _), entry)| Object::new(key, entry.revision, entry.object))
            .collect())
    }

    fn write_locked<T>(&self, write: impl FnOnce(Revision) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let result = {
            let _lock = self.lock(FlockArg::LockExclusive)?;
            let head = self.recover()?;
            write(head)
        };
        // A claimed periodic checkpoint, outside the lock (see maybe_checkpoint). The write
        // itself is committed either way; a checkpoint not taken only means more to check
        // after a reboot.
        let due = self.checkpoint_due.lock().ok().and_then(|mut due| due.take());
        if let (Some(revision), Some(boot_id)) = (due, &self.boot_id)
            && let Err(error) = checkpoint::write(&self.dir, revision, boot_id)
        {
            tracing::warn!(%error, %revision, "cannot record a checkpoint; a reboot will check more of the journal");
        }
        result
    }

    fn list(&self, kind: &Kind, namespace: Option<&str>) -> Result<ObjectList, StoreError> {
        self.read_locked(|revision| {
            let dir = self.kind_dir(kind);
            let mut items = Vec::new();
            if kind.namespaced {
                let namespaces = match namespace {
                    Some(namespace) => vec![namespace.to_owned()],
                    None => sorted_entries(&dir, true)?,
                };
                for namespace in namespaces {
                    for name in sorted_entries(&dir.join(&namespace), false)? {
                        items.extend(self.read_object(&Key::new(kind, Some(&namespace), &name))?);
                    }
                }
            } else {
                for name in sorted_entries(&dir, false)? {
                    items.extend(self.read_object(&Key::new(kind, None, &name))?);
                }
            }
            Ok(ObjectList { items, revision })
        })
    }
}

/// Names in `dir`: subdirectories when `dirs`, else `*.json` files without the extension.
/// Temporary files (`.name.tmp-…`) are skipped. A missing directory is empty.
fn sorted_entries(dir: &Path, dirs: bool) -> Result<Vec<String>, StoreError> {
    let reader = match fs::read_dir(dir) {
        Ok(reader) => reader,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error("read directory", dir)(error)),
    };
    let mut names = Vec::new();
    for entry in reader {
        let entry = entry.map_err(io_error("read directory", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let is_dir = entry.file_type().map_err(io_error("stat", &entry.path()))?.is_dir();
        if dirs && is_dir {
            names.push(name);
        } else if !dirs && !is_dir {
            match name.strip_suffix(".json") {
                Some(stem) => names.push(stem.to_owned()),
                None => {
                    return Err(StoreError::Corrupt {
                        location: entry.path().display().to_string(),
                        reason: "a stray file among the objects (not *.json)".into(),
                    });
                }
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Removes temporary files a dead writer left in `dir`. Only called under the exclusive lock.
fn remove_temporaries(dir: &Path) {
    let Ok(reader) = fs::read_dir(dir) else { return };
    for entry in reader.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[async_trait::async_trait]
impl Store for FileStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        key.check()?;
        let key = key.clone();
        self.blocking(move |inner| inner.read_locked(|_| inner.read_object(&key)))
            .await
    }

    async fn list(&self, kind: &Kind, namespace: Option<&str>) -> Result<ObjectList, StoreError> {
        let kind = kind.clone();
        let namespace = namespace.map(str::to_owned);
        self.blocking(move |inner| inner.list(&kind, namespace.as_deref()))
            .await
    }

    async fn create(&self, kind: &Kind, value: Value) -> Result<Object, StoreError> {
        self.write_one(Write::Create {
            kind: kind.clone(),
            value,
        })
        .await
    }

    async fn update(&self, kind: &Kind, value: Value, expected: Revision) -> Result<Object, StoreError> {
        self.write_one(Write::Update {
            kind: kind.clone(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &Key, expected: Option<Revision>) -> Result<Object, StoreError> {
        self.write_one(Write::Delete {
            key: key.clone(),
            expected,
        })
        .await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<Vec<Object>, StoreError> {
        distinct_keys(&writes)?;
        self.blocking(move |inner| {
            inner.write_locked(|head| {
                let changes = writes
                    .into_iter()
                    .map(|write| inner.prepare(write))
                    .collect::<Result<Vec<_>, _>>()?;
                inner.commit_all(head, changes)
            })
        })
        .await
    }

    async fn watch(&self, kind: &Kind, from: Revision) -> Result<WatchStream, StoreError> {
        watch::start(Arc::clone(&self.inner), kind.clone(), from)
    }
}
