//! The Anypoint API client: token cache, pacing, and the retry loop every request goes through.

use crate::pacer::Pacer;
use crate::platform::{Method, Platform, Request, Response, TransportError, check_token, token_lifetime_ms};
use crate::retry::{self, StatusClass};
use crate::settings::{ErrorKind, Failure, Settings, form_encode};
use serde::Deserialize;

/// Counters for the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub requests: u32,
    pub retries: u32,
    pub throttled_waits: u32,
    pub bytes_in: u64,
    /// Replies by status class: 2xx, 4xx (and any other non-5xx), 5xx; and requests that got
    /// no reply (network faults, timeouts).
    pub replies_2xx: u32,
    pub replies_4xx: u32,
    pub replies_5xx: u32,
    pub no_reply: u32,
}

struct Token {
    value: String,
    /// Refresh at or after this time (ms).
    refresh_at_ms: i64,
}

/// Replies larger than this are refused (the platform stops reading there): a page of 200
/// entries is far smaller, and an unbounded reply would exhaust the component's memory.
const MAX_REPLY_BYTES: usize = 48 << 20;
/// A token reply's limit: large enough that an oversized token is named as such
/// ([`check_token`]).
const MAX_TOKEN_REPLY_BYTES: usize = 1 << 20;

/// How many throttling waits one request may sit through before the org fails.
const MAX_THROTTLE_WAITS: u32 = 10;

