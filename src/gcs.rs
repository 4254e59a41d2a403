//! Google Cloud Storage's JSON API over any [`Platform`]: the object store of the edge component
//! (`edge/store`), which has nothing but `wasi:http`, so that the whole collector runs on a
//! runtime that offers only that.
//!
//! The request pieces (names in URLs, checksums, multipart bodies, the retry verdict of a status,
//! what an absence proves) are shared with the host's GCS store (`host/src/store/gcs`), so the two
//! speak one dialect of the API.

use crate::platform::{
    Found, Method, ObjectStore, Platform, Presence, Request, Response, StoreError, TransportError, check_key,
    check_token,
};
use crate::settings::BaseUrl;
use crate::variables::Values;
use base64::Engine as _;
use serde::Deserialize;

/// Cloud Storage's endpoint when none is configured.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// The variables the edge store reads: the names the host reads for the same things.
pub mod names {
    pub use crate::settings::names::{BUCKET, DEST, GCS_ENDPOINT as ENDPOINT};
    /// An OAuth access token for Cloud Storage, when no metadata server can mint one.
    pub const ACCESS_TOKEN: &str = "GOOGLE_OAUTH_ACCESS_TOKEN";
    /// The metadata server's `host[:port]` (Google's client libraries read the same variable).
    pub const METADATA_HOST: &str = "GCE_METADATA_HOST";
}

/// Where the metadata server is when `GCE_METADATA_HOST` is unset.
pub const METADATA_DEFAULT_HOST: &str = "metadata.google.internal";
/// The metadata server's token of the attached service account.
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// A token is renewed this long before it expires, so no request carries one about to lapse.
const RENEW_BEFORE_MS: i64 = 5 * 60 * 1000;
/// The most a reply about objects may hold (metadata, a listing page of 1,000 names, a policy,
/// an upload's resource, a token): far above what Cloud Storage sends.
const REPLY_BYTES: usize = 16 << 20;

/// What a status means for a GCS request.
#[derive(Debug, PartialEq, Eq)]
pub enum Class {
    Done,
    Retry,
    Final,
}

/// The one place that decides retry or not (Google's retry strategy: 408, 429, 5xx).
pub fn classify(status: u16) -> Class {
    match status {
        200..=299 | 308 => Class::Done,
        408 | 429 | 500..=599 => Class::Retry,
        _ => Class::Final,
    }
}

/// Percent-encodes an object name for a URL path segment or query value (`/` becomes `%2F`).
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
/// The `matchGlob` that narrows a listing under `prefix` (full object names) to names whose last
/// segment begins with `name`: a superset (`**` may take a part of that segment too), which the
/// caller filters ([`crate::platform::found_by`]); `None` where either holds a glob character, or
/// `name` is empty (the prefix alone then).
pub fn name_glob(prefix: &str, name: &str) -> Option<String> {
    let plain = |s: &str| !s.contains(['*', '?', '[', ']', '{', '}', '\\', ',']);
    (!name.is_empty() && plain(prefix) && plain(name)).then(|| format!("{prefix}**{name}*"))
}

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

/// The part of an object resource a store reads.
#[derive(Deserialize)]
pub struct ObjectResource {
    #[serde(default)]
    generation: Option<String>,
    #[serde(default)]
    crc32c: Option<String>,
    #[serde(default)]
    size: Option<String>,
}

impl ObjectResource {
    pub fn generation(&self) -> Result<u64, StoreError> {
        self.generation
            .as_deref()
            .and_then(|g| g.parse().ok())
            .ok_or_else(|| StoreError::Other("GCS reply has no generation".into()))
    }

