//! The one client against Cloud Storage and a metadata server in memory.

use super::tokens::METADATA_TOKEN_PATH;
use super::*;
use crate::platform::Response;
use crate::settings::names;
use crate::variables::Values;
use base64::Engine as _;
use std::collections::{BTreeMap, VecDeque};

#[test]
fn names_are_encoded_as_one_segment() {
    assert_eq!(encode_segment("logs/2024/01/01/a b.json.gz"), "logs%2F2024%2F01%2F01%2Fa%20b.json.gz");
}

#[test]
fn crc32c_is_base64_big_endian() {
    // CRC32C("123456789") = 0xE3069283.
    assert_eq!(crc32c_b64(b"123456789"), base64::engine::general_purpose::STANDARD.encode([0xE3, 0x06, 0x92, 0x83]));
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
    let t = Target::from_env(&values(&[(names::BUCKET, "b"), (names::OAUTH_ACCESS_TOKEN, "ya29.x")])).unwrap();
    assert_eq!((t.bucket.as_str(), t.prefix.as_str(), &t.tokens), ("b", "", &TokenSource::Configured));
    assert_eq!(t.attempts, 6, "the collector's default");
    let t = Target::from_env(&values(&[
        (names::BUCKET, "b"),
        (names::GCS_ENDPOINT, "http://127.0.0.1:4443"),
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
    refused(&[(names::BUCKET, "b"), (names::GCS_ENDPOINT, "http://storage.example")], "unencrypted");
    refused(&[(names::BUCKET, "b"), (names::METADATA_HOST, "http://169.254.169.254")], "without a scheme");
}

/// Cloud Storage and a metadata server in memory: generations, preconditions, soft delete,
/// tokens that expire, and a queue of faults.
struct FakeGoogle {
    now_ms: i64,
    /// The steady clock: it moves as the wall clock does, but never by `step_ms`.
    steady_ms: u64,
    /// How far the wall clock steps at every sleep (an NTP correction), besides the time slept.
    step_ms: i64,
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
            steady_ms: 0,
            step_ms: 0,
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
            return Self::reply(200, serde_json::json!({"softDeletePolicy": {"retentionDurationSeconds": "604800"}}));
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
                    return Err(TransportError::Network("ErrorCode::DnsError(DnsErrorPayload { rcode: None })".into()));
                }
                Ok(self.handle(base, r))
            })
            .collect()
    }
    fn now_ms(&self) -> i64 {
        self.now_ms
    }
    fn steady_ms(&self) -> u64 {
        self.steady_ms
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.now_ms += ms as i64 + self.step_ms;
        self.steady_ms += ms;
    }
    fn random(&mut self) -> u64 {
        7
    }
}

