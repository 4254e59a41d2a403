//! The pass's configuration, validated once into a typed struct, and the typed results.
//!
//! These mirror the WIT records but are plain Rust, so the engine is testable without wasm.

use names::{BASE_URL, CLIENT_ID, CLIENT_SECRET, CLIENT_SECRET_FILE, ORG_ID};

/// Every setting's variable name, which messages use to say what to set. The table of what
/// each one is lives in [`crate::variables`].
pub mod names {
    pub const ORG_ID: &str = "MULE_ORG_ID";
    pub const DISCOVER_CHILDREN: &str = "MULE_DISCOVER_CHILDREN";
    pub const REGION: &str = "MULE_REGION";
    pub const BASE_URL: &str = "MULE_BASE_URL";
    pub const CLIENT_ID: &str = "CLIENT_ID";
    pub const CLIENT_SECRET: &str = "CLIENT_SECRET";
    pub const CLIENT_SECRET_FILE: &str = "CLIENT_SECRET_FILE";
    pub const SINCE: &str = "MULESOFT_AUDIT_SINCE";
    pub const START_ANEW: &str = "MULESOFT_AUDIT_START_ANEW";
    pub const LOOKBACK: &str = "MULESOFT_AUDIT_LOOKBACK";
    pub const LAG: &str = "MULESOFT_AUDIT_LAG";
    pub const OVERLAP: &str = "MULESOFT_AUDIT_OVERLAP";
    pub const PAGE_SIZE: &str = "MULESOFT_AUDIT_PAGE_SIZE";
    pub const MAX_PAGES: &str = "MULESOFT_AUDIT_MAX_PAGES";
    pub const OBJECT_KIB: &str = "MULESOFT_AUDIT_OBJECT_KIB";
    pub const KEY_PREFIX: &str = "MULESOFT_AUDIT_KEY_PREFIX";
    pub const STATE_PREFIX: &str = "MULESOFT_AUDIT_STATE_PREFIX";
    pub const RPM: &str = "MULESOFT_AUDIT_RPM";
    pub const MAX_ATTEMPTS: &str = "MULESOFT_AUDIT_MAX_ATTEMPTS";
    pub const PAGING: &str = "MULESOFT_AUDIT_PAGING";
    pub const CONCURRENCY: &str = "MULESOFT_AUDIT_CONCURRENCY";
    pub const SHARD_INDEX: &str = "MULESOFT_AUDIT_SHARD_INDEX";
    pub const SHARD_COUNT: &str = "MULESOFT_AUDIT_SHARD_COUNT";
    pub const HTTP_TIMEOUT: &str = "MULESOFT_AUDIT_HTTP_TIMEOUT";
    /// Cloud Run jobs number their tasks with these; Kubernetes indexed jobs with the third.
    pub const CLOUD_RUN_TASK_INDEX: &str = "CLOUD_RUN_TASK_INDEX";
    pub const CLOUD_RUN_TASK_COUNT: &str = "CLOUD_RUN_TASK_COUNT";
    pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";

