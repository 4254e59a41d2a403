//! Settings: command-line flags and environment variables (flags win), parsed once into the WIT
//! `config` record plus the host's own settings. Logs name settings, never their values.

use crate::runtime::{Limits, wit};
use crate::sandbox::{Origin, Timeouts};
use clap::{Args, ValueEnum};
use mulesoft_audit::settings::{Paging, Plane, RawConfig, Settings, defaults};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Region {
    Us,
    Eu,
    Gov,
    Ca,
    Jp,
}

impl Region {
    /// The engine's control plane of that name.
    fn plane(self) -> Plane {
        match self {
            Self::Us => Plane::Us,
            Self::Eu => Plane::Eu,
            Self::Gov => Plane::Gov,
            Self::Ca => Plane::Ca,
            Self::Jp => Plane::Jp,
        }
    }

    /// Its base URL, from the engine's table of control planes.
    pub fn base_url(self) -> &'static str {
        mulesoft_audit::settings::plane(self.plane()).0
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PagingArg {
    Cursor,
    Offset,
}

/// What to collect, from where, into where.
#[derive(Args, Clone)]
pub struct CollectArgs {
    /// Organization (business group) ids, comma-separated.
    #[arg(long = "org", env = "MULE_ORG_ID", value_delimiter = ',')]
    pub org_ids: Vec<String>,
    /// Also collect every child business group of the given ids.
    #[arg(long, env = "MULE_DISCOVER_CHILDREN")]
    pub discover_children: bool,
    /// Control plane: us, eu, gov, ca, jp (default us).
    #[arg(long, env = "MULE_REGION", ignore_case = true)]
    pub region: Option<Region>,
    /// Any base URL instead of a region (https://, or http:// to loopback only).
    #[arg(long, env = "MULE_BASE_URL")]
    pub base_url: Option<String>,
    /// Connected app client id.
    #[arg(long, env = "CLIENT_ID")]
    pub client_id: Option<String>,
    /// Connected app client secret (prefer CLIENT_SECRET_FILE).
    #[arg(long, env = "CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// File holding the client secret (e.g. a mounted Secret Manager secret).
    #[arg(long, env = "CLIENT_SECRET_FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// Destination: gs://bucket[/prefix], file:///dir or a directory (default gs://$GCS_BUCKET).
    #[arg(long, env = "MULESOFT_AUDIT_DEST")]
    pub dest: Option<String>,
    /// GCS bucket (--dest wins).
    #[arg(long, env = "GCS_BUCKET")]
    pub bucket: Option<String>,
    /// Where checkpoints go, when not beside the logs: gs://bucket[/prefix], file:///dir or a
    /// directory. For a log bucket with a retention policy or a lock, where objects cannot be
    /// replaced.
    #[arg(long, env = "MULESOFT_AUDIT_STATE_DEST")]
    pub state_dest: Option<String>,
    /// Cloud Storage endpoint for gs:// destinations, with Google credentials (default
    /// `https://storage.googleapis.com`): a Private Service Connect or restricted VPC-SC endpoint.
    /// http:// only to loopback.
    #[arg(long, env = "MULESOFT_AUDIT_GCS_ENDPOINT")]
    pub gcs_endpoint: Option<String>,
    /// Backfill start for orgs without a checkpoint: RFC 3339, YYYY-MM-DD or epoch ms.
    #[arg(long, env = "MULESOFT_AUDIT_SINCE")]
    pub since: Option<String>,
    /// First run without --since: how far back (e.g. 24h, 7d).
    #[arg(long, env = "MULESOFT_AUDIT_LOOKBACK", default_value = defaults::LOOKBACK)]
    pub lookback: String,
    /// How far behind now a window ends, so that entries settle.
    #[arg(long, env = "MULESOFT_AUDIT_LAG", default_value = defaults::LAG)]
    pub lag: String,
    /// How much before the checkpoint each pass re-reads, for late entries.
    #[arg(long, env = "MULESOFT_AUDIT_OVERLAP", default_value = defaults::OVERLAP)]
    pub overlap: String,
    /// Entries per query (1..200).
    #[arg(long, env = "MULESOFT_AUDIT_PAGE_SIZE", default_value_t = defaults::PAGE_SIZE)]
    pub page_size: u32,
    /// Hard cap of pages per org per pass.
    #[arg(long, env = "MULESOFT_AUDIT_MAX_PAGES", default_value_t = defaults::MAX_PAGES)]
    pub max_pages: u32,
    /// Close an object at this uncompressed size (KiB; default 32 MiB).
    #[arg(long, env = "MULESOFT_AUDIT_OBJECT_KIB", default_value_t = defaults::OBJECT_KIB)]
    pub object_kib: u64,
    /// Key prefix of log objects: point the SecOps feed here.
    #[arg(long, env = "MULESOFT_AUDIT_KEY_PREFIX", default_value = defaults::KEY_PREFIX)]
    pub key_prefix: String,
    /// Key prefix of checkpoints (outside the log prefix).
    #[arg(long, env = "MULESOFT_AUDIT_STATE_PREFIX", default_value = defaults::STATE_PREFIX)]
    pub state_prefix: String,
    /// Query requests per minute (default: the plane's published limit; 40 for a base URL).
    #[arg(long, env = "MULESOFT_AUDIT_RPM")]
    pub requests_per_minute: Option<u32>,
    /// Attempts per request on transient faults.
    #[arg(long, env = "MULESOFT_AUDIT_MAX_ATTEMPTS", default_value_t = defaults::MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// Paging of the query endpoint.
    #[arg(long, env = "MULESOFT_AUDIT_PAGING", value_enum, default_value = "cursor")]
    pub paging: PagingArg,
    /// Memory limit of the component (MiB).
    #[arg(long, env = "MULESOFT_AUDIT_MEMORY_MIB", default_value_t = 256)]
    pub memory_mib: usize,
    /// Wall-clock limit of one pass.
    #[arg(long, env = "MULESOFT_AUDIT_MAX_RUN_TIME", default_value = "55m")]
    pub max_run_time: String,
    /// Query requests in flight at once when a window holds many pages (1..16).
    #[arg(long, env = "MULESOFT_AUDIT_CONCURRENCY", default_value_t = defaults::CONCURRENCY)]
    pub concurrency: u32,
    /// This task's index among --shard-count tasks splitting the orgs.
    #[arg(long, env = "MULESOFT_AUDIT_SHARD_INDEX")]
    pub shard_index: Option<u32>,
    /// How many tasks split the orgs (Cloud Run jobs set CLOUD_RUN_TASK_COUNT).
    #[arg(long, env = "MULESOFT_AUDIT_SHARD_COUNT")]
    pub shard_count: Option<u32>,
    /// Set by Cloud Run jobs.
    #[arg(long, env = "CLOUD_RUN_TASK_INDEX", hide = true)]
    pub cloud_run_task_index: Option<u32>,
    /// Set by Cloud Run jobs.
    #[arg(long, env = "CLOUD_RUN_TASK_COUNT", hide = true)]
    pub cloud_run_task_count: Option<u32>,
    /// Set by Kubernetes indexed jobs.
    #[arg(long, env = "JOB_COMPLETION_INDEX", hide = true)]
    pub job_completion_index: Option<u32>,
    /// Ceiling of the wait for a reply's first byte.
    #[arg(long, env = "MULESOFT_AUDIT_HTTP_TIMEOUT", default_value = "60s")]
    pub http_timeout: String,
}

/// A configuration error: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// A duration setting, through the engine's parser.
pub fn parse_duration(setting: &str, text: &str) -> Result<Duration, ConfigError> {
    mulesoft_audit::settings::parse_duration(setting, text).map_err(ConfigError)
}

/// Everything one pass needs, validated.
#[derive(Clone)]
pub struct Resolved {
    pub config: wit::Config,
    pub origin: Origin,
    pub dest: String,
    /// Where checkpoints go, when not beside the logs.
    pub state_dest: Option<String>,
    /// Where gs:// requests go, and whether they carry Google credentials.
    pub gcs: GcsEndpoint,
    pub limits: Limits,
    /// The secret, kept to scrub it from any text we print.
    pub secret: String,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("orgs", &self.config.org_ids)
            .field("origin", &self.origin)
            .field("dest", &self.dest)
            .finish_non_exhaustive()
    }
}

