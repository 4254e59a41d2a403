//! The Anypoint API client: token cache, pacing, and the retry loop every request goes through.

use crate::pacer::Pacer;
use crate::platform::{Method, Platform, Request, TransportError};
use crate::retry::{self, StatusClass};
use crate::settings::{ErrorKind, Failure, Settings};
use serde::Deserialize;

/// Counters for the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub requests: u32,
    pub retries: u32,
    pub throttled_waits: u32,
    pub bytes_in: u64,
}

struct Token {
    value: String,
    /// Refresh at or after this time (ms).
    refresh_at_ms: i64,
}

/// Replies larger than this are refused: a page of 200 entries is far smaller, and an unbounded
/// reply would exhaust the component's memory.
const MAX_REPLY_BYTES: usize = 48 << 20;

/// How many throttling waits one request may sit through before the org fails.
const MAX_THROTTLE_WAITS: u32 = 10;

pub struct Client<'a, P: Platform> {
    pub platform: &'a mut P,
    settings: &'a Settings,
    pacer: Pacer,
    token: Option<Token>,
    pub stats: Stats,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
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

impl<'a, P: Platform> Client<'a, P> {
    pub fn new(platform: &'a mut P, settings: &'a Settings) -> Self {
        Self {
            platform,
            settings,
            pacer: Pacer::new(settings.requests_per_minute),
            token: None,
            stats: Stats::default(),
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
        };
        let reply: TokenReply = self.send_parsed(&request, "token request", None, |body| {
            serde_json::from_slice::<TokenReply>(body)
                .map_err(|e| format!("token reply is not the expected JSON ({e})"))
        })?;
        let lifetime_ms = reply.expires_in.unwrap_or(3600).saturating_mul(1000) as i64;
        // Refresh a minute early, or at 90% of a short lifetime.
        let margin = (lifetime_ms / 10).min(60_000);
        let now = self.platform.now_ms();
        self.token = Some(Token { value: reply.access_token.clone(), refresh_at_ms: now + lifetime_ms - margin });
        Ok(reply.access_token)
    }