    // The destination's and the binary's settings, rows of the same table
    // ([`crate::variables::SETTINGS`]) with their scope.
    /// Destination: `gs://bucket[/prefix]`, `file:///dir` or a directory.
    pub const DEST: &str = "MULESOFT_AUDIT_DEST";
    /// A bucket, when `DEST` is unset.
    pub const BUCKET: &str = "GCS_BUCKET";
    /// Where checkpoints go, when not beside the logs.
    pub const STATE_DEST: &str = "MULESOFT_AUDIT_STATE_DEST";
    /// Another Cloud Storage endpoint (Private Service Connect, a stand-in).
    pub const GCS_ENDPOINT: &str = "MULESOFT_AUDIT_GCS_ENDPOINT";
    pub const MEMORY_MIB: &str = "MULESOFT_AUDIT_MEMORY_MIB";
    pub const MAX_RUN_TIME: &str = "MULESOFT_AUDIT_MAX_RUN_TIME";
    pub const SCHEDULE: &str = "MULESOFT_AUDIT_SCHEDULE";
    pub const OIDC_AUDIENCE: &str = "MULESOFT_AUDIT_OIDC_AUDIENCE";
    pub const OIDC_EMAIL: &str = "MULESOFT_AUDIT_OIDC_EMAIL";
    pub const OIDC_ANY_SENDER: &str = "MULESOFT_AUDIT_OIDC_ANY_SENDER";
    pub const LISTEN: &str = "MULESOFT_AUDIT_LISTEN";
    pub const LOG: &str = "MULESOFT_AUDIT_LOG";
    pub const LOG_FORMAT: &str = "MULESOFT_AUDIT_LOG_FORMAT";
    pub const CACHE_DIR: &str = "MULESOFT_AUDIT_CACHE_DIR";
    /// Tuning of the host's GCS client (tests use them).
    pub const GCS_TIMEOUT_SECS: &str = "MULESOFT_AUDIT_GCS_TIMEOUT_SECS";
    pub const GCS_RESUMABLE_ABOVE: &str = "MULESOFT_AUDIT_GCS_RESUMABLE_ABOVE";
    pub const GCS_CHUNK_KIB: &str = "MULESOFT_AUDIT_GCS_CHUNK_KIB";
    /// Google's: an emulator that gets no credentials, and a credentials file.
    pub const STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";
    pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
    /// The metadata server's `host[:port]` (Google's client libraries read the same variable).
    pub const METADATA_HOST: &str = "GCE_METADATA_HOST";
    /// An OAuth access token for Cloud Storage, when no metadata server can mint one (the edge).
    pub const OAUTH_ACCESS_TOKEN: &str = "GOOGLE_OAUTH_ACCESS_TOKEN";
    /// `serve`'s port: Cloud Run's name for it.
    pub const PORT: &str = "PORT";
    /// The directory the WASI command and the Node example write to.
    pub const DIR: &str = "MULESOFT_AUDIT_DIR";
    /// Where `serve` fetches Google's signing keys (a stand-in's, in tests).
    pub const OIDC_JWKS_URL: &str = "MULESOFT_AUDIT_OIDC_JWKS_URL";
    /// `just profile`: the compiled guest's functions by name for perf.
    pub const PERFMAP: &str = "MULESOFT_AUDIT_PERFMAP";
}

/// Whether `host` (a name or an address, IPv6 in brackets or not) is this machine: the one place
/// plain `http://` may carry credentials.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A parsed base URL: `scheme://authority` with no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim().trim_end_matches('/');
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("base URL `{url}` must start with https:// (or http:// for a local simulator)"));
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!("base URL `{url}` must be scheme://host[:port] with no path, query or user"));
        }
        Ok(Self { https, authority: rest.to_string() })
    }

    /// A base URL requests with credentials go to (the Anypoint control plane, Cloud Storage):
    /// `https://`, or plain `http://` only to this machine (a stand-in). The one rule for every
    /// endpoint, whatever the host: `setting` names it in the refusal.
    pub fn for_credentials(url: &str, setting: &str) -> Result<Self, String> {
        let base = Self::parse(url).map_err(|e| format!("{setting}: {e}"))?;
        if !base.https && !base.is_loopback() {
            return Err(format!(
                "{setting} `{}` uses plain http:// to a non-loopback host: credentials would travel unencrypted; use https://",
                url.trim()
            ));
        }
        Ok(base)
    }

    /// Whether the host is this machine.
    pub fn is_loopback(&self) -> bool {
        let host = match self.authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => self.authority.as_str(),
        };
        is_loopback(host)
    }

    pub fn url(&self, path_and_query: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path_and_query}", self.authority)
    }
}

/// `90s`, `10m`, `24h`, `7d`, `250ms`, or plain seconds. `setting` names it in the error.
pub fn parse_duration(setting: &str, text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 =
        number.parse().map_err(|_| format!("{setting} `{text}` is not a duration: use e.g. 90s, 10m, 24h, 7d"))?;
    let seconds_per = match unit {
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{setting} `{text}` has unknown unit `{unit}`: use s, m, h or d")),
    };
    n.checked_mul(seconds_per)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{setting} `{text}` is too long"))
}

/// RFC 3339, `YYYY-MM-DD` (UTC midnight) or epoch milliseconds. `setting` names it in the error.
pub fn parse_since(setting: &str, text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or_default());
    }
    Err(format!("{setting} `{text}` is not a date: use RFC 3339 (2024-05-01T00:00:00Z), YYYY-MM-DD or epoch ms"))
}

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

