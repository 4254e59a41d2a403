//! The WIT bindings, generated once, and every conversion between them and the engine's Rust
//! types, as `From` impls in one place (as wasmtime's `wasi-http` keeps its `conv.rs`).

use crate::store::StoreError;

mod generated {
    wasmtime::component::bindgen!({ world: "collector-core", path: "../wit" });
}

pub use generated::exports::mulesoft::audit::collector as wit;
pub use generated::mulesoft::audit::object_store as wit_store;
pub use generated::{CollectorCore, CollectorCorePre};
/// The WIT `object-presence`, used by the stores as it is.
pub use wit_store::ObjectPresence as Presence;

/// The engine's settings as the guest's `config` record (the guest maps it back the same way).
impl From<mulesoft_audit::settings::RawConfig> for wit::Config {
    fn from(raw: mulesoft_audit::settings::RawConfig) -> Self {
        use mulesoft_audit::settings::{Paging, Plane};
        let endpoint = match (raw.base_url, raw.plane) {
            (Some(url), _) => wit::Endpoint::BaseUrl(url),
            (None, plane) => wit::Endpoint::Plane(match plane.unwrap_or(Plane::Us) {
                Plane::Us => wit::ControlPlane::Us,
                Plane::Eu => wit::ControlPlane::Eu,
                Plane::Gov => wit::ControlPlane::Gov,
                Plane::Ca => wit::ControlPlane::Ca,
                Plane::Jp => wit::ControlPlane::Jp,
            }),
        };
        Self {
            org_ids: raw.org_ids,
            discover_children: raw.discover_children,
            endpoint,
            client_id: raw.client_id,
            client_secret: raw.client_secret,
            lookback_seconds: raw.lookback_seconds,
            since_ms: raw.since_ms,
            lag_seconds: raw.lag_seconds,
            overlap_seconds: raw.overlap_seconds,
            page_size: raw.page_size,
            max_pages: raw.max_pages,
            object_max_bytes: raw.object_max_bytes,
            key_prefix: raw.key_prefix,
            state_prefix: raw.state_prefix,
            requests_per_minute: raw.requests_per_minute,
            max_attempts: raw.max_attempts,
            paging: match raw.paging {
                Paging::Cursor => wit::Paging::Cursor,
                Paging::Offset => wit::Paging::Offset,
            },
            shard_index: raw.shard_index,
            shard_count: raw.shard_count,
            concurrency: raw.concurrency,
        }
    }
}

/// The engine's kind for the guest's: the engine owns names and the exit-code policy.
impl From<wit::ErrorKind> for mulesoft_audit::settings::ErrorKind {
    fn from(kind: wit::ErrorKind) -> Self {
        use mulesoft_audit::settings::ErrorKind as Kind;
        match kind {
            wit::ErrorKind::Config => Kind::Config,
            wit::ErrorKind::Unauthorized => Kind::Unauthorized,
            wit::ErrorKind::Forbidden => Kind::Forbidden,
            wit::ErrorKind::Api => Kind::Api,
            wit::ErrorKind::Unavailable => Kind::Unavailable,
            wit::ErrorKind::Denied => Kind::Denied,
            wit::ErrorKind::Storage => Kind::Storage,
            wit::ErrorKind::Conflict => Kind::Conflict,
            wit::ErrorKind::Checkpoint => Kind::Checkpoint,
            wit::ErrorKind::PageCap => Kind::PageCap,
        }
    }
}

/// A store's error as the guest sees it.
impl From<StoreError> for wit_store::StoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists => wit_store::StoreError::AlreadyExists,
            StoreError::GenerationMismatch => wit_store::StoreError::GenerationMismatch,
            StoreError::Unavailable(m) => wit_store::StoreError::Unavailable(m),
            StoreError::Denied(m) => wit_store::StoreError::Denied(m),
            StoreError::Other(m) => wit_store::StoreError::Other(m),
        }
    }
}
