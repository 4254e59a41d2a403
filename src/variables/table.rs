//! Every setting of every host in one table ([`SETTINGS`]): its variable, its flag, help and
//! default, who reads it ([`Scope`]), and what the edge says when it cannot honour it. The
//! binary's flags, the collector's parser, the edge's refusals and the README's configuration
//! table all follow it.

use super::*;

/// How a setting takes its value on a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `--flag VALUE`.
    Value,
    /// `--flag VALUE`, never printed (help shows no value from the environment).
    Secret,
    /// `--flag A,B` or the flag repeated: a comma-separated list.
    List,
    /// `--flag` alone: `true` (`1`, `yes`) or `false` (`0`, `no`) in the environment.
    Switch,
    /// Set by a platform, not by a person: no flag, not in help.
    Platform,
    /// A variable alone, with no flag (tuning, and Google's own variables).
    Variable,
}

/// Who reads a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A pass's: the collector's own parser ([`super::configure`]) reads it, on every host.
    Pass,
    /// The destination's: the binary's stores read it, and the edge store ([`crate::gcs::Target`]).
    Store,
    /// The wasmtime binary's alone: its limits, its log, `serve`, its Google credentials.
    Binary,
    /// The edge store's alone: credentials where the binary has Application Default Credentials.
    Edge,
    /// The directory store of the WASI command and of the Node example.
    Directory,
}

/// One setting: its variable, its flag, what it does, its default, who reads it.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The environment variable.
    pub name: &'static str,
    /// The long flag, without `--`; empty for [`Shape::Variable`].
    pub flag: &'static str,
    pub shape: Shape,
    /// One line for `--help`.
    pub help: &'static str,
    /// The value when unset, as text in the variable's own form.
    pub default: Option<&'static str>,
    pub scope: Scope,
    /// Set at the edge, where a component cannot honour it: refused, with what to do instead.
    pub edge_refusal: Option<&'static str>,
}

/// A pass's setting.
const fn setting(
    name: &'static str,
    flag: &'static str,
    shape: Shape,
    help: &'static str,
    default: Option<&'static str>,
) -> Setting {
    Setting { name, flag, shape, help, default, scope: Scope::Pass, edge_refusal: None }
}

/// A variable alone.
const fn variable(name: &'static str, help: &'static str, default: Option<&'static str>) -> Setting {
    setting(name, "", Shape::Variable, help, default)
}

impl Setting {
    const fn read_by(self, scope: Scope) -> Self {
        Self { scope, ..self }
    }

    const fn refused_at_edge(self, instead: &'static str) -> Self {
        Self { edge_refusal: Some(instead), ..self }
    }
}

const NO_LOG: &str = "the edge prints the report (summary on stdout, a line a failure on stderr), not a log";
const ONE_REQUEST: &str = "the edge store sends every object in one request";
const NO_PUSH_CHECK: &str =
    "the edge component does not verify push tokens; put the runtime behind an ingress that does";

