//! Google Cloud Storage's JSON API over any [`Platform`]: the one client of the protocol, which
//! the edge store (`edge/store`, over `wasi:http`) and the host's store (`host/src/store/gcs`,
//! over reqwest with Application Default Credentials) both run. Each side gives only what
//! differs: the transport (a [`Platform`]) and the credentials ([`TokenSource`], a
//! [`TokenProvider`]).
//!
//! - [`wire`]: pure pieces (the retry verdict of a status, names in URLs, checksums, multipart
//!   bodies, the replies to read, what an absence proves);
//! - [`target`]: where it writes, how it authenticates, how hard it tries;
//! - [`tokens`]: what each request carries to authenticate, and its renewal;
//! - [`upload`]: multipart and resumable uploads with their preconditions;
//! - this file: the store: [`Gcs::send`], the one loop that retries, and every operation.

mod target;
mod tokens;
mod upload;
pub mod wire;

pub use target::{
    CHUNK, DEFAULT_ENDPOINT, METADATA_DEFAULT_HOST, RESUMABLE_THRESHOLD, Target, TokenSource, endpoint, metadata_host,
    request_timeout_ms, resumable,
};
pub use tokens::TokenProvider;
pub use wire::{
    Class, Metadata, ObjectResource, Upload, absence, check_bucket, classify, crc32c_b64, encode_segment,
    metadata_reply, multipart_body, name_glob, persisted, soft_delete_seconds, upload_reply, written_before,
};

use crate::platform::{Found, Method, Platform, Presence, Request, StoreError, Stored, TransportError, check_key};
use crate::settings::BaseUrl;
use tokens::Token;

/// The most a reply about objects may hold (metadata, a listing page of 1,000 names, a policy,
/// an upload's resource): far above what Cloud Storage sends.
const REPLY_BYTES: usize = 16 << 20;
/// How long a soft delete policy read is trusted: a minute, as it can change while `serve` runs.
const POLICY_FRESH_MS: i64 = 60_000;

/// How long a create may take: [`crate::platform::ObjectStore::lease_ms`] of a store with this target.
pub fn lease_ms(target: &Target) -> u64 {
    target.timeout_ms.saturating_mul(3)
}

/// A reply that is not a transient failure.
pub(super) struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt (a 408/429/5xx, a timeout, a reset, a token not fetched in time).
    Transient(String),
    Final(StoreError),
}

/// Which objects a listing names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    Live,
    SoftDeleted,
}

/// Cloud Storage's client, with the operations of the collector's
/// [`crate::platform::ObjectStore`] (which the host's store and the edge store give through
/// it), over `platform`'s HTTP: uploads with a generation precondition ([`upload`]: create-only,
/// or a swap of one generation), reads of exactly one generation, and soft delete for what an
/// absence proves.
pub struct Gcs<P> {
    platform: P,
    target: Target,
    /// The token in use, where the store fetches its own (the metadata server) or was given one.
    token: Option<Token>,
    /// The host's credentials, for [`TokenSource::Host`].
    provider: Option<Box<dyn TokenProvider>>,
    /// The bucket's soft delete retention as read, with the clock then: passes ask it for every
    /// organization, and it is read again after a minute (a policy can change).
    retention: Option<(i64, u64)>,
    /// The deadline of the create under way, if it was given one: no request that writes starts
    /// unless it must end before it.
    deadline: Option<Deadline>,
}

/// A create's deadline, and both clocks as the create began: time is counted on the steady
/// clock from there, so that a wall clock stepped back cannot stretch the lease (the claimant
/// reads its own wall clock against the deadline) and one stepped forward only shortens it.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at_ms: i64,
    wall_ms: i64,
    steady_ms: u64,
}

impl<P: Platform> Gcs<P> {
    /// A store whose tokens come from its target: the metadata server, a configured token, or
    /// none for an emulator.
    pub fn new(platform: P, target: Target) -> Self {
        let token = target.configured_token.clone().map(|value| Token { value, renew_at_ms: i64::MAX });
        Self { platform, target, token, provider: None, retention: None, deadline: None }
    }

