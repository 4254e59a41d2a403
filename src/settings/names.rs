//! Every setting's variable name, which messages use to say what to set.
//! The table of what each one is lives in [`crate::variables`].

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
