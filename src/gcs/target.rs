//! Where the store writes and how it authenticates: the edge reads it from the variables the
//! host reads for the same things ([`Target::from_env`]); the host builds it from its own
//! settings ([`Target::new`]).

use super::wire::check_bucket;
use crate::settings::{BaseUrl, names};
use crate::variables::Values;

/// Cloud Storage's endpoint when none is configured.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// Where the metadata server is when `GCE_METADATA_HOST` is unset.
pub const METADATA_DEFAULT_HOST: &str = "metadata.google.internal";

/// The Cloud Storage endpoint `MULESOFT_AUDIT_GCS_ENDPOINT` names (a Private Service Connect
/// endpoint, a stand-in), else Google's: `https://`, or plain `http://` only to this machine, since
/// every request carries a token. The host's store and the edge store take it by this one rule.
pub fn endpoint(value: Option<&str>) -> Result<BaseUrl, String> {
    let url = value.map(str::trim).filter(|v| !v.is_empty()).unwrap_or(DEFAULT_ENDPOINT);
    BaseUrl::for_credentials(url, names::GCS_ENDPOINT)
}

/// The metadata server's `host[:port]`: `GCE_METADATA_HOST` in the form Google's client libraries
/// read it, else the default. A scheme or a path is refused rather than half understood.
pub fn metadata_host(value: Option<&str>) -> Result<String, String> {
    let host = value.map(str::trim).filter(|h| !h.is_empty()).unwrap_or(METADATA_DEFAULT_HOST);
    if host.contains("://") || host.contains('/') {
        return Err(format!(
            "{} `{host}` must be host[:port], without a scheme or a path (as Google's client libraries read it)",
            names::METADATA_HOST
        ));
    }
    Ok(host.to_string())
}

/// Where an access token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The metadata server at this address (Cloud Run, GKE, Compute Engine): renewed before it
    /// expires and after a 401.
    MetadataServer(BaseUrl),
    /// A token given in the configuration. The store cannot renew it: once Cloud Storage refuses
    /// it (an access token lasts about an hour) every pass fails as `denied`, marking nothing done
    /// it did not write, until the runtime is given a fresh one.
    Configured,
    /// Headers the host gives ([`super::TokenProvider`]: Application Default Credentials).
    Host,
    /// None at all: an emulator named by `STORAGE_EMULATOR_HOST`, as Google's own client
    /// libraries do.
    Anonymous,
}

/// Where the store writes, how it authenticates, and how hard it tries.
#[derive(Clone)]
pub struct Target {
    pub endpoint: BaseUrl,
    pub bucket: String,
    /// Prefix of every key inside the bucket: empty or ending in `/`.
    pub prefix: String,
    pub tokens: TokenSource,
    /// Attempts per request before a transient fault is `unavailable`: the collector's own
    /// `MULESOFT_AUDIT_MAX_ATTEMPTS`, one knob for every request a pass makes.
    pub attempts: u32,
    /// The ceiling of one request to Cloud Storage, first byte to last, in ms: the host's store
    /// takes the same setting (an upload of a large object takes longer than a page of entries).
    pub timeout_ms: u64,
    /// New objects larger than this (compressed bytes) go up in a resumable upload; `None`:
    /// every object in one request (the edge, whose runtime bounds a request's time instead).
    pub resumable_above: Option<usize>,
    /// Bytes per resumable chunk: a multiple of 256 KiB, as the API requires.
    pub chunk: usize,
    /// The configured token; never logged (no `Debug`).
    pub(super) configured_token: Option<String>,
}

/// New objects above this many compressed bytes go up in a resumable upload, on the host.
pub const RESUMABLE_THRESHOLD: usize = 16 << 20;
/// A resumable upload's chunk size.
pub const CHUNK: usize = 8 << 20;

