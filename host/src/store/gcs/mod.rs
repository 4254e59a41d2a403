//! Google Cloud Storage through its JSON API, as the [`ObjectStore`] the collector writes to.
//!
//! - [`request`]: pure request building and the retry verdict of a status;
//! - [`auth`]: Application Default Credentials, renewed on 401, and who they are;
//! - [`upload`]: multipart and resumable uploads with their preconditions;
//! - this file: the store itself and [`GcsStore::send`], the one function that retries.
//!
//! Requests carry Google credentials whatever the endpoint (`--gcs-endpoint` for Private Service
//! Connect, VPC-SC or a test stand-in); only `STORAGE_EMULATOR_HOST` sends none, as Google's own
//! client libraries do.

pub mod auth;
pub mod request;
mod upload;

use super::{ObjectStore, Presence, StoreError, Stored, check_key};
use crate::settings::GcsEndpoint;
use auth::{Auth, Source};
use request::{Class, Metadata, ObjectResource, classify, encode_segment, metadata_reply};
use std::time::Duration;
use upload::OnPrecondition;

/// Retry policy for transient failures: the engine's backoff (the same curve as the collector's
/// API requests), over this many attempts.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Self { attempts: 7 }
    }
}

impl Retry {
    /// The wait before attempt `attempt + 1`.
    fn pause(&self, attempt: u32) -> Duration {
        Duration::from_millis(mulesoft_audit::retry::backoff_ms(attempt, fastrand::u64(..)))
    }
}

pub struct GcsStore {
    bucket: String,
    /// Prefix of every key inside the bucket: empty or ending in `/`.
    prefix: String,
    endpoint: String,
    client: reqwest::Client,
    /// None only for `STORAGE_EMULATOR_HOST`.
    auth: Option<(Auth, Source)>,
    runtime: tokio::runtime::Handle,
    pub retry: Retry,
    resumable_above: usize,
    /// Bytes per resumable chunk.
    chunk: usize,
    /// The soft delete policy as last read, and when: passes ask it for every organization.
    policy: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

/// How long a soft delete policy read is trusted: a minute, as it can change while `serve` runs.
const POLICY_FRESH: Duration = Duration::from_secs(60);

/// A reply that is not a transient failure.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt (a 408/429/5xx, a timeout, a reset).
    Transient(String),
    Final(StoreError),
}