    /// The stored size, 0 where the resource does not say.
    pub fn size(&self) -> usize {
        self.size.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    pub fn same_bytes(&self, data: &[u8]) -> bool {
        self.crc32c.as_deref() == Some(crc32c_b64(data).as_str())
            && self.size.as_deref() == Some(data.len().to_string().as_str())
    }
}

/// A bucket name as Cloud Storage takes it (lowercase letters, digits, `-`, `_`, `.`).
pub fn check_bucket(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() || !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    {
        return Err(format!("bucket name `{bucket}` is not valid: lowercase letters, digits, -, _ and . only"));
    }
    Ok(())
}

/// How long a bucket keeps deleted objects, in seconds, from the reply to
/// `GET /storage/v1/b/<bucket>?fields=softDeletePolicy`: 0 when it keeps none, or when the policy
/// cannot be read (it needs `storage.buckets.get`), for then nothing can be proven.
pub fn soft_delete_seconds(status: u16, body: &[u8]) -> u64 {
    if status != 200 {
        return 0;
    }
    let policy: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let seconds = &policy["softDeletePolicy"]["retentionDurationSeconds"];
    seconds.as_str().and_then(|s| s.parse::<u64>().ok()).or_else(|| seconds.as_u64()).unwrap_or(0)
}

/// The Cloud Storage endpoint `MULESOFT_AUDIT_GCS_ENDPOINT` names (a Private Service Connect
/// endpoint, a stand-in), else Google's: `https://`, or plain `http://` only to this machine, since
/// every request carries a token. The host's store and the edge store take it by this one rule.
pub fn endpoint(value: Option<&str>) -> Result<BaseUrl, String> {
    let url = value.map(str::trim).filter(|v| !v.is_empty()).unwrap_or(DEFAULT_ENDPOINT);
    let endpoint = BaseUrl::parse(url).map_err(|e| format!("{}: {e}", names::ENDPOINT))?;
    if !endpoint.https && !loopback(&endpoint.authority) {
        return Err(format!(
            "{} uses plain http:// to a non-loopback host: tokens would travel unencrypted; use https://",
            names::ENDPOINT
        ));
    }
    Ok(endpoint)
}

/// The metadata server's `host[:port]`: `GCE_METADATA_HOST` in the form Google's client libraries
/// read it, else the default. A scheme or a path is refused rather than half understood.
pub fn metadata_host(value: Option<&str>) -> Result<String, String> {
    let host = value.map(str::trim).filter(|h| !h.is_empty()).unwrap_or(METADATA_DEFAULT_HOST);
    if host.contains("://") || host.contains('/') {
        return Err(format!(
            "{} `{host}` must be host[:port], without a scheme or a path (as Google's client libraries read it)",
            names::METADATA_HOST
        ));
    }
    Ok(host.to_string())
}

/// What an object's absence proves. `deleted`: whether a soft-deleted version is listed
/// (`None`: soft-deleted objects cannot be listed); `kept_seconds`: how long the bucket keeps
/// deleted objects (0: not at all, or its policy cannot be read). "Absent" is proven only as far
/// back as the bucket keeps deleted objects.
pub fn absence(deleted: Option<bool>, kept_seconds: u64, since_ms: Option<i64>, now_ms: i64) -> Presence {
    match deleted {
        Some(true) => Presence::Deleted,
        None => Presence::Unknown,
        Some(false) => {
            let kept_ms = i64::try_from(kept_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
            let remembered = since_ms.is_some_and(|since| now_ms.saturating_sub(since) < kept_ms);
            if remembered { Presence::Absent } else { Presence::Unknown }
        }
    }
}

/// What a reply to an object's metadata says.
pub enum Metadata {
    Found(ObjectResource),
    /// 404: no object under the name.
    Missing,
    /// Another status: the caller words the refusal (it knows whose credentials were refused).
    Refused,
}

/// Reads a metadata reply; an error only when a 200's body is not an object resource.
pub fn metadata_reply(status: u16, body: &[u8]) -> Result<Metadata, StoreError> {
    match status {
        200 => serde_json::from_slice(body)
            .map(Metadata::Found)
            .map_err(|e| StoreError::Other(format!("object metadata: {e}"))),
        404 => Ok(Metadata::Missing),
        _ => Ok(Metadata::Refused),
    }
}

/// What a reply to an upload with `ifGenerationMatch` says.
pub enum Upload {
    /// Written, with this generation.
    Written(u64),
    /// 412: the precondition failed. The object may hold exactly these bytes (a retried request
    /// whose first attempt went through): read its metadata and ask [`written_before`].
    Precondition,
    /// Another status: the caller words the refusal.
    Refused,
}

/// Reads an upload's reply. GCS checks the CRC32C sent with the bytes; a store that did not must
/// not pass off a truncated object as written, so the stored size and checksum are compared too.
pub fn upload_reply(name: &str, status: u16, body: &[u8], data: &[u8]) -> Result<Upload, StoreError> {
    match status {
        200 | 201 => {
            let stored = serde_json::from_slice::<ObjectResource>(body)
                .map_err(|e| StoreError::Other(format!("upload reply: {e}")))?;
            if !stored.same_bytes(data) {
                return Err(StoreError::Other(format!(
                    "uploading object `{name}`: the stored object's size or CRC32C differs from what was sent"
                )));
            }
            stored.generation().map(Upload::Written)
        }
        412 => Ok(Upload::Precondition),
        _ => Ok(Upload::Refused),
    }
}

/// After a 412: the write happened if the object there holds exactly `data` (its generation);
/// otherwise the precondition really failed, which is `conflict` (`AlreadyExists` for a create,
/// `GenerationMismatch` for a swap).
pub fn written_before(existing: Option<&ObjectResource>, data: &[u8], conflict: StoreError) -> Result<u64, StoreError> {
    match existing {
        Some(existing) if existing.same_bytes(data) => existing.generation(),
        _ => Err(conflict),
    }
}

/// Where an access token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The metadata server at this address (Cloud Run, GKE, Compute Engine): renewed before it
    /// expires and after a 401.
    MetadataServer(BaseUrl),
    /// A token given in the configuration. The store cannot renew it: once Cloud Storage refuses
    /// it (an access token lasts about an hour) every pass fails as `denied`, marking nothing done
    /// it did not write, until the runtime is given a fresh one.
    Configured,
}

/// The edge store's settings, read from the variables the host reads for the same things.
#[derive(Clone)]
pub struct Target {
    pub endpoint: BaseUrl,
    pub bucket: String,
    /// Prefix of every key inside the bucket: empty or ending in `/`.
    pub prefix: String,
    pub tokens: TokenSource,
    /// Attempts per request before a transient fault is `unavailable`: the collector's own
    /// `MULESOFT_AUDIT_MAX_ATTEMPTS`, one knob for every request a pass makes at the edge.
    pub attempts: u32,
    /// The ceiling of one request to Cloud Storage, first byte to last, in ms: the host's store
    /// takes the same setting (an upload of a large object takes longer than a page of entries).
    pub timeout_ms: u64,
    /// The configured token; never logged (no `Debug`).
    configured_token: Option<String>,
}

impl Target {
    /// Reads and validates the settings; the error names the variable and what to set.
    pub fn from_env(values: &Values) -> Result<Self, String> {
        let dest = match (values.get(names::DEST), values.get(names::BUCKET)) {
            (Some(dest), _) => dest.to_string(),
            (None, Some(bucket)) => format!("gs://{bucket}"),
            (None, None) => {
                return Err(format!("no destination: set {} (gs://bucket[/prefix]) or {}", names::DEST, names::BUCKET));
            }
        };
        let rest = dest.strip_prefix("gs://").ok_or_else(|| {
            format!(
                "{} `{dest}`: the edge component writes to Cloud Storage only (gs://bucket[/prefix]); a directory needs the mulesoft-audit binary or the WASI command",
                values.label(names::DEST)
            )
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(|e| format!("{}: {e}", values.label(names::DEST)))?;
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        let endpoint = endpoint(values.get(names::ENDPOINT))?;
        let attempts = values.required::<u32>(crate::settings::names::MAX_ATTEMPTS)?.max(1);
        let configured_token = values.get(names::ACCESS_TOKEN).map(str::to_string);
        let timeout_ms = request_timeout_ms(values.get(crate::settings::names::GCS_TIMEOUT_SECS))?;
        let tokens = if configured_token.is_some() {
            TokenSource::Configured
        } else {
            let host = metadata_host(values.get(names::METADATA_HOST))?;
            // The metadata server speaks plain http on a link-local address, as Google's libraries
            // expect; it never leaves the machine.
            let server =
                BaseUrl::parse(&format!("http://{host}")).map_err(|e| format!("{}: {e}", names::METADATA_HOST))?;
            TokenSource::MetadataServer(server)
        };
        Ok(Self { endpoint, bucket: bucket.to_string(), prefix, tokens, attempts, timeout_ms, configured_token })
    }

    /// `gs://bucket/prefix`, for messages.
    pub fn describe(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.prefix)
    }
}

/// The ceiling of one request to Cloud Storage, in ms, from `MULESOFT_AUDIT_GCS_TIMEOUT_SECS`
/// (300 s when unset: an upload of one 32 MiB object fits easily).
pub fn request_timeout_ms(value: Option<&str>) -> Result<u64, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(300_000),
        Some(v) => match v.parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(secs.saturating_mul(1000)),
            _ => Err(format!("{} `{v}` is not a number of seconds above 0", crate::settings::names::GCS_TIMEOUT_SECS)),
        },
    }
}

