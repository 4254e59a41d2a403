//! In-memory doubles of the engine's two edges, for native tests: [`FakeApi`], the Anypoint API
//! on a manual clock, and [`MemoryStore`], an object store that can stop working after any call
//! (as a killed pass does) and delete objects as the SecOps feed does.

use crate::platform::{Found, ObjectStore, Platform, Presence, Request, Response, StoreError, Stored, TransportError};
use crate::settings::BaseUrl;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};

/// One audit entry as the fake API holds it.
#[derive(Debug, Clone)]
pub struct ApiEntry {
    /// The time the API filters and sorts on (ms).
    pub api_ms: i64,
    /// The entry's JSON, exactly as the API returns it.
    pub json: String,
    /// The API shows it from this clock time on (a late entry arrives after its own time).
    pub visible_from_ms: i64,
}

/// The Anypoint API: token, retention, and the query with cursor and offset paging over entries
/// sorted by time, on a clock that moves only when told (or when the engine sleeps).
#[derive(Debug, Default, Clone)]
pub struct FakeApi {
    pub now_ms: i64,
    pub orgs: BTreeMap<String, Vec<ApiEntry>>,
    /// The most entries a page holds, whatever `limit` asks (an API that caps pages).
    pub page_cap: Option<usize>,
    /// Query requests answered.
    pub queries: u32,
    /// Organizations whose cursor never moves: every page is the first (a looping API).
    pub looping: Vec<String>,
    /// How long each batch of requests takes (the clock moves on by it).
    pub latency_ms: i64,
    /// The retention reply's body, when not the usual 365 days.
    pub retention: Option<serde_json::Value>,
    /// The hierarchy reply's body (any organization's), when discovery asks.
    pub hierarchy: Option<String>,
    /// The access token issued, when not the usual one.
    pub token: Option<String>,
    /// The token endpoint refuses with a 400 that echoes the request, secret and all.
    pub echoing_token_endpoint: bool,
    /// Organizations whose query replies are never UTF-8.
    pub garbled: Vec<String>,
    /// Organizations whose query replies are this body, whatever was asked.
    pub replies: BTreeMap<String, String>,
    seed: u64,
}

impl FakeApi {
    pub fn new(now_ms: i64) -> Self {
        Self { now_ms, seed: 0x9e37_79b9_7f4a_7c15, ..Self::default() }
    }

    /// Adds an entry, keeping each org's entries in time order (stable for equal times).
    pub fn add(&mut self, org: &str, entry: ApiEntry) {
        let entries = self.orgs.entry(org.to_string()).or_default();
        let at = entries.partition_point(|e| e.api_ms <= entry.api_ms);
        entries.insert(at, entry);
    }

    /// Every entry of `org`, visible or not.
    pub fn entries(&self, org: &str) -> &[ApiEntry] {
        self.orgs.get(org).map_or(&[], Vec::as_slice)
    }

