//! Google Cloud Storage through its JSON API.
//!
//! Request building is pure (`multipart_body`, `object_path`, …); `GcsStore::send` is the one
//! function that does I/O and the one place that decides retry or not (`classify`).
//! Credentials come from Application Default Credentials (`google-cloud-auth`); with
//! `STORAGE_EMULATOR_HOST` set, requests go to the emulator without credentials, as Google's own
//! client libraries do.

use super::{ObjectStore, StoreError, Stored, check_key};
use base64::Engine as _;
use google_cloud_auth::credentials::{Builder as CredentialsBuilder, CacheableResource, Credentials};
use serde::Deserialize;
use std::time::Duration;

/// New objects larger than this (compressed bytes) go up in a resumable upload instead of one
/// multipart request. Overridable (`MULESOFT_AUDIT_GCS_RESUMABLE_ABOVE`, bytes) for tests.
pub const RESUMABLE_THRESHOLD: usize = 16 << 20;
/// Resumable chunk size (a multiple of 256 KiB, as the API requires).
pub const CHUNK: usize = 8 << 20;

/// Retry policy for transient failures: truncated exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub first_ms: u64,
    pub max_ms: u64,
    pub attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Self { first_ms: 1000, max_ms: 32_000, attempts: 7 }
    }
}

pub struct GcsStore {
    bucket: String,
    /// Prefix of every key inside the bucket: empty or ending in `/`.
    prefix: String,
    endpoint: String,
    client: reqwest::Client,
    credentials: Option<Credentials>,
    runtime: tokio::runtime::Handle,
    pub retry: Retry,
    resumable_above: usize,
}

/// What a status means for a GCS request.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    Done,
    Retry,
    Final,
}

/// The one place that decides retry or not (Google's retry strategy: 408, 429, 5xx).
fn classify(status: u16) -> Class {
    match status {
        200..=299 | 308 => Class::Done,
        408 | 429 | 500..=599 => Class::Retry,
        _ => Class::Final,
    }
}

/// Percent-encodes an object name for a URL path segment (`/` becomes `%2F`).
pub fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The base64 of the big-endian CRC32C, as GCS reports and checks it.
pub fn crc32c_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(data).to_be_bytes())
}

/// A `multipart/related` body: the JSON resource, then the bytes. Returns (boundary, body).
pub fn multipart_body(metadata: &serde_json::Value, content_type: &str, data: &[u8]) -> (String, Vec<u8>) {
    let mut seed = crc32c::crc32c(data) as u64 ^ (data.len() as u64) << 32;
    let boundary = loop {
        let candidate = format!("mulesoft_audit_{seed:016x}");
        if !data.windows(candidate.len()).any(|w| w == candidate.as_bytes()) {
            break candidate;
        }
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    };
    let mut body = Vec::with_capacity(data.len() + 512);
    body.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (boundary, body)
}

#[derive(Deserialize)]
struct ObjectResource {
    #[serde(default)]
    generation: Option<String>,
    #[serde(default)]
    crc32c: Option<String>,
    #[serde(default)]
    size: Option<String>,
}

impl ObjectResource {
    fn generation(&self) -> Result<u64, StoreError> {
        self.generation
            .as_deref()
            .and_then(|g| g.parse().ok())
            .ok_or_else(|| StoreError::Other("GCS reply has no generation".into()))
    }
    fn same_bytes(&self, data: &[u8]) -> bool {
        self.crc32c.as_deref() == Some(crc32c_b64(data).as_str())
            && self.size.as_deref() == Some(data.len().to_string().as_str())
    }
}

/// What to do when a create-like request answers 412.
enum OnPrecondition {
    AlreadyExists,
    Mismatch,
}

