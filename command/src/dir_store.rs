//! The object store on a preopened WASI directory: create-only through `create_new`, atomic
//! replacement through a temporary file and rename, and compare-and-swap under a lock file made
//! with `create_new` (WASI has no `flock`). A generation is a hash of the object's bytes, so equal
//! states compare equal and any change is seen.

use mulesoft_audit::entry::fnv1a_128;
use mulesoft_audit::platform::{ObjectStore, StoreError};
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

pub struct DirStore {
    root: PathBuf,
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

impl DirStore {
    pub fn new(root: &str) -> Result<Self, String> {
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => Ok(Self { root: PathBuf::from(root) }),
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

    fn write_new(path: &std::path::Path, data: &[u8]) -> Result<(), std::io::Error> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
        f.write_all(data)?;
        f.sync_all()
    }
}

impl ObjectStore for DirStore {
    fn create(&mut self, key: &str, data: &[u8], _content_type: &str) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        // Written under a temporary name and renamed only if the key is free, so a reader never
        // sees half an object. (Two writers of one key are excluded by the checkpoint's swap.)
        let temp = path.with_extension("tmp-create");
        let _ = fs::remove_file(&temp);
        Self::write_new(&temp, data).map_err(|e| io("writing", &e))?;
        if path.exists() {
            let _ = fs::remove_file(&temp);
            return Err(StoreError::AlreadyExists);
        }
        fs::rename(&temp, &path).map_err(|e| io("renaming", &e))?;
        Ok(generation(data))
    }

    fn read(&mut self, key: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        match fs::read(self.path(key)?) {
            Ok(data) => {
                let g = generation(&data);
                Ok(Some((data, g)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &e)),
        }
    }

    fn write_if_generation(
        &mut self,
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
        // A lock older than a minute was left by a killed run (the swap itself takes milliseconds).
        let stale = fs::metadata(&lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 60);
        if stale {
            let _ = fs::remove_file(&lock);
        }
        match OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(StoreError::GenerationMismatch),
            Err(e) => return Err(io("locking", &e)),
        }
        let result = (|| {
            let current = match fs::read(&path) {
                Ok(d) => generation(&d),
                Err(e) if e.kind() == ErrorKind::NotFound => 0,
                Err(e) => return Err(io("reading", &e)),
            };
            if current != expected {
                return Err(StoreError::GenerationMismatch);
            }
            let temp = path.with_extension("tmp-write");
            let _ = fs::remove_file(&temp);
            Self::write_new(&temp, data).map_err(|e| io("writing", &e))?;
            fs::rename(&temp, &path).map_err(|e| io("replacing", &e))?;
            Ok(generation(data))
        })();
        let _ = fs::remove_file(&lock);
        result
    }
}
