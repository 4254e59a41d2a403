//! Object stores behind the WIT `object-store` interface: GCS, a local directory, and memory.
//!
//! Each implements the engine's [`ObjectStore`] and the host's [`Store`] over plain Rust types, so each is testable without wasm; the
//! bridge to the generated WIT bindings is in [`crate::runtime`].

pub mod file;
pub mod gcs;
pub mod memory;

use crate::settings::{ConfigError, Destination, GcsEndpoint};
use std::sync::Arc;

/// The one store trait, the engine's: the host's stores implement it directly, and the engine's
/// logic the host runs natively (a stopped pass's status) takes them as they are.
pub use mulesoft_audit::platform::{Found, ObjectStore, Presence, StoreError, Stored};

/// A store the host opens: the engine's [`ObjectStore`], extended with what only the host's
/// commands need. `status` and `verify` list what passes left (the collector itself only finds,
/// through [`ObjectStore::find`]), `check` deletes its probe object and says where and as whom
/// it writes. `Send + Sync`: a pass and the thread that records a stop share one store.
pub trait Store: ObjectStore + Send + Sync {
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// The keys of the objects under `prefix` (a key prefix, e.g. `state/`), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// The keys under `prefix` of deleted objects the store still keeps (Cloud Storage's soft
    /// delete), sorted; `None` where it keeps none or cannot say. For `verify`, to tell objects
    /// the SecOps feed took after ingesting them from objects that are gone without a trace.
    fn list_deleted(&self, _prefix: &str) -> Result<Option<Vec<String>>, StoreError> {
        Ok(None)
    }
    /// [`Store::list`] of the keys whose last segment begins with `name` (more may come back:
    /// the caller filters); a store that can filter on its side overrides it.
    fn list_named(&self, prefix: &str, _name: &str) -> Result<Vec<String>, StoreError> {
        self.list(prefix)
    }
    /// [`Store::list_deleted`] as [`Store::list_named`] narrows it.
    fn list_deleted_named(&self, prefix: &str, _name: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.list_deleted(prefix)
    }
    /// Where it stores, for logs (no credentials in it).
    fn describe(&self) -> String;
    /// Where its keys begin, ending in `/`, in one spelling for one place (`gs://bucket/prefix/`,
    /// a canonical directory path), so that two stores can be told apart or nested; `None`
    /// where no other store can share its place (memory).
    fn location(&self) -> Option<String> {
        None
    }
    /// Whose credentials it writes with, for `check` (never a token); `None` where none apply.
    fn credentials(&self) -> Option<String> {
        None
    }
}

/// [`ObjectStore::find`] from a store's listing: its live keys and the deleted ones it keeps,
/// each cut at `limit`.
pub fn find_listed(store: &dyn Store, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
    let cut = |keys: Vec<String>| -> Vec<String> {
        keys.into_iter().filter(|k| mulesoft_audit::platform::found_by(k, prefix, name)).take(limit as usize).collect()
    };
    Ok(Found { live: cut(store.list_named(prefix, name)?), deleted: store.list_deleted_named(prefix, name)?.map(cut) })
}

/// Log objects in one store and checkpoints in another (`--state-dest`): a log bucket with a
/// retention policy or a lock, where objects cannot be replaced, then holds only log objects,
/// which are only ever created. Keys under the state prefix go to `state`, all others to `logs`.
pub struct Split {
    pub logs: Arc<dyn Store>,
    pub state: Arc<dyn Store>,
    pub key_prefix: String,
    pub state_prefix: String,
}

impl Split {
    /// Log objects (and their claims) always to `logs`, whatever the prefixes: settings refuse
    /// prefixes under one another, and a log object in the state destination would never reach
    /// the feed.
    fn route(&self, key: &str) -> &dyn Store {
        if key.starts_with(&self.state_prefix) && !key.starts_with(&self.key_prefix) {
            self.state.as_ref()
        } else {
            self.logs.as_ref()
        }
    }
}

