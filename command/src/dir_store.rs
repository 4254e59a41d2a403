//! The object store on a preopened WASI directory: create-only through a hard link (which fails
//! if the name is taken, atomically, even between processes), atomic replacement through a
//! temporary file and rename, and compare-and-swap under a lock file made with `create_new` and
//! holding its owner's token (WASI has no `flock`). A generation is a hash of the object's bytes, so equal states compare equal
//! and any change is seen.

use mulesoft_audit::entry::fnv1a_128;
use mulesoft_audit::platform::{Found, ObjectStore, Presence, StoreError, Stored};
use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a compare-and-swap waits for another process's lock. The swap itself takes
/// milliseconds, so a lock held this long belongs to a writer that is stuck.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// A lock file older than this was left by a killed process.
const STALE_LOCK: Duration = Duration::from_secs(60);

pub struct DirStore {
    root: PathBuf,
    lock_wait: Duration,
}

fn generation(data: &[u8]) -> u64 {
    (fnv1a_128(data) as u64) | 1
}

fn io(what: &str, e: &std::io::Error) -> StoreError {
    match e.kind() {
        ErrorKind::PermissionDenied => StoreError::Denied(format!("{what}: {e}")),
        _ => StoreError::Other(format!("{what}: {e}")),
    }
}

/// A name no other writer picks: `RandomState` is seeded from the system's randomness
/// (`wasi:random` under WASI), and `std::process::id` does not exist there.
fn unique_suffix() -> u64 {
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

impl DirStore {
    pub fn new(root: &str) -> Result<Self, String> {
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => Ok(Self { root: PathBuf::from(root), lock_wait: LOCK_WAIT }),
            _ => Err(format!(
                "directory `{root}` is not available: preopen it with `wasmtime run --dir HOST_DIR::{root}`"
            )),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if key.is_empty() || key.starts_with('/') || key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(StoreError::Other(format!("invalid key `{key}`")));
        }
        Ok(self.root.join(key))
    }

    /// Writes `data` to a fresh temporary file beside `path`, flushed, and returns its name, so
    /// that whatever takes its place (link or rename) is the whole object or nothing.
    fn write_temporary(path: &Path, data: &[u8]) -> Result<PathBuf, StoreError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| io("creating", &e))?;
        }
        let temp = path.with_extension(format!("{:016x}.tmp", unique_suffix()));
        let written = OpenOptions::new().write(true).create_new(true).open(&temp).and_then(|mut f| {
            f.write_all(data)?;
            f.sync_all()
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io("writing", &e));
        }
        Ok(temp)
    }

    /// Takes the lock file beside an object, waiting while another process holds it. A held lock
    /// is not a changed object: reporting it as a mismatch would fail a writer whose swap would
    /// have succeeded. The lock file holds its owner's token, so that only the owner releases it
    /// and breaking a stale lock can tell it from a fresh one. Returns the token.
    fn lock(&self, lock: &Path) -> Result<String, StoreError> {
        let token = format!("{:016x}", unique_suffix());
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match OpenOptions::new().write(true).create_new(true).open(lock) {
                Ok(mut file) => {
                    file.write_all(token.as_bytes()).map_err(|e| io("locking", &e))?;
                    return Ok(token);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("locking", &e)),
            }
            let age = fs::metadata(lock).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if age.is_some_and(|age| age > STALE_LOCK) {
                if let Ok(stale) = fs::read_to_string(lock) {
                    Self::break_stale(lock, &stale);
                }
                continue;
            }
            if started.elapsed() >= self.lock_wait {
                return Err(StoreError::Unavailable(format!(
                    "`{}` has been held by another writer for {}s; if no other collector runs, delete it",
                    lock.display(),
                    self.lock_wait.as_secs()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Removes the lock whose token is `stale`, and no other. The lock is first moved aside
    /// (only one process can move it); if what was moved is not the stale lock (another process
    /// broke it and took a fresh one meanwhile), it is put back, create-only.
    fn break_stale(lock: &Path, stale: &str) -> bool {
        let aside = lock.with_extension(format!("{:016x}.broken", unique_suffix()));
        if fs::rename(lock, &aside).is_err() {
            return false;
        }
        let moved = fs::read_to_string(&aside).unwrap_or_default();
        let broken = moved == stale;
        if !broken {
            let _ = fs::hard_link(&aside, lock);
        }
        let _ = fs::remove_file(&aside);
        broken
    }

    /// Releases a lock this writer holds: only if it still holds its token (a lock broken as
    /// stale and taken by another writer is theirs).
    fn unlock(lock: &Path, token: &str) {
        if fs::read_to_string(lock).is_ok_and(|held| held == token) {
            let _ = fs::remove_file(lock);
        }
    }
}

impl ObjectStore for DirStore {
    /// One local step: no lease, no deadline to keep.
    fn create(
        &self,
        key: &str,
        data: &[u8],
        _content_type: &str,
        _deadline_ms: Option<i64>,
    ) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        let temp = Self::write_temporary(&path, data)?;
        let linked = fs::hard_link(&temp, &path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(generation(data)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(StoreError::AlreadyExists),
            Err(e) => Err(io("linking", &e)),
        }
    }

    /// Files under the folder `prefix` names, whose keys begin with it (temporary and lock files,
    /// whose names begin with `.` or end in `.lock`, are no objects). A directory cannot tell
    /// which files were removed.
    fn find(&self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
        let start = match prefix.rfind('/') {
            Some(i) => self.root.join(&prefix[..i]),
            None => self.root.clone(),
        };
        let mut live = Vec::new();
        let mut dirs = vec![start];
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io("listing", &e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io("listing", &e))?;
                let path = entry.path();
                let file = entry.file_name().to_string_lossy().into_owned();
                if file.starts_with('.') || file.ends_with(".lock") {
                    continue;
                }
                if entry.file_type().map_err(|e| io("listing", &e))?.is_dir() {
                    dirs.push(path);
                } else if let Ok(relative) = path.strip_prefix(&self.root) {
                    let key = relative.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
                    if mulesoft_audit::platform::found_by(&key, prefix, name) {
                        live.push(key);
                    }
                }
            }
        }
        live.sort();
        live.truncate(limit as usize);
        Ok(Found { live, deleted: None })
    }

    /// A directory keeps no record of removed files: a shipper that uploads and removes them
    /// leaves a missing file that may have been created, so absence proves nothing.
    fn presence(&self, key: &str, _since_ms: Option<i64>) -> Result<Presence, StoreError> {
        match fs::metadata(self.path(key)?) {
            Ok(_) => Ok(Presence::Present),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Presence::Unknown),
            Err(e) => Err(io("looking up", &e)),
        }
    }

    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        match fs::read(self.path(key)?) {
            Ok(data) => Ok(Some(Stored { generation: generation(&data), data })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &e)),
        }
    }

    fn write_if_generation(
        &self,
        key: &str,
        data: &[u8],
        _content_type: &str,
        expected: u64,
    ) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        let lock = path.with_extension("lock");
        if let Some(dir) = lock.parent() {
            fs::create_dir_all(dir).map_err(|e| io("creating", &e))?;
        }
        let token = self.lock(&lock)?;
        let result = (|| {
            let current = match fs::read(&path) {
                Ok(d) => generation(&d),
                Err(e) if e.kind() == ErrorKind::NotFound => 0,
                Err(e) => return Err(io("reading", &e)),
            };
            if current != expected {
                return Err(StoreError::GenerationMismatch);
            }
            let temp = Self::write_temporary(&path, data)?;
            fs::rename(&temp, &path).map_err(|e| {
                let _ = fs::remove_file(&temp);
                io("replacing", &e)
            })?;
            Ok(generation(data))
        })();
        Self::unlock(&lock, &token);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir) -> DirStore {
        DirStore::new(dir.path().to_str().unwrap()).unwrap()
    }

    #[test]
    fn create_refuses_a_taken_key_and_leaves_the_first_object() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        assert!(s.create("logs/a.json.gz", b"first", "x", None).is_ok());
        assert!(matches!(s.create("logs/a.json.gz", b"second", "x", None), Err(StoreError::AlreadyExists)));
        assert_eq!(fs::read(dir.path().join("logs/a.json.gz")).unwrap(), b"first");
        let names: Vec<_> = fs::read_dir(dir.path().join("logs")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["a.json.gz"], "no temporary file left behind");
    }

    #[test]
    fn racing_creates_of_one_key_have_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let results: Vec<_> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8u8)
                .map(|i| {
                    let root = root.clone();
                    scope.spawn(move || DirStore::new(&root).unwrap().create("k", &[i; 64], "x", None))
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        assert!(results.iter().all(|r| matches!(r, Ok(_) | Err(StoreError::AlreadyExists))), "{results:?}");
    }

    #[test]
    fn a_swap_waits_for_a_held_lock_instead_of_reporting_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let g = s.write_if_generation("state/cp", b"one", "x", 0).unwrap();
        let lock = dir.path().join("state/cp.lock");
        fs::write(&lock, b"").unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let writer =
            std::thread::spawn(move || DirStore::new(&root).unwrap().write_if_generation("state/cp", b"two", "x", g));
        // Released at whatever point the writer has reached: before its first try or while it
        // waits, it must end up swapping.
        fs::remove_file(&lock).unwrap();
        assert_eq!(writer.join().unwrap(), Ok(generation(b"two")));
        assert_eq!(fs::read(dir.path().join("state/cp")).unwrap(), b"two");
    }

    #[test]
    fn a_lock_held_too_long_is_unavailable_and_a_stale_one_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(&dir);
        s.lock_wait = Duration::from_millis(20);
        let lock = dir.path().join("state/cp.lock");
        fs::create_dir_all(lock.parent().unwrap()).unwrap();
        let held = fs::File::create(&lock).unwrap();
        assert!(
            matches!(s.write_if_generation("state/cp", b"one", "x", 0), Err(StoreError::Unavailable(m)) if m.contains("cp.lock"))
        );
        assert!(!dir.path().join("state/cp").exists());
        held.set_modified(std::time::SystemTime::now() - Duration::from_secs(120)).unwrap();
        assert_eq!(s.write_if_generation("state/cp", b"one", "x", 0), Ok(generation(b"one")));
        assert!(!lock.exists(), "the lock is released after the swap");
    }

    #[test]
    fn breaking_a_stale_lock_never_removes_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("cp.lock");
        // Judged stale with token "old", but by now another writer holds it with "fresh".
        fs::write(&lock, "fresh").unwrap();
        assert!(!DirStore::break_stale(&lock, "old"));
        assert_eq!(fs::read_to_string(&lock).unwrap(), "fresh", "the fresh lock is back in place");
        assert!(DirStore::break_stale(&lock, "fresh"));
        assert!(!lock.exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(leftovers.is_empty(), "nothing moved aside is left");
    }

    #[test]
    fn a_writer_releases_only_its_own_lock() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let lock = dir.path().join("cp.lock");
        let token = s.lock(&lock).unwrap();
        assert_eq!(fs::read_to_string(&lock).unwrap(), token);
        // Its lock was broken as stale and another writer took it.
        fs::write(&lock, "another").unwrap();
        DirStore::unlock(&lock, &token);
        assert_eq!(fs::read_to_string(&lock).unwrap(), "another", "not released by a writer that lost it");
        DirStore::unlock(&lock, "another");
        assert!(!lock.exists());
    }

    #[test]
    fn a_swap_from_a_stale_generation_is_a_mismatch_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let g = s.write_if_generation("state/cp", b"one", "x", 0).unwrap();
        s.write_if_generation("state/cp", b"two", "x", g).unwrap();
        assert_eq!(s.write_if_generation("state/cp", b"three", "x", g), Err(StoreError::GenerationMismatch));
        assert_eq!(s.write_if_generation("state/cp", b"three", "x", 0), Err(StoreError::GenerationMismatch));
        assert_eq!(fs::read(dir.path().join("state/cp")).unwrap(), b"two");
    }
}