impl GcsStore {
    pub fn new(bucket: &str, prefix: &str, runtime: tokio::runtime::Handle) -> anyhow::Result<Self> {
        if bucket.is_empty()
            || !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        {
            anyhow::bail!("bucket name `{bucket}` is not valid: lowercase letters, digits, -, _ and . only");
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        let emulator = std::env::var("STORAGE_EMULATOR_HOST").ok().filter(|h| !h.is_empty());
        let (endpoint, credentials) = match emulator {
            Some(host) => {
                let host = host.trim_end_matches('/');
                let endpoint = if host.contains("://") { host.to_string() } else { format!("http://{host}") };
                (endpoint, None)
            }
            None => {
                let creds = CredentialsBuilder::default()
                    .build()
                    .map_err(|e| anyhow::anyhow!("no Google credentials found ({e}); on Cloud Run attach a service account, elsewhere set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`"))?;
                ("https://storage.googleapis.com".to_string(), Some(creds))
            }
        };
        // Per request; an upload of one 32 MiB object fits easily. Overridable for tests.
        let timeout = std::env::var("MULESOFT_AUDIT_GCS_TIMEOUT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(timeout))
            .build()?;
        let resumable_above = std::env::var("MULESOFT_AUDIT_GCS_RESUMABLE_ABOVE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(RESUMABLE_THRESHOLD);
        Ok(Self {
            bucket: bucket.to_string(),
            prefix,
            endpoint,
            client,
            credentials,
            runtime,
            retry: Retry::default(),
            resumable_above,
        })
    }

    fn name(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn object_url(&self, name: &str) -> String {
        format!("{}/storage/v1/b/{}/o/{}", self.endpoint, self.bucket, encode_segment(name))
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    async fn authorize(&self, request: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, StoreError> {
        let Some(creds) = &self.credentials else {
            return Ok(request);
        };
        match creds.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(request.headers(data)),
            Ok(CacheableResource::NotModified) => Err(StoreError::Other("credentials returned no headers".into())),
            Err(e) if e.is_transient() => Err(StoreError::Unavailable(format!("getting a Google access token: {e}"))),
            Err(e) => Err(StoreError::Denied(format!("getting a Google access token: {e}"))),
        }
    }

    /// Sends the request `make` builds, retrying transient failures; returns the final reply
    /// (success or a non-retryable status).
    async fn send(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let problem = match self.authorize(make()).await {
                Err(StoreError::Unavailable(m)) => m,
                Err(e) => return Err(e),
                Ok(request) => match request.send().await {
                    Err(e) => format!("{what}: {e}"),
                    Ok(reply) => {
                        let status = reply.status().as_u16();
                        let headers = reply.headers().clone();
                        match reply.bytes().await {
                            Err(e) => format!("{what}: reading reply: {e}"),
                            Ok(body) => match classify(status) {
                                Class::Done | Class::Final => {
                                    return Ok((status, headers, body.to_vec()));
                                }
                                Class::Retry => format!("{what}: HTTP {status}"),
                            },
                        }
                    }
                },
            };
            if attempt >= self.retry.attempts {
                return Err(StoreError::Unavailable(format!("{problem} (after {attempt} attempts)")));
            }
            let ceiling = self.retry.first_ms.saturating_mul(1 << (attempt - 1).min(16)).min(self.retry.max_ms);
            tracing::warn!(what, attempt, "GCS request failed, retrying");
            tokio::time::sleep(Duration::from_millis(ceiling / 2 + fastrand::u64(0..=ceiling / 2))).await;
        }
    }

    fn final_error(&self, what: &str, status: u16, body: &[u8]) -> StoreError {
        let detail: String = String::from_utf8_lossy(body).chars().filter(|c| !c.is_control()).take(300).collect();
        match status {
            401 | 403 => StoreError::Denied(format!(
                "{what}: HTTP {status}: the service account may not use bucket `{}` (grant it roles/storage.objectUser on the bucket, or see the README's least-privilege roles): {detail}",
                self.bucket
            )),
            404 => StoreError::Denied(format!("{what}: bucket `{}` does not exist (HTTP 404): {detail}", self.bucket)),
            _ => StoreError::Other(format!("{what}: HTTP {status}: {detail}")),
        }
    }

    async fn metadata(&self, name: &str) -> Result<Option<ObjectResource>, StoreError> {
        let url = self.object_url(name);
        let (status, _, body) = self.send("reading object metadata", || self.client.get(&url)).await?;
        match status {
            200 => {
                serde_json::from_slice(&body).map(Some).map_err(|e| StoreError::Other(format!("object metadata: {e}")))
            }
            404 => Ok(None),
            s => Err(self.final_error("reading object metadata", s, &body)),
        }
    }

    /// Uploads `data` under `name` if the object's generation is `if_generation` (0: absent).
    async fn upload(
        &self,
        name: &str,
        data: &[u8],
        content_type: &str,
        if_generation: u64,
        on_412: OnPrecondition,
    ) -> Result<u64, StoreError> {
        let metadata = serde_json::json!({ "name": name, "contentType": content_type, "crc32c": crc32c_b64(data) });
        // Checkpoints (compare-and-swap on a generation) are small and always go in one request.
        let resumable = matches!(on_412, OnPrecondition::AlreadyExists) && data.len() > self.resumable_above;
        let (status, body) = if resumable {
            self.resumable(&metadata, data, content_type, if_generation).await?
        } else {
            let (boundary, body) = multipart_body(&metadata, content_type, data);
            let url = format!(
                "{}/upload/storage/v1/b/{}/o?uploadType=multipart&ifGenerationMatch={if_generation}",
                self.endpoint, self.bucket
            );
            let (status, _, reply) = self
                .send("uploading object", || {
                    self.client
                        .post(&url)
                        .header("content-type", format!("multipart/related; boundary={boundary}"))
                        .body(body.clone())
                })
                .await?;
            (status, reply)
        };
        match status {
            200 | 201 => serde_json::from_slice::<ObjectResource>(&body)
                .map_err(|e| StoreError::Other(format!("upload reply: {e}")))?
                .generation(),
            412 => {
                // A retried request whose first attempt went through, or a store that already
                // holds exactly these bytes: either way the write has happened.
                match self.metadata(name).await? {
                    Some(existing) if existing.same_bytes(data) => existing.generation(),
                    _ => Err(match on_412 {
                        OnPrecondition::AlreadyExists => StoreError::AlreadyExists,
                        OnPrecondition::Mismatch => StoreError::GenerationMismatch,
                    }),
                }
            }
            s => Err(self.final_error("uploading object", s, &body)),
        }
    }

    async fn resumable(
        &self,
        metadata: &serde_json::Value,
        data: &[u8],
        content_type: &str,
        if_generation: u64,
    ) -> Result<(u16, Vec<u8>), StoreError> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&ifGenerationMatch={if_generation}",
            self.endpoint, self.bucket
        );
        let meta_text = metadata.to_string();
        let (status, headers, body) = self
            .send("starting resumable upload", || {
                self.client
                    .post(&url)
                    .header("content-type", "application/json; charset=UTF-8")
                    .header("x-upload-content-type", content_type)
                    .header("x-upload-content-length", data.len().to_string())
                    .body(meta_text.clone())
            })
            .await?;
        if status != 200 && status != 201 {
            return Ok((status, body));
        }
        let session = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| StoreError::Other("resumable upload: no session URL".into()))?
            .to_string();
        let total = data.len();
        let mut offset = 0usize;
        loop {
            let end = (offset + CHUNK).min(total);
            let range = format!("bytes {offset}-{}/{total}", end - 1);
            let chunk = data[offset..end].to_vec();
            let (status, headers, body) = self
                .send("uploading a chunk", || {
                    self.client.put(&session).header("content-range", range.clone()).body(chunk.clone())
                })
                .await?;
            match status {
                308 => {
                    // The server says how much it has; continue from there.
                    offset = headers
                        .get("range")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|r| r.rsplit('-').next())
                        .and_then(|n| n.parse::<usize>().ok())
                        .map_or(0, |last| last + 1);
                }
                _ => return Ok((status, body)),
            }
        }
    }
}

