//! What a request to Cloud Storage carries to authenticate, by [`TokenSource`]: a token the
//! store fetches from the metadata server itself (the edge), one configured, the headers the host
//! gives ([`TokenProvider`]: Application Default Credentials), or nothing (an emulator). One
//! renewal after a 401 is the store's rule ([`Gcs::send`]); how to renew is the source's.

use super::Gcs;
use super::target::TokenSource;
use super::wire::{Class, classify};
use crate::platform::{Method, Platform, Request, StoreError, TransportError, check_token, token_lifetime_ms};
use crate::settings::names;
use serde::Deserialize;

/// The metadata server's token of the attached service account.
pub(super) const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// A token is renewed this long before it expires, so no request carries one about to lapse.
const RENEW_BEFORE_MS: i64 = 5 * 60 * 1000;
/// The most a token reply may hold.
const TOKEN_REPLY_BYTES: usize = 1 << 20;

/// Credentials the host holds: the headers that authorize one request (`Authorization`, a quota
/// project), renewed on demand, and whose they are, for refusals. Never a token in `who`.
pub trait TokenProvider: Send {
    fn headers(&mut self) -> Result<Vec<(String, String)>, StoreError>;
    /// Forgets the token in use: the next [`TokenProvider::headers`] fetches a fresh one.
    fn renew(&mut self) -> Result<(), StoreError>;
    fn who(&self) -> String;
}

/// A token and when to renew it (Unix ms).
pub(super) struct Token {
    pub(super) value: String,
    pub(super) renew_at_ms: i64,
}

/// The metadata server's token reply.
#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

impl<P: Platform> Gcs<P> {
    /// The headers that authorize one request.
    pub(super) fn authorization(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        match &mut self.provider {
            Some(provider) => provider.headers(),
            None if self.target.tokens == TokenSource::Anonymous => Ok(Vec::new()),
            None => Ok(vec![("authorization".into(), format!("Bearer {}", self.bearer()?))]),
        }
    }

    /// After a 401: a fresh token for the next attempt, where the source can give one.
    pub(super) fn renew(&mut self, what: &str) -> Result<(), StoreError> {
        match (&mut self.provider, &self.target.tokens) {
            (Some(provider), _) => provider.renew(),
            (None, TokenSource::Anonymous) => Err(StoreError::Denied(format!(
                "{what}: HTTP 401 from the emulator at {}; STORAGE_EMULATOR_HOST sends no credentials",
                self.target.endpoint.url("")
            ))),
            // The metadata server's is fetched again; a configured one is refused then.
            (None, _) => {
                self.token = None;
                Ok(())
            }
        }
    }

    /// Whose credentials a refusal is about.
    pub(super) fn who(&self) -> String {
        match (&self.provider, &self.target.tokens) {
            (Some(provider), _) => format!("the credentials in use ({})", provider.who()),
            (None, TokenSource::Anonymous) => "the caller".into(),
            (None, _) => "the token's principal".into(),
        }
    }

    /// The token to send, fetched from the metadata server when there is none or it is due.
    fn bearer(&mut self) -> Result<String, StoreError> {
        let now = self.platform.now_ms();
        if let Some(token) = &self.token
            && now < token.renew_at_ms
        {
            return Ok(token.value.clone());
        }
        let TokenSource::MetadataServer(server) = self.target.tokens.clone() else {
            return Err(StoreError::Denied(format!(
                "Cloud Storage refused the token in {}: it has expired or may not use bucket `{}`; configure a fresh one",
                names::OAUTH_ACCESS_TOKEN,
                self.target.bucket
            )));
        };
        let request = Request {
            method: Method::Get,
            path: METADATA_TOKEN_PATH.into(),
            headers: vec![("metadata-flavor".into(), "Google".into())],
            body: Vec::new(),
            reply_limit: TOKEN_REPLY_BYTES,
        };
        let mut problem = String::new();
        let attempts = self.target.attempts;
        for attempt in 1..=attempts {
            match self.send_one(&server, request.clone()) {
                Ok(reply) if reply.status == 200 => {
                    let token: TokenReply = serde_json::from_slice(&reply.body).map_err(|e| {
                        StoreError::Other(format!("the metadata server's token reply is not what Google sends ({e})"))
                    })?;
                    check_token(&token.access_token)
                        .map_err(|why| StoreError::Other(format!("the metadata server at {} {why}", server.url(""))))?;
                    // A negative lifetime is none at all.
                    let expires_in = token.expires_in.map(|seconds| u64::try_from(seconds).unwrap_or(0));
                    let lifetime_ms = token_lifetime_ms(expires_in);
                    let renew_at_ms = now.saturating_add(lifetime_ms.saturating_sub(RENEW_BEFORE_MS).max(0));
                    self.token = Some(Token { value: token.access_token.clone(), renew_at_ms });
                    return Ok(token.access_token);
                }
                Ok(reply) if classify(reply.status) == Class::Retry => {
                    problem = format!("HTTP {}", reply.status);
                }
                Ok(reply) => {
                    return Err(StoreError::Denied(format!(
                        "the metadata server at {} gave no token (HTTP {}): attach a service account, or set {}",
                        server.url(""),
                        reply.status,
                        names::OAUTH_ACCESS_TOKEN
                    )));
                }
                Err(TransportError::Denied(e)) => {
                    return Err(StoreError::Denied(format!(
                        "the runtime may not reach the metadata server at {} ({e}): allow it, or set {}",
                        server.url(""),
                        names::OAUTH_ACCESS_TOKEN
                    )));
                }
                // A name that does not resolve: no metadata server here (not on Google Cloud), which
                // no retry will change.
                Err(TransportError::Network(e)) if e.contains("DnsError") => {
                    return Err(StoreError::Denied(format!(
                        "there is no metadata server at {} ({e}): off Google Cloud, set {}",
                        server.url(""),
                        names::OAUTH_ACCESS_TOKEN
                    )));
                }
                Err(TransportError::Network(e)) => problem = e,
                Err(TransportError::TooLarge(e)) => {
                    return Err(StoreError::Other(format!("the metadata server at {}: {e}", server.url(""))));
                }
            }
            if attempt < attempts {
                self.pause(attempt);
            }
        }
        Err(StoreError::Unavailable(format!(
            "no token from the metadata server at {}: {problem} (after {attempts} attempts)",
            server.url("")
        )))
    }
}