impl CollectArgs {
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let org_ids: Vec<String> =
            self.org_ids.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        if org_ids.is_empty() {
            return Err(bad(
                "MULE_ORG_ID is not set: give the organization (business group) id with MULE_ORG_ID or --org (comma-separated for several)",
            ));
        }
        let (base_url, plane, url) = match (&self.base_url, self.region) {
            (Some(_), Some(_)) => {
                return Err(bad("both MULE_BASE_URL and MULE_REGION are set: set only one"));
            }
            (Some(url), None) => {
                let url = url.trim().trim_end_matches('/').to_string();
                (url.clone(), None, Some(url))
            }
            (None, region) => {
                let region = region.unwrap_or(Region::Us);
                (region.base_url().to_string(), Some(region.plane()), None)
            }
        };
        let origin = Origin::from_base_url(&base_url).map_err(|e| bad(format!("MULE_BASE_URL: {e}")))?;
        let client_id =
            self.client_id.clone().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).ok_or_else(|| {
                bad("CLIENT_ID is not set: give the connected app's client id with CLIENT_ID or --client-id")
            })?;
        let client_secret = match (&self.client_secret, &self.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err(bad("both CLIENT_SECRET and CLIENT_SECRET_FILE are set: set only one"));
            }
            (Some(s), None) => s.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| bad(format!("CLIENT_SECRET_FILE `{}` cannot be read ({e})", path.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            (None, None) => {
                return Err(bad(
                    "CLIENT_SECRET is not set: give the connected app's secret with CLIENT_SECRET_FILE (preferred) or CLIENT_SECRET",
                ));
            }
        };
        if client_secret.is_empty() {
            return Err(bad("the client secret is empty: check CLIENT_SECRET / CLIENT_SECRET_FILE"));
        }
        let dest = match (&self.dest, &self.bucket) {
            (Some(d), _) if !d.trim().is_empty() => d.trim().to_string(),
            (_, Some(b)) if !b.trim().is_empty() => format!("gs://{}", b.trim()),
            _ => {
                return Err(bad("no destination: set GCS_BUCKET (or --dest gs://bucket, file:///dir)"));
            }
        };
        let gcs =
            GcsEndpoint::resolve(self.gcs_endpoint.as_deref(), std::env::var("STORAGE_EMULATOR_HOST").ok().as_deref())?;
        let since_ms = self
            .since
            .as_deref()
            .map(|since| mulesoft_audit::settings::parse_since("--since", since).map_err(ConfigError))
            .transpose()?;
        let lookback = parse_duration("--lookback", &self.lookback)?;
        let lag = parse_duration("--lag", &self.lag)?;
        let overlap = parse_duration("--overlap", &self.overlap)?;
        let run_time = parse_duration("--max-run-time", &self.max_run_time)?;
        let first_byte = parse_duration("--http-timeout", &self.http_timeout)?;
        let key_prefix = normalise_prefix(&self.key_prefix);
        let state_prefix = normalise_prefix(&self.state_prefix);
        let shard_index = self.shard_index.or(self.cloud_run_task_index).or(self.job_completion_index).unwrap_or(0);
        let shard_count = match self.shard_count.or(self.cloud_run_task_count) {
            Some(n) => n,
            None if self.job_completion_index.is_some() => {
                return Err(bad(
                    "JOB_COMPLETION_INDEX is set but not the number of tasks: set MULESOFT_AUDIT_SHARD_COUNT to the job's completions",
                ));
            }
            None => 1,
        };
        let raw = RawConfig {
            org_ids,
            discover_children: self.discover_children,
            plane,
            base_url: url,
            client_id,
            client_secret: client_secret.clone(),
            lookback_seconds: lookback.as_secs(),
            since_ms,
            lag_seconds: lag.as_secs(),
            overlap_seconds: overlap.as_secs(),
            page_size: self.page_size,
            max_pages: self.max_pages,
            object_max_bytes: self.object_kib.saturating_mul(1 << 10),
            key_prefix,
            state_prefix,
            requests_per_minute: self.requests_per_minute,
            max_attempts: self.max_attempts,
            paging: match self.paging {
                PagingArg::Cursor => Paging::Cursor,
                PagingArg::Offset => Paging::Offset,
            },
            shard_index,
            shard_count,
            concurrency: self.concurrency,
        };
        // The engine's own validation, before a component is compiled or a request is made: the
        // same rules, and the same words, as inside the guest.
        Settings::from_raw(raw.clone()).map_err(ConfigError)?;
        let config = wit::Config::from(raw);
        let limits = Limits {
            memory_bytes: self.memory_mib << 20,
            run_time,
            http: Timeouts { first_byte, ..Timeouts::default() },
        };
        let state_dest =
            self.state_dest.as_deref().map(str::trim).filter(|d| !d.is_empty() && *d != dest).map(str::to_string);
        Ok(Resolved { config, origin, dest, state_dest, gcs, limits, secret: client_secret })
    }
}

