//! Cloud Storage's JSON API as pure pieces: the retry verdict of a status, names in URLs,
//! checksums, multipart bodies, the replies to read, and what an absence proves. No I/O here.

use crate::platform::{Presence, StoreError};
use base64::Engine as _;
use serde::Deserialize;

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

/// The `matchGlob` that narrows a listing under `prefix` (full object names) to names whose last
/// segment begins with `name`: a superset (`**` may take a part of that segment too), which the
/// caller filters ([`crate::platform::found_by`]); `None` where either holds a glob character, or
/// `name` is empty (the prefix alone then).
pub fn name_glob(prefix: &str, name: &str) -> Option<String> {
    let plain = |s: &str| !s.contains(['*', '?', '[', ']', '{', '}', '\\', ',']);
    (!name.is_empty() && plain(prefix) && plain(name)).then(|| format!("{prefix}**{name}*"))
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

/// What a reply to an upload with a generation precondition says.
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

/// How many bytes a resumable session holds, from a 308 reply's `Range: bytes=0-N` (none: 0).
pub fn persisted(range: Option<&str>) -> Option<usize> {
    let Some(range) = range else {
        return Some(0);
    };
    let last = range.strip_prefix("bytes=0-")?.trim().parse::<usize>().ok()?;
    last.checked_add(1)
}
