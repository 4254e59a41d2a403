//! A pass's configuration: as it arrives ([`RawConfig`], the WIT `config` record) and validated
//! once into [`Settings`], with the control planes and the shard an organization falls to.

use super::names::{BASE_URL, CLIENT_ID, CLIENT_SECRET, CLIENT_SECRET_FILE, ORG_ID};
use super::parse::{separate_locations, valid_org_id, valid_prefix};
use super::url::BaseUrl;

/// A control plane's base URL and published query limit per minute.
fn plane(name: ControlPlane) -> (&'static str, u32) {
    match name {
        ControlPlane::Us => ("https://anypoint.mulesoft.com", 700),
        ControlPlane::Eu => ("https://eu1.anypoint.mulesoft.com", 40),
        ControlPlane::Gov => ("https://gov.anypoint.mulesoft.com", 40),
        ControlPlane::Ca => ("https://ca1.platform.mulesoft.com", 40),
        ControlPlane::Jp => ("https://jp1.platform.mulesoft.com", 40),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlPlane {
    Us,
    Eu,
    Gov,
    Ca,
    Jp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    Cursor,
    Offset,
}

/// Validated settings for one pass.
#[derive(Clone)]
pub struct Settings {
    pub org_ids: Vec<String>,
    pub discover_children: bool,
    pub base: BaseUrl,
    pub client_id: String,
    pub client_secret: String,
    pub lookback_ms: i64,
    pub since_ms: Option<i64>,
    /// An organization without a checkpoint starts at `since_ms` (or the lookback) even where
    /// the destination shows it was collected ([`crate::ledger`]).
    pub start_anew: bool,
    pub lag_ms: i64,
    pub overlap_ms: i64,
    pub page_size: u32,
    pub max_pages: u32,
    pub object_max_bytes: u64,
    pub key_prefix: String,
    pub state_prefix: String,
    pub requests_per_minute: u32,
    pub max_attempts: u32,
    pub paging: Paging,
    pub shard_index: u32,
    pub shard_count: u32,
    pub concurrency: u32,
    /// The ceiling of one reply, from sending to its last byte.
    pub http_timeout_ms: u64,
}

impl std::fmt::Debug for Settings {
    // The secret stays out of every debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("org_ids", &self.org_ids)
            .field("base", &self.base)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Settings as they arrive (the WIT `config` record, field for field).
#[derive(Debug, Clone)]
pub struct RawConfig {
    pub org_ids: Vec<String>,
    pub discover_children: bool,
    pub plane: Option<ControlPlane>,
    pub base_url: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    pub lookback_seconds: u64,
    pub since_ms: Option<i64>,
    pub start_anew: bool,
    pub lag_seconds: u64,
    pub overlap_seconds: u64,
    pub page_size: u32,
    pub max_pages: u32,
    pub object_max_bytes: u64,
    pub key_prefix: String,
    pub state_prefix: String,
    pub requests_per_minute: Option<u32>,
    pub max_attempts: u32,
    pub paging: Paging,
    pub shard_index: u32,
    pub shard_count: u32,
    pub concurrency: u32,
    pub http_timeout_ms: u64,
}

/// The shard (of `count`) that collects `org_id`: stable across runs, releases and list changes.
pub fn shard_of(org_id: &str, count: u32) -> u32 {
    // In any case the same shard: an id is a UUID, however it is spelled.
    (crate::entry::fnv1a_128(org_id.to_ascii_lowercase().as_bytes()) % u128::from(count.max(1))) as u32
}

impl Settings {
    /// Validates; every message names the setting and what to do.
    pub fn from_raw(raw: RawConfig) -> Result<Self, String> {
        if raw.org_ids.is_empty() {
            return Err(format!(
                "{ORG_ID} is not set: give the organization (business group) id with {ORG_ID} or --org (comma-separated for several)"
            ));
        }
        for id in &raw.org_ids {
            if !valid_org_id(id) {
                return Err(format!(
                    "organization id `{id}` is malformed: use the business group id from Access Management (letters, digits, -)"
                ));
            }
        }
        if raw.client_id.trim().is_empty() {
            return Err(format!(
                "{CLIENT_ID} is not set: give the connected app's client id with {CLIENT_ID} or --client-id"
            ));
        }
        if raw.client_secret.is_empty() {
            return Err(format!(
                "{CLIENT_SECRET} is not set: give the connected app's secret with {CLIENT_SECRET_FILE} (preferred) or {CLIENT_SECRET}"
            ));
        }
        let (base, default_rpm) = match (&raw.base_url, raw.plane) {
            (Some(url), _) => (BaseUrl::for_credentials(url, BASE_URL)?, 40),
            (None, Some(p)) => {
                let (url, rpm) = plane(p);
                (BaseUrl::parse(url)?, rpm)
            }
            (None, None) => {
                let (url, rpm) = plane(ControlPlane::Us);
                (BaseUrl::parse(url)?, rpm)
            }
        };
        if !(1..=200).contains(&raw.page_size) {
            return Err(format!("page size {} is out of range: the API takes 1..200", raw.page_size));
        }
        if raw.max_pages == 0 {
            return Err("max pages must be at least 1".into());
        }
        if raw.object_max_bytes < 1024 {
            return Err(format!("object size cap {} bytes is too small (at least 1024)", raw.object_max_bytes));
        }
        if raw.max_attempts == 0 {
            return Err("max attempts must be at least 1".into());
        }
        if raw.http_timeout_ms == 0 {
            return Err("the HTTP timeout must be longer than 0s".into());
        }
        if !(1..=16).contains(&raw.concurrency) {
            return Err(format!("concurrency {} is out of range: 1..16 requests in flight", raw.concurrency));
        }
        if raw.shard_count == 0 || raw.shard_index >= raw.shard_count {
            return Err(format!("shard index {} is not below the shard count {}", raw.shard_index, raw.shard_count));
        }
        if raw.requests_per_minute == Some(0) {
            return Err("requests per minute must be at least 1".into());
        }
        if !valid_prefix(&raw.key_prefix) || !valid_prefix(&raw.state_prefix) {
            return Err("key and state prefixes must be relative paths without `.`, `..` or `//`".into());
        }
        if raw.state_prefix.is_empty() {
            return Err("the state prefix is empty: checkpoints need a prefix of their own, such as `state/`".into());
        }
        separate_locations(&raw.key_prefix, &raw.state_prefix)?;
        let seconds = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        // Each organization once, in the order given (`dedup` alone keeps repeats apart).
        let mut org_ids = raw.org_ids;
        let mut given = std::collections::HashSet::new();
        // Ids are UUIDs, the same in any case: `ABC` after `abc` is a repeat.
        org_ids.retain(|id| given.insert(id.to_ascii_lowercase()));
        Ok(Self {
            org_ids,
            discover_children: raw.discover_children,
            base,
            client_id: raw.client_id,
            client_secret: raw.client_secret,
            lookback_ms: seconds(raw.lookback_seconds),
            since_ms: raw.since_ms,
            start_anew: raw.start_anew,
            lag_ms: seconds(raw.lag_seconds),
            overlap_ms: seconds(raw.overlap_seconds),
            page_size: raw.page_size,
            max_pages: raw.max_pages,
            object_max_bytes: raw.object_max_bytes,
            key_prefix: raw.key_prefix,
            state_prefix: raw.state_prefix,
            requests_per_minute: raw.requests_per_minute.unwrap_or(default_rpm),
            max_attempts: raw.max_attempts,
            paging: raw.paging,
            shard_index: raw.shard_index,
            shard_count: raw.shard_count,
            concurrency: raw.concurrency,
            http_timeout_ms: raw.http_timeout_ms,
        })
    }
}

impl Settings {
    /// Whether this task collects `org`: its shard of the organizations ([`shard_of`]).
    pub fn owns(&self, org: &str) -> bool {
        shard_of(org, self.shard_count) == self.shard_index
    }
}
