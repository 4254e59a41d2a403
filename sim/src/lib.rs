//! A local stand-in for the MuleSoft Anypoint control plane, faithful to what is known of it
//! (`shared/reference/anypoint-audit-api.md`): the client-credentials token endpoint (which, like
//! the real one, writes an audit entry per token), the audit query with offset and cursor paging,
//! inclusive bounds, epoch-ms and ISO 8601 dates, limit 1..200, oldest first by default, per-org
//! data, 403 for orgs the client may not read, the hierarchy and retention endpoints, and a
//! per-minute rate limit answering 503 until the minute ends.
//!
//! Faults are injected by configuration and are deterministic from the seed. The data set is
//! inspectable, so tests compare what was delivered with what exists, not with what the code did.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const DEMO_CLIENT_ID: &str = "demo-client";
pub const DEMO_CLIENT_SECRET: &str = "demo-secret-not-real";

/// One organization (business group).
#[derive(Debug, Clone)]
pub struct OrgSpec {
    pub id: String,
    pub parent: Option<String>,
    /// Entries spread over `[created - span, created]`.
    pub entries: usize,
    /// The client may not read this org's audit log (403).
    pub forbidden: bool,
    pub retention_days: u32,
}

impl OrgSpec {
    pub fn new(id: &str, entries: usize) -> Self {
        Self { id: id.to_string(), parent: None, entries, forbidden: false, retention_days: 365 }
    }
}

/// What can go wrong, and how often. Rates are per query request, in per-mille.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// 500/502/503 (one third each).
    pub server_error_permille: u32,
    /// Connection dropped after the headers, before any body byte.
    pub drop_permille: u32,
    /// Body cut off halfway (Content-Length promises the whole).
    pub truncate_permille: u32,
    /// The first N query requests answer 429 with `Retry-After: 1`.
    pub throttle_429_first: u32,
    /// ... with an HTTP-date `Retry-After` instead of seconds.
    pub retry_after_as_date: bool,
    /// The first token request answers this status (429 or 503), once.
    pub token_fail_once: Option<u16>,
    /// A reply to a query request that is not JSON (the first N).
    pub garbage_first: u32,
    /// A reply whose `data` is an object, not an array (the first N).
    pub wrong_shape_first: u32,
    /// The first N query requests are accepted and held for `hang_for` before they are answered
    /// as usual; by default that is `HUNG_REPLY`, so only the client's own timeout ends them.
    pub hang_first: u32,
    /// How long each of those is held: shorter than `HUNG_REPLY`, a slow but healthy reply.
    pub hang_for: Option<Duration>,
}

/// How long a hung query request is held by default: longer than any client waits.
pub const HUNG_REPLY: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub orgs: Vec<OrgSpec>,
    pub client_id: String,
    pub client_secret: String,
    /// Token lifetime (`expires_in`) in seconds.
    pub token_lifetime_secs: u64,
    /// Requests per minute before 503 (None: no limit).
    pub rate_limit_per_minute: Option<u32>,
    /// Latency added to every reply.
    pub latency: Duration,
    /// How the entries spread back from now.
    pub span: Duration,
    /// Per-mille of entries that are "late": invisible until `release_late` is called.
    pub late_permille: u32,
    /// Clusters of this many entries sharing one millisecond (0: none).
    pub same_ms_cluster: usize,
    /// Per-mille of odd entries: 40 KB+ payloads, unicode, escapes, no `id`, no `timestamp`.
    pub odd_permille: u32,
    /// Write a "Login - Token" audit entry to the first org for every token issued.
    pub token_audit_entries: bool,
    pub faults: Faults,
}

impl SimConfig {
    pub fn new(orgs: Vec<OrgSpec>) -> Self {
        Self {
            seed: 1,
            orgs,
            client_id: DEMO_CLIENT_ID.into(),
            client_secret: DEMO_CLIENT_SECRET.into(),
            token_lifetime_secs: 3600,
            rate_limit_per_minute: None,
            latency: Duration::ZERO,
            span: Duration::from_secs(20 * 3600),
            late_permille: 0,
            same_ms_cluster: 0,
            odd_permille: 0,
            token_audit_entries: true,
            faults: Faults::default(),
        }
    }

