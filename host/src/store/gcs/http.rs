//! The engine's [`Platform`] on reqwest, for the one Cloud Storage client: each request within
//! the store's per-request timeout, its reply read no further than the request's limit, and no
//! URL in an error (a resumable session's URL is a credential of its own).

use mulesoft_audit::platform::{Method, Platform, Request, Response, TransportError};
use mulesoft_audit::settings::BaseUrl;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// The origin of [`Platform::steady_ms`].
    origin: Instant,
}

impl Http {
    /// `timeout_ms`: one request, first byte to last.
    pub fn new(timeout_ms: u64, runtime: tokio::runtime::Handle) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_millis(timeout_ms))
            .build()?;
        Ok(Self { client, runtime, origin: Instant::now() })
    }

    async fn send(&self, base: &BaseUrl, request: &Request) -> Result<Response, TransportError> {
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut builder = self.client.request(method, base.url(&request.path));
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if matches!(request.method, Method::Post | Method::Put) {
            builder = builder.body(request.body.clone());
        }
        let network = |e: reqwest::Error| TransportError::Network(e.without_url().to_string());
        let mut reply = builder.send().await.map_err(network)?;
        let status = reply.status().as_u16();
        let headers = reply
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) =
            reply.chunk().await.map_err(|e| TransportError::Network(format!("reading reply: {}", e.without_url())))?
        {
            if body.len().saturating_add(chunk.len()) > request.reply_limit {
                return Err(TransportError::TooLarge(format!(
                    "the reply is larger than the {}-byte limit (reading stopped there)",
                    request.reply_limit
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response { status, headers, body })
    }
}

impl Platform for Http {
    /// One after another: the store sends one request at a time.
    fn send_many(&mut self, base: &BaseUrl, requests: &[Request]) -> Vec<Result<Response, TransportError>> {
        requests.iter().map(|request| self.runtime.block_on(self.send(base, request))).collect()
    }

    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn steady_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn sleep_ms(&mut self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    fn random(&mut self) -> u64 {
        fastrand::u64(..)
    }

    fn note(&mut self, what: &str) {
        tracing::warn!("Cloud Storage: {what}");
    }
}