impl ObjectStore for Split {
    fn create(&self, key: &str, data: &[u8], content_type: &str, deadline_ms: Option<i64>) -> Result<u64, StoreError> {
        self.route(key).create(key, data, content_type, deadline_ms)
    }
    /// The log store's: only log objects are named before they are created.
    fn lease_ms(&self) -> u64 {
        self.logs.lease_ms()
    }
    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        self.route(key).read(key)
    }
    fn write_if_generation(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
        generation: u64,
    ) -> Result<u64, StoreError> {
        self.route(key).write_if_generation(key, data, content_type, generation)
    }
    fn presence(&self, key: &str, since_ms: Option<i64>) -> Result<Presence, StoreError> {
        self.route(key).presence(key, since_ms)
    }
    /// Under the log prefix from the logs' store (which may narrow it on its side); anything
    /// else (checkpoints in another spelling) as listed.
    fn find(&self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
        if prefix.starts_with(&self.key_prefix) {
            self.logs.find(prefix, name, limit)
        } else {
            find_listed(self, prefix, name, limit)
        }
    }
}

impl Store for Split {
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.route(key).delete(key)
    }
    /// Under the state prefix from the state destination, anything else from the logs'.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        if prefix.starts_with(&self.state_prefix) && !prefix.starts_with(&self.key_prefix) {
            return self.state.list(prefix);
        }
        let mut keys = self.logs.list(prefix)?;
        if self.state_prefix.starts_with(prefix) {
            keys.extend(self.state.list(&self.state_prefix)?);
            keys.sort();
        }
        Ok(keys)
    }
    /// Log objects only: the feed deletes nothing in the state destination.
    fn list_deleted(&self, prefix: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.logs.list_deleted(prefix)
    }
    /// Under the log prefix from the logs' store, narrowed by it; anything else as `list`.
    fn list_named(&self, prefix: &str, name: &str) -> Result<Vec<String>, StoreError> {
        if prefix.starts_with(&self.key_prefix) { self.logs.list_named(prefix, name) } else { self.list(prefix) }
    }
    fn list_deleted_named(&self, prefix: &str, name: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.logs.list_deleted_named(prefix, name)
    }
    fn describe(&self) -> String {
        format!("{} (checkpoints in {})", self.logs.describe(), self.state.describe())
    }
    fn credentials(&self) -> Option<String> {
        self.logs.credentials().or_else(|| self.state.credentials())
    }
}

/// Keys are relative, `/`-separated, without empty, `.` or `..` segments (the engine's rule,
/// which the edge store applies too).
pub use mulesoft_audit::platform::check_key;

/// Opens the store of a destination: the logs' store, or with `--state-dest` a [`Split`] of
/// the two. A store that cannot be opened is a configuration problem, unless it was only
/// unavailable (a metadata server slow to answer): then the next run may well succeed.
pub fn open_destination(destination: &Destination, handle: tokio::runtime::Handle) -> anyhow::Result<Arc<dyn Store>> {
    let open_one = |dest: &str, what: &'static str| {
        open(dest, &destination.gcs, destination.attempts, handle.clone()).map_err(|e| {
            if matches!(e.downcast_ref::<StoreError>(), Some(StoreError::Unavailable(_))) {
                e.context(what)
            } else {
                anyhow::Error::from(ConfigError(format!("{what}: {e:#}")))
            }
        })
    };
    let logs = open_one(&destination.dest, "destination")?;
    Ok(match &destination.state_dest {
        Some(state_dest) => {
            let state = open_one(state_dest, "state destination")?;
            // The engine compared the prefixes; the places compare only now, resolved.
            if let (Some(l), Some(s)) = (logs.location(), state.location()) {
                mulesoft_audit::settings::separate_locations(
                    &format!("{l}{}", destination.key_prefix),
                    &format!("{s}{}", destination.state_prefix),
                )
                .map_err(|e| ConfigError(format!("state destination: {e}")))?;
            }
            Arc::new(Split {
                logs,
                state,
                key_prefix: destination.key_prefix.clone(),
                state_prefix: destination.state_prefix.clone(),
            })
        }
        None => logs,
    })
}