/// Org ids are UUIDs in practice; accept any id of letters, digits, `-` and `_`, since it becomes
/// part of URLs and object names.
pub fn valid_org_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Refuses checkpoints under the logs, or logs under the checkpoints. Each location is where the
/// objects lie, root and prefix together, ending in `/` (`logs/`, or for a host with a state
/// destination of its own `gs://bucket/logs/` and `/srv/data/logs/` with paths made canonical),
/// so that the rule holds for prefixes and destinations alike.
pub fn separate_locations(logs: &str, state: &str) -> Result<(), String> {
    if state.starts_with(logs) {
        return Err(format!(
            "checkpoints in `{state}` lie under the log objects in `{logs}`: the SecOps feed would ingest (and may delete) them; keep the state outside the log prefix (prefixes such as `logs/` and `state/`, or a --state-dest beside the logs, not inside them)"
        ));
    }
    if logs.starts_with(state) {
        return Err(format!(
            "log objects in `{logs}` lie under the checkpoints in `{state}`: log objects would be taken for state; keep the logs outside the state prefix (prefixes such as `logs/` and `state/`)"
        ));
    }
    Ok(())
}

fn valid_prefix(p: &str) -> bool {
    !p.starts_with('/') && !p.contains("//") && !p.split('/').any(|s| s == "." || s == "..")
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

/// Failure kinds, as in the WIT `error-kind` (and serialised by its names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    Config,
    Unauthorized,
    Forbidden,
    Api,
    Unavailable,
    Denied,
    Storage,
    Conflict,
    Checkpoint,
    PageCap,
}

impl ErrorKind {
    /// Failures that every other organization would hit too: stop the pass.
    pub fn stops_the_pass(self) -> bool {
        matches!(self, Self::Config | Self::Unauthorized | Self::Denied)
    }

    /// Failures a person must fix in the configuration (a setting, a secret, a grant); the others
    /// a later pass gets past by itself.
    pub fn needs_a_person(self) -> bool {
        matches!(self, Self::Config | Self::Unauthorized | Self::Forbidden | Self::Denied | Self::Checkpoint)
    }

    /// The WIT name, as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Api => "api",
            Self::Unavailable => "unavailable",
            Self::Denied => "denied",
            Self::Storage => "storage",
            Self::Conflict => "conflict",
            Self::Checkpoint => "checkpoint",
            Self::PageCap => "page-cap",
        }
    }
}

/// A pass's exit code from the kinds of its failures: 0 none, 2 when any needs a person (a
/// setting, a secret, a grant), else 1 (the next pass continues).
pub fn exit_code(kinds: impl IntoIterator<Item = ErrorKind>) -> u8 {
    kinds.into_iter().fold(0, |code, kind| code.max(if kind.needs_a_person() { 2 } else { 1 }))
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Removes the secret from text that leaves the engine: the engine never writes it into a
/// message, but a reply body it quotes could hold it, as sent (form-encoded), percent-encoded or
/// JSON-escaped as well as raw.
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.len() < 4 {
        return text.to_string();
    }
    let form = form_encode(secret);
    let json = serde_json::to_string(secret).unwrap_or_default();
    let forms = [secret.to_string(), form.clone(), form.replace('+', "%20"), json.trim_matches('"').to_string()];
    let mut text = text.to_string();
    for form in forms.iter().filter(|f| f.len() >= 4) {
        text = text.replace(form.as_str(), "<redacted>");
        // Percent-encodings may come back in lower case.
        if form.contains('%') {
            text = replace_ignoring_case(&text, form, "<redacted>");
        }
    }
    text
}

/// `text` with every ASCII-case-insensitive occurrence of `from` replaced.
fn replace_ignoring_case(text: &str, from: &str, to: &str) -> String {
    let (lower, needle) = (text.to_ascii_lowercase(), from.to_ascii_lowercase());
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find(&needle) {
        out.push_str(&text[at..at + found]);
        out.push_str(to);
        at += found + needle.len();
    }
    out.push_str(&text[at..]);
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub org_id: Option<String>,
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { org_id: None, kind, message: message.into() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OrgSummary {
    pub org_id: String,
    pub window_start: String,
    pub window_end: String,
    pub entries_written: u64,
    pub duplicates_skipped: u64,
    pub objects: Vec<String>,
    pub requests: u32,
    pub retries: u32,
    pub throttled_waits: u32,
    /// Replies by status class, and requests that got none.
    pub replies_2xx: u32,
    pub replies_4xx: u32,
    pub replies_5xx: u32,
    pub no_reply: u32,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Settings {
    /// Whether this task collects `org`: its shard of the organizations ([`shard_of`]).
    pub fn owns(&self, org: &str) -> bool {
        shard_of(org, self.shard_count) == self.shard_index
    }
}

impl OrgSummary {
    /// Objects this pass created: `objects` also names the ones it recovered, claimed or found
    /// missing, in parentheses.
    pub fn objects_written(&self) -> impl Iterator<Item = &str> {
        self.objects.iter().map(String::as_str).filter(|o| !o.starts_with('('))
    }
}

#[cfg(test)]
pub(crate) mod tests;