impl ObjectStore for GcsStore {
    fn create(&self, key: &str, data: &[u8], content_type: &str) -> Result<u64, StoreError> {
        let name = self.name(key)?;
        self.block_on(self.upload(&name, data, content_type, 0, OnPrecondition::AlreadyExists))
    }

    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        let name = self.name(key)?;
        self.block_on(async {
            // Metadata first, then exactly that generation's bytes: a concurrent replace makes the
            // second request miss, and we read again rather than mix two versions.
            for _ in 0..5 {
                let Some(meta) = self.metadata(&name).await? else {
                    return Ok(None);
                };
                let generation = meta.generation()?;
                let url = format!("{}?alt=media&generation={generation}", self.object_url(&name));
                let (status, _, body) = self.send("reading object", || self.client.get(&url)).await?;
                match status {
                    200 => {
                        return Ok(Some(Stored { data: body, generation }));
                    }
                    404 => continue,
                    s => return Err(self.final_error("reading object", s, &body)),
                }
            }
            Err(StoreError::Unavailable(format!("object `{name}` kept changing while being read")))
        })
    }

    fn write_if_generation(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
        generation: u64,
    ) -> Result<u64, StoreError> {
        let name = self.name(key)?;
        self.block_on(self.upload(&name, data, content_type, generation, OnPrecondition::Mismatch))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let name = self.name(key)?;
        let url = self.object_url(&name);
        self.block_on(async {
            let (status, _, body) = self.send("deleting object", || self.client.delete(&url)).await?;
            match status {
                200 | 204 | 404 => Ok(()),
                s => Err(self.final_error("deleting object", s, &body)),
            }
        })
    }

    fn describe(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_one_segment() {
        assert_eq!(encode_segment("logs/2024/01/01/a b.json.gz"), "logs%2F2024%2F01%2F01%2Fa%20b.json.gz");
    }

    #[test]
    fn crc32c_is_base64_big_endian() {
        // CRC32C("123456789") = 0xE3069283.
        assert_eq!(
            crc32c_b64(b"123456789"),
            base64::engine::general_purpose::STANDARD.encode([0xE3, 0x06, 0x92, 0x83])
        );
    }

    #[test]
    fn multipart_body_has_both_parts_and_a_boundary_not_in_the_data() {
        let meta = serde_json::json!({"name": "a"});
        let (boundary, body) = multipart_body(&meta, "application/gzip", b"\x1f\x8bdata");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\nContent-Type: application/json")));
        assert!(text.contains("{\"name\":\"a\"}"));
        assert!(text.contains("Content-Type: application/gzip\r\n\r\n\u{1f}"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        // Data that contains the first candidate boundary forces another.
        let (first, _) = multipart_body(&meta, "x", b"");
        let tricky = first.as_bytes().to_vec();
        let (other, _) = multipart_body(&meta, "x", &tricky);
        assert!(!tricky.windows(other.len()).any(|w| w == other.as_bytes()));
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(200), Class::Done);
        assert_eq!(classify(308), Class::Done);
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify(s), Class::Retry);
        }
        for s in [400, 401, 403, 404, 412] {
            assert_eq!(classify(s), Class::Final);
        }
    }
}
