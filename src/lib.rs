//! mulesoft-audit: collects MuleSoft Anypoint audit logs into gzip NDJSON objects, exactly once.
//!
//! Built for `wasm32-wasip2` this crate is a WebAssembly component exporting
//! `mulesoft:audit/collector` (see `wit/audit.wit`). The logic lives in plain modules over plain
//! types and traits ([`platform`]), unit-tested natively against in-memory doubles; the WASI
//! edges are `wasi_platform` and `component`.
//!
//! # Module map, by layer
//!
//! From the top down; each layer's code uses only its own and those below it (doc links aside).
//! Checked with `farm-studio look`: no import circle, no arrow running back up.
//!
//! | layer | modules |
//! |---|---|
//! | the edges | `component` (the WIT export), `conversions` (every WIT conversion, as `From` impls), `wasi_platform` (HTTP, clocks and randomness on WASI, every reply bounded) |
//! | a pass, and what hosts show of it | [`collect`] (one pass: windows, pages, entry checks), [`verify`] (the API against the delivered objects, `--repair`; its report), [`report`] (the summary, error lines, exit code), [`trigger`] (trigger shapes and answers, the edge's refusals) |
//! | delivery, exactly once | [`delivery`] (objects, the write order, recovery, claims), [`ledger`] (what the destination shows of an organization without a checkpoint), [`status`] (each organization's history), [`checkpoint`] |
//! | the two services | [`anypoint`] (token, pacing, the retry loop, business groups, retention), [`paging`] (the audit query's slices and when they end), [`gcs`] (Cloud Storage's one client: `wire`, `target`, `tokens`, `upload`, the store's operations) |
//! | the traits and the settings | [`platform`] (HTTP, clock, randomness, and the one object store trait), [`variables`] (one table of every setting, with who reads it and the edge's refusal; the one parser), [`settings`] (`names`, `url`: the one URL rule, `parse`, `pass`: the validated configuration, `outcome`: summaries, failures, exit codes, `secret`: scrubbing) |
//! | facts | [`window`] (windows, object names, every key), [`entry`] (an entry's identity and time), [`gzip`], [`pacer`], [`retry`] |
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