/// Cloud Storage's own endpoint.
pub const GCS_DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// Where gs:// requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcsEndpoint {
    /// Cloud Storage, or another endpoint of it (`--gcs-endpoint`), with Google credentials.
    Google(String),
    /// An emulator named by `STORAGE_EMULATOR_HOST`: no credentials, as Google's own client
    /// libraries do.
    Emulator(String),
}

impl GcsEndpoint {
    /// From `--gcs-endpoint` and `STORAGE_EMULATOR_HOST` (empty counts as unset).
    pub fn resolve(endpoint: Option<&str>, emulator: Option<&str>) -> Result<Self, ConfigError> {
        let endpoint = endpoint.map(str::trim).filter(|e| !e.is_empty());
        let emulator = emulator.map(str::trim).filter(|e| !e.is_empty());
        match (endpoint, emulator) {
            (Some(_), Some(_)) => Err(bad(
                "both MULESOFT_AUDIT_GCS_ENDPOINT and STORAGE_EMULATOR_HOST are set: set only one (STORAGE_EMULATOR_HOST sends no credentials)",
            )),
            (Some(url), None) => {
                let url = url.trim_end_matches('/');
                Origin::from_base_url(url).map_err(|e| bad(format!("MULESOFT_AUDIT_GCS_ENDPOINT: {e}")))?;
                Ok(Self::Google(url.to_string()))
            }
            (None, Some(host)) => {
                let host = host.trim_end_matches('/');
                Ok(Self::Emulator(if host.contains("://") { host.to_string() } else { format!("http://{host}") }))
            }
            (None, None) => Ok(Self::Google(GCS_DEFAULT_ENDPOINT.to_string())),
        }
    }
}

