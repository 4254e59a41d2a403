//! A local directory as an object store, with the same guarantees as GCS:
//! create-only through `link(2)` (which fails if the name exists), atomic replacement through a
//! temporary file and `rename(2)`, and generations for compare-and-swap.
//!
//! A generation is the file's modification time in nanoseconds, set explicitly and strictly
//! increasing per key; compare-and-swap holds an exclusive `flock` on a lock file beside the
//! object, so two processes cannot both win.

use super::{Found, ObjectStore, Presence, Store, StoreError, Stored, check_key};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct FileStore {
    root: PathBuf,
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> StoreError {
    match e.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            StoreError::Denied(format!("{what} {}: {e}", path.display()))
        }
        _ => StoreError::Other(format!("{what} {}: {e}", path.display())),
    }
}

fn generation_of(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1))
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl FileStore {
    /// A store rooted at `dir`, which must exist and be a directory.
    pub fn new(dir: &str) -> anyhow::Result<Self> {
        let root = PathBuf::from(dir);
        let meta = fs::metadata(&root)
            .map_err(|e| anyhow::anyhow!("destination directory `{dir}` cannot be used ({e}); create it first"))?;
        if !meta.is_dir() {
            anyhow::bail!("destination `{dir}` is not a directory");
        }
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Writes `data` into a new hidden file beside `path` with the given generation as its mtime,
    /// flushed to disk.
    fn write_temp(&self, path: &Path, data: &[u8], generation: u64) -> Result<PathBuf, StoreError> {
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, &e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), now_ns()));
        let mut file =
            OpenOptions::new().write(true).create_new(true).open(&temp).map_err(|e| io_error("creating", &temp, &e))?;
        file.write_all(data).map_err(|e| io_error("writing", &temp, &e))?;
        file.set_modified(UNIX_EPOCH + Duration::from_nanos(generation))
            .map_err(|e| io_error("stamping", &temp, &e))?;
        file.sync_all().map_err(|e| io_error("syncing", &temp, &e))?;
        Ok(temp)
    }

    fn sync_dir(path: &Path) {
        // Makes the new name durable; a failure here only weakens durability, not atomicity.
        if let Some(dir) = path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
    }

    fn lock(&self, path: &Path) -> Result<File, StoreError> {
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, &e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let lock_path = dir.join(format!(".{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error("opening", &lock_path, &e))?;
        file.lock().map_err(|e| io_error("locking", &lock_path, &e))?;
        Ok(file)
    }

    fn current_generation(path: &Path) -> Result<u64, StoreError> {
        match fs::metadata(path) {
            Ok(m) => Ok(generation_of(&m)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_error("reading", path, &e)),
        }
    }
}

impl ObjectStore for FileStore {
    /// One local step, so no lease ([`ObjectStore::lease_ms`] is 0) and no deadline to keep.
    fn create(
        &self,
        key: &str,
        data: &[u8],
        _content_type: &str,
        _deadline_ms: Option<i64>,
    ) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        let generation = now_ns();
        let temp = self.write_temp(&path, data, generation)?;
        let linked = fs::hard_link(&temp, &path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                Self::sync_dir(&path);
                Ok(generation)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(StoreError::AlreadyExists),
            Err(e) => Err(io_error("creating", &path, &e)),
        }
    }

    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        let path = self.path(key)?;
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("reading", &path, &e)),
        };
        // Data and generation from the same open file: a concurrent replace cannot mix them.
        let meta = file.metadata().map_err(|e| io_error("reading", &path, &e))?;
        let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut data).map_err(|e| io_error("reading", &path, &e))?;
        Ok(Some(Stored { data, generation: generation_of(&meta) }))
    }

    fn write_if_generation(
        &self,
        key: &str,
        data: &[u8],
        _content_type: &str,
        generation: u64,
    ) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        let _lock = self.lock(&path)?;
        let current = Self::current_generation(&path)?;
        if current != generation {
            return Err(StoreError::GenerationMismatch);
        }
        // Strictly newer than the current generation, even if the clock stepped back.
        let next = now_ns().max(current + 1_000);
        let temp = self.write_temp(&path, data, next)?;
        fs::rename(&temp, &path).map_err(|e| {
            let _ = fs::remove_file(&temp);
            io_error("replacing", &path, &e)
        })?;
        Self::sync_dir(&path);
        // What the filesystem kept (it may round the time).
        let stored = Self::current_generation(&path)?;
        if stored <= current {
            return Err(StoreError::Other(format!(
                "{}: the filesystem does not keep modification times precisely enough for generations",
                self.root.display()
            )));
        }
        Ok(stored)
    }

    /// A directory keeps no record of removed files: a shipper that uploads and removes them
    /// (`rsync --remove-source-files`) leaves a missing file that may have been created, so
    /// absence proves nothing.
    fn presence(&self, key: &str, _since_ms: Option<i64>) -> Result<Presence, StoreError> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(_) => Ok(Presence::Present),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Presence::Unknown),
            Err(e) => Err(io_error("looking up", &path, &e)),
        }
    }

    fn find(&self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
        super::find_listed(self, prefix, name, limit)
    }
}

