//! The component's export: WIT types in, WIT types out; everything else is in the plain modules.

// The generated bindings and the export macro are the only unsafe code; none is written by hand.
#![allow(unsafe_code)]

use crate::collect;
use crate::platform::{ObjectStore, Presence, StoreError};
use crate::settings::{ErrorKind, Failure, OrgSummary, Paging, Plane, RawConfig, Settings};
use crate::wasi_platform::WasiPlatform;

mod bindings {
    wit_bindgen::generate!({
        world: "collector-component",
        path: "wit",
        with: {
            "wasi:http/outgoing-handler@0.2.12": wasi::http::outgoing_handler,
            "wasi:http/types@0.2.12": wasi::http::types,
            "wasi:io/poll@0.2.12": wasi::io::poll,
            "wasi:io/error@0.2.12": wasi::io::error,
            "wasi:io/streams@0.2.12": wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasi::clocks::monotonic_clock,
        },
    });
}

use bindings::exports::mulesoft::audit::collector as wit;
use bindings::mulesoft::audit::object_store as wit_store;

/// The object store the host gives us.
struct HostStore;

impl From<wit_store::StoreError> for StoreError {
    fn from(e: wit_store::StoreError) -> Self {
        match e {
            wit_store::StoreError::AlreadyExists => StoreError::AlreadyExists,
            wit_store::StoreError::GenerationMismatch => StoreError::GenerationMismatch,
            wit_store::StoreError::Unavailable(m) => StoreError::Unavailable(m),
            wit_store::StoreError::Denied(m) => StoreError::Denied(m),
            wit_store::StoreError::Other(m) => StoreError::Other(m),
        }
    }
}

impl ObjectStore for HostStore {
    fn create(&mut self, key: &str, data: &[u8], content_type: &str) -> Result<u64, StoreError> {
        wit_store::create(key, data, content_type).map_err(StoreError::from)
    }
    fn read(&mut self, key: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        wit_store::read(key).map(|o| o.map(|o| (o.data, o.generation))).map_err(StoreError::from)
    }
    fn write_if_generation(
        &mut self,
        key: &str,
        data: &[u8],
        content_type: &str,
        generation: u64,
    ) -> Result<u64, StoreError> {
        wit_store::write_if_generation(key, data, content_type, generation).map_err(StoreError::from)
    }
    fn presence(&mut self, key: &str, since_ms: Option<i64>) -> Result<Presence, StoreError> {
        wit_store::presence(key, since_ms)
            .map(|p| match p {
                wit_store::ObjectPresence::Present => Presence::Present,
                wit_store::ObjectPresence::Deleted => Presence::Deleted,
                wit_store::ObjectPresence::Absent => Presence::Absent,
                wit_store::ObjectPresence::Unknown => Presence::Unknown,
            })
            .map_err(StoreError::from)
    }
}

impl From<wit::Config> for RawConfig {
    fn from(c: wit::Config) -> Self {
        let (plane, base_url) = match c.endpoint {
            wit::Endpoint::Plane(p) => (
                Some(match p {
                    wit::ControlPlane::Us => Plane::Us,
                    wit::ControlPlane::Eu => Plane::Eu,
                    wit::ControlPlane::Gov => Plane::Gov,
                    wit::ControlPlane::Ca => Plane::Ca,
                    wit::ControlPlane::Jp => Plane::Jp,
                }),
                None,
            ),
            wit::Endpoint::BaseUrl(u) => (None, Some(u)),
        };
        RawConfig {
            org_ids: c.org_ids,
            discover_children: c.discover_children,
            plane,
            base_url,
            client_id: c.client_id,
            client_secret: c.client_secret,
            lookback_seconds: c.lookback_seconds,
            since_ms: c.since_ms,
            lag_seconds: c.lag_seconds,
            overlap_seconds: c.overlap_seconds,
            page_size: c.page_size,
            max_pages: c.max_pages,
            object_max_bytes: c.object_max_bytes,
            key_prefix: c.key_prefix,
            state_prefix: c.state_prefix,
            requests_per_minute: c.requests_per_minute,
            max_attempts: c.max_attempts,
            paging: match c.paging {
                wit::Paging::Cursor => Paging::Cursor,
                wit::Paging::Offset => Paging::Offset,
            },
            shard_index: c.shard_index,
            shard_count: c.shard_count,
            concurrency: c.concurrency,
        }
    }
}

impl From<ErrorKind> for wit::ErrorKind {
    fn from(k: ErrorKind) -> Self {
        match k {
            ErrorKind::Config => wit::ErrorKind::Config,
            ErrorKind::Unauthorized => wit::ErrorKind::Unauthorized,
            ErrorKind::Forbidden => wit::ErrorKind::Forbidden,
            ErrorKind::Api => wit::ErrorKind::Api,
            ErrorKind::Unavailable => wit::ErrorKind::Unavailable,
            ErrorKind::Denied => wit::ErrorKind::Denied,
            ErrorKind::Storage => wit::ErrorKind::Storage,
            ErrorKind::Conflict => wit::ErrorKind::Conflict,
            ErrorKind::Checkpoint => wit::ErrorKind::Checkpoint,
            ErrorKind::PageCap => wit::ErrorKind::PageCap,
        }
    }
}

impl From<OrgSummary> for wit::OrgSummary {
    fn from(s: OrgSummary) -> Self {
        wit::OrgSummary {
            org_id: s.org_id,
            window_start: s.window_start,
            window_end: s.window_end,
            entries_written: s.entries_written,
            duplicates_skipped: s.duplicates_skipped,
            objects: s.objects,
            requests: s.requests,
            retries: s.retries,
            throttled_waits: s.throttled_waits,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
        }
    }
}

impl From<Failure> for wit::Failure {
    fn from(f: Failure) -> Self {
        Self { org_id: f.org_id, kind: f.kind.into(), message: f.message }
    }
}

struct Component;

impl wit::Guest for Component {
    fn run(config: wit::Config) -> Result<wit::RunSummary, wit::RunError> {
        let settings = Self::settings(config)?;
        let result = collect::run_pass(&mut WasiPlatform, &mut HostStore, &settings);
        let completed: Vec<_> = result.completed.into_iter().map(wit::OrgSummary::from).collect();
        if result.failures.is_empty() {
            Ok(wit::RunSummary { orgs: completed })
        } else {
            Err(wit::RunError { failures: result.failures.into_iter().map(wit::Failure::from).collect(), completed })
        }
    }

    fn check(config: wit::Config) -> Result<Vec<String>, wit::RunError> {
        let settings = Self::settings(config)?;
        collect::check(&mut WasiPlatform, &settings)
            .map_err(|f| wit::RunError { failures: vec![f.into()], completed: Vec::new() })
    }
}

impl Component {
    fn settings(config: wit::Config) -> Result<Settings, wit::RunError> {
        Settings::from_raw(config.into()).map_err(|message| wit::RunError {
            failures: vec![Failure::new(ErrorKind::Config, message).into()],
            completed: Vec::new(),
        })
    }
}

bindings::export!(Component with_types_in bindings);