pub struct Client<'a, P: Platform> {
    pub platform: &'a mut P,
    settings: &'a Settings,
    pacer: Pacer,
    token: Option<Token>,
    pub stats: Stats,
    /// The slowest reply time of the last batch (ms): how long a request is in flight.
    latency_ms: i64,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl<'a, P: Platform> Client<'a, P> {
    pub fn new(platform: &'a mut P, settings: &'a Settings) -> Self {
        Self {
            platform,
            settings,
            pacer: Pacer::new(settings.requests_per_minute),
            token: None,
            stats: Stats::default(),
            latency_ms: 0,
        }
    }

    /// A valid bearer token, fetched at most once per run unless it expires.
    fn bearer(&mut self) -> Result<String, Failure> {
        let now = self.platform.now_ms();
        if let Some(t) = &self.token
            && now < t.refresh_at_ms
        {
            return Ok(t.value.clone());
        }
        let body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            form_encode(&self.settings.client_id),
            form_encode(&self.settings.client_secret)
        );
        let request = Request {
            method: Method::Post,
            path: "/accounts/api/v2/oauth2/token".into(),
            headers: vec![
                ("content-type".into(), "application/x-www-form-urlencoded".into()),
                ("accept".into(), "application/json".into()),
            ],
            body: body.into_bytes(),
            reply_limit: MAX_TOKEN_REPLY_BYTES,
        };
        let reply = self
            .exchange(&[request], &["token request".to_string()], false, |body| {
                // No parser detail: it may quote what the reply echoed, the secret among it.
                serde_json::from_slice::<TokenReply>(body)
                    .map_err(|_| "token reply is not the expected JSON".to_string())
            })
            .pop()
            .unwrap_or_else(|| Err(Failure::new(ErrorKind::Api, "no token reply")))?;
        check_token(&reply.access_token).map_err(|why| {
            Failure::new(ErrorKind::Api, format!("the token endpoint at {} {why}", self.settings.base.url("")))
        })?;
        let lifetime_ms = token_lifetime_ms(reply.expires_in);
        // Refresh a minute early, or at 90% of a short lifetime.
        let margin = (lifetime_ms / 10).min(60_000);
        let now = self.platform.now_ms();
        self.token = Some(Token { value: reply.access_token.clone(), refresh_at_ms: now + lifetime_ms - margin });
        Ok(reply.access_token)
    }

    /// Requests worth keeping in flight (at most `limit`): enough to cover the time a reply takes
    /// at the paced rate, plus one. With 250 ms replies, 700/min needs 4; 40/min needs 1.
    pub fn useful_concurrency(&self, limit: u32) -> u32 {
        let interval = self.pacer.interval_ms().max(1);
        let needed = if self.latency_ms <= interval { 1 } else { (self.latency_ms + interval - 1) / interval + 1 };
        u32::try_from(needed).unwrap_or(u32::MAX).clamp(1, limit.max(1))
    }

    /// Sends one authenticated request and parses the reply.
    pub fn call<T>(
        &mut self,
        method: Method,
        path: String,
        body: Vec<u8>,
        what: &str,
        parse: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, Failure> {
        self.call_many(method, vec![(path, body)], &[what.to_string()], parse)
            .pop()
            .unwrap_or_else(|| Err(Failure::new(ErrorKind::Api, format!("{what}: no reply"))))
    }

    /// Sends authenticated requests concurrently (paced, each retried as the policy says) and
    /// parses the replies; one result per request, in order.
    pub fn call_many<T>(
        &mut self,
        method: Method,
        requests: Vec<(String, Vec<u8>)>,
        whats: &[String],
        parse: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Vec<Result<T, Failure>> {
        let mut headers = vec![("accept".to_string(), "application/json".to_string())];
        if method == Method::Post {
            headers.push(("content-type".into(), "application/json".into()));
        }
        let requests: Vec<Request> = requests
            .into_iter()
            .map(|(path, body)| Request { method, path, headers: headers.clone(), body, reply_limit: MAX_REPLY_BYTES })
            .collect();
        self.exchange(&requests, whats, true, parse)
    }

    /// The retry loop, for several requests at once. `authenticated`: a bearer token is added and a
    /// 401 gets one fresh token; otherwise (the token request itself) a 401 means bad credentials.
    fn exchange<T>(
        &mut self,
        requests: &[Request],
        whats: &[String],
        authenticated: bool,
        parse: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Vec<Result<T, Failure>> {
        #[derive(Default, Clone)]
        struct Progress {
            attempts: u32,
            throttles: u32,
            refreshed: bool,
            /// The last attempt's reply arrived whole but could not be read.
            unreadable: bool,
        }
        let n = requests.len();
        let mut results: Vec<Option<Result<T, Failure>>> = (0..n).map(|_| None).collect();
        let mut progress = vec![Progress::default(); n];
        loop {
            let open: Vec<usize> = (0..n).filter(|&i| results[i].is_none()).collect();
            if open.is_empty() {
                break;
            }
            let mut batch: Vec<Request> = open.iter().map(|&i| requests[i].clone()).collect();
            if authenticated {
                match self.bearer() {
                    Ok(token) => {
                        for r in &mut batch {
                            r.headers.push(("authorization".into(), format!("Bearer {token}")));
                        }
                    }
                    Err(f) => {
                        for &i in &open {
                            results[i] = Some(Err(f.clone()));
                        }
                        break;
                    }
                }
            }
            // Each request takes a slot of the per-minute budget; the batch leaves at the first.
            let now = self.platform.now_ms();
            let wait = batch.iter().map(|_| self.pacer.reserve(now)).min().unwrap_or(0);
            if wait > 0 {
                self.platform.sleep_ms(wait);
            }
            self.stats.requests += batch.len() as u32;
            let sent_at = self.platform.now_ms();
            let outcomes = self.platform.send_many(&self.settings.base, &batch);
            self.latency_ms = self.platform.now_ms() - sent_at;
            let mut backoff = 0u64;
            for (&i, outcome) in open.iter().zip(outcomes) {
                let url = self.settings.base.url(&requests[i].path);
                let what = whats.get(i).map_or("request", String::as_str);
                let p = &mut progress[i];
                let now = self.platform.now_ms();
                let problem = match judge(outcome, what, &url, authenticated, &parse, now, &mut self.stats) {
                    Verdict::Done(value) => {
                        results[i] = Some(Ok(value));
                        continue;
                    }
                    Verdict::Fail(f) => {
                        results[i] = Some(Err(f));
                        continue;
                    }
                    Verdict::Unauthorized(f) => {
                        if authenticated && !p.refreshed {
                            // The token may have been revoked or expired early: one fresh token.
                            p.refreshed = true;
                            self.token = None;
                        } else {
                            results[i] = Some(Err(f));
                        }
                        continue;
                    }
                    Verdict::Throttled { wait_ms, status } => {
                        p.throttles += 1;
                        self.stats.throttled_waits += 1;
                        if p.throttles > MAX_THROTTLE_WAITS {
                            results[i] = Some(Err(Failure::new(
                                ErrorKind::Unavailable,
                                format!(
                                    "{what} to {url} was still throttled ({status}) after {MAX_THROTTLE_WAITS} waits; lower the request rate or try later"
                                ),
                            )));
                        } else {
                            // Throttling is not a fault of the request: it uses up no attempt, but the
                            // whole budget waits, not only this request.
                            let jitter = retry::throttle_jitter_ms(self.platform.random());
                            self.pacer.hold_until(self.platform.now_ms() + (wait_ms + jitter) as i64);
                            self.stats.retries += 1;
                        }
                        continue;
                    }
                    Verdict::Retry { problem, unreadable } => {
                        p.unreadable = unreadable;
                        problem
                    }
                };
                p.attempts += 1;
                if p.attempts >= self.settings.max_attempts && p.unreadable {
                    // Whole replies that never parse are the API's fault, which waiting will not
                    // mend: a person must look.
                    results[i] = Some(Err(Failure::new(
                        ErrorKind::Api,
                        format!(
                            "{what} to {url} was answered {} times with a reply that cannot be read, last: {problem}; nothing past the last object is marked done; report it to MuleSoft with the time",
                            p.attempts
                        ),
                    )));
                } else if p.attempts >= self.settings.max_attempts {
                    results[i] = Some(Err(Failure::new(
                        ErrorKind::Unavailable,
                        format!(
                            "{what} to {url} failed {} times, last with {problem}; the next pass retries",
                            p.attempts
                        ),
                    )));
                } else {
                    self.stats.retries += 1;
                    backoff = backoff.max(retry::backoff_ms(p.attempts, self.platform.random()));
                }
            }
            if backoff > 0 {
                self.platform.sleep_ms(backoff);
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(Failure::new(ErrorKind::Api, "no result")))).collect()
    }
}

/// What one reply (or transport failure) means for its request.
enum Verdict<T> {
    Done(T),
    Fail(Failure),
    Unauthorized(Failure),
    Throttled {
        wait_ms: u64,
        status: u16,
    },
    /// Worth another attempt; `unreadable`: the reply came whole but does not parse (a proxy's
    /// page may pass, an API that always answers so will not).
    Retry {
        problem: String,
        unreadable: bool,
    },
}

/// Applies the retry policy to one outcome.
fn judge<T>(
    outcome: Result<Response, TransportError>,
    what: &str,
    url: &str,
    authenticated: bool,
    parse: &impl Fn(&[u8]) -> Result<T, String>,
    now_ms: i64,
    stats: &mut Stats,
) -> Verdict<T> {
    let response = match outcome {
        Err(TransportError::Denied(reason)) => {
            return Verdict::Fail(Failure::new(
                ErrorKind::Denied,
                format!(
                    "{what} to {url} was refused by the host ({reason}): the destination is not allowed; check the base URL / region setting"
                ),
            ));
        }
        Err(TransportError::TooLarge(reason)) => {
            return Verdict::Fail(Failure::new(
                ErrorKind::Api,
                format!(
                    "{what} to {url}: {reason}; report it to MuleSoft (for a page of entries, a lower page size may help)"
                ),
            ));
        }
        Err(TransportError::Network(reason)) => {
            stats.no_reply += 1;
            return Verdict::Retry { problem: format!("network error: {reason}"), unreadable: false };
        }
        Ok(response) => response,
    };
    stats.bytes_in += response.body.len() as u64;
    match response.status {
        200..=299 => stats.replies_2xx += 1,
        500..=599 => stats.replies_5xx += 1,
        _ => stats.replies_4xx += 1,
    }
    match retry::classify(response.status) {
        StatusClass::Success if response.body.len() > MAX_REPLY_BYTES => Verdict::Fail(Failure::new(
            ErrorKind::Api,
            format!(
                "{what} to {url}: reply of {} bytes exceeds the {MAX_REPLY_BYTES}-byte limit; lower the page size",
                response.body.len()
            ),
        )),
        // A truncated or garbled body is retried like a dropped connection.
        StatusClass::Success => match parse(&response.body) {
            Ok(value) => Verdict::Done(value),
            // Cut short is the connection's doing (a proxy closing it early), not the API's.
            Err(problem) => {
                let unreadable = !problem.starts_with(crate::entry::TRUNCATED);
                Verdict::Retry { problem, unreadable }
            }
        },
        StatusClass::Unauthorized if authenticated => Verdict::Unauthorized(Failure::new(
            ErrorKind::Unauthorized,
            format!("{what} to {url} answered 401 with a fresh token: the connected app lost access; check its scopes"),
        )),
        StatusClass::Unauthorized => Verdict::Fail(Failure::new(
            ErrorKind::Unauthorized,
            format!(
                "{what} to {url} answered 401: the client id or secret is wrong, or the connected app is disabled; check CLIENT_ID / CLIENT_SECRET"
            ),
        )),
        StatusClass::Forbidden => Verdict::Fail(Failure::new(
            ErrorKind::Forbidden,
            format!(
                "{what} to {url} answered 403: the connected app may not read this organization; grant it the Audit Log Viewer scope on this business group"
            ),
        )),
        StatusClass::Rejected => {
            let kind = if !authenticated && response.status == 400 { ErrorKind::Unauthorized } else { ErrorKind::Api };
            // A token endpoint's error body may echo the request, secret and all: only its OAuth
            // error code is shown.
            let detail = if authenticated { excerpt(&response.body) } else { oauth_error(&response.body) };
            Verdict::Fail(Failure::new(kind, format!("{what} to {url} answered {}: {detail}", response.status)))
        }
        StatusClass::Throttled => {
            Verdict::Throttled { wait_ms: throttle_wait(&response, now_ms), status: response.status }
        }
        StatusClass::Transient => Verdict::Retry { problem: format!("status {}", response.status), unreadable: false },
    }
}

/// How long a throttled request waits: `Retry-After` (seconds or date), else `X-RateLimit-Reset`,
/// else the next minute boundary (the query limit's 503 lasts until the minute ends).
fn throttle_wait(response: &Response, now_ms: i64) -> u64 {
    response
        .header("retry-after")
        .and_then(|v| retry::retry_after_ms(v, now_ms))
        .or_else(|| response.header("x-ratelimit-reset").and_then(|v| retry::reset_at_ms(v, now_ms)))
        .unwrap_or_else(|| retry::until_next_minute_ms(now_ms))
        .min(retry::MAX_THROTTLE_WAIT_MS)
}

/// The OAuth error code of a token endpoint's error reply (`invalid_client`), and nothing else
/// of it.
fn oauth_error(body: &[u8]) -> String {
    let code =
        serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v["error"].as_str().map(str::to_string));
    match code {
        Some(code) if (1..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => {
            format!("error `{code}` (the rest of the reply is not shown: it may echo the request)")
        }
        _ => "(the reply is not shown: it may echo the request)".into(),
    }
}

/// The start of an error body, printable, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    if one_line.trim().is_empty() { "(empty body)".into() } else { one_line }
}

// The API's metadata calls: business groups and retention.

#[derive(Deserialize)]
struct OrgNode {
    id: String,
    #[serde(default, rename = "subOrganizations")]
    sub_organizations: Vec<OrgNode>,
}

/// The configured organizations, or with `discover_children` every group under them.
pub fn organizations<P: Platform>(client: &mut Client<'_, P>, settings: &Settings) -> Result<Vec<String>, Failure> {
    if settings.discover_children { discover(client, &settings.org_ids) } else { Ok(settings.org_ids.clone()) }
}

fn discover<P: Platform>(client: &mut Client<'_, P>, roots: &[String]) -> Result<Vec<String>, Failure> {
    let mut ids = Vec::new();
    // Seen ids in a set: a hierarchy of 100,000 groups is read in linear time, not quadratic.
    let mut seen = std::collections::HashSet::new();
    for root in roots {
        let tree: OrgNode = client.call(
            Method::Get,
            format!("/accounts/api/organizations/{root}/hierarchy"),
            Vec::new(),
            &format!("hierarchy request for organization {root}"),
            |b| serde_json::from_slice(b).map_err(|e| format!("hierarchy reply has the wrong shape ({e})")),
        )?;
        let mut stack = vec![tree];
        while let Some(node) = stack.pop() {
            if !crate::settings::valid_org_id(&node.id) {
                return Err(Failure::new(ErrorKind::Api, format!("hierarchy of {root} lists a malformed id")));
            }
            if seen.insert(node.id.to_ascii_lowercase()) {
                ids.push(node.id);
            }
            stack.extend(node.sub_organizations.into_iter().rev());
        }
    }
    Ok(ids)
}

/// A retention reply, read leniently: a period as a number or numeric text; anything else,
/// `null` or missing is "not said".
#[derive(Deserialize)]
struct Retention {
    #[serde(default)]
    data: Option<Vec<serde_json::Value>>,
}

impl Retention {
    fn days(&self) -> Option<u32> {
        let period = &self.data.as_ref()?.first()?["retentionPeriod"];
        let days = period.as_u64().or_else(|| period.as_str()?.trim().parse().ok())?;
        u32::try_from(days).ok().filter(|days| *days > 0)
    }
}

/// How long the API keeps `org`'s entries, in days: `None` where it does not say (no item, a
/// period of 0, or no permission to read it). A period of 0 is read as "not said", never as
/// "nothing is kept": taken literally it would fix a first checkpoint at now and discard a
/// requested backfill for good.
pub fn retention_days<P: Platform>(client: &mut Client<'_, P>, org: &str) -> Result<Option<u32>, Failure> {
    match client.call(
        Method::Get,
        format!("/audit/v2/organizations/{org}/retentionSettings"),
        Vec::new(),
        &format!("retention request for organization {org}"),
        |b| serde_json::from_slice::<Retention>(b).map_err(|e| format!("retention reply has the wrong shape ({e})")),
    ) {
        Ok(r) => Ok(r.days()),
        Err(f) if f.kind == ErrorKind::Forbidden => Ok(None),
        Err(f) => Err(f),
    }
}

/// The oldest time `days` of retention keep at `now_ms`.
pub fn retention_floor(days: u32, now_ms: i64) -> i64 {
    now_ms.saturating_sub(i64::from(days).saturating_mul(86_400_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetimes_saturate() {
        assert_eq!(token_lifetime_ms(None), 3_600_000);
        assert_eq!(token_lifetime_ms(Some(60)), 60_000);
        assert_eq!(token_lifetime_ms(Some(u64::MAX)), 86_400_000);
    }

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(form_encode("AZaz09-_.~"), "AZaz09-_.~");
    }

    /// The API as a script: each query gets the next reply; token requests always succeed with a
    /// fresh token. The clock moves only when the client sleeps.
    struct Scripted {
        now_ms: i64,
        replies: std::collections::VecDeque<Result<Response, TransportError>>,
        tokens: u32,
        slept_ms: u64,
    }

    impl Scripted {
        fn new(replies: impl IntoIterator<Item = Result<Response, TransportError>>) -> Self {
            Self { now_ms: 1_767_225_600_123, replies: replies.into_iter().collect(), tokens: 0, slept_ms: 0 }
        }
    }

    fn status(status: u16, headers: &[(&str, &str)]) -> Result<Response, TransportError> {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Ok(Response { status, headers, body: br#"{"ok":true}"#.to_vec() })
    }

    impl Platform for Scripted {
        fn send_many(
            &mut self,
            _base: &crate::settings::BaseUrl,
            requests: &[Request],
        ) -> Vec<Result<Response, TransportError>> {
            requests
                .iter()
                .map(|r| {
                    if r.path.ends_with("/oauth2/token") {
                        self.tokens += 1;
                        let body = format!(r#"{{"access_token":"t{}","expires_in":3600}}"#, self.tokens);
                        return Ok(Response { status: 200, headers: Vec::new(), body: body.into_bytes() });
                    }
                    self.replies.pop_front().unwrap_or_else(|| status(200, &[]))
                })
                .collect()
        }
        fn now_ms(&self) -> i64 {
            self.now_ms
        }
        fn sleep_ms(&mut self, ms: u64) {
            self.slept_ms += ms;
            self.now_ms += ms as i64;
        }
        fn random(&mut self) -> u64 {
            0
        }
    }

    fn settings(max_attempts: u32) -> Settings {
        let mut raw = crate::settings::tests::raw();
        raw.requests_per_minute = Some(1_000_000);
        raw.max_attempts = max_attempts;
        Settings::from_raw(raw).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One request through the retry loop: its outcome, the client's counters, the script.
    fn exchange_once(max_attempts: u32, script: Scripted) -> (Result<(), Failure>, Stats, Scripted) {
        let settings = settings(max_attempts);
        let mut script = script;
        let mut client = Client::new(&mut script, &settings);
        let outcome = client.call(Method::Get, "/audit/x".into(), Vec::new(), "test request", |_| Ok(()));
        let stats = client.stats;
        (outcome, stats, script)
    }

    #[test]
    fn throttling_waits_as_told_and_uses_up_no_attempt() {
        let (outcome, stats, script) =
            exchange_once(1, Scripted::new([status(429, &[("retry-after", "3")]), status(503, &[])]));
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(stats.throttled_waits, 2);
        // Three seconds, then the rest of the minute the 503 falls in (its budget's reset).
        assert!(script.slept_ms >= 3_000 + 56_000, "{} ms", script.slept_ms);
        let (outcome, _, _) =
            exchange_once(1, Scripted::new((0..=MAX_THROTTLE_WAITS).map(|_| status(429, &[("retry-after", "1")]))));
        let failure = outcome.err().unwrap_or_else(|| panic!("still throttled"));
        assert_eq!(failure.kind, ErrorKind::Unavailable, "{}", failure.message);
        assert!(failure.message.contains("still throttled"), "{}", failure.message);
    }

    #[test]
    fn server_errors_back_off_and_are_retried_until_the_attempts_run_out() {
        let (outcome, stats, script) = exchange_once(3, Scripted::new([status(500, &[]), status(502, &[])]));
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!((stats.retries, stats.replies_5xx), (2, 2));
        assert!(script.slept_ms > 0, "backed off");
        let dropped = Err(TransportError::Network("connection reset".into()));
        let (outcome, stats, _) = exchange_once(
            3,
            Scripted::new([status(503, &[("retry-after", "1")]), dropped.clone(), dropped.clone(), dropped]),
        );
        let failure = outcome.err().unwrap_or_else(|| panic!("attempts ran out"));
        assert_eq!(failure.kind, ErrorKind::Unavailable);
        assert!(
            failure.message.contains("failed 3 times") && failure.message.contains("connection reset"),
            "{}",
            failure.message
        );
        assert_eq!(stats.no_reply, 3);
    }

    #[test]
    fn a_401_gets_one_fresh_token_and_a_second_fails_the_request() {
        let (outcome, _, script) = exchange_once(3, Scripted::new([status(401, &[])]));
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(script.tokens, 2, "one fresh token");
        let (outcome, _, script) = exchange_once(3, Scripted::new([status(401, &[]), status(401, &[])]));
        let failure = outcome.err().unwrap_or_else(|| panic!("refused"));
        assert_eq!(failure.kind, ErrorKind::Unauthorized, "{}", failure.message);
        assert_eq!(script.tokens, 2, "not a third");
    }

    #[test]
    fn a_refusal_is_final_at_once() {
        for (code, kind) in [(403, ErrorKind::Forbidden), (404, ErrorKind::Api), (400, ErrorKind::Api)] {
            let (outcome, stats, _) = exchange_once(5, Scripted::new([status(code, &[])]));
            assert_eq!(outcome.err().map(|f| f.kind), Some(kind), "{code}");
            assert_eq!(stats.retries, 0, "{code}: not retried");
        }
    }
}