impl Target {
    /// Reads and validates the settings; the error names the variable and what to set.
    pub fn from_env(values: &Values) -> Result<Self, String> {
        let dest = crate::variables::destination(values.get(names::DEST), values.get(names::BUCKET))?;
        let rest = dest.strip_prefix("gs://").ok_or_else(|| {
            format!(
                "{} `{dest}`: the edge component writes to Cloud Storage only (gs://bucket[/prefix]); a directory needs the mulesoft-audit binary or the WASI command",
                values.label(names::DEST)
            )
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(|e| format!("{}: {e}", values.label(names::DEST)))?;
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        let endpoint = endpoint(values.get(names::GCS_ENDPOINT))?;
        let attempts = values.required::<u32>(names::MAX_ATTEMPTS)?.max(1);
        let configured_token = values.get(names::OAUTH_ACCESS_TOKEN).map(str::to_string);
        let timeout_ms = request_timeout_ms(values)?;
        let tokens = if configured_token.is_some() {
            TokenSource::Configured
        } else {
            let host = metadata_host(values.get(names::METADATA_HOST))?;
            // The metadata server speaks plain http on a link-local address, as Google's libraries
            // expect; it never leaves the machine.
            let server =
                BaseUrl::parse(&format!("http://{host}")).map_err(|e| format!("{}: {e}", names::METADATA_HOST))?;
            TokenSource::MetadataServer(server)
        };
        Ok(Self {
            endpoint,
            bucket: bucket.to_string(),
            prefix,
            tokens,
            attempts,
            timeout_ms,
            resumable_above: None,
            chunk: CHUNK,
            configured_token,
        })
    }

    /// The host's target: `bucket` under `prefix` at `endpoint`, with tokens it gives (or none,
    /// for an emulator); resumable uploads above [`RESUMABLE_THRESHOLD`].
    pub fn new(
        endpoint: BaseUrl,
        bucket: &str,
        prefix: &str,
        tokens: TokenSource,
        attempts: u32,
    ) -> Result<Self, String> {
        check_bucket(bucket)?;
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        Ok(Self {
            endpoint,
            bucket: bucket.to_string(),
            prefix,
            tokens,
            attempts: attempts.max(1),
            timeout_ms: 300_000,
            resumable_above: Some(RESUMABLE_THRESHOLD),
            chunk: CHUNK,
            configured_token: None,
        })
    }

    /// `gs://bucket/prefix`, for messages.
    pub fn describe(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.prefix)
    }
}

/// The host's resumable uploads, from `MULESOFT_AUDIT_GCS_RESUMABLE_ABOVE` (bytes) and
/// `MULESOFT_AUDIT_GCS_CHUNK_KIB`: the threshold and the chunk in bytes, [`RESUMABLE_THRESHOLD`]
/// and [`CHUNK`] when unset. A value that is not one is refused, naming the variable: the API
/// takes chunks in multiples of 256 KiB only.
pub fn resumable(values: &Values) -> Result<(usize, usize), String> {
    let above = match values.get(names::GCS_RESUMABLE_ABOVE) {
        None => RESUMABLE_THRESHOLD,
        Some(v) => v.parse::<usize>().map_err(|_| {
            format!(
                "{} `{v}` is not a number of bytes: give whole bytes (0 sends every new object resumably)",
                values.label(names::GCS_RESUMABLE_ABOVE)
            )
        })?,
    };
    let chunk = match values.get(names::GCS_CHUNK_KIB) {
        None => CHUNK,
        Some(v) => match v.parse::<usize>() {
            Ok(kib) if kib > 0 && kib % 256 == 0 && kib <= 1 << 20 => kib << 10,
            _ => {
                return Err(format!(
                    "{} `{v}` is not a chunk Cloud Storage takes: give KiB in a multiple of 256 (256 to 1048576)",
                    values.label(names::GCS_CHUNK_KIB)
                ));
            }
        },
    };
    Ok((above, chunk))
}

/// The ceiling of one request to Cloud Storage, in ms, from `MULESOFT_AUDIT_GCS_TIMEOUT_SECS`
/// (300 s when unset: an upload of one 32 MiB object fits easily).
pub fn request_timeout_ms(values: &Values) -> Result<u64, String> {
    match values.get(names::GCS_TIMEOUT_SECS) {
        None => Ok(300_000),
        Some(v) => match v.parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(secs.saturating_mul(1000)),
            _ => Err(format!("{} `{v}` is not a number of seconds above 0", values.label(names::GCS_TIMEOUT_SECS))),
        },
    }
}