/// Opens the store a destination URL names: `gs://bucket[/prefix]`, `file:///dir`, a plain path,
/// or `memory:`.
pub fn open(
    dest: &str,
    gcs: &GcsEndpoint,
    attempts: u32,
    runtime: tokio::runtime::Handle,
) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(rest) = dest.strip_prefix("gs://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        return Ok(Arc::new(gcs::GcsStore::new(bucket, prefix, gcs, attempts, runtime)?));
    }
    if dest == "memory:" {
        return Ok(Arc::new(memory::MemoryStore::default()));
    }
    let path = dest.strip_prefix("file://").unwrap_or(dest);
    if dest.contains("://") && !dest.starts_with("file://") {
        anyhow::bail!(
            "destination `{dest}` is not supported: use gs://bucket[/prefix], file:///dir or a directory path"
        );
    }
    Ok(Arc::new(file::FileStore::new(path)?))
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every store must have, run against each implementation.
    use super::*;

    pub fn check(store: &dyn Store) {
        assert!(store.read("a/missing").unwrap().is_none());
        let g1 = store.create("logs/2024/01/01/x.json.gz", b"one", "application/gzip", None).unwrap();
        assert!(g1 > 0);
        assert_eq!(
            store.create("logs/2024/01/01/x.json.gz", b"two", "application/gzip", None),
            Err(StoreError::AlreadyExists)
        );
        assert_eq!(store.read("logs/2024/01/01/x.json.gz").unwrap().unwrap().data, b"one");

        assert_eq!(
            store.write_if_generation("state/o/cp", b"v1", "application/json", 5),
            Err(StoreError::GenerationMismatch)
        );
        let s1 = store.write_if_generation("state/o/cp", b"v1", "application/json", 0).unwrap();
        assert_eq!(
            store.write_if_generation("state/o/cp", b"v1b", "application/json", 0),
            Err(StoreError::GenerationMismatch)
        );
        let read = store.read("state/o/cp").unwrap().unwrap();
        assert_eq!((read.data.as_slice(), read.generation), (&b"v1"[..], s1));
        let s2 = store.write_if_generation("state/o/cp", b"v2", "application/json", s1).unwrap();
        assert_ne!(s1, s2);
        assert_eq!(
            store.write_if_generation("state/o/cp", b"v3", "application/json", s1),
            Err(StoreError::GenerationMismatch)
        );
        assert_eq!(store.read("state/o/cp").unwrap().unwrap().data, b"v2");

        assert_eq!(store.presence("logs/2024/01/01/x.json.gz", None).unwrap(), Presence::Present);
        // Never created: proven where the store remembers deletions, else not known.
        let never = store.presence("logs/never", Some(0)).unwrap();
        assert!(matches!(never, Presence::Absent | Presence::Unknown), "{never:?}");
        store.create("logs/p/0", b"x", "application/gzip", None).unwrap();
        store.delete("logs/p/0").unwrap();
        assert!(store.read("logs/p/0").unwrap().is_none());
        assert!(store.create("../escape", b"x", "text/plain", None).is_err());

        assert_eq!(store.list("logs/").unwrap(), ["logs/2024/01/01/x.json.gz"], "sorted, deleted ones gone");
        assert_eq!(store.list("state/").unwrap(), ["state/o/cp"], "no temporaries or locks");
        assert_eq!(store.list("logs/2024/01/0").unwrap(), ["logs/2024/01/01/x.json.gz"], "a prefix inside a name");
        assert!(store.list("nothing/").unwrap().is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_store_meets_the_contract_and_keeps_checkpoints_apart() {
        let logs = Arc::new(memory::MemoryStore::default());
        let state = Arc::new(memory::MemoryStore::default());
        let split = Split {
            logs: logs.clone(),
            state: state.clone(),
            key_prefix: "logs/".into(),
            state_prefix: "state/".into(),
        };
        contract::check(&split);
        assert!(logs.snapshot().keys().all(|k| !k.starts_with("state/")), "{:?}", logs.snapshot().keys());
        assert!(state.snapshot().keys().all(|k| k.starts_with("state/")), "{:?}", state.snapshot().keys());
        assert!(state.snapshot().contains_key("state/o/cp"));
    }
}