    /// The demo's data: one root org with two children, a realistic mix of entries.
    pub fn demo(entries: usize) -> Self {
        let root = "7f8e6c2a-0d1b-4c3e-9a5f-1b2c3d4e5f60";
        let mut orgs = vec![OrgSpec::new(root, entries)];
        for (i, child) in
            ["a1b2c3d4-0000-4000-8000-000000000001", "a1b2c3d4-0000-4000-8000-000000000002"].iter().enumerate()
        {
            let mut spec = OrgSpec::new(child, entries / (4 + i));
            spec.parent = Some(root.into());
            orgs.push(spec);
        }
        let mut c = Self::new(orgs);
        c.odd_permille = 20;
        c.same_ms_cluster = 250;
        c
    }
}

/// One stored entry: its exact bytes and what the query filters on.
#[derive(Debug, Clone)]
pub struct Entry {
    pub ts: i64,
    /// The id, or a synthetic sort key for entries without one.
    pub sort_id: String,
    pub has_id: bool,
    pub raw: String,
    pub late: bool,
}

/// Counters for tests and benchmarks.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Stats {
    pub requests: u64,
    pub query_requests: u64,
    pub tokens_issued: u64,
    pub throttled_503: u64,
    pub injected_faults: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub max_in_flight: u64,
}

struct Org {
    spec: OrgSpec,
    /// Sorted by (ts, sort_id).
    entries: Vec<Entry>,
}

struct Inner {
    config: SimConfig,
    orgs: HashMap<String, Org>,
    tokens: HashMap<String, i64>,
    late_released: bool,
    rng: fastrand::Rng,
    stats: Stats,
    minute: i64,
    in_minute: u32,
    token_failed: bool,
    throttled_429: u32,
    garbage_sent: u32,
    wrong_shape_sent: u32,
    hung: u32,
}

struct Shared {
    inner: Mutex<Inner>,
    in_flight: AtomicU64,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn hex_id(rng: &mut fastrand::Rng) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        rng.u32(..),
        rng.u16(..),
        rng.u16(..0x1000),
        rng.u16(..) | 0x8000,
        rng.u64(..1 << 48)
    )
}

const ACTIONS: &[(&str, &str)] = &[
    ("Create", "Application"),
    ("Update", "API"),
    ("Delete", "Environment"),
    ("Login", "User"),
    ("Modify", "Policy"),
    ("Deploy", "Application"),
];

