//! The pass's configuration, validated once into a typed struct, and the typed results, split by
//! role. These mirror the WIT records but are plain Rust, so the engine is testable without wasm.
//!
//! - [`names`]: every setting's variable name (the table of what each is: [`crate::variables`]);
//! - [`url`]: the one URL rule for endpoints that get credentials ([`BaseUrl`]);
//! - [`parse`]: durations, dates, ids, prefixes;
//! - [`pass`]: [`RawConfig`] in, [`Settings`] out, control planes and shards;
//! - [`outcome`]: [`OrgSummary`], [`Failure`], [`ErrorKind`] and the exit code;
//! - [`secret`]: form encoding and scrubbing the secret.

pub mod names;
mod outcome;
mod parse;
mod pass;
mod secret;
mod url;

pub use outcome::{ErrorKind, Failure, OrgSummary, exit_code};
pub use parse::{parse_duration, parse_since, separate_locations, valid_org_id};
pub use pass::{ControlPlane, Paging, RawConfig, Settings, shard_of};
pub use secret::{form_encode, scrub};
pub use url::{BaseUrl, is_loopback};

#[cfg(test)]
pub(crate) mod tests;