    /// A store whose requests carry the headers `provider` gives ([`TokenSource::Host`]).
    pub fn with_provider(platform: P, mut target: Target, provider: Box<dyn TokenProvider>) -> Self {
        target.tokens = TokenSource::Host;
        Self { platform, target, token: None, provider: Some(provider), retention: None, deadline: None }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    fn name(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.target.prefix))
    }

    fn object_path(&self, name: &str) -> String {
        format!("/storage/v1/b/{}/o/{}", self.target.bucket, encode_segment(name))
    }

    fn send_one(&mut self, base: &BaseUrl, request: Request) -> Result<crate::platform::Response, TransportError> {
        self.platform
            .send_many(base, std::slice::from_ref(&request))
            .pop()
            .unwrap_or_else(|| Err(TransportError::Network("no reply".into())))
    }

    /// One attempt: credentials, the request, the whole reply (a 401 among the replies).
    fn attempt(&mut self, base: &BaseUrl, what: &str, request: &Request) -> Result<Reply, Failure> {
        let mut signed = request.clone();
        match self.authorization() {
            Ok(headers) => signed.headers.extend(headers),
            Err(StoreError::Unavailable(problem)) => return Err(Failure::Transient(problem)),
            Err(e) => return Err(Failure::Final(e)),
        }
        // Checked last, once the credentials are in hand (fetching them may take long): nothing
        // that writes is sent unless it must end within the create's lease.
        if let Some(deadline) = self.deadline.filter(|_| matches!(request.method, Method::Post | Method::Put)) {
            let timeout = i64::try_from(self.target.timeout_ms).unwrap_or(i64::MAX);
            let elapsed =
                i64::try_from(self.platform.steady_ms().saturating_sub(deadline.steady_ms)).unwrap_or(i64::MAX);
            let now = self.platform.now_ms().max(deadline.wall_ms.saturating_add(elapsed));
            if now.saturating_add(timeout) > deadline.at_ms {
                return Err(Failure::Final(StoreError::Unavailable(format!(
                    "{what}: the lease on the object's name ends at {}, before another request could end; nothing more is sent, and a pass after then settles it",
                    crate::window::rfc3339_ms(deadline.at_ms)
                ))));
            }
        }
        match self.send_one(base, signed) {
            Ok(reply) if classify(reply.status) == Class::Retry => {
                Err(Failure::Transient(format!("{what}: HTTP {}", reply.status)))
            }
            Ok(reply) => Ok(Reply { status: reply.status, headers: reply.headers, body: reply.body }),
            Err(TransportError::Denied(e)) => Err(Failure::Final(StoreError::Denied(format!(
                "{what}: the runtime may not reach {} ({e}): allow it as an outbound host",
                base.url("")
            )))),
            Err(TransportError::TooLarge(e)) => Err(Failure::Final(StoreError::Other(format!("{what}: {e}")))),
            Err(TransportError::Network(e)) => Err(Failure::Transient(format!("{what}: {e}"))),
        }
    }

    /// Sends a request to `base`, retrying transient failures with the engine's backoff and
    /// renewing the credentials once on a 401; the final reply (success or a refusal).
    fn send_to(&mut self, base: &BaseUrl, what: &str, request: Request) -> Result<Reply, StoreError> {
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            let problem = match self.attempt(base, what, &request) {
                Ok(reply) if reply.status == 401 && !renewed => {
                    self.renew(what)?;
                    renewed = true;
                    attempt -= 1;
                    continue;
                }
                Ok(reply) => return Ok(reply),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transient(problem)) => problem,
            };
            if attempt >= self.target.attempts {
                return Err(StoreError::Unavailable(format!("{problem} (after {attempt} attempts)")));
            }
            self.platform.note(&format!("{problem}; retrying (attempt {attempt} of {})", self.target.attempts));
            self.pause(attempt);
        }
    }

    /// [`Gcs::send_to`] Cloud Storage's endpoint.
    fn send(&mut self, what: &str, request: Request) -> Result<Reply, StoreError> {
        let endpoint = self.target.endpoint.clone();
        self.send_to(&endpoint, what, request)
    }

    /// The engine's backoff before attempt `attempt + 1`.
    fn pause(&mut self, attempt: u32) {
        let pause = crate::retry::backoff_ms(attempt, self.platform.random());
        self.platform.sleep_ms(pause);
    }

    /// The error a non-retryable status means, in words that say what to do.
    fn refusal(&self, what: &str, status: u16, body: &[u8]) -> StoreError {
        let detail: String = String::from_utf8_lossy(body).chars().filter(|c| !c.is_control()).take(300).collect();
        let bucket = &self.target.bucket;
        let who = self.who();
        match status {
            401 => StoreError::Denied(format!(
                "{what}: HTTP 401: Cloud Storage did not accept the access token of {who}, even a fresh one: {detail}"
            )),
            403 => StoreError::Denied(format!(
                "{what}: HTTP 403: {who} may not use bucket `{bucket}` (grant roles/storage.objectUser on the bucket, or see the README's least-privilege roles): {detail}"
            )),
            404 => StoreError::Denied(format!("{what}: bucket `{bucket}` does not exist (HTTP 404): {detail}")),
            _ => StoreError::Other(format!("{what}: HTTP {status}: {detail}")),
        }
    }

    /// A GET whose reply may hold at most `reply_limit` bytes.
    fn get(&mut self, what: &str, path: String, reply_limit: usize) -> Result<Reply, StoreError> {
        self.send(what, Request { method: Method::Get, path, headers: Vec::new(), body: Vec::new(), reply_limit })
    }

    fn metadata(&mut self, name: &str) -> Result<Option<ObjectResource>, StoreError> {
        let reply = self.get("reading object metadata", self.object_path(name), REPLY_BYTES)?;
        match metadata_reply(reply.status, &reply.body)? {
            Metadata::Found(resource) => Ok(Some(resource)),
            Metadata::Missing => Ok(None),
            Metadata::Refused => Err(self.refusal("reading object metadata", reply.status, &reply.body)),
        }
    }

    /// How long the bucket keeps deleted objects, in seconds; 0 when it does not or its policy
    /// cannot be read (it needs `storage.buckets.get`): then nothing can be proven.
    fn retention_seconds(&mut self) -> Result<u64, StoreError> {
        let now = self.platform.now_ms();
        if let Some((_, seconds)) = self.retention.filter(|(at, _)| now - at < POLICY_FRESH_MS) {
            return Ok(seconds);
        }
        let path = format!("/storage/v1/b/{}?fields=softDeletePolicy", self.target.bucket);
        let reply = self.get("reading the bucket's soft delete policy", path, REPLY_BYTES)?;
        if reply.status != 200 {
            self.platform.note(&format!(
                "the bucket's soft delete policy cannot be read (HTTP {}): deletions cannot be told from objects never created; grant storage.buckets.get",
                reply.status
            ));
        }
        let seconds = soft_delete_seconds(reply.status, &reply.body);
        self.retention = Some((now, seconds));
        Ok(seconds)
    }

    /// The keys (names without the target's prefix) of live or soft-deleted objects under `key_prefix`,
    /// narrowed to names whose last segment begins with `name`, sorted and each once (a name can
    /// have several soft-deleted generations), page by page (a page may come back short, even
    /// empty, with a token for the next), at most `limit`; or the reply that refused a page, for
    /// the caller to judge (listing soft-deleted objects needs more than reading them).
    fn keys(
        &mut self,
        key_prefix: &str,
        name: &str,
        listed: Listed,
        limit: u32,
    ) -> Result<Result<Vec<String>, Reply>, StoreError> {
        if key_prefix.starts_with('/') || key_prefix.split('/').any(|s| s == "." || s == "..") {
            return Err(StoreError::Other(format!("invalid prefix `{key_prefix}`")));
        }
        let root = self.target.prefix.clone();
        let full = format!("{root}{key_prefix}");
        let (what, deleted) = match listed {
            Listed::Live => ("listing objects", ""),
            Listed::SoftDeleted => ("listing soft-deleted objects", "&softDeleted=true"),
        };
        let glob = name_glob(&full, name);
        let mut keys = Vec::new();
        let mut page_token: Option<String> = None;
        while keys.len() < limit as usize {
            let mut path = format!(
                "/storage/v1/b/{}/o?prefix={}{deleted}&fields=items(name),nextPageToken&maxResults=1000",
                self.target.bucket,
                encode_segment(&full)
            );
            if let Some(glob) = &glob {
                path.push_str(&format!("&matchGlob={}", encode_segment(glob)));
            }
            if let Some(token) = &page_token {
                path.push_str(&format!("&pageToken={}", encode_segment(token)));
            }
            let reply = self.get(what, path, REPLY_BYTES)?;
            if reply.status != 200 {
                if listed == Listed::SoftDeleted {
                    self.platform.note(&format!("soft-deleted objects cannot be listed (HTTP {})", reply.status));
                }
                return Ok(Err(reply));
            }
            let page: serde_json::Value =
                serde_json::from_slice(&reply.body).map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
            let items = page["items"].as_array().map(Vec::as_slice).unwrap_or_default();
            let found = items
                .iter()
                .filter_map(|item| item["name"].as_str()?.strip_prefix(root.as_str()))
                .filter(|key| crate::platform::found_by(key, key_prefix, name));
            // Names come in order, a soft-deleted one once for each generation kept: the limit
            // counts names.
            for key in found {
                if keys.last().is_none_or(|last: &String| last != key) {
                    keys.push(key.to_string());
                }
            }
            match page["nextPageToken"].as_str() {
                Some(token) if !token.is_empty() => page_token = Some(token.to_string()),
                _ => break,
            }
        }
        keys.sort();
        keys.dedup();
        keys.truncate(limit as usize);
        Ok(Ok(keys))
    }

    /// The keys under `prefix` whose last segment begins with `name` (all of them for an empty
    /// `name`), sorted: for `status` and `verify`, which read what passes left.
    pub fn list(&mut self, prefix: &str, name: &str) -> Result<Vec<String>, StoreError> {
        self.keys(prefix, name, Listed::Live, u32::MAX)?
            .map_err(|reply| self.refusal("listing objects", reply.status, &reply.body))
    }

    /// [`Gcs::list`] of the soft-deleted objects; `None` when the bucket keeps none, or its
    /// policy or the listing cannot be read.
    pub fn list_deleted(&mut self, prefix: &str, name: &str) -> Result<Option<Vec<String>>, StoreError> {
        if self.retention_seconds()? == 0 {
            return Ok(None);
        }
        Ok(self.keys(prefix, name, Listed::SoftDeleted, u32::MAX)?.ok())
    }

    /// Deletes an object (`check`'s probe); gone already is done.
    pub fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        let name = self.name(key)?;
        let path = self.object_path(&name);
        let request =
            Request { method: Method::Delete, path, headers: Vec::new(), body: Vec::new(), reply_limit: REPLY_BYTES };
        let reply = self.send("deleting object", request)?;
        match reply.status {
            200 | 204 | 404 => Ok(()),
            s => Err(self.refusal("deleting object", s, &reply.body)),
        }
    }
}