impl Store for FileStore {
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("deleting", &path, &e)),
        }
    }

    /// Walks the directories the prefix can lie in; hidden files (temporaries, locks) are not
    /// objects.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let start = match prefix.rfind('/') {
            Some(i) => self.root.join(&prefix[..i]),
            None => self.root.clone(),
        };
        let mut keys = Vec::new();
        let mut dirs = vec![start];
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("listing", &dir, &e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_error("listing", &dir, &e))?;
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let path = entry.path();
                let kind = entry.file_type().map_err(|e| io_error("listing", &path, &e))?;
                if kind.is_dir() {
                    dirs.push(path);
                } else if let Ok(relative) = path.strip_prefix(&self.root) {
                    let key = relative.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
                    if key.starts_with(prefix) {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn location(&self) -> Option<String> {
        // Symbolic links, `..` and relative paths resolved: one directory, one spelling.
        let root = fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        Some(format!("{}/", root.display().to_string().trim_end_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meets_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_str().unwrap()).unwrap();
        super::super::contract::check(&store);
        // No temporary files are left behind.
        let mut left = Vec::new();
        let mut dirs = vec![dir.path().to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in fs::read_dir(d).unwrap().flatten() {
                if e.path().is_dir() {
                    dirs.push(e.path());
                } else {
                    left.push(e.path().strip_prefix(dir.path()).unwrap().display().to_string());
                }
            }
        }
        left.sort();
        // The objects the contract left, and the checkpoint's lock file (kept: `flock` needs it).
        assert_eq!(left, ["logs/2024/01/01/x.json.gz", "state/o/.cp.lock", "state/o/cp"]);
    }

    #[test]
    fn compare_and_swap_has_one_winner_across_threads() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(FileStore::new(dir.path().to_str().unwrap()).unwrap());
        let base = store.write_if_generation("s/cp", b"0", "application/json", 0).unwrap();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store.write_if_generation("s/cp", format!("{i}").as_bytes(), "application/json", base).is_ok()
                })
            })
            .collect();
        let winners = handles.into_iter().filter(|_| true).map(|h| h.join().unwrap()).filter(|ok| *ok).count();
        assert_eq!(winners, 1);
    }

    #[test]
    fn a_file_a_shipper_removed_is_not_taken_for_one_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_str().unwrap()).unwrap();
        store.create("logs/2026/01/01/x.json.gz", b"x", "application/gzip", None).unwrap();
        // `rsync --remove-source-files`, or any shipper that uploads and removes.
        std::fs::remove_file(dir.path().join("logs/2026/01/01/x.json.gz")).unwrap();
        assert_eq!(store.presence("logs/2026/01/01/x.json.gz", None).unwrap(), Presence::Unknown);
        assert_eq!(store.list_deleted("logs/").unwrap(), None, "nor can it list what was removed");
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let err = FileStore::new("/nonexistent/mulesoft-audit").err().unwrap().to_string();
        assert!(err.contains("create it first"), "{err}");
    }
}
