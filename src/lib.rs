//! mulesoft-audit: collects MuleSoft Anypoint audit logs into gzip NDJSON objects, exactly once.
//!
//! Built for `wasm32-wasip2` this crate is a WebAssembly component exporting
//! `mulesoft:audit/collector` (see `wit/audit.wit`). The logic lives in plain modules over plain
//! types and traits ([`platform`]), unit-tested natively against in-memory doubles; the WASI
//! edges are `wasi_platform` and `component`.

pub mod anypoint;
pub mod checkpoint;
pub mod collect;
mod conversions;
pub mod delivery;
pub mod entry;
pub mod gcs;
pub mod gzip;
pub mod ledger;
pub mod pacer;
pub mod paging;
pub mod platform;
pub mod report;
pub mod retry;
pub mod settings;
pub mod status;
pub mod trigger;
pub mod variables;
pub mod verify;
pub mod window;

#[cfg(test)]
mod doubles;
#[cfg(test)]
mod hostile;
#[cfg(test)]
mod model;
#[cfg(test)]
mod scenarios;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
#[cfg(target_arch = "wasm32")]
pub mod wasi_platform;
