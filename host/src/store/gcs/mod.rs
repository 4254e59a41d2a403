//! Google Cloud Storage for the host: the engine's one client of the protocol
//! ([`mulesoft_audit::gcs::Gcs`], which the edge store runs too) over reqwest ([`http`]), with
//! Application Default Credentials ([`auth`]) or, for `STORAGE_EMULATOR_HOST`, none.
//!
//! Requests carry Google credentials whatever the endpoint (`--gcs-endpoint` for Private Service
//! Connect, VPC-SC or a test stand-in); only `STORAGE_EMULATOR_HOST` sends none, as Google's own
//! client libraries do.

pub mod auth;
mod http;

use super::{Found, ObjectStore, Presence, Store, StoreError, Stored};
use crate::settings::GcsEndpoint;
use auth::{Adc, Source};
use mulesoft_audit::gcs::{Gcs, Target, TokenSource};
use mulesoft_audit::settings::{BaseUrl, names};
use mulesoft_audit::variables::Values;
use std::sync::Mutex;

pub struct GcsStore {
    /// Idle clients: a call takes one (or makes one) and puts it back, so that calls from
    /// different threads (a pass, and the host recording a stop beside it) never wait on each
    /// other. They share the HTTP client and the credentials' token cache.
    idle: Mutex<Vec<Gcs<http::Http>>>,
    /// A new client.
    make: Box<dyn Fn() -> Gcs<http::Http> + Send + Sync>,
    /// `gs://bucket/prefix/`.
    location: String,
    /// Whose credentials, for `check`; `None` for the emulator.
    source: Option<Source>,
    endpoint: String,
    /// Its lease on a name ([`mulesoft_audit::gcs::lease_ms`]).
    lease_ms: u64,
}

impl GcsStore {
    /// `attempts`: per request, before a transient fault is `unavailable` (the collector's
    /// `MULESOFT_AUDIT_MAX_ATTEMPTS`, as at the edge).
    pub fn new(
        bucket: &str,
        prefix: &str,
        gcs: &GcsEndpoint,
        attempts: u32,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        let (endpoint, tokens) = match gcs {
            GcsEndpoint::Emulator(url) => (url, TokenSource::Anonymous),
            GcsEndpoint::Google(url) => (url, TokenSource::Host),
        };
        let base = BaseUrl::parse(endpoint).map_err(anyhow::Error::msg)?;
        let mut target = Target::new(base, bucket, prefix, tokens, attempts).map_err(anyhow::Error::msg)?;
        // The tuning through the engine's parser, as the edge store reads its settings; the
        // timeout, per request first byte to last, by the edge store's rule.
        let tuning = [names::GCS_TIMEOUT_SECS, names::GCS_RESUMABLE_ABOVE, names::GCS_CHUNK_KIB];
        let values = Values::from_env(tuning.iter().filter_map(|n| Some((n.to_string(), std::env::var(n).ok()?))));
        target.timeout_ms = mulesoft_audit::gcs::request_timeout_ms(&values).map_err(anyhow::Error::msg)?;
        let (above, chunk) = mulesoft_audit::gcs::resumable(&values).map_err(anyhow::Error::msg)?;
        (target.resumable_above, target.chunk) = (Some(above), chunk);
        let location = target.describe();
        let lease_ms = mulesoft_audit::gcs::lease_ms(&target);
        let http = http::Http::new(target.timeout_ms, runtime.clone())?;
        let (make, source): (Box<dyn Fn() -> Gcs<http::Http> + Send + Sync>, _) = match target.tokens {
            TokenSource::Anonymous => (Box::new(move || Gcs::new(http.clone(), target.clone())), None),
            _ => {
                let source = runtime.block_on(Source::discover())?;
                tracing::info!(credentials = %source, "Google credentials");
                let provider = Adc::new(source.clone(), runtime)?;
                let make = move || Gcs::with_provider(http.clone(), target.clone(), Box::new(provider.clone()));
                (Box::new(make), Some(source))
            }
        };
        Ok(Self { idle: Mutex::new(Vec::new()), make, location, source, endpoint: endpoint.clone(), lease_ms })
    }

    fn with<T>(&self, call: impl FnOnce(&mut Gcs<http::Http>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let idle = || self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut gcs = idle().pop().unwrap_or_else(|| (self.make)());
        let outcome = call(&mut gcs);
        idle().push(gcs);
        outcome
    }
}

impl ObjectStore for GcsStore {
    fn create(&self, key: &str, data: &[u8], content_type: &str, deadline_ms: Option<i64>) -> Result<u64, StoreError> {
        self.with(|gcs| gcs.create(key, data, content_type, deadline_ms))
    }

    fn lease_ms(&self) -> u64 {
        self.lease_ms
    }

    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        self.with(|gcs| gcs.read(key))
    }

    fn write_if_generation(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
        generation: u64,
    ) -> Result<u64, StoreError> {
        self.with(|gcs| gcs.write_if_generation(key, data, content_type, generation))
    }

    fn presence(&self, key: &str, since_ms: Option<i64>) -> Result<Presence, StoreError> {
        self.with(|gcs| gcs.presence(key, since_ms))
    }

    fn find(&self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
        self.with(|gcs| gcs.find(prefix, name, limit))
    }
}

impl Store for GcsStore {
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.with(|gcs| gcs.delete(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.list_named(prefix, "")
    }

    fn list_named(&self, prefix: &str, name: &str) -> Result<Vec<String>, StoreError> {
        self.with(|gcs| gcs.list(prefix, name))
    }

    fn list_deleted(&self, prefix: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.list_deleted_named(prefix, "")
    }

    fn list_deleted_named(&self, prefix: &str, name: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.with(|gcs| gcs.list_deleted(prefix, name))
    }

    fn describe(&self) -> String {
        self.location.clone()
    }

    fn location(&self) -> Option<String> {
        Some(self.location.clone())
    }

    fn credentials(&self) -> Option<String> {
        Some(match &self.source {
            Some(source) => source.to_string(),
            None => format!("none: STORAGE_EMULATOR_HOST sends requests to {} without credentials", self.endpoint),
        })
    }
}
