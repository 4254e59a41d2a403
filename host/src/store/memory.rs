//! An in-memory store, for unit tests of the host and for `memory:` destinations.

use super::{Found, ObjectStore, Presence, Store, StoreError, Stored, check_key};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    objects: BTreeMap<String, Stored>,
    next_generation: u64,
}

impl Inner {
    fn put(&mut self, key: &str, data: &[u8]) -> u64 {
        self.next_generation += 1;
        self.objects.insert(key.to_string(), Stored { data: data.to_vec(), generation: self.next_generation });
        self.next_generation
    }
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every key and its bytes (for tests).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.lock().objects.iter().map(|(k, v)| (k.clone(), v.data.clone())).collect()
    }
}

impl ObjectStore for MemoryStore {
    fn create(
        &self,
        key: &str,
        data: &[u8],
        _content_type: &str,
        _deadline_ms: Option<i64>,
    ) -> Result<u64, StoreError> {
        check_key(key)?;
        let mut inner = self.lock();
        if inner.objects.contains_key(key) {
            return Err(StoreError::AlreadyExists);
        }
        Ok(inner.put(key, data))
    }

    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        check_key(key)?;
        Ok(self.lock().objects.get(key).cloned())
    }

    fn write_if_generation(
        &self,
        key: &str,
        data: &[u8],
        _content_type: &str,
        generation: u64,
    ) -> Result<u64, StoreError> {
        check_key(key)?;
        let mut inner = self.lock();
        let current = inner.objects.get(key).map_or(0, |o| o.generation);
        if current != generation {
            return Err(StoreError::GenerationMismatch);
        }
        Ok(inner.put(key, data))
    }

    /// Nothing deletes from memory but `check`'s probe: a missing object was never created.
    fn presence(&self, key: &str, _since_ms: Option<i64>) -> Result<Presence, StoreError> {
        check_key(key)?;
        Ok(if self.lock().objects.contains_key(key) { Presence::Present } else { Presence::Absent })
    }

    fn find(&self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
        super::find_listed(self, prefix, name, limit)
    }
}

impl Store for MemoryStore {
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock().objects.remove(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().objects.keys().filter(|k| k.starts_with(prefix)).cloned().collect())
    }

    fn describe(&self) -> String {
        "memory:".into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn meets_the_store_contract() {
        super::super::contract::check(&super::MemoryStore::default());
    }
}