impl GcsStore {
    pub fn new(bucket: &str, prefix: &str, gcs: &GcsEndpoint, runtime: tokio::runtime::Handle) -> anyhow::Result<Self> {
        mulesoft_audit::gcs::check_bucket(bucket).map_err(anyhow::Error::msg)?;
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        let (endpoint, auth) = match gcs {
            GcsEndpoint::Emulator(url) => (url.clone(), None),
            GcsEndpoint::Google(url) => {
                let source = runtime.block_on(Source::discover())?;
                tracing::info!(credentials = %source, "Google credentials");
                (url.clone(), Some((Auth::new(runtime.clone())?, source)))
            }
        };
        // Per request, first byte to last: the edge store's rule, on the same setting.
        let timeout = mulesoft_audit::gcs::request_timeout_ms(
            std::env::var(mulesoft_audit::settings::names::GCS_TIMEOUT_SECS).ok().as_deref(),
        )
        .map_err(anyhow::Error::msg)?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_millis(timeout))
            .build()?;
        let resumable_above = std::env::var(mulesoft_audit::settings::names::GCS_RESUMABLE_ABOVE)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(upload::RESUMABLE_THRESHOLD);
        // The API takes chunks in multiples of 256 KiB. Overridable (KiB) for tests.
        let chunk = std::env::var(mulesoft_audit::settings::names::GCS_CHUNK_KIB)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|kib| *kib > 0 && kib % 256 == 0)
            .map_or(upload::CHUNK, |kib| kib << 10);
        Ok(Self {
            bucket: bucket.to_string(),
            prefix,
            endpoint,
            client,
            auth,
            runtime,
            retry: Retry::default(),
            resumable_above,
            chunk,
            policy: std::sync::Mutex::new(None),
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

    /// One attempt: credentials, the request, the whole reply.
    async fn attempt(&self, what: &str, make: &impl Fn() -> reqwest::RequestBuilder) -> Result<Reply, Failure> {
        let mut request = make();
        if let Some((auth, _)) = &self.auth {
            match auth.headers().await {
                Ok(headers) => request = request.headers(headers),
                Err(StoreError::Unavailable(problem)) => return Err(Failure::Transient(problem)),
                Err(e) => return Err(Failure::Final(e)),
            }
        }
        // Without the URL: a resumable session's URL is a credential of its own.
        let reply = request.send().await.map_err(|e| Failure::Transient(format!("{what}: {}", e.without_url())))?;
        let status = reply.status().as_u16();
        let headers = reply.headers().clone();
        let body = reply
            .bytes()
            .await
            .map_err(|e| Failure::Transient(format!("{what}: reading reply: {}", e.without_url())))?;
        match classify(status) {
            Class::Retry => Err(Failure::Transient(format!("{what}: HTTP {status}"))),
            Class::Done | Class::Final => Ok(Reply { status, headers, body: body.to_vec() }),
        }
    }

    /// Fetches a new token after a 401, once per request: a token GCS no longer takes.
    fn renew_after_401(&self, what: &str) -> Result<(), StoreError> {
        let Some((auth, _)) = &self.auth else {
            return Err(StoreError::Denied(format!(
                "{what}: HTTP 401 from the emulator at {}; STORAGE_EMULATOR_HOST sends no credentials",
                self.endpoint
            )));
        };
        tracing::warn!(what, "GCS refused the access token (HTTP 401); fetching a new one");
        auth.renew()
    }

    /// Sends the request `make` builds, retrying transient failures with backoff and renewing
    /// the token once on a 401; returns the final reply (success or a non-retryable status).
    async fn send(&self, what: &str, make: impl Fn() -> reqwest::RequestBuilder) -> Result<Reply, StoreError> {
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            let problem = match self.attempt(what, &make).await {
                Ok(reply) if reply.status == 401 && !renewed => {
                    self.renew_after_401(what)?;
                    renewed = true;
                    attempt -= 1;
                    continue;
                }
                Ok(reply) => return Ok(reply),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transient(problem)) => problem,
            };
            if attempt >= self.retry.attempts {
                return Err(StoreError::Unavailable(format!("{problem} (after {attempt} attempts)")));
            }
            tracing::warn!(what, attempt, %problem, "GCS request failed, retrying");
            tokio::time::sleep(self.retry.pause(attempt)).await;
        }
    }

    /// The error a non-retryable status means, in words that say what to do.
    fn final_error(&self, what: &str, status: u16, body: &[u8]) -> StoreError {
        let detail: String = String::from_utf8_lossy(body).chars().filter(|c| !c.is_control()).take(300).collect();
        let who = match &self.auth {
            Some((_, source)) => format!("the credentials in use ({source})"),
            None => "the caller".to_string(),
        };
        match status {
            401 => StoreError::Denied(format!(
                "{what}: HTTP 401: Cloud Storage did not accept the access token of {who}, even a freshly fetched one: {detail}"
            )),
            403 => StoreError::Denied(format!(
                "{what}: HTTP 403: {who} may not use bucket `{}` (grant roles/storage.objectUser on the bucket, or see the README's least-privilege roles): {detail}",
                self.bucket
            )),
            404 => StoreError::Denied(format!("{what}: bucket `{}` does not exist (HTTP 404): {detail}", self.bucket)),
            _ => StoreError::Other(format!("{what}: HTTP {status}: {detail}")),
        }
    }

    /// How long the bucket keeps deleted objects (soft delete), in seconds; 0 when it does not,
    /// or when the policy cannot be read (it needs `storage.buckets.get`): then nothing can be
    /// proven. Read again after [`POLICY_FRESH`], as a policy can change while `serve` runs.
    async fn soft_delete_seconds(&self) -> Result<u64, StoreError> {
        let cached = *self.policy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(seconds) = cached.filter(|(at, _)| at.elapsed() < POLICY_FRESH).map(|(_, seconds)| seconds) {
            return Ok(seconds);
        }
        let url = format!("{}/storage/v1/b/{}?fields=softDeletePolicy", self.endpoint, self.bucket);
        let reply = self.send("reading the bucket's soft delete policy", || self.client.get(&url)).await?;
        if reply.status != 200 {
            tracing::warn!(status = reply.status, "the bucket's soft delete policy cannot be read");
        }
        let seconds = mulesoft_audit::gcs::soft_delete_seconds(reply.status, &reply.body);
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), seconds));
        Ok(seconds)
    }

    /// The keys of live or soft-deleted objects under `prefix`, sorted and each once (a name
    /// can have several soft-deleted generations), page by page; or the reply that refused a
    /// page, for the caller to judge.
    async fn names(&self, prefix: &str, name: &str, listed: Listed) -> Result<Result<Vec<String>, Reply>, StoreError> {
        let full = format!("{}{prefix}", self.prefix);
        let (what, soft) = match listed {
            Listed::Live => ("listing objects", ""),
            Listed::SoftDeleted => ("listing soft-deleted objects", "&softDeleted=true"),
        };
        let mut keys = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/storage/v1/b/{}/o?prefix={}&fields=items(name),nextPageToken&maxResults=1000{soft}",
                self.endpoint,
                self.bucket,
                encode_segment(&full)
            );
            if let Some(glob) = mulesoft_audit::gcs::name_glob(&full, name) {
                url.push_str(&format!("&matchGlob={}", encode_segment(&glob)));
            }
            if let Some(token) = &page_token {
                url.push_str(&format!("&pageToken={}", encode_segment(token)));
            }
            let reply = self.send(what, || self.client.get(&url)).await?;
            if reply.status != 200 {
                return Ok(Err(reply));
            }
            let page: serde_json::Value =
                serde_json::from_slice(&reply.body).map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
            let names = page["items"].as_array().map(Vec::as_slice).unwrap_or_default();
            keys.extend(
                names.iter().filter_map(|item| item["name"].as_str()?.strip_prefix(&self.prefix)).map(str::to_string),
            );
            match page["nextPageToken"].as_str() {
                Some(token) if !token.is_empty() => page_token = Some(token.to_string()),
                _ => break,
            }
        }
        keys.sort();
        keys.dedup();
        Ok(Ok(keys))
    }

    async fn metadata(&self, name: &str) -> Result<Option<ObjectResource>, StoreError> {
        let url = self.object_url(name);
        let reply = self.send("reading object metadata", || self.client.get(&url)).await?;
        match metadata_reply(reply.status, &reply.body)? {
            Metadata::Found(resource) => Ok(Some(resource)),
            Metadata::Missing => Ok(None),
            Metadata::Refused => Err(self.final_error("reading object metadata", reply.status, &reply.body)),
        }
    }
}