/// Every setting, in the order `--help` lists them: a pass's first, then the destination's, the
/// binary's and the directory hosts'.
pub const SETTINGS: &[Setting] = &[
    setting(ORG_ID, "org", Shape::List, "Organization (business group) ids, comma-separated", None),
    setting(
        DISCOVER_CHILDREN,
        "discover-children",
        Shape::Switch,
        "Also collect every child business group of the given ids",
        None,
    ),
    setting(REGION, "region", Shape::Value, "Control plane: us, eu, gov, ca or jp", Some("us")),
    setting(
        BASE_URL,
        "base-url",
        Shape::Value,
        "Any base URL instead of a control plane (https://, or http:// to loopback only)",
        None,
    ),
    setting(CLIENT_ID, "client-id", Shape::Value, "Connected app client id (scope: Audit Log Viewer)", None),
    setting(
        CLIENT_SECRET,
        "client-secret",
        Shape::Secret,
        "Connected app client secret (prefer CLIENT_SECRET_FILE)",
        None,
    ),
    setting(
        CLIENT_SECRET_FILE,
        "client-secret-file",
        Shape::Value,
        "File holding the client secret (e.g. a mounted Secret Manager secret)",
        None,
    )
    .refused_at_edge("a component reads no files; give CLIENT_SECRET from the runtime's secrets"),
    setting(
        SINCE,
        "since",
        Shape::Value,
        "Backfill start for organizations without a checkpoint: RFC 3339, YYYY-MM-DD or epoch ms",
        None,
    ),
    setting(
        START_ANEW,
        "start-anew",
        Shape::Switch,
        "Organizations without a checkpoint start at --since or the lookback even where the destination shows them collected (their entries may come again)",
        None,
    ),
    setting(LOOKBACK, "lookback", Shape::Value, "First pass without --since: how far back (e.g. 24h, 7d)", Some("24h")),
    setting(LAG, "lag", Shape::Value, "How far behind now a window ends, so that entries settle", Some("60s")),
    setting(
        OVERLAP,
        "overlap",
        Shape::Value,
        "How much before the checkpoint each pass reads again, for late entries",
        Some("10m"),
    ),
    setting(PAGE_SIZE, "page-size", Shape::Value, "Entries per query (1..200)", Some("200")),
    setting(
        MAX_PAGES,
        "max-pages",
        Shape::Value,
        "Cap of query pages with new entries per organization per pass (re-reading the overlap is free)",
        Some("100000"),
    ),
    setting(OBJECT_KIB, "object-kib", Shape::Value, "Close an object at this uncompressed size, in KiB", Some("32768")),
    setting(
        KEY_PREFIX,
        "key-prefix",
        Shape::Value,
        "Key prefix of log objects: point the SecOps feed here",
        Some("logs/"),
    ),
    setting(
        STATE_PREFIX,
        "state-prefix",
        Shape::Value,
        "Key prefix of checkpoints (outside the log prefix)",
        Some("state/"),
    ),
    setting(
        RPM,
        "requests-per-minute",
        Shape::Value,
        "Query requests a minute (default: the control plane's published limit; 40 for a base URL)",
        None,
    ),
    setting(MAX_ATTEMPTS, "max-attempts", Shape::Value, "Attempts per request on transient faults", Some("6")),
    setting(PAGING, "paging", Shape::Value, "Paging of the query endpoint: cursor or offset", Some("cursor")),
    setting(
        CONCURRENCY,
        "concurrency",
        Shape::Value,
        "Query requests in flight at once when a window holds many pages (1..16)",
        Some("4"),
    ),
    setting(
        SHARD_INDEX,
        "shard-index",
        Shape::Value,
        "This task's index among --shard-count tasks splitting the organizations",
        None,
    ),
    setting(
        SHARD_COUNT,
        "shard-count",
        Shape::Value,
        "How many tasks split the organizations (Cloud Run jobs set CLOUD_RUN_TASK_COUNT)",
        None,
    ),
    setting(
        HTTP_TIMEOUT,
        "http-timeout",
        Shape::Value,
        "Ceiling of one reply, from sending to its last byte",
        Some("60s"),
    ),
    setting(CLOUD_RUN_TASK_INDEX, "cloud-run-task-index", Shape::Platform, "Set by Cloud Run jobs", None),
    setting(CLOUD_RUN_TASK_COUNT, "cloud-run-task-count", Shape::Platform, "Set by Cloud Run jobs", None),
    setting(JOB_COMPLETION_INDEX, "job-completion-index", Shape::Platform, "Set by Kubernetes indexed jobs", None),
    // The destination's.
    setting(
        DEST,
        "dest",
        Shape::Value,
        "Destination: gs://bucket[/prefix], file:///dir or a directory (default gs://$GCS_BUCKET)",
        None,
    )
    .read_by(Scope::Store),
    setting(BUCKET, "bucket", Shape::Value, "GCS bucket (--dest wins)", None).read_by(Scope::Store),
    setting(
        STATE_DEST,
        "state-dest",
        Shape::Value,
        "Where checkpoints go, when not beside the logs (gs://…, file:///… or a directory): for a log bucket with a retention policy or a lock",
        None,
    )
    .read_by(Scope::Store)
    .refused_at_edge("the edge component keeps checkpoints beside the logs, under MULESOFT_AUDIT_STATE_PREFIX"),
    setting(
        GCS_ENDPOINT,
        "gcs-endpoint",
        Shape::Value,
        "Cloud Storage endpoint, with credentials (default https://storage.googleapis.com): Private Service Connect or VPC-SC; http:// only to loopback",
        None,
    )
    .read_by(Scope::Store),
    variable(GCS_TIMEOUT_SECS, "Ceiling of one Cloud Storage request, first byte to last, in seconds", Some("300"))
        .read_by(Scope::Store),
    variable(
        GCS_RESUMABLE_ABOVE,
        "New objects above this many compressed bytes go up in a resumable upload",
        Some("16777216"),
    )
    .read_by(Scope::Binary)
    .refused_at_edge(ONE_REQUEST),
    variable(GCS_CHUNK_KIB, "Resumable upload chunk, KiB (a multiple of 256, at most 1048576)", Some("8192"))
        .read_by(Scope::Binary)
        .refused_at_edge(ONE_REQUEST),
    variable(STORAGE_EMULATOR_HOST, "A Cloud Storage emulator, sent no credentials", None)
        .read_by(Scope::Binary)
        .refused_at_edge(
            "the edge store always sends a token; point MULESOFT_AUDIT_GCS_ENDPOINT at the emulator instead",
        ),
    variable(GOOGLE_APPLICATION_CREDENTIALS, "Google credentials file (Application Default Credentials)", None)
        .read_by(Scope::Binary)
        .refused_at_edge(
            "a component reads no files; tokens come from the metadata server or GOOGLE_OAUTH_ACCESS_TOKEN",
        ),
    variable(METADATA_HOST, "The metadata server, for Google tokens", Some("metadata.google.internal"))
        .read_by(Scope::Store),
    variable(OAUTH_ACCESS_TOKEN, "An access token for Cloud Storage, where no metadata server is reachable", None)
        .read_by(Scope::Edge),
    // The binary's.
    setting(MEMORY_MIB, "memory-mib", Shape::Value, "Memory limit of the component, MiB", Some("256"))
        .read_by(Scope::Binary)
        .refused_at_edge("the runtime's memory limit bounds a pass (wasmtime serve -W max-memory-size=...)"),
    setting(MAX_RUN_TIME, "max-run-time", Shape::Value, "Wall-clock limit of one pass", Some("55m"))
        .read_by(Scope::Binary)
        .refused_at_edge("the runtime's request time limit bounds a pass (wasmtime serve -W timeout=...)"),
    setting(
        LOG_FORMAT,
        "log-format",
        Shape::Value,
        "Log format on stderr: text, or json (Cloud Logging's shape)",
        Some("text"),
    )
    .read_by(Scope::Binary)
    .refused_at_edge(NO_LOG),
    variable(LOG, "Log filter (tracing's EnvFilter)", Some("info")).read_by(Scope::Binary).refused_at_edge(NO_LOG),
    setting(
        CACHE_DIR,
        "cache-dir",
        Shape::Value,
        "Directory for the compiled-code cache (default ~/.cache/mulesoft-audit)",
        None,
    )
    .read_by(Scope::Binary)
    .refused_at_edge("the runtime compiles and caches the component"),
    setting(PORT, "port", Shape::Value, "serve: port to listen on (Cloud Run sets PORT)", Some("8080"))
        .read_by(Scope::Binary),
    setting(LISTEN, "listen", Shape::Value, "serve: address to listen on", Some("0.0.0.0"))
        .read_by(Scope::Binary)
        .refused_at_edge("the runtime listens (wasmtime serve --addr)"),
    setting(
        SCHEDULE,
        "schedule",
        Shape::Value,
        "serve: also run a pass on this cron schedule (UTC; 5 fields, or 6 with leading seconds), e.g. \"*/15 * * * *\"; a pass still running makes the next occurrence skip",
        None,
    )
    .read_by(Scope::Binary)
    .refused_at_edge("the edge runs one pass a request; schedule the requests (Cloud Scheduler)"),
    setting(
        OIDC_AUDIENCE,
        "oidc-audience",
        Shape::Value,
        "serve: verify the push request's OIDC token for this audience (the push URL)",
        None,
    )
    .read_by(Scope::Binary)
    .refused_at_edge(NO_PUSH_CHECK),
    setting(
        OIDC_EMAIL,
        "oidc-email",
        Shape::Value,
        "serve: with --oidc-audience, the service account the push must come from",
        None,
    )
    .read_by(Scope::Binary)
    .refused_at_edge(NO_PUSH_CHECK),
    setting(
        OIDC_ANY_SENDER,
        "oidc-any-sender",
        Shape::Switch,
        "serve: with --oidc-audience and no --oidc-email, accept a token for that audience from any Google account (anyone can mint one)",
        None,
    )
    .read_by(Scope::Binary)
    .refused_at_edge(NO_PUSH_CHECK),
    setting(OIDC_JWKS_URL, "oidc-jwks-url", Shape::Platform, "serve: where Google's signing keys are", None)
        .read_by(Scope::Binary),
    variable(PERFMAP, "Profiling: name the compiled guest's functions for perf (/tmp/perf-<pid>.map)", None)
        .read_by(Scope::Binary),
    // The directory hosts'.
    variable(DIR, "WASI command and Node example: the directory they write to (/data, ./mulesoft-audit-data)", None)
        .read_by(Scope::Directory),
];