    /// Sends an authenticated request and parses the reply; a 401 gets one fresh token.
    pub fn call<T>(
        &mut self,
        method: Method,
        path: String,
        body: Vec<u8>,
        what: &str,
        parse: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, Failure> {
        let mut refreshed = false;
        loop {
            let token = self.bearer()?;
            let mut headers = vec![
                ("authorization".to_string(), format!("Bearer {token}")),
                ("accept".into(), "application/json".into()),
            ];
            if method == Method::Post {
                headers.push(("content-type".into(), "application/json".into()));
            }
            let request = Request { method, path: path.clone(), headers, body: body.clone() };
            match self.send_parsed(&request, what, Some(refreshed), &parse) {
                Err(f) if f.kind == ErrorKind::Unauthorized && !refreshed && self.token.is_some() => {
                    self.token = None;
                    refreshed = true;
                }
                other => return other,
            }
        }
    }

    /// The retry loop. `auth_retry`: `None` for the token request itself (a 401 there means bad
    /// credentials); `Some(_)` for API calls (a 401 there means the token needs refreshing).
    fn send_parsed<T>(
        &mut self,
        request: &Request,
        what: &str,
        auth_retry: Option<bool>,
        parse: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, Failure> {
        let max = self.settings.max_attempts;
        let mut attempt = 0u32;
        let mut throttles = 0u32;
        let url = self.settings.base.url(&request.path);
        let mut last_problem;
        loop {
            let wait = self.pacer.reserve(self.platform.now_ms());
            if wait > 0 {
                self.platform.sleep_ms(wait);
            }
            attempt += 1;
            self.stats.requests += 1;
            let outcome = self.platform.send(&self.settings.base, request);
            match outcome {
                Err(TransportError::Denied(reason)) => {
                    return Err(Failure::new(
                        ErrorKind::Denied,
                        format!(
                            "{what} to {url} was refused by the host ({reason}): the destination is not allowed; check the base URL / region setting"
                        ),
                    ));
                }
                Err(TransportError::Network(reason)) => {
                    last_problem = format!("network error: {reason}");
                }
                Ok(response) => {
                    self.stats.bytes_in += response.body.len() as u64;
                    match retry::classify(response.status) {
                        StatusClass::Success => {
                            if response.body.len() > MAX_REPLY_BYTES {
                                return Err(Failure::new(
                                    ErrorKind::Api,
                                    format!(
                                        "{what} to {url}: reply of {} bytes exceeds the {MAX_REPLY_BYTES}-byte limit; lower the page size",
                                        response.body.len()
                                    ),
                                ));
                            }
                            match parse(&response.body) {
                                Ok(value) => return Ok(value),
                                // A truncated or garbled body is retried like a dropped connection.
                                Err(problem) => last_problem = problem,
                            }
                        }
                        StatusClass::Unauthorized => {
                            let message = match auth_retry {
                                None => format!(
                                    "{what} to {url} answered 401: the client id or secret is wrong, or the connected app is disabled; check CLIENT_ID / CLIENT_SECRET"
                                ),
                                Some(_) => format!(
                                    "{what} to {url} answered 401 with a fresh token: the connected app lost access; check its scopes"
                                ),
                            };
                            return Err(Failure::new(ErrorKind::Unauthorized, message));
                        }
                        StatusClass::Forbidden => {
                            return Err(Failure::new(
                                ErrorKind::Forbidden,
                                format!(
                                    "{what} to {url} answered 403: the connected app may not read this organization; grant it the Audit Log Viewer scope on this business group"
                                ),
                            ));
                        }
                        StatusClass::Rejected => {
                            let kind = if auth_retry.is_none() && response.status == 400 {
                                ErrorKind::Unauthorized
                            } else {
                                ErrorKind::Api
                            };
                            return Err(Failure::new(
                                kind,
                                format!("{what} to {url} answered {}: {}", response.status, excerpt(&response.body)),
                            ));
                        }
                        StatusClass::Throttled => {
                            throttles += 1;
                            self.stats.throttled_waits += 1;
                            if throttles > MAX_THROTTLE_WAITS {
                                return Err(Failure::new(
                                    ErrorKind::Unavailable,
                                    format!(
                                        "{what} to {url} was still throttled ({}) after {MAX_THROTTLE_WAITS} waits; lower the request rate or try later",
                                        response.status
                                    ),
                                ));
                            }
                            let now = self.platform.now_ms();
                            let wait = response
                                .header("retry-after")
                                .and_then(|v| retry::retry_after_ms(v, now))
                                .or_else(|| {
                                    response.header("x-ratelimit-reset").and_then(|v| retry::reset_at_ms(v, now))
                                })
                                .unwrap_or_else(|| retry::until_next_minute_ms(now))
                                .min(retry::MAX_THROTTLE_WAIT_MS)
                                + retry::throttle_jitter_ms(self.platform.random());
                            self.pacer.hold_until(now + wait as i64);
                            // Throttling is not a fault of the request: it does not use up an attempt.
                            attempt -= 1;
                            self.stats.retries += 1;
                            continue;
                        }
                        StatusClass::Transient => {
                            last_problem = format!("status {}", response.status);
                        }
                    }
                }
            }
            if attempt >= max {
                return Err(Failure::new(
                    ErrorKind::Unavailable,
                    format!("{what} to {url} failed {attempt} times, last with {last_problem}; the next pass retries"),
                ));
            }
            self.stats.retries += 1;
            let wait = retry::backoff_ms(attempt, self.platform.random());
            self.platform.sleep_ms(wait);
        }
    }
}

/// The start of an error body, printable, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    if one_line.trim().is_empty() { "(empty body)".into() } else { one_line }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(form_encode("AZaz09-_.~"), "AZaz09-_.~");
    }
}
