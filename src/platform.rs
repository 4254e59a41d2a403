//! What the engine needs from the world, as traits: HTTP, a clock, randomness, and the object
//! store. The component implements them on WASI (`wasi_platform`); tests implement them in memory.

/// An HTTP request. Bodies are small JSON or form documents.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// `/path?query`, appended to the base URL.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The most bytes its reply's body may hold: a platform stops reading past it
    /// ([`TransportError::TooLarge`]), so that no reply can exhaust memory.
    pub reply_limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why no response arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The host refused to send it (destination not allowed). Final.
    Denied(String),
    /// Connection refused, reset or dropped, DNS failure, timeout, truncated reply. Transient.
    Network(String),
    /// The reply's body is larger than the request's [`Request::reply_limit`]; reading stopped
    /// there. Final: the same request gets the same reply.
    TooLarge(String),
}

/// Outgoing HTTP, time and randomness.
pub trait Platform {
    /// Sends the requests concurrently; one result per request, in order.
    fn send_many(
        &mut self,
        base: &crate::settings::BaseUrl,
        requests: &[Request],
    ) -> Vec<Result<Response, TransportError>>;
    fn now_ms(&self) -> i64;
    /// Milliseconds on a clock that never steps, from any origin: how much time passed, whatever
    /// the wall clock did meanwhile (an NTP step, a clock set by hand). The wall clock
    /// by default, for platforms whose clock only moves forward (test doubles).
    fn steady_ms(&self) -> u64 {
        u64::try_from(self.now_ms()).unwrap_or(0)
    }
    fn sleep_ms(&mut self, ms: u64);
    fn random(&mut self) -> u64;
    /// Something an operator should see that is not a failure (a retry, a permission that makes
    /// less provable); hosts with a log write it there, the others drop it.
    fn note(&mut self, _what: &str) {}
}

/// What a store can tell of an object without reading it (the WIT `presence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// An object is there.
    Present,
    /// One was there and has been deleted since (the SecOps feed's source deletion, seen
    /// through Cloud Storage's soft delete).
    Deleted,
    /// None is there, and none was deleted: no object was ever created under the key.
    Absent,
    /// None is there, and whether one was created and deleted since cannot be told.
    Unknown,
}

/// Keys found under a prefix (the WIT `found`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Keys of the objects there, sorted.
    pub live: Vec<String>,
    /// Keys of deleted objects the store still keeps there; `None` where it keeps none or
    /// cannot say.
    pub deleted: Option<Vec<String>>,
}

/// An object as read: its bytes and the generation they are (the WIT `stored-object`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub data: Vec<u8>,
    pub generation: u64,
}

/// The object store (the WIT `object-store` interface): the one store trait. The component
/// implements it over the WIT import, every host store implements it directly (the host adds
/// listing as an extension, for its own commands), and tests implement it in memory.
///
/// Calls take `&self`: a host shares one store between a pass and the thread that records a
/// stop, so a store that keeps state (a token, a cached policy) keeps it behind a lock.
pub trait ObjectStore {
    /// Creates `key` only if absent; with a `deadline_ms`, writes nothing after it (the WIT
    /// `create`).
    fn create(&self, key: &str, data: &[u8], content_type: &str, deadline_ms: Option<i64>) -> Result<u64, StoreError>;
    /// How long a create may take, its lease on a name; 0 for none (the WIT `lease-ms`).
    fn lease_ms(&self) -> u64 {
        0
    }
    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError>;
    fn write_if_generation(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
        generation: u64,
    ) -> Result<u64, StoreError>;
    /// What became of an object that may have been created from `since_ms` on (`None`: at any
    /// time).
    fn presence(&self, key: &str, since_ms: Option<i64>) -> Result<Presence, StoreError>;
    /// The keys under `prefix` whose last segment begins with `name`, at most `limit` of each
    /// kind (the WIT `find`).
    fn find(&self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError>;
}

/// Whether `key`, under `prefix`, has a last segment that begins with `name`: the WIT `find`'s
/// rule, which every store applies (Cloud Storage's glob filters on the server as well).
pub fn found_by(key: &str, prefix: &str, name: &str) -> bool {
    key.starts_with(prefix) && key.rsplit('/').next().is_some_and(|last| last.starts_with(name))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    AlreadyExists,
    GenerationMismatch,
    Unavailable(String),
    Denied(String),
    Other(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyExists => write!(f, "object already exists"),
            Self::GenerationMismatch => write!(f, "generation changed (another writer)"),
            Self::Unavailable(m) => write!(f, "store unavailable: {m}"),
            Self::Denied(m) => write!(f, "access denied: {m}"),
            Self::Other(m) => write!(f, "store error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// What log objects are stored as.
pub const CONTENT_TYPE_LOGS: &str = "application/gzip";
/// What checkpoints and status objects are stored as.
pub const CONTENT_TYPE_STATE: &str = "application/json";

/// A store error as the pass's failure, with what to do about it.
pub fn storage_failure(what: &str, key: &str, e: &StoreError) -> crate::settings::Failure {
    use crate::settings::{ErrorKind, Failure};
    let kind = match e {
        StoreError::GenerationMismatch => ErrorKind::Conflict,
        StoreError::Denied(_) => ErrorKind::Denied,
        _ => ErrorKind::Storage,
    };
    let advice = match e {
        StoreError::GenerationMismatch => {
            "another pass for this organization advanced it meanwhile; nothing was lost, the next pass continues"
        }
        StoreError::Unavailable(_) => "the next pass retries",
        StoreError::Denied(_) => {
            "check that the bucket exists and that the service account may create and read objects in it"
        }
        StoreError::AlreadyExists => "another writer uses this prefix; give each collector its own key prefix",
        StoreError::Other(_) => "see the store's message",
    };
    Failure::new(kind, format!("{what} `{key}`: {e}; {advice}"))
}

/// Access tokens longer than this are refused: a bearer header of that size is far beyond any
/// token Anypoint or Google issues (a JWT is a few KiB), and a runtime limits the size of a
/// request's headers (wasmtime traps above its limit).
pub const MAX_TOKEN_BYTES: usize = 16 << 10;

/// Whether a token can go in a header as it is: at most [`MAX_TOKEN_BYTES`] of visible ASCII.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "gave an access token of {} bytes (expected 1 to {MAX_TOKEN_BYTES}); it cannot be sent",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("gave an access token with characters a header cannot carry".into());
    }
    Ok(())
}

/// A token's lifetime from `expires_in` (seconds; an hour when absent), capped at a day: a
/// lifetime beyond `i64` ms must not wrap into one already over. Anypoint's tokens and the
/// metadata server's alike.
pub fn token_lifetime_ms(expires_in: Option<u64>) -> i64 {
    let seconds = expires_in.unwrap_or(3600).min(86_400);
    i64::try_from(seconds).unwrap_or(86_400).saturating_mul(1000)
}

/// A key as the stores take it: `/`-separated, relative, no empty, `.` or `..` segment.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty()
        || key.starts_with('/')
        || key.ends_with('/')
        || key.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        || key.contains('\0')
    {
        return Err(StoreError::Other(format!("invalid key `{key}`")));
    }
    Ok(())
}