/// The WIT `object-store`'s operations. The store's state (its token, the policy read) changes
/// as it works, so these take `&mut self`: the edge store holds one client for its instance, and
/// the host's [`ObjectStore`](crate::platform::ObjectStore) lends each call a client of its own.
impl<P: Platform> Gcs<P> {
    /// Creates `key` only if absent; with a `deadline_ms`, sends nothing that could end after it.
    pub fn create(
        &mut self,
        key: &str,
        data: &[u8],
        content_type: &str,
        deadline_ms: Option<i64>,
    ) -> Result<u64, StoreError> {
        let name = self.name(key)?;
        self.deadline = deadline_ms.map(|at_ms| Deadline {
            at_ms,
            wall_ms: self.platform.now_ms(),
            steady_ms: self.platform.steady_ms(),
        });
        let created = self.upload(&name, data, content_type, 0, StoreError::AlreadyExists);
        self.deadline = None;
        created
    }

    /// Three requests' time ([`Target::timeout_ms`]): a create starts requests (its retries, a
    /// resumable upload's chunks) while one can still end within it, so even two that hang to
    /// their timeout leave room for a third.
    pub fn lease_ms(&self) -> u64 {
        lease_ms(&self.target)
    }

    /// The object's bytes, of exactly one generation.
    pub fn read(&mut self, key: &str) -> Result<Option<Stored>, StoreError> {
        let name = self.name(key)?;
        // Metadata first, then exactly that generation's bytes: a concurrent replace makes the
        // second request miss, and the object is read again rather than two versions mixed.
        for _ in 0..5 {
            let Some(meta) = self.metadata(&name)? else {
                return Ok(None);
            };
            let generation = meta.generation()?;
            let path = format!("{}?alt=media&generation={generation}", self.object_path(&name));
            // Exactly that generation's bytes: its size is known, and no more is read.
            let reply = self.get("reading object", path, meta.size().max(REPLY_BYTES))?;
            match reply.status {
                200 => return Ok(Some(Stored { data: reply.body, generation })),
                404 => continue,
                s => return Err(self.refusal("reading object", s, &reply.body)),
            }
        }
        Err(StoreError::Unavailable(format!("object `{name}` kept changing while being read")))
    }

