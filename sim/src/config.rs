//! What a simulator serves and how it misbehaves. Faults and the rate limit can also be changed
//! while it runs (`Simulator::set_faults`, `Simulator::set_rate_limit`).

use std::time::Duration;

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
    /// The first N query requests answer 200 with a body of this many bytes, sent as fast as the
    /// client reads it and never held in memory here (a hostile or broken API).
    pub oversized_first: u32,
    pub oversized_bytes: u64,
    /// The first N query requests answer 200 with a small, valid page sent one byte a second.
    pub slow_body_first: u32,
    /// The token endpoint refuses every request with a 400 that echoes the request's body, as
    /// some gateways' error pages do.
    pub echo_token_request: bool,
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