fn store() -> Gcs<FakeGoogle> {
    let target = Target::from_env(&values(&[
        (names::DEST, "gs://b/p"),
        (names::GCS_ENDPOINT, "http://127.0.0.1:1"),
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
    let g1 = s.create("a/x", b"one", GZ, None).unwrap();
    assert_eq!(s.create("a/x", b"two", GZ, None), Err(StoreError::AlreadyExists));
    assert_eq!(s.read("a/x").unwrap(), Some(Stored { data: b"one".to_vec(), generation: g1 }));
    assert!(s.platform.objects.contains_key("p/a/x"), "keys live under the prefix");
    assert_eq!(s.write_if_generation("a/x", b"two", GZ, g1 + 7), Err(StoreError::GenerationMismatch));
    let g2 = s.write_if_generation("a/x", b"two", GZ, g1).unwrap();
    assert!(g2 > g1);
    assert_eq!(s.read("a/x").unwrap(), Some(Stored { data: b"two".to_vec(), generation: g2 }));
    assert_eq!(s.create("../x", b"", GZ, None), Err(StoreError::Other("invalid key `../x`".into())));
    // One token for all of it, asked with the metadata server's header.
    assert_eq!(s.platform.issued.len(), 1);
}

#[test]
fn a_lost_reply_is_recognised_as_the_write_that_happened() {
    let mut s = store();
    s.platform.lose_reply_of_next_upload = true;
    let g = s.create("a/x", b"one", GZ, None).unwrap();
    assert_eq!(s.read("a/x").unwrap(), Some(Stored { data: b"one".to_vec(), generation: g }));
    // Other bytes under a taken key are still a refusal.
    s.platform.lose_reply_of_next_upload = true;
    assert_eq!(s.create("a/y", b"y", GZ, None).map(|_| ()), Ok(()));
    assert_eq!(s.create("a/y", b"other", GZ, None), Err(StoreError::AlreadyExists));
}

#[test]
fn transient_faults_are_retried_and_then_reported_as_unavailable() {
    let mut s = store();
    s.platform.faults.extend([503, 429, 500]);
    assert!(s.create("a/x", b"one", GZ, None).is_ok());
    s.platform.faults.extend(vec![503; s.target.attempts as usize]);
    assert!(matches!(s.create("a/y", b"y", GZ, None), Err(StoreError::Unavailable(m)) if m.contains("HTTP 503")));
    assert_eq!(s.read("a/y").unwrap(), None, "nothing written");
}

#[test]
fn a_create_sends_nothing_that_could_end_after_its_deadline() {
    let mut s = store();
    let timeout = s.target.timeout_ms as i64;
    assert_eq!(s.lease_ms(), 3 * s.target.timeout_ms, "three requests' time");
    // A lease that would end before one request could: nothing is sent at all.
    let uploads = |s: &Gcs<FakeGoogle>| s.platform.requests.iter().filter(|r| r.contains("/upload/")).count();
    let now = s.platform.now_ms;
    let sent = uploads(&s);
    let refused = s.create("a/x", b"one", GZ, Some(now + timeout - 1));
    assert!(matches!(&refused, Err(StoreError::Unavailable(m)) if m.contains("lease")), "{refused:?}");
    assert_eq!(uploads(&s), sent, "no upload sent");
    assert_eq!(s.read("a/x").unwrap(), None);
    // Within it: written.
    let now = s.platform.now_ms;
    assert!(s.create("a/x", b"one", GZ, Some(now + timeout)).is_ok());
    // Retries stop where the next attempt could end after the deadline: a 503, then a backoff
    // that leaves less than a request's time.
    s.platform.faults.extend(vec![503; s.target.attempts as usize]);
    let now = s.platform.now_ms;
    let before = uploads(&s);
    let cut = s.create("a/y", b"y", GZ, Some(now + timeout + 1));
    assert!(matches!(&cut, Err(StoreError::Unavailable(m)) if m.contains("lease")), "{cut:?}");
    let attempts = uploads(&s) - before;
    assert_eq!(attempts, 1, "one attempt, then none that could end in time");
    // A wall clock stepped back during the create does not stretch the lease: the time is
    // counted on the steady clock from the create's start.
    s.platform.step_ms = -10 * timeout;
    let now = s.platform.now_ms;
    let before = uploads(&s);
    let cut = s.create("a/w", b"w", GZ, Some(now + timeout + 1));
    assert!(matches!(&cut, Err(StoreError::Unavailable(m)) if m.contains("lease")), "{cut:?}");
    assert_eq!(uploads(&s) - before, 1, "no attempt after the real deadline, whatever the wall clock says");
    // Stepped forward, the wall clock only shortens it.
    s.platform.step_ms = 10 * timeout;
    let now = s.platform.now_ms;
    let before = uploads(&s);
    assert!(s.create("a/v", b"v", GZ, Some(now + timeout + 1)).is_err());
    assert_eq!(uploads(&s) - before, 1);
    s.platform.step_ms = 0;
    // Reads are not held to it: a create's deadline ends with the create.
    s.platform.faults.clear();
    s.platform.now_ms += 10 * timeout;
    assert!(s.read("a/x").unwrap().is_some());
    assert!(s.create("a/z", b"z", GZ, None).is_ok());
}

#[test]
fn an_expired_token_is_renewed_and_a_revoked_one_once_on_401() {
    let mut s = store();
    s.create("a/x", b"one", GZ, None).unwrap();
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
    assert!(matches!(s.read("a/x"), Err(StoreError::Denied(m)) if m.contains(names::OAUTH_ACCESS_TOKEN)));
}

#[test]
fn no_metadata_server_is_a_setting_to_fix_not_an_outage() {
    let mut s = store();
    s.target.tokens = TokenSource::MetadataServer(BaseUrl::parse("http://nowhere.test").unwrap());
    let refused = s.read("a/x");
    assert!(matches!(&refused, Err(StoreError::Denied(m)) if m.contains(names::OAUTH_ACCESS_TOKEN)), "{refused:?}");
    assert_eq!(s.platform.requests.len(), 1, "asked once, not retried");
}

#[test]
fn presence_tells_deleted_from_never_created() {
    let mut s = store();
    let now = s.platform.now_ms;
    s.create("a/x", b"one", GZ, None).unwrap();
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
        s.create(key, b"x", GZ, None).unwrap();
    }
    s.platform.deleted.extend(["p/logs/d/mulesoft-audit-o.0-9".into(), "p/state/x".into()]);
    let found = s.find("logs/", "mulesoft-audit-o.", 10).unwrap();
    assert_eq!(found.live, ["logs/d/mulesoft-audit-o.1-1", "logs/d/mulesoft-audit-o.1-2"]);
    assert_eq!(found.deleted, Some(vec!["logs/d/mulesoft-audit-o.0-9".to_string()]));
    assert_eq!(s.find("logs/", "mulesoft-audit-o.", 1).unwrap().live.len(), 1, "at most the limit");
    // Several soft-deleted generations of one name are one key: the limit counts keys, so a
    // listing cut at it is never taken for a whole one.
    s.platform.deleted.extend(["p/logs/d/mulesoft-audit-o.0-8".into(), "p/logs/d/mulesoft-audit-o.0-8".into()]);
    s.platform.deleted.sort();
    let found = s.find("logs/", "mulesoft-audit-o.", 2).unwrap();
    assert_eq!(
        found.deleted,
        Some(vec!["logs/d/mulesoft-audit-o.0-8".to_string(), "logs/d/mulesoft-audit-o.0-9".to_string()])
    );
    assert!(s.find("../x", "", 10).is_err());
    assert_eq!(name_glob("p/logs/", "mulesoft-audit-o."), Some("p/logs/**mulesoft-audit-o.*".into()));
    assert_eq!(name_glob("p/[x]/", "m"), None, "a glob character in a prefix is not sent");
}

#[test]
fn a_sessions_range_says_how_much_it_holds() {
    assert_eq!(persisted(None), Some(0));
    assert_eq!(persisted(Some("bytes=0-262143")), Some(262_144));
    assert_eq!(persisted(Some("bytes=5-9")), None);
    assert_eq!(persisted(Some("rubbish")), None);
    assert_eq!(persisted(Some(&format!("bytes=0-{}", usize::MAX))), None);
}

#[test]
fn resumable_uploads_take_only_chunks_cloud_storage_accepts() {
    assert_eq!(resumable(&values(&[(names::GCS_CHUNK_KIB, " ")])), Ok((RESUMABLE_THRESHOLD, CHUNK)), "unset");
    let given = values(&[(names::GCS_RESUMABLE_ABOVE, "1024"), (names::GCS_CHUNK_KIB, "512")]);
    assert_eq!(resumable(&given), Ok((1024, 512 << 10)));
    for chunk in ["100", "0", "-256", "lots", "2097152"] {
        let refused = resumable(&values(&[(names::GCS_CHUNK_KIB, chunk)])).unwrap_err();
        assert!(refused.contains(names::GCS_CHUNK_KIB) && refused.contains("multiple of 256"), "{refused}");
    }
    let refused = resumable(&values(&[(names::GCS_RESUMABLE_ABOVE, "16M")])).unwrap_err();
    assert!(refused.contains(names::GCS_RESUMABLE_ABOVE), "{refused}");
}