fn make_entry(rng: &mut fastrand::Rng, org: &str, ts: i64, odd_permille: u32) -> Entry {
    let id = hex_id(rng);
    let (action, object_type) = ACTIONS[rng.usize(..ACTIONS.len())];
    let user = format!("user{}", rng.u32(..50));
    let odd = rng.u32(..1000) < odd_permille;
    let kind = if odd { rng.u32(..5) } else { 99 };
    let payload = match kind {
        0 => format!(r#"{{"note":"{}"}}"#, "x".repeat(40 * 1024 + rng.usize(..2048))),
        1 => r#"{"name":"Zoë 日本語 😀 \u00e9","tabs":"a\tb","quote":"say \"hi\"","slash":"a\/b","nl":"line1\nline2"}"#
            .to_string(),
        _ => format!(r#"{{"changes":[{{"field":"replicas","from":{},"to":{}}}]}}"#, rng.u8(..5), rng.u8(..5)),
    };
    let no_id = kind == 2;
    let no_ts = kind == 3;
    let mut fields = Vec::new();
    if !no_id {
        fields.push(format!(r#""id":"{id}""#));
    }
    if !no_ts {
        fields.push(format!(r#""timestamp":{ts}"#));
    }
    fields.push(format!(r#""action":"{action}","objectType":"{object_type}","objectId":"{}","objectName":"obj-{}","platform":"ANYPOINT","organizationId":"{org}","environmentId":"env-{}","userId":"{}","userName":"{user}","payload":{payload}"#, hex_id(rng), rng.u16(..), rng.u8(..3), hex_id(rng)));
    if kind == 4 {
        // Staff-written entry with nested detail.
        fields.push(r#""userName":"Anypoint Staff","detail":{"ip":"10.0.0.1","agent":"internal"}"#.to_string());
    }
    Entry { ts, sort_id: id, has_id: !no_id, raw: format!("{{{}}}", fields.join(",")), late: false }
}

impl Inner {
    fn build(config: SimConfig) -> Self {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let now = now_ms();
        let span = config.span.as_millis() as i64;
        let mut orgs = HashMap::new();
        for spec in &config.orgs {
            let mut entries = Vec::with_capacity(spec.entries);
            let mut i = 0;
            while i < spec.entries {
                let ts = now - span + rng.i64(0..span.max(1));
                let cluster = if config.same_ms_cluster > 0 && rng.u32(..100) == 0 {
                    config.same_ms_cluster.min(spec.entries - i)
                } else {
                    1
                };
                for _ in 0..cluster {
                    let mut e = make_entry(&mut rng, &spec.id, ts, config.odd_permille);
                    e.late = rng.u32(..1000) < config.late_permille;
                    entries.push(e);
                    i += 1;
                }
            }
            entries.sort_by(|a, b| (a.ts, &a.sort_id).cmp(&(b.ts, &b.sort_id)));
            orgs.insert(spec.id.clone(), Org { spec: spec.clone(), entries });
        }
        Self {
            rng,
            orgs,
            tokens: HashMap::new(),
            late_released: false,
            stats: Stats::default(),
            minute: 0,
            in_minute: 0,
            token_failed: false,
            throttled_429: 0,
            garbage_sent: 0,
            wrong_shape_sent: 0,
            hung: 0,
            config,
        }
    }

    /// The per-minute budget; true when this request is over it.
    fn over_limit(&mut self) -> bool {
        let Some(limit) = self.config.rate_limit_per_minute else {
            return false;
        };
        let minute = now_ms() / 60_000;
        if minute != self.minute {
            self.minute = minute;
            self.in_minute = 0;
        }
        self.in_minute += 1;
        self.in_minute > limit
    }

    fn visible(&self, e: &Entry) -> bool {
        !e.late || self.late_released
    }
}

/// A running simulator. Dropping it stops the server.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, format!(r#"{{"message":"{message}"}}"#))
}

impl Simulator {
    /// Starts on 127.0.0.1 (an ephemeral port) on a runtime of its own.
    pub fn spawn(config: SimConfig) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let mut sim = runtime.block_on(Self::start(config, "127.0.0.1:0".parse()?))?;
        sim._runtime = Some(runtime);
        Ok(sim)
    }

    /// Starts on the current tokio runtime.
    pub async fn start(config: SimConfig, addr: SocketAddr) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared { inner: Mutex::new(Inner::build(config)), in_flight: AtomicU64::new(0) });
        let router = Router::new()
            .route("/accounts/api/v2/oauth2/token", post(token))
            .route("/audit/v2/organizations/{org}/query", post(query))
            .route("/audit/v2/organizations/{org}/retentionSettings", get(retention))
            .route("/accounts/api/organizations/{org}/hierarchy", get(hierarchy))
            .route("/_sim/stats", get(stats))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self { addr, shared, _runtime: None, shutdown: Some(tx) })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn org_ids(&self) -> Vec<String> {
        self.lock().config.orgs.iter().map(|o| o.id.clone()).collect()
    }

    /// The raw bytes of every entry of `org` currently visible with `from <= ts <= to`, oldest
    /// first (entries without timestamp are filtered by the time they were created at).
    pub fn entries_in(&self, org: &str, from_ms: i64, to_ms: i64) -> Vec<String> {
        let inner = self.lock();
        inner.orgs.get(org).map_or_else(Vec::new, |o| {
            o.entries
                .iter()
                .filter(|e| e.ts >= from_ms && e.ts <= to_ms && inner.visible(e))
                .map(|e| e.raw.clone())
                .collect()
        })
    }

    /// Every entry ever stored for `org` (visible or not).
    pub fn all_entries(&self, org: &str) -> Vec<Entry> {
        self.lock().orgs.get(org).map_or_else(Vec::new, |o| o.entries.clone())
    }

    /// Makes late entries visible.
    pub fn release_late(&self) {
        self.lock().late_released = true;
    }

    /// Adds `count` new entries to `org` with timestamps in `[from_ms, to_ms]`.
    pub fn add_entries(&self, org: &str, count: usize, from_ms: i64, to_ms: i64) {
        let mut inner = self.lock();
        let odd = inner.config.odd_permille;
        let mut new = Vec::with_capacity(count);
        for _ in 0..count {
            let ts = inner.rng.i64(from_ms..=to_ms);
            new.push(make_entry(&mut inner.rng, org, ts, odd));
        }
        if let Some(o) = inner.orgs.get_mut(org) {
            o.entries.extend(new);
            o.entries.sort_by(|a, b| (a.ts, &a.sort_id).cmp(&(b.ts, &b.sort_id)));
        }
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// Changes the fault configuration while running.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().config.faults = faults;
    }

    pub fn set_rate_limit(&self, per_minute: Option<u32>) {
        self.lock().config.rate_limit_per_minute = per_minute;
    }
}

struct InFlight<'a>(&'a Shared);
impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.stats.max_in_flight = inner.stats.max_in_flight.max(now);
        Self(shared)
    }
}
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn count(inner: &mut Inner, status: u16) {
    *inner.stats.statuses.entry(status).or_default() += 1;
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let _guard = InFlight::enter(&shared);
    let latency = shared.inner.lock().map(|i| i.config.latency).unwrap_or_default();
    tokio::time::sleep(latency).await;
    let is_json =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("application/json"));
    let request: Option<TokenRequest> =
        if is_json { serde_json::from_slice(&body).ok() } else { serde_urlencoded_lite(&body) };
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    inner.stats.requests += 1;
    if inner.over_limit() {
        inner.stats.throttled_503 += 1;
        count(&mut inner, 503);
        return error(StatusCode::SERVICE_UNAVAILABLE, "rate limited");
    }
    if let Some(status) = inner.config.faults.token_fail_once
        && !inner.token_failed
    {
        inner.token_failed = true;
        inner.stats.injected_faults += 1;
        count(&mut inner, status);
        let reset = (now_ms() / 1000 + 1).to_string();
        let mut r = error(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), "try later");
        r.headers_mut().insert("x-ratelimit-limit", HeaderValue::from_static("100"));
        r.headers_mut().insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        if let Ok(v) = HeaderValue::from_str(&reset) {
            r.headers_mut().insert("x-ratelimit-reset", v);
        }
        return r;
    }
    let Some(req) = request else {
        count(&mut inner, 400);
        return error(StatusCode::BAD_REQUEST, "malformed token request");
    };
    if req.grant_type.as_deref() != Some("client_credentials") {
        count(&mut inner, 400);
        return error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    if req.client_id.as_deref() != Some(inner.config.client_id.as_str())
        || req.client_secret.as_deref() != Some(inner.config.client_secret.as_str())
    {
        count(&mut inner, 401);
        return json_response(StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#.into());
    }
    let token = hex_id(&mut inner.rng);
    let lifetime = inner.config.token_lifetime_secs;
    inner.tokens.insert(token.clone(), now_ms() + lifetime as i64 * 1000);
    inner.stats.tokens_issued += 1;
    if inner.config.token_audit_entries
        && let Some(root) = inner.config.orgs.first().map(|o| o.id.clone())
    {
        // As the real platform does: every token retrieval is itself audited.
        let ts = now_ms();
        let id = hex_id(&mut inner.rng);
        let raw = format!(
            r#"{{"id":"{id}","timestamp":{ts},"action":"Login","objectType":"Token","objectName":"Token Retrieval Success","platform":"ACCESS_MANAGEMENT","organizationId":"{root}","userName":"{}"}}"#,
            inner.config.client_id
        );
        if let Some(o) = inner.orgs.get_mut(&root) {
            o.entries.push(Entry { ts, sort_id: id, has_id: true, raw, late: false });
            o.entries.sort_by(|a, b| (a.ts, &a.sort_id).cmp(&(b.ts, &b.sort_id)));
        }
    }
    count(&mut inner, 200);
    json_response(
        StatusCode::OK,
        format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":{lifetime}}}"#),
    )
}

/// `a=b&c=d` with `+` and `%XX`: the few lines a form body needs.
fn serde_urlencoded_lite(body: &[u8]) -> Option<TokenRequest> {
    let text = std::str::from_utf8(body).ok()?;
    let mut map = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=')?;
        map.insert(decode(k)?, decode(v)?);
    }
    Some(TokenRequest {
        grant_type: map.remove("grant_type"),
        client_id: map.remove("client_id"),
        client_secret: map.remove("client_secret"),
    })
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| inner.tokens.get(t))
        .is_some_and(|exp| *exp > now_ms())
}