fn normalise_prefix(p: &str) -> String {
    let p = p.trim().trim_matches('/');
    if p.is_empty() { String::new() } else { format!("{p}/") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcs_endpoints() {
        let google = |url: &str| GcsEndpoint::Google(url.to_string());
        assert_eq!(GcsEndpoint::resolve(None, None).unwrap(), google(GCS_DEFAULT_ENDPOINT));
        assert_eq!(GcsEndpoint::resolve(Some(""), Some(" ")).unwrap(), google(GCS_DEFAULT_ENDPOINT));
        assert_eq!(
            GcsEndpoint::resolve(Some("https://storage-x.p.googleapis.com/"), None).unwrap(),
            google("https://storage-x.p.googleapis.com")
        );
        assert_eq!(GcsEndpoint::resolve(Some("http://127.0.0.1:9"), None).unwrap(), google("http://127.0.0.1:9"));
        let plain = GcsEndpoint::resolve(Some("http://storage.example"), None).unwrap_err().0;
        assert!(plain.contains("MULESOFT_AUDIT_GCS_ENDPOINT") && plain.contains("https://"), "{plain}");
        assert_eq!(
            GcsEndpoint::resolve(None, Some("localhost:4443")).unwrap(),
            GcsEndpoint::Emulator("http://localhost:4443".into())
        );
        assert!(
            GcsEndpoint::resolve(Some("https://a.example"), Some("localhost:1")).unwrap_err().0.contains("only one")
        );
    }
}