/// Which objects a listing names.
#[derive(Clone, Copy)]
enum Listed {
    Live,
    SoftDeleted,
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
                let reply = self.send("reading object", || self.client.get(&url)).await?;
                match reply.status {
                    200 => return Ok(Some(Stored { data: reply.body, generation })),
                    404 => continue,
                    s => return Err(self.final_error("reading object", s, &reply.body)),
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
            let reply = self.send("deleting object", || self.client.delete(&url)).await?;
            match reply.status {
                200 | 204 | 404 => Ok(()),
                s => Err(self.final_error("deleting object", s, &reply.body)),
            }
        })
    }

    /// Live, soft-deleted, or neither; "neither" proves absence only where the bucket keeps
    /// deleted objects (soft delete, on by default for new buckets).
    fn presence(&self, key: &str, since_ms: Option<i64>) -> Result<Presence, StoreError> {
        let name = self.name(key)?;
        self.block_on(async {
            if self.metadata(&name).await?.is_some() {
                return Ok(Presence::Present);
            }
            let deleted = match self.names(key, "", Listed::SoftDeleted).await? {
                Ok(deleted) => Some(deleted.iter().any(|k| k == key)),
                Err(reply) => {
                    tracing::warn!(status = reply.status, "soft-deleted objects cannot be listed");
                    None
                }
            };
            let kept = if deleted == Some(false) { self.soft_delete_seconds().await? } else { 0 };
            let now = chrono::Utc::now().timestamp_millis();
            Ok(mulesoft_audit::gcs::absence(deleted, kept, since_ms, now).into())
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.list_named(prefix, "")
    }

    fn list_named(&self, prefix: &str, name: &str) -> Result<Vec<String>, StoreError> {
        self.block_on(async {
            self.names(prefix, name, Listed::Live)
                .await?
                .map_err(|reply| self.final_error("listing objects", reply.status, &reply.body))
        })
    }

    /// Soft-deleted objects: their names can still be listed, though not their bytes. `None`
    /// when the bucket keeps none, or its policy or the listing cannot be read.
    fn list_deleted(&self, prefix: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.list_deleted_named(prefix, "")
    }

    fn list_deleted_named(&self, prefix: &str, name: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.block_on(async {
            if self.soft_delete_seconds().await? == 0 {
                return Ok(None);
            }
            Ok(match self.names(prefix, name, Listed::SoftDeleted).await? {
                Ok(keys) => Some(keys),
                Err(reply) => {
                    tracing::warn!(status = reply.status, "soft-deleted objects cannot be listed");
                    None
                }
            })
        })
    }

    fn describe(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.prefix)
    }

    fn location(&self) -> Option<String> {
        Some(format!("gs://{}/{}", self.bucket, self.prefix))
    }

    fn credentials(&self) -> Option<String> {
        Some(match &self.auth {
            Some((_, source)) => source.to_string(),
            None => format!("none: STORAGE_EMULATOR_HOST sends requests to {} without credentials", self.endpoint),
        })
    }
}