/// Epoch ms (number or numeric string) or ISO 8601.
fn parse_date(v: &serde_json::Value) -> Result<i64, String> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| "date is not an integer".to_string()),
        serde_json::Value::String(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_millis()))
            .ok_or_else(|| format!("malformed date `{s}`")),
        _ => Err("date must be epoch ms or ISO 8601".into()),
    }
}

#[derive(Deserialize)]
struct QueryParams {
    #[serde(rename = "cursorPagination", default)]
    cursor_pagination: Option<String>,
    #[serde(rename = "doIncludeTotal", default)]
    do_include_total: Option<String>,
}

async fn query(
    State(shared): State<Arc<Shared>>,
    Path(org): Path<String>,
    Query(params): Query<QueryParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _guard = InFlight::enter(&shared);
    let latency = shared.inner.lock().map(|i| i.config.latency).unwrap_or_default();
    tokio::time::sleep(latency).await;
    // Counted here, apart from the rest: a hung request must not hold the lock while it waits.
    let hang = {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.stats.requests += 1;
        inner.stats.query_requests += 1;
        let faults = &inner.config.faults;
        let hang = (inner.hung < faults.hang_first).then(|| faults.hang_for.unwrap_or(HUNG_REPLY));
        if hang.is_some() {
            inner.hung += 1;
            inner.stats.injected_faults += 1;
        }
        hang
    };
    if let Some(held) = hang {
        tokio::time::sleep(held).await;
    }
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    if inner.over_limit() {
        inner.stats.throttled_503 += 1;
        count(&mut inner, 503);
        return error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    }
    if !authorized(&inner, &headers) {
        count(&mut inner, 401);
        return error(StatusCode::UNAUTHORIZED, "invalid or expired token");
    }
    // Faults, decided by the seeded generator.
    let faults = inner.config.faults.clone();
    if inner.throttled_429 < faults.throttle_429_first {
        inner.throttled_429 += 1;
        inner.stats.injected_faults += 1;
        count(&mut inner, 429);
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        let value = if faults.retry_after_as_date {
            let at = chrono::Utc::now() + chrono::Duration::seconds(2);
            at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
        } else {
            "1".to_string()
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert("retry-after", v);
        }
        return r;
    }
    let roll = inner.rng.u32(..1000);
    if roll < faults.server_error_permille {
        inner.stats.injected_faults += 1;
        let status = [500u16, 502, 503][inner.rng.usize(..3)];
        count(&mut inner, status);
        return error(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "injected fault");
    }
    let drop_it = roll >= faults.server_error_permille && roll < faults.server_error_permille + faults.drop_permille;
    let truncate = !drop_it
        && roll >= faults.server_error_permille + faults.drop_permille
        && roll < faults.server_error_permille + faults.drop_permille + faults.truncate_permille;
    if inner.garbage_sent < faults.garbage_first {
        inner.garbage_sent += 1;
        inner.stats.injected_faults += 1;
        count(&mut inner, 200);
        return (StatusCode::OK, "<html>Gateway says hello</html>").into_response();
    }
    if inner.wrong_shape_sent < faults.wrong_shape_first {
        inner.wrong_shape_sent += 1;
        inner.stats.injected_faults += 1;
        count(&mut inner, 200);
        return json_response(StatusCode::OK, r#"{"data":{"id":"not-a-list"},"total":1}"#.into());
    }

    let Some(o) = inner.orgs.get(&org) else {
        count(&mut inner, 404);
        return error(StatusCode::NOT_FOUND, "organization not found");
    };
    if o.spec.forbidden {
        count(&mut inner, 403);
        return error(StatusCode::FORBIDDEN, "Forbidden");
    }
    let request: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            count(&mut inner, 400);
            return error(StatusCode::BAD_REQUEST, "body is not JSON");
        }
    };
    let Some(start) = request.get("startDate") else {
        count(&mut inner, 400);
        return error(StatusCode::BAD_REQUEST, "startDate is required");
    };
    let start = match parse_date(start) {
        Ok(v) => v,
        Err(m) => {
            count(&mut inner, 400);
            return error(StatusCode::BAD_REQUEST, &m);
        }
    };
    let end = match request.get("endDate").map(parse_date).transpose() {
        Ok(v) => v.unwrap_or(i64::MAX),
        Err(m) => {
            count(&mut inner, 400);
            return error(StatusCode::BAD_REQUEST, &m);
        }
    };
    let limit = request.get("limit").map_or(Some(20), serde_json::Value::as_u64).unwrap_or(0);
    if !(1..=200).contains(&limit) {
        count(&mut inner, 400);
        return error(StatusCode::BAD_REQUEST, "limit must be between 1 and 200");
    }
    let ascending = request.get("ascending").and_then(serde_json::Value::as_bool).unwrap_or(true);
    let use_cursor = params.cursor_pagination.as_deref() == Some("true");
    let o = inner.orgs.get(&org);
    let mut matching: Vec<&Entry> = o
        .map(|o| o.entries.iter().filter(|e| e.ts >= start && e.ts <= end && inner.visible(e)).collect())
        .unwrap_or_default();
    if !ascending {
        matching.reverse();
    }
    let (page, next_cursor, total): (Vec<&Entry>, Option<String>, usize) = if use_cursor {
        // A keyset cursor: the (timestamp, id) of the last entry served.
        let after = request.get("cursor").and_then(serde_json::Value::as_str).and_then(|c| {
            let (ts, id) = c.split_once(':')?;
            Some((ts.parse::<i64>().ok()?, id.to_string()))
        });
        let rest: Vec<&Entry> = match &after {
            None => matching.clone(),
            Some((ts, id)) => matching
                .iter()
                .copied()
                .filter(|e| if ascending { (e.ts, &e.sort_id) > (*ts, id) } else { (e.ts, &e.sort_id) < (*ts, id) })
                .collect(),
        };
        let page: Vec<&Entry> = rest.into_iter().take(limit as usize).collect();
        let cursor = page.last().map(|e| format!("{}:{}", e.ts, e.sort_id));
        (page, cursor, matching.len())
    } else {
        let offset = request.get("offset").and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
        let page: Vec<&Entry> = matching.iter().skip(offset).take(limit as usize).copied().collect();
        (page, None, matching.len())
    };
    let mut body = String::with_capacity(page.iter().map(|e| e.raw.len() + 1).sum::<usize>() + 64);
    body.push_str(r#"{"data":["#);
    for (i, e) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.raw);
    }
    body.push(']');
    if use_cursor && params.do_include_total.as_deref() == Some("true") {
        body.push_str(&format!(r#","total":{total}"#));
    }
    match next_cursor {
        Some(c) => body.push_str(&format!(r#","cursor":"{c}"}}"#)),
        None if use_cursor => body.push('}'),
        None => body.push_str(&format!(r#","total":{total}}}"#)),
    }
    if drop_it || truncate {
        inner.stats.injected_faults += 1;
        count(&mut inner, 200);
        let cut = if drop_it { 0 } else { body.len() / 2 };
        let full_len = body.len();
        let first = Bytes::from(body.into_bytes()).slice(..cut);
        let stream = futures_lite_stream(first);
        let mut r = Response::new(Body::from_stream(stream));
        r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(&full_len.to_string()) {
            r.headers_mut().insert("content-length", v);
        }
        return r;
    }
    count(&mut inner, 200);
    json_response(StatusCode::OK, body)
}

/// A body that yields `first` and then fails, so the connection is cut mid-reply.
fn futures_lite_stream(first: Bytes) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    struct Cut(Option<Bytes>, bool);
    impl futures_core::Stream for Cut {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if let Some(b) = self.0.take()
                && !b.is_empty()
            {
                return std::task::Poll::Ready(Some(Ok(b)));
            }
            if !self.1 {
                self.1 = true;
                return std::task::Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected drop",
                ))));
            }
            std::task::Poll::Ready(None)
        }
    }
    Cut(Some(first), false)
}