/// Whether an authority (`host[:port]`) is this machine.
fn loopback(authority: &str) -> bool {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    crate::settings::is_loopback(host)
}

/// A token and when to renew it (Unix ms).
struct Token {
    value: String,
    renew_at_ms: i64,
}

/// The metadata server's token reply.
#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// A reply that is not a transient failure.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// Cloud Storage as the collector's [`ObjectStore`], over `platform`'s HTTP: multipart uploads
/// with `ifGenerationMatch` (0 creates only; N swaps generation N), reads of exactly one
/// generation, and soft delete for what an absence proves.
pub struct Gcs<P> {
    platform: P,
    target: Target,
    token: Option<Token>,
    /// The bucket's soft delete retention as read, with the clock then: passes ask it for every
    /// organization, and it is read again after a minute (a policy can change).
    retention: Option<(i64, u64)>,
}

impl<P: Platform> Gcs<P> {
    pub fn new(platform: P, target: Target) -> Self {
        let token = target.configured_token.clone().map(|value| Token { value, renew_at_ms: i64::MAX });
        Self { platform, target, token, retention: None }
    }

    fn name(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.target.prefix))
    }

    fn object_path(&self, name: &str) -> String {
        format!("/storage/v1/b/{}/o/{}", self.target.bucket, encode_segment(name))
    }

    fn send_one(&mut self, base: &BaseUrl, request: Request) -> Result<Response, TransportError> {
        let base = base.clone();
        self.platform
            .send_many(&base, std::slice::from_ref(&request))
            .pop()
            .unwrap_or_else(|| Err(TransportError::Network("no reply".into())))
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
                names::ACCESS_TOKEN,
                self.target.bucket
            )));
        };
        let request = Request {
            method: Method::Get,
            path: METADATA_TOKEN_PATH.into(),
            headers: vec![("metadata-flavor".into(), "Google".into())],
            body: Vec::new(),
            reply_limit: REPLY_BYTES,
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
                    let lifetime_ms = token.expires_in.unwrap_or(3600).saturating_mul(1000);
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
                        names::ACCESS_TOKEN
                    )));
                }
                Err(TransportError::Denied(e)) => {
                    return Err(StoreError::Denied(format!(
                        "the runtime may not reach the metadata server at {} ({e}): allow it, or set {}",
                        server.url(""),
                        names::ACCESS_TOKEN
                    )));
                }
                // A name that does not resolve: no metadata server here (not on Google Cloud), which
                // no retry will change.
                Err(TransportError::Network(e)) if e.contains("DnsError") => {
                    return Err(StoreError::Denied(format!(
                        "there is no metadata server at {} ({e}): off Google Cloud, set {}",
                        server.url(""),
                        names::ACCESS_TOKEN
                    )));
                }
                Err(TransportError::Network(e)) => problem = e,
                Err(TransportError::TooLarge(e)) => {
                    return Err(StoreError::Other(format!("the metadata server at {}: {e}", server.url(""))));
                }
            }
            if attempt < attempts {
                let pause = crate::retry::backoff_ms(attempt, self.platform.random());
                self.platform.sleep_ms(pause);
            }
        }
        Err(StoreError::Unavailable(format!(
            "no token from the metadata server at {}: {problem} (after {attempts} attempts)",
            server.url("")
        )))
    }

    /// Sends a request to Cloud Storage with a token, retrying transient failures with the
    /// engine's backoff and renewing the token once on a 401; returns the final reply.
    fn send(&mut self, what: &str, request: Request) -> Result<Reply, StoreError> {
        let endpoint = self.target.endpoint.clone();
        let mut renewed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut signed = request.clone();
            signed.headers.push(("authorization".into(), format!("Bearer {}", self.bearer()?)));
            let problem = match self.send_one(&endpoint, signed) {
                Ok(reply) if reply.status == 401 && !renewed => {
                    // A token Cloud Storage no longer takes: once, a fresh one.
                    self.token = None;
                    renewed = true;
                    attempt -= 1;
                    continue;
                }
                Ok(reply) if classify(reply.status) == Class::Retry => format!("{what}: HTTP {}", reply.status),
                Ok(reply) => return Ok(Reply { status: reply.status, body: reply.body }),
                Err(TransportError::Denied(e)) => {
                    return Err(StoreError::Denied(format!(
                        "{what}: the runtime may not reach {} ({e}): allow it as an outbound host",
                        endpoint.url("")
                    )));
                }
                Err(TransportError::Network(e)) => format!("{what}: {e}"),
                Err(TransportError::TooLarge(e)) => return Err(StoreError::Other(format!("{what}: {e}"))),
            };
            if attempt >= self.target.attempts {
                return Err(StoreError::Unavailable(format!("{problem} (after {attempt} attempts)")));
            }
            let pause = crate::retry::backoff_ms(attempt, self.platform.random());
            self.platform.sleep_ms(pause);
        }
    }

    /// The error a non-retryable status means, in words that say what to do.
    fn refusal(&self, what: &str, status: u16, body: &[u8]) -> StoreError {
        let detail: String = String::from_utf8_lossy(body).chars().filter(|c| !c.is_control()).take(300).collect();
        let bucket = &self.target.bucket;
        match status {
            401 => StoreError::Denied(format!(
                "{what}: HTTP 401: Cloud Storage did not accept the access token, even a fresh one: {detail}"
            )),
            403 => StoreError::Denied(format!(
                "{what}: HTTP 403: the token's principal may not use bucket `{bucket}` (grant roles/storage.objectUser on the bucket): {detail}"
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

    /// Uploads `data` under `name` if the object's generation is `if_generation` (0: absent);
    /// a 412 is `on_412`, unless the object holds exactly these bytes (a retried request whose
    /// first attempt went through).
    fn upload(
        &mut self,
        name: &str,
        data: &[u8],
        content_type: &str,
        if_generation: u64,
        on_412: StoreError,
    ) -> Result<u64, StoreError> {
        let metadata = serde_json::json!({ "name": name, "contentType": content_type, "crc32c": crc32c_b64(data) });
        let (boundary, body) = multipart_body(&metadata, content_type, data);
        let path = format!(
            "/upload/storage/v1/b/{}/o?uploadType=multipart&ifGenerationMatch={if_generation}",
            self.target.bucket
        );
        let headers = vec![("content-type".into(), format!("multipart/related; boundary={boundary}"))];
        let reply = self.send(
            "uploading object",
            Request { method: Method::Post, path, headers, body, reply_limit: REPLY_BYTES },
        )?;
        match upload_reply(name, reply.status, &reply.body, data)? {
            Upload::Written(generation) => Ok(generation),
            Upload::Precondition => written_before(self.metadata(name)?.as_ref(), data, on_412),
            Upload::Refused => Err(self.refusal("uploading object", reply.status, &reply.body)),
        }
    }

    /// How long the bucket keeps deleted objects, in seconds; 0 when it does not or its policy
    /// cannot be read (it needs `storage.buckets.get`).
    fn retention_seconds(&mut self) -> Result<u64, StoreError> {
        let now = self.platform.now_ms();
        if let Some((_, seconds)) = self.retention.filter(|(at, _)| now - at < 60_000) {
            return Ok(seconds);
        }
        let path = format!("/storage/v1/b/{}?fields=softDeletePolicy", self.target.bucket);
        let reply = self.get("reading the bucket's soft delete policy", path, REPLY_BYTES)?;
        let seconds = soft_delete_seconds(reply.status, &reply.body);
        self.retention = Some((now, seconds));
        Ok(seconds)
    }

    /// The names that begin with `prefix`, live or soft-deleted ones, page by page (a page may
    /// come back short, even empty, with a token for the next), at most `limit`; `None` when a
    /// page is refused (listing soft-deleted objects needs more than reading them).
    fn names(
        &mut self,
        prefix: &str,
        glob: Option<&str>,
        listed: Listed,
        limit: u32,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let what = match listed {
            Listed::Live => "listing objects",
            Listed::SoftDeleted => "listing soft-deleted objects",
        };
        let deleted = if listed == Listed::SoftDeleted { "&softDeleted=true" } else { "" };
        let mut names = Vec::new();
        let mut page_token: Option<String> = None;
        while names.len() < limit as usize {
            let mut path = format!(
                "/storage/v1/b/{}/o?prefix={}{deleted}&fields=items(name),nextPageToken&maxResults=1000",
                self.target.bucket,
                encode_segment(prefix)
            );
            if let Some(glob) = glob {
                path.push_str(&format!("&matchGlob={}", encode_segment(glob)));
            }
            if let Some(token) = &page_token {
                path.push_str(&format!("&pageToken={}", encode_segment(token)));
            }
            let reply = self.get(what, path, REPLY_BYTES)?;
            if reply.status != 200 {
                return Ok(None);
            }
            let page: serde_json::Value =
                serde_json::from_slice(&reply.body).map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
            let items = page["items"].as_array().map(Vec::as_slice).unwrap_or_default();
            names.extend(items.iter().filter_map(|item| item["name"].as_str()).map(str::to_string));
            match page["nextPageToken"].as_str() {
                Some(token) if !token.is_empty() => page_token = Some(token.to_string()),
                _ => break,
            }
        }
        names.truncate(limit as usize);
        Ok(Some(names))
    }
}

/// Which objects a listing names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    Live,
    SoftDeleted,
}

impl<P: Platform> ObjectStore for Gcs<P> {
    fn create(&mut self, key: &str, data: &[u8], content_type: &str) -> Result<u64, StoreError> {
        let name = self.name(key)?;
        self.upload(&name, data, content_type, 0, StoreError::AlreadyExists)
    }

    fn read(&mut self, key: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
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
                200 => return Ok(Some((reply.body, generation))),
                404 => continue,
                s => return Err(self.refusal("reading object", s, &reply.body)),
            }
        }
        Err(StoreError::Unavailable(format!("object `{name}` kept changing while being read")))
    }

    fn write_if_generation(
        &mut self,
        key: &str,
        data: &[u8],
        content_type: &str,
        generation: u64,
    ) -> Result<u64, StoreError> {
        let name = self.name(key)?;
        self.upload(&name, data, content_type, generation, StoreError::GenerationMismatch)
    }

    fn presence(&mut self, key: &str, since_ms: Option<i64>) -> Result<Presence, StoreError> {
        let name = self.name(key)?;
        if self.metadata(&name)?.is_some() {
            return Ok(Presence::Present);
        }
        let deleted = self.names(&name, None, Listed::SoftDeleted, u32::MAX)?.map(|names| names.contains(&name));
        let kept = if deleted == Some(false) { self.retention_seconds()? } else { 0 };
        Ok(absence(deleted, kept, since_ms, self.platform.now_ms()))
    }

    fn find(&mut self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
        if prefix.starts_with('/') || prefix.split('/').any(|s| s == "." || s == "..") {
            return Err(StoreError::Other(format!("invalid prefix `{prefix}`")));
        }
        let root = self.target.prefix.clone();
        let full = format!("{root}{prefix}");
        let glob = name_glob(&full, name);
        let keys = |names: Vec<String>| -> Vec<String> {
            let mut keys: Vec<String> = names
                .iter()
                .filter_map(|n| n.strip_prefix(root.as_str()))
                .filter(|k| crate::platform::found_by(k, prefix, name))
                .map(str::to_string)
                .collect();
            keys.sort();
            keys.dedup();
            keys.truncate(limit as usize);
            keys
        };
        let live = match self.names(&full, glob.as_deref(), Listed::Live, u32::MAX)? {
            Some(names) => keys(names),
            None => return Err(StoreError::Denied(format!("listing objects under `{full}` was refused"))),
        };
        // Soft-deleted names only where the bucket keeps them.
        let deleted = match self.retention_seconds()? {
            0 => None,
            _ => self.names(&full, glob.as_deref(), Listed::SoftDeleted, u32::MAX)?.map(keys),
        };
        Ok(Found { live, deleted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, VecDeque};

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
        for s in [400, 401, 403, 404, 410, 412] {
            assert_eq!(classify(s), Class::Final);
        }
    }

    #[test]
    fn an_absence_proves_only_what_the_bucket_remembers() {
        let now = 10_000_000;
        assert_eq!(absence(Some(true), 0, None, now), Presence::Deleted);
        assert_eq!(absence(None, 604_800, Some(now - 1), now), Presence::Unknown);
        assert_eq!(absence(Some(false), 0, Some(now - 1), now), Presence::Unknown);
        assert_eq!(absence(Some(false), 60, Some(now - 59_000), now), Presence::Absent);
        assert_eq!(absence(Some(false), 60, Some(now - 61_000), now), Presence::Unknown);
        assert_eq!(absence(Some(false), 60, None, now), Presence::Unknown);
    }

    fn values(pairs: &[(&str, &str)]) -> Values {
        Values::from_env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn the_target_is_read_from_the_hosts_variables() {
        let t = Target::from_env(&values(&[(names::DEST, "gs://audit-logs/mule/")])).unwrap();
        assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("audit-logs", "mule/"));
        assert_eq!(t.endpoint, BaseUrl::parse(DEFAULT_ENDPOINT).unwrap());
        assert_eq!(t.tokens, TokenSource::MetadataServer(BaseUrl::parse("http://metadata.google.internal").unwrap()));
        let t = Target::from_env(&values(&[(names::BUCKET, "b"), (names::ACCESS_TOKEN, "ya29.x")])).unwrap();
        assert_eq!((t.bucket.as_str(), t.prefix.as_str(), &t.tokens), ("b", "", &TokenSource::Configured));
        assert_eq!(t.attempts, 6, "the collector's default");
        let t = Target::from_env(&values(&[
            (names::BUCKET, "b"),
            (names::ENDPOINT, "http://127.0.0.1:4443"),
            (names::METADATA_HOST, "127.0.0.1:9"),
            (crate::settings::names::MAX_ATTEMPTS, "2"),
        ]))
        .unwrap();
        assert_eq!(t.tokens, TokenSource::MetadataServer(BaseUrl::parse("http://127.0.0.1:9").unwrap()));
        assert_eq!(t.attempts, 2);

        let refused = |pairs: &[(&str, &str)], needle: &str| {
            let message = Target::from_env(&values(pairs)).err().unwrap_or_default();
            assert!(message.contains(needle), "{pairs:?}: {message}");
        };
        refused(&[], "no destination");
        refused(&[(names::DEST, "/data")], "Cloud Storage only");
        refused(&[(names::DEST, "gs://Bad_Bucket")], "not valid");
        refused(&[(names::BUCKET, "b"), (names::ENDPOINT, "http://storage.example")], "unencrypted");
        refused(&[(names::BUCKET, "b"), (names::METADATA_HOST, "http://169.254.169.254")], "without a scheme");
    }

    /// Cloud Storage and a metadata server in memory: generations, preconditions, soft delete,
    /// tokens that expire, and a queue of faults.
    struct FakeGoogle {
        now_ms: i64,
        objects: BTreeMap<String, (Vec<u8>, u64)>,
        deleted: Vec<String>,
        next_generation: u64,
        issued: Vec<String>,
        valid: Vec<String>,
        faults: VecDeque<u16>,
        requests: Vec<String>,
        lose_reply_of_next_upload: bool,
    }

    impl FakeGoogle {
        fn new() -> Self {
            Self {
                now_ms: 1_700_000_000_000,
                objects: BTreeMap::new(),
                deleted: Vec::new(),
                next_generation: 1000,
                issued: Vec::new(),
                valid: Vec::new(),
                faults: VecDeque::new(),
                requests: Vec::new(),
                lose_reply_of_next_upload: false,
            }
        }

        fn reply(status: u16, body: serde_json::Value) -> Response {
            Response { status, headers: Vec::new(), body: body.to_string().into_bytes() }
        }

        fn resource(name: &str, data: &[u8], generation: u64) -> serde_json::Value {
            serde_json::json!({"name": name, "generation": generation.to_string(), "size": data.len().to_string(), "crc32c": crc32c_b64(data)})
        }

        fn handle(&mut self, base: &BaseUrl, r: &Request) -> Response {
            let header = |n: &str| r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
            if base.authority == "nowhere.test" {
                unreachable!("answered by send_many");
            }
            if base.authority == "metadata.test" {
                if header("metadata-flavor").as_deref() != Some("Google") || r.path != METADATA_TOKEN_PATH {
                    return Self::reply(403, serde_json::json!({}));
                }
                let token = format!("ya29.{}", self.issued.len());
                self.issued.push(token.clone());
                self.valid.push(token.clone());
                return Self::reply(200, serde_json::json!({"access_token": token, "expires_in": 3599}));
            }
            if let Some(status) = self.faults.pop_front() {
                return Self::reply(status, serde_json::json!({}));
            }
            let bearer = header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_string));
            if !bearer.is_some_and(|t| self.valid.contains(&t)) {
                return Self::reply(401, serde_json::json!({}));
            }
            let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
            let param = |n: &str| query.split('&').find_map(|kv| kv.strip_prefix(&format!("{n}=")).map(str::to_string));
            if let Some(rest) = path.strip_prefix("/upload/storage/v1/b/b/o") {
                assert!(rest.is_empty());
                let wanted: u64 = param("ifGenerationMatch").unwrap().parse().unwrap();
                let body = String::from_utf8_lossy(&r.body).into_owned();
                let name = body.split("\"name\":\"").nth(1).unwrap().split('"').next().unwrap().to_string();
                let data_start = body.find("application/gzip\r\n\r\n").map(|i| i + 20).unwrap_or(0);
                let data_end = r.body.len() - body.rsplit("\r\n--").next().unwrap().len() - 4;
                let data = r.body[data_start..data_end].to_vec();
                let current = self.objects.get(&name).map_or(0, |(_, g)| *g);
                if current != wanted {
                    return Self::reply(412, serde_json::json!({}));
                }
                self.next_generation += 1;
                let generation = self.next_generation;
                self.objects.insert(name.clone(), (data.clone(), generation));
                if std::mem::take(&mut self.lose_reply_of_next_upload) {
                    return Self::reply(503, serde_json::json!({}));
                }
                return Self::reply(200, Self::resource(&name, &data, generation));
            }
            if path == "/storage/v1/b/b" {
                return Self::reply(
                    200,
                    serde_json::json!({"softDeletePolicy": {"retentionDurationSeconds": "604800"}}),
                );
            }
            if path == "/storage/v1/b/b/o" {
                // One name a page, as Cloud Storage may answer: a reader must follow the tokens.
                let prefix = param("prefix").unwrap().replace("%2F", "/");
                let matching: Vec<&String> = match param("softDeleted").as_deref() {
                    Some("true") => self.deleted.iter().filter(|n| n.starts_with(&prefix)).collect(),
                    _ => self.objects.keys().filter(|n| n.starts_with(&prefix)).collect(),
                };
                let at: usize = param("pageToken").map_or(0, |t| t.parse().unwrap());
                let items: Vec<_> = matching.get(at).map(|n| serde_json::json!({"name": n})).into_iter().collect();
                let mut page = serde_json::json!({"items": items});
                if at + 1 < matching.len() {
                    page["nextPageToken"] = serde_json::json!((at + 1).to_string());
                }
                return Self::reply(200, page);
            }
            let name = path.strip_prefix("/storage/v1/b/b/o/").unwrap().replace("%2F", "/");
            match (self.objects.get(&name), param("alt")) {
                (None, _) => Self::reply(404, serde_json::json!({})),
                (Some((data, generation)), None) => Self::reply(200, Self::resource(&name, data, *generation)),
                (Some((data, generation)), Some(_)) => {
                    assert_eq!(param("generation"), Some(generation.to_string()));
                    Response { status: 200, headers: Vec::new(), body: data.clone() }
                }
            }
        }
    }

    impl Platform for FakeGoogle {
        fn send_many(&mut self, base: &BaseUrl, requests: &[Request]) -> Vec<Result<Response, TransportError>> {
            requests
                .iter()
                .map(|r| {
                    self.requests.push(format!("{} {}", base.authority, r.path));
                    if base.authority == "nowhere.test" {
                        // What wasmtime reports for a name that does not resolve.
                        return Err(TransportError::Network(
                            "ErrorCode::DnsError(DnsErrorPayload { rcode: None })".into(),
                        ));
                    }
                    Ok(self.handle(base, r))
                })
                .collect()
        }
        fn now_ms(&self) -> i64 {
            self.now_ms
        }
        fn sleep_ms(&mut self, ms: u64) {
            self.now_ms += ms as i64;
        }
        fn random(&mut self) -> u64 {
            7
        }
    }

    fn store() -> Gcs<FakeGoogle> {
        let target = Target::from_env(&values(&[
            (names::DEST, "gs://b/p"),
            (names::ENDPOINT, "http://127.0.0.1:1"),
            (names::METADATA_HOST, "metadata.test"),
        ]))
        .unwrap();
        Gcs::new(FakeGoogle::new(), target)
    }

    const GZ: &str = "application/gzip";

    #[test]
    fn creates_reads_and_swaps_with_preconditions() {
        let mut s = store();
        assert_eq!(s.read("a/x").unwrap(), None);
        let g1 = s.create("a/x", b"one", GZ).unwrap();
        assert_eq!(s.create("a/x", b"two", GZ), Err(StoreError::AlreadyExists));
        assert_eq!(s.read("a/x").unwrap(), Some((b"one".to_vec(), g1)));
        assert!(s.platform.objects.contains_key("p/a/x"), "keys live under the prefix");
        assert_eq!(s.write_if_generation("a/x", b"two", GZ, g1 + 7), Err(StoreError::GenerationMismatch));
        let g2 = s.write_if_generation("a/x", b"two", GZ, g1).unwrap();
        assert!(g2 > g1);
        assert_eq!(s.read("a/x").unwrap(), Some((b"two".to_vec(), g2)));
        assert_eq!(s.create("../x", b"", GZ), Err(StoreError::Other("invalid key `../x`".into())));
        // One token for all of it, asked with the metadata server's header.
        assert_eq!(s.platform.issued.len(), 1);
    }

    #[test]
    fn a_lost_reply_is_recognised_as_the_write_that_happened() {
        let mut s = store();
        s.platform.lose_reply_of_next_upload = true;
        let g = s.create("a/x", b"one", GZ).unwrap();
        assert_eq!(s.read("a/x").unwrap(), Some((b"one".to_vec(), g)));
        // Other bytes under a taken key are still a refusal.
        s.platform.lose_reply_of_next_upload = true;
        assert_eq!(s.create("a/y", b"y", GZ).map(|_| ()), Ok(()));
        assert_eq!(s.create("a/y", b"other", GZ), Err(StoreError::AlreadyExists));
    }

    #[test]
    fn transient_faults_are_retried_and_then_reported_as_unavailable() {
        let mut s = store();
        s.platform.faults.extend([503, 429, 500]);
        assert!(s.create("a/x", b"one", GZ).is_ok());
        s.platform.faults.extend(vec![503; s.target.attempts as usize]);
        assert!(matches!(s.create("a/y", b"y", GZ), Err(StoreError::Unavailable(m)) if m.contains("HTTP 503")));
        assert_eq!(s.read("a/y").unwrap(), None, "nothing written");
    }

    #[test]
    fn an_expired_token_is_renewed_and_a_revoked_one_once_on_401() {
        let mut s = store();
        s.create("a/x", b"one", GZ).unwrap();
        // An hour on: renewed before use.
        s.platform.now_ms += 3_600_000;
        s.read("a/x").unwrap();
        assert_eq!(s.platform.issued.len(), 2);
        // Revoked: a 401, then a fresh token, once.
        s.platform.valid.clear();
        s.read("a/x").unwrap();
        assert_eq!(s.platform.issued.len(), 3);
        // A configured token that Cloud Storage refuses cannot be renewed: denied, saying which.
        let mut s = store();
        s.target.tokens = TokenSource::Configured;
        s.token = Some(Token { value: "ya29.stale".into(), renew_at_ms: i64::MAX });
        assert!(matches!(s.read("a/x"), Err(StoreError::Denied(m)) if m.contains(names::ACCESS_TOKEN)));
    }

    #[test]
    fn no_metadata_server_is_a_setting_to_fix_not_an_outage() {
        let mut s = store();
        s.target.tokens = TokenSource::MetadataServer(BaseUrl::parse("http://nowhere.test").unwrap());
        let refused = s.read("a/x");
        assert!(matches!(&refused, Err(StoreError::Denied(m)) if m.contains(names::ACCESS_TOKEN)), "{refused:?}");
        assert_eq!(s.platform.requests.len(), 1, "asked once, not retried");
    }

    #[test]
    fn presence_tells_deleted_from_never_created() {
        let mut s = store();
        let now = s.platform.now_ms;
        s.create("a/x", b"one", GZ).unwrap();
        assert_eq!(s.presence("a/x", None).unwrap(), Presence::Present);
        s.platform.objects.remove("p/a/x");
        // Names the listing of `p/a/x` also returns, on pages before the one that matters.
        s.platform.deleted.extend(["p/a/x.1".into(), "p/a/x.2".into(), "p/a/x".into()]);
        assert_eq!(s.presence("a/x", Some(now)).unwrap(), Presence::Deleted, "found on the third page");
        s.platform.deleted.retain(|n| n != "p/a/x");
        assert_eq!(s.presence("a/x", Some(now)).unwrap(), Presence::Absent, "a/x.1 is not a/x");
        assert_eq!(s.presence("a/y", Some(now - 8 * 86_400_000)).unwrap(), Presence::Unknown);
    }

    #[test]
    fn find_lists_live_and_soft_deleted_keys_under_any_prefix_page_by_page() {
        let mut s = store();
        for key in ["logs/d/mulesoft-audit-o.1-1", "logs/d/mulesoft-audit-o.1-2", "logs/d/mulesoft-audit-other-1"] {
            s.create(key, b"x", GZ).unwrap();
        }
        s.platform.deleted.extend(["p/logs/d/mulesoft-audit-o.0-9".into(), "p/state/x".into()]);
        let found = s.find("logs/", "mulesoft-audit-o.", 10).unwrap();
        assert_eq!(found.live, ["logs/d/mulesoft-audit-o.1-1", "logs/d/mulesoft-audit-o.1-2"]);
        assert_eq!(found.deleted, Some(vec!["logs/d/mulesoft-audit-o.0-9".to_string()]));
        assert_eq!(s.find("logs/", "mulesoft-audit-o.", 1).unwrap().live.len(), 1, "at most the limit");
        assert!(s.find("../x", "", 10).is_err());
        assert_eq!(name_glob("p/logs/", "mulesoft-audit-o."), Some("p/logs/**mulesoft-audit-o.*".into()));
        assert_eq!(name_glob("p/[x]/", "m"), None, "a glob character in a prefix is not sent");
    }
}
