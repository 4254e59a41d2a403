//! mulesoft-audit: collects MuleSoft Anypoint audit logs into gzip NDJSON objects, exactly once.
//!
//! Built for `wasm32-wasip2` this crate is a WebAssembly component exporting
//! `mulesoft:audit/collector` (see `wit/audit.wit`). The logic lives in plain modules over plain
//! types and traits ([`platform`]), unit-tested natively against in-memory doubles; the WASI
//! edges are `wasi_platform` and `component`.
//!
//! # Module map, by layer
//!
//! Each layer uses only those below it (checked with `farm-studio look`: no import circle).
//!
//! | layer | modules |
//! |---|---|
//! | a pass, and what hosts show of it | [`collect`] (one pass: windows, pages, entry checks), [`verify`] (the API against the delivered objects, `--repair`), [`status`] (each organization's history), [`report`] (the summary, error lines, exit code), [`trigger`] (trigger shapes and answers, the edge's refusals) |
//! | delivery, exactly once | [`delivery`] (objects, the write order, recovery, claims), [`ledger`] (what the destination shows of an organization without a checkpoint), [`checkpoint`], [`paging`] (slices and when they end), [`window`] (windows, object names and keys) |
//! | the two services | [`anypoint`] (token, pacing, the retry loop, business groups, retention), [`gcs`] (Cloud Storage's one client: `wire`, `target`, `tokens`, `upload`, the store) |
//! | settings and facts | [`settings`] (validation, URLs, failure kinds, secret scrubbing), [`variables`] (one table of every setting, with who reads it and the edge's refusal; the one parser), [`entry`] (an entry's identity and time), [`gzip`], [`pacer`], [`retry`] |
//! | the edges | [`platform`] (the traits: HTTP, clock, randomness, the object store), `wasi_platform` (HTTP, clocks and randomness on WASI, every reply bounded), `component` (the WIT export), `conversions` (every WIT conversion, as `From` impls) |
//! | tests only | `testing`: `doubles` (the API and a store in memory), `scenarios`, `lifecycle`, `hostile`, `model` (the model-based test of the protocol) and `oracle` (what it judges by) |

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
mod testing;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
#[cfg(target_arch = "wasm32")]
pub mod wasi_platform;