async fn retention(State(shared): State<Arc<Shared>>, Path(org): Path<String>, headers: HeaderMap) -> Response {
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    inner.stats.requests += 1;
    if !authorized(&inner, &headers) {
        count(&mut inner, 401);
        return error(StatusCode::UNAUTHORIZED, "invalid or expired token");
    }
    let Some(o) = inner.orgs.get(&org) else {
        return error(StatusCode::NOT_FOUND, "organization not found");
    };
    if o.spec.forbidden {
        count(&mut inner, 403);
        return error(StatusCode::FORBIDDEN, "Forbidden");
    }
    let days = o.spec.retention_days;
    count(&mut inner, 200);
    json_response(
        StatusCode::OK,
        format!(r#"{{"data":[{{"retentionPeriod":{days},"effectiveFrom":"2023-07-10T00:00:00.000Z"}}]}}"#),
    )
}

fn hierarchy_node(inner: &Inner, id: &str, seen: &mut HashSet<String>) -> serde_json::Value {
    seen.insert(id.to_string());
    let children: Vec<&OrgSpec> =
        inner.config.orgs.iter().filter(|o| o.parent.as_deref() == Some(id) && !seen.contains(&o.id)).collect();
    let subs: Vec<serde_json::Value> = children.iter().map(|c| hierarchy_node(inner, &c.id, seen)).collect();
    serde_json::json!({
        "id": id,
        "name": format!("Business group {id}"),
        "subOrganizationIds": children.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        "subOrganizations": subs,
    })
}

async fn hierarchy(State(shared): State<Arc<Shared>>, Path(org): Path<String>, headers: HeaderMap) -> Response {
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    inner.stats.requests += 1;
    if !authorized(&inner, &headers) {
        count(&mut inner, 401);
        return error(StatusCode::UNAUTHORIZED, "invalid or expired token");
    }
    if !inner.orgs.contains_key(&org) {
        return error(StatusCode::NOT_FOUND, "organization not found");
    }
    let tree = hierarchy_node(&inner, &org, &mut HashSet::new());
    count(&mut inner, 200);
    json_response(StatusCode::OK, tree.to_string())
}

/// The counters as JSON, for a benchmark that runs the simulator as a separate process.
async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.inner.lock().unwrap_or_else(|p| p.into_inner()).stats.clone();
    json_response(StatusCode::OK, serde_json::to_string(&stats).unwrap_or_default())
}