    fn reply(status: u16, body: serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    fn answer(&mut self, request: &Request) -> Response {
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        if path == "/accounts/api/v2/oauth2/token" {
            if self.echoing_token_endpoint {
                let echoed = String::from_utf8_lossy(&request.body).into_owned();
                return Self::reply(400, serde_json::json!({"error": "invalid_client", "request": echoed}));
            }
            let token = self.token.clone().unwrap_or_else(|| "token".into());
            return Self::reply(200, serde_json::json!({"access_token": token, "expires_in": 3600}));
        }
        if let (Some(body), true) = (&self.hierarchy, path.ends_with("/hierarchy")) {
            return Response { status: 200, headers: Vec::new(), body: body.clone().into_bytes() };
        }
        let Some(rest) = path.strip_prefix("/audit/v2/organizations/") else {
            return Self::reply(404, serde_json::json!({"message": "not found"}));
        };
        let (org, what) = rest.split_once('/').unwrap_or((rest, ""));
        match what {
            "retentionSettings" => Self::reply(
                200,
                self.retention.clone().unwrap_or_else(|| serde_json::json!({"data": [{"retentionPeriod": 365}]})),
            ),
            "query" if self.replies.contains_key(org) => {
                self.queries += 1;
                let body = self.replies[org].clone().into_bytes();
                Response { status: 200, headers: Vec::new(), body }
            }
            "query" if self.garbled.iter().any(|o| o == org) => {
                self.queries += 1;
                Response { status: 200, headers: Vec::new(), body: b"{\"data\":[\"\xff\xfe\"]}".to_vec() }
            }
            "query" => self.query(org, query, &request.body),
            _ => Self::reply(404, serde_json::json!({"message": "not found"})),
        }
    }

    fn query(&mut self, org: &str, query: &str, body: &[u8]) -> Response {
        self.queries += 1;
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Self::reply(400, serde_json::json!({"message": "bad body"}));
        };
        let number = |field: &str| body.get(field).and_then(serde_json::Value::as_i64);
        let (Some(start), Some(end)) = (number("startDate"), number("endDate")) else {
            return Self::reply(400, serde_json::json!({"message": "startDate and endDate required"}));
        };
        let limit = number("limit").unwrap_or(200).clamp(1, 200) as usize;
        let limit = self.page_cap.map_or(limit, |cap| limit.min(cap));
        let cursor_paging = query.contains("cursorPagination=true");
        let offset = if cursor_paging {
            body.get("cursor").and_then(|c| c.as_str()).and_then(|c| c.strip_prefix("c")?.parse().ok()).unwrap_or(0)
        } else {
            number("offset").unwrap_or(0).max(0) as usize
        };
        let now = self.now_ms;
        let matching: Vec<&ApiEntry> = self
            .entries(org)
            .iter()
            .filter(|e| e.visible_from_ms <= now && (start..=end).contains(&e.api_ms))
            .collect();
        // Entries go out byte for byte, as the real API's do (a `Value` would sort their keys).
        let page: Vec<&str> = matching.iter().skip(offset).take(limit).map(|e| e.json.as_str()).collect();
        let mut reply = format!(r#"{{"data":[{}]"#, page.join(","));
        if !cursor_paging || query.contains("doIncludeTotal=true") {
            reply.push_str(&format!(r#","total":{}"#, matching.len()));
        }
        if cursor_paging && !page.is_empty() {
            let next = if self.looping.iter().any(|o| o == org) { offset } else { offset + page.len() };
            reply.push_str(&format!(r#","cursor":"c{next}""#));
        }
        reply.push('}');
        Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: reply.into_bytes(),
        }
    }
}

impl Platform for FakeApi {
    fn send_many(&mut self, _base: &BaseUrl, requests: &[Request]) -> Vec<Result<Response, TransportError>> {
        let replies = requests.iter().map(|r| Ok(self.answer(r))).collect();
        self.now_ms += self.latency_ms;
        replies
    }
    fn now_ms(&self) -> i64 {
        self.now_ms
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.now_ms += ms as i64;
    }
    fn random(&mut self) -> u64 {
        // xorshift64, from a seed no clone shares: a pass runs on a clone of the API, and two
        // passes drawing the same lineage is what real randomness never does.
        static DRAWS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        self.seed ^= DRAWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed).wrapping_mul(0xd134_2543_de82_ef95);
        self.seed |= 1;
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }
}

/// How the store fails from some call on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The call is not carried out (the pass died before it).
    Before,
    /// The call is carried out but its reply is lost (the pass died waiting for it).
    After,
}

/// An object store in memory. What its calls change sits in cells, as the trait's calls take
/// `&self`; tests set the rest directly.
#[derive(Debug, Default)]
pub struct MemoryStore {
    pub objects: RefCell<BTreeMap<String, (Vec<u8>, u64)>>,
    /// Names of deleted objects and when they were deleted, which a store with soft delete
    /// remembers for `remembers_ms`.
    pub deleted: BTreeMap<String, i64>,
    /// Whether deleted objects are remembered (Cloud Storage's soft delete).
    pub soft_delete: bool,
    pub remembers_ms: i64,
    /// The store's clock, for soft delete's memory.
    pub now_ms: i64,
    /// Every object ever created under a name, in order (deleted ones too).
    pub created: RefCell<Vec<(String, Vec<u8>)>>,
    /// Every call carried out, in order: `create KEY`, `write KEY` (the bytes written), `read
    /// KEY`, `presence KEY`.
    pub calls: RefCell<Vec<(String, Vec<u8>)>>,
    /// Calls left before the store stops working, and how it stops.
    pub stop: Cell<Option<(u32, Stop)>>,
    /// Whether the calls of the search before a first checkpoint ([`crate::ledger`]: `find`,
    /// and reading `status.json`) count towards `stop`. Off, scenarios count only the calls of
    /// the write protocol they name; the model turns it on.
    pub stops_in_search: bool,
    /// Its lease on a name, as a Cloud Storage store has one ([`ObjectStore::lease_ms`]); 0:
    /// none, as a directory.
    pub lease_ms: u64,
    generation: Cell<u64>,
}

impl MemoryStore {
    /// Whether this call may go ahead, and whether its reply is then lost. `search`: a call of
    /// the search before a first checkpoint.
    fn gate(&self, search: bool) -> Result<bool, StoreError> {
        if search && !self.stops_in_search {
            return Ok(false);
        }
        match self.stop.get() {
            None => Ok(false),
            Some((0, _)) => Err(StoreError::Unavailable("the pass was stopped".into())),
            Some((left, how)) => {
                self.stop.set(Some((left - 1, how)));
                Ok(left == 1 && how == Stop::After)
            }
        }
    }

    fn outcome<T>(lost: bool, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if lost { Err(StoreError::Unavailable("the reply was lost".into())) } else { result }
    }

    /// Deletes every object under `prefix`, as the feed does after ingesting.
    pub fn delete_under(&mut self, prefix: &str) {
        let names: Vec<String> = self.objects.get_mut().keys().filter(|k| k.starts_with(prefix)).cloned().collect();
        for name in names {
            self.objects.get_mut().remove(&name);
            self.deleted.insert(name, self.now_ms);
        }
    }

    fn put(&self, key: &str, data: &[u8]) -> u64 {
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        self.objects.borrow_mut().insert(key.to_string(), (data.to_vec(), generation));
        generation
    }
}

impl ObjectStore for MemoryStore {
    fn create(&self, key: &str, data: &[u8], _content_type: &str, deadline_ms: Option<i64>) -> Result<u64, StoreError> {
        let lost = self.gate(false)?;
        self.calls.borrow_mut().push((format!("create {key}"), Vec::new()));
        let result = if deadline_ms.is_some_and(|deadline| self.now_ms > deadline) {
            Err(StoreError::Unavailable(format!("the lease on `{key}` has ended")))
        } else if self.objects.borrow().contains_key(key) {
            Err(StoreError::AlreadyExists)
        } else {
            self.created.borrow_mut().push((key.to_string(), data.to_vec()));
            Ok(self.put(key, data))
        };
        Self::outcome(lost, result)
    }

    fn lease_ms(&self) -> u64 {
        self.lease_ms
    }
    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        let lost = self.gate(key.ends_with("/status.json"))?;
        self.calls.borrow_mut().push((format!("read {key}"), Vec::new()));
        let stored = self
            .objects
            .borrow()
            .get(key)
            .map(|(data, generation)| Stored { data: data.clone(), generation: *generation });
        Self::outcome(lost, Ok(stored))
    }

    fn write_if_generation(
        &self,
        key: &str,
        data: &[u8],
        _content_type: &str,
        generation: u64,
    ) -> Result<u64, StoreError> {
        let lost = self.gate(false)?;
        self.calls.borrow_mut().push((format!("write {key}"), data.to_vec()));
        let current = self.objects.borrow().get(key).map_or(0, |(_, g)| *g);
        let result = if current == generation { Ok(self.put(key, data)) } else { Err(StoreError::GenerationMismatch) };
        Self::outcome(lost, result)
    }

    fn presence(&self, key: &str, since_ms: Option<i64>) -> Result<Presence, StoreError> {
        let lost = self.gate(false)?;
        self.calls.borrow_mut().push((format!("presence {key}"), Vec::new()));
        // Deleted objects are remembered for `remembers_ms`; absence is proven only that far.
        let remembered = since_ms.is_some_and(|since| self.now_ms - since <= self.remembers_ms);
        let presence = if self.objects.borrow().contains_key(key) {
            Presence::Present
        } else if !self.soft_delete && !self.deleted.is_empty() {
            Presence::Unknown
        } else if self.deleted.get(key).is_some_and(|at| self.now_ms - at <= self.remembers_ms) {
            Presence::Deleted
        } else if self.deleted.is_empty() || remembered {
            Presence::Absent
        } else {
            Presence::Unknown
        };
        Self::outcome(lost, Ok(presence))
    }

    fn find(&self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
        let lost = self.gate(true)?;
        self.calls.borrow_mut().push((format!("find {prefix} {name}"), Vec::new()));
        let under = |keys: &mut dyn Iterator<Item = &String>| -> Vec<String> {
            keys.filter(|k| crate::platform::found_by(k, prefix, name)).take(limit as usize).cloned().collect()
        };
        let objects = self.objects.borrow();
        let live = under(&mut objects.keys());
        // Deleted and not created again since; remembered for as long as soft delete keeps them.
        let deleted = self.soft_delete.then(|| {
            let remembered = self
                .deleted
                .iter()
                .filter(|(k, at)| self.now_ms - **at <= self.remembers_ms && !objects.contains_key(*k))
                .map(|(k, _)| k);
            under(&mut remembered.into_iter())
        });
        Self::outcome(lost, Ok(Found { live, deleted }))
    }
}

/// Calls left before a pause, and the channels to say so and to be resumed.
pub type Pause = (u32, mpsc::Sender<()>, mpsc::Receiver<()>);

/// A store two threads share; one of them may pause after a number of calls.
pub struct Shared {
    pub store: Arc<Mutex<MemoryStore>>,
    pub pause: RefCell<Option<Pause>>,
}

impl Shared {
    /// `search`: a call of the search before a first checkpoint, which counts towards the pause
    /// only where the store counts it towards a stop ([`MemoryStore::stops_in_search`]).
    fn call<T>(&self, search: bool, op: impl FnOnce(&MemoryStore) -> T) -> T {
        let counted = !search || self.store.lock().unwrap_or_else(|p| p.into_inner()).stops_in_search;
        let mut pause = self.pause.borrow_mut();
        if let (true, Some((left, paused, resume))) = (counted, &mut *pause) {
            if *left == 0 {
                let _ = paused.send(());
                let _ = resume.recv();
                *pause = None;
            } else {
                *left -= 1;
            }
        }
        drop(pause);
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        op(&store)
    }
}

impl ObjectStore for Shared {
    fn create(&self, key: &str, data: &[u8], content_type: &str, deadline_ms: Option<i64>) -> Result<u64, StoreError> {
        self.call(false, |s| s.create(key, data, content_type, deadline_ms))
    }
    fn lease_ms(&self) -> u64 {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).lease_ms
    }
    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        self.call(key.ends_with("/status.json"), |s| s.read(key))
    }
    fn write_if_generation(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
        generation: u64,
    ) -> Result<u64, StoreError> {
        self.call(false, |s| s.write_if_generation(key, data, content_type, generation))
    }
    fn presence(&self, key: &str, since_ms: Option<i64>) -> Result<Presence, StoreError> {
        self.call(false, |s| s.presence(key, since_ms))
    }
    fn find(&self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
        self.call(true, |s| s.find(prefix, name, limit))
    }
}