    /// Replaces generation `generation` of `key` (0: creates it).
    pub fn write_if_generation(
        &mut self,
        key: &str,
        data: &[u8],
        content_type: &str,
        generation: u64,
    ) -> Result<u64, StoreError> {
        let name = self.name(key)?;
        self.upload(&name, data, content_type, generation, StoreError::GenerationMismatch)
    }

    /// Live, soft-deleted, or neither; "neither" proves absence only where the bucket keeps
    /// deleted objects (soft delete, on by default for new buckets).
    pub fn presence(&mut self, key: &str, since_ms: Option<i64>) -> Result<Presence, StoreError> {
        let name = self.name(key)?;
        if self.metadata(&name)?.is_some() {
            return Ok(Presence::Present);
        }
        let deleted = self.keys(key, "", Listed::SoftDeleted, u32::MAX)?.ok().map(|keys| keys.iter().any(|k| k == key));
        let kept = if deleted == Some(false) { self.retention_seconds()? } else { 0 };
        Ok(absence(deleted, kept, since_ms, self.platform.now_ms()))
    }

    /// The keys under `prefix` whose last segment begins with `name`, at most `limit` of each kind.
    pub fn find(&mut self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
        let live = self
            .keys(prefix, name, Listed::Live, limit)?
            .map_err(|reply| self.refusal("listing objects", reply.status, &reply.body))?;
        // Soft-deleted names only where the bucket keeps them.
        let deleted = match self.retention_seconds()? {
            0 => None,
            _ => self.keys(prefix, name, Listed::SoftDeleted, limit)?.ok(),
        };
        Ok(Found { live, deleted })
    }
}

#[cfg(test)]
mod tests;
