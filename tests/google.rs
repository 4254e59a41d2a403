//! A stand-in for Google's side of a real deployment, as strict as the real services:
//!
//! - the **metadata server** (Cloud Run, GKE, Compute Engine): tokens and the service account's
//!   email, only for requests carrying `Metadata-Flavor: Google`;
//! - the **OAuth token endpoint** for gcloud user credentials (refresh-token grant);
//! - the **STS token exchange** and **IAM credentials** `generateAccessToken`, for workload identity
//!   federation with service-account impersonation;
//! - **Cloud Storage**: fake-gcs-server behind a front that answers 401 to any request without a
//!   bearer token this stand-in issued (or a self-signed JWT of the test service account key),
//!   records which principal made each request, and injects faults on a [`Plan`].
//!
//! The collector reaches it exactly as it reaches Google: `GCE_METADATA_HOST`, a credentials
//! file, and `MULESOFT_AUDIT_GCS_ENDPOINT`, with credentials on.

use crate::harness::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The service account of the metadata server, the key file and impersonation.
pub const SERVICE_ACCOUNT: &str = "collector@audit-project.iam.gserviceaccount.com";
/// The person behind the gcloud user credentials.
pub const USER: &str = "user:analyst@example.com";
/// The principal STS hands a federated token to (before impersonation).
pub const FEDERATED: &str =
    "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/ci";

const REFRESH_TOKEN: &str = "1//test-refresh-token";
const USER_CLIENT_SECRET: &str = "test-user-client-secret";
const SUBJECT_TOKEN: &str = "test-oidc-subject-token-from-the-workload";
const KEY_ID: &str = "test-key-1";

/// Faults the Cloud Storage front injects into the next requests.
#[derive(Default)]
pub struct Plan {
    /// Answer 503 without forwarding.
    pub fail_next: u32,
    /// Forward uploads of log objects, then answer 503 as if the reply was lost.
    pub lose_next_log_upload_reply: u32,
    /// Hang this long before forwarding (the client's timeout fires first).
    pub stall_next: u32,
    pub stall: Duration,
    /// Answer 403 to every upload, as a bucket the principal may not write.
    pub deny_uploads: bool,
    /// Answer 403 to uploads that replace an object (`ifGenerationMatch` other than 0), as GCS
    /// does for a principal with `storage.objects.create` but not `storage.objects.delete`.
    pub deny_replacing: bool,
    /// After this many more authorised requests, every token issued so far stops being accepted
    /// (401), as when a token expires or is revoked during a long pass.
    pub revoke_tokens_after: Option<u32>,
    /// Forward chunks of resumable uploads, then answer 503 as if the reply was lost.
    pub lose_next_chunk_reply: u32,
    /// Answer 404 to chunks of this many sessions, as for an expired session.
    pub expire_next_sessions: u32,
    /// After the next log object is uploaded, answer 503 to everything, as if the pass died
    /// between creating that object and recording it.
    pub die_after_next_log_upload: bool,
    /// Buckets keep deleted objects (soft delete, as new buckets do by default). Off: a deleted
    /// object leaves no trace.
    pub no_soft_delete: bool,
}

/// What the stand-in saw.
#[derive(Default)]
pub struct Seen {
    /// Authorised Cloud Storage requests per principal.
    pub principals: BTreeMap<String, u32>,
    /// Requests refused with 401 (no token, or one not issued here).
    pub refused_anonymous: u32,
    /// Requests refused with 401 because their token was revoked.
    pub refused_revoked: u32,
    /// Token requests per endpoint (`metadata`, `oauth`, `sts`, `iam`).
    pub token_requests: BTreeMap<&'static str, u32>,
    /// Metadata requests refused for lack of `Metadata-Flavor: Google`.
    pub metadata_without_flavor: u32,
    /// Resumable sessions started, and progress queries (`Content-Range: bytes */N`).
    pub resumable_starts: u32,
    pub progress_queries: u32,
    /// Bytes received in resumable chunks, and the chunks.
    pub chunk_bytes: usize,
    pub chunks: u32,
    /// Requests answered 503 by [`Plan::fail_next`], and replies lost on purpose.
    pub failed: u32,
    pub lost_replies: u32,
}

struct Token {
    principal: String,
    revoked: bool,
}

/// Why Cloud Storage answers 401.
enum Refused {
    /// No token, or one this stand-in never issued.
    Anonymous,
    Revoked,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let message = match self {
            Self::Anonymous => {
                "Anonymous caller does not have storage.objects access to the Google Cloud Storage object."
            }
            Self::Revoked => "Invalid Credentials",
        };
        gcs_error(StatusCode::UNAUTHORIZED, message)
    }
}

/// What a resumable session holds, as Cloud Storage would answer a progress query
/// (`Content-Range: bytes */N`); fake-gcs-server cannot (it takes the query for a last chunk).
#[derive(Default)]
struct Session {
    received: usize,
    /// The reply that completed it.
    completed: Option<(StatusCode, Bytes)>,
}

pub struct Front {
    upstream: String,
    /// Objects deleted by the feed: name → bytes (the oracle's, and soft delete's, memory).
    pub deleted: Mutex<BTreeMap<String, Vec<u8>>>,
    sessions: Mutex<HashMap<String, Session>>,
    own_url: Mutex<String>,
    pub plan: Mutex<Plan>,
    pub seen: Mutex<Seen>,
    tokens: Mutex<HashMap<String, Token>>,
    issued: AtomicU32,
    /// The test key's public half, for self-signed JWTs.
    key: jsonwebtoken::DecodingKey,
    client: reqwest::Client,
    /// Whether the metadata server has a service account attached.
    pub metadata_has_account: std::sync::atomic::AtomicBool,
}

/// The stand-in: one loopback server for every Google endpoint, with fake-gcs-server behind it.
pub struct Google {
    pub gcs: FakeGcs,
    pub port: u16,
    pub state: Arc<Front>,
    _runtime: tokio::runtime::Runtime,
}

/// How a test hands the collector its Google credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// `GCE_METADATA_HOST` only: Cloud Run, GKE workload identity, Compute Engine.
    MetadataServer,
    /// `GOOGLE_APPLICATION_CREDENTIALS` naming a service account key.
    KeyFile,
    /// gcloud's application-default file under `$HOME` (`gcloud auth application-default login`).
    GcloudUser,
    /// `GOOGLE_APPLICATION_CREDENTIALS` naming an `external_account` file that impersonates.
    Federation,
}

impl Credentials {
    pub const ALL: [Credentials; 4] = [Self::MetadataServer, Self::KeyFile, Self::GcloudUser, Self::Federation];

    /// The principal whose token reaches Cloud Storage.
    pub fn principal(self) -> &'static str {
        match self {
            Self::GcloudUser => USER,
            _ => SERVICE_ACCOUNT,
        }
    }
}

fn json_reply(status: StatusCode, value: serde_json::Value) -> Response {
    (status, [("content-type", "application/json")], value.to_string()).into_response()
}

fn gcs_error(status: StatusCode, message: &str) -> Response {
    json_reply(status, serde_json::json!({"error": {"code": status.as_u16(), "message": message}}))
}

impl Front {
    fn issue(&self, principal: &str, source: &'static str) -> String {
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        let token = format!("ya29.test-{source}-{n}-{}", fastrand::u64(..));
        self.tokens.lock().unwrap().insert(token.clone(), Token { principal: principal.into(), revoked: false });
        *self.seen.lock().unwrap().token_requests.entry(source).or_default() += 1;
        token
    }

    /// The principal a request's bearer token stands for, or the 401 that refuses it.
    fn principal(&self, headers: &HeaderMap) -> Result<String, Refused> {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        let Some(bearer) = bearer else {
            self.seen.lock().unwrap().refused_anonymous += 1;
            return Err(Refused::Anonymous);
        };
        if let Some(token) = self.tokens.lock().unwrap().get(bearer) {
            if token.revoked {
                self.seen.lock().unwrap().refused_revoked += 1;
                return Err(Refused::Revoked);
            }
            return Ok(token.principal.clone());
        }
        // A service account key signs its own token (a JWT with a scope, no token endpoint).
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        validation.set_issuer(&[SERVICE_ACCOUNT]);
        let header = jsonwebtoken::decode_header(bearer).ok();
        let signed = jsonwebtoken::decode::<serde_json::Value>(bearer, &self.key, &validation).ok();
        match (header, signed) {
            (Some(h), Some(jwt))
                if h.kid.as_deref() == Some(KEY_ID)
                    && jwt.claims["sub"] == SERVICE_ACCOUNT
                    && jwt.claims["scope"].as_str().is_some_and(|s| s.contains("cloud-platform")) =>
            {
                *self.seen.lock().unwrap().token_requests.entry("self-signed").or_default() += 1;
                Ok(SERVICE_ACCOUNT.to_string())
            }
            _ => {
                self.seen.lock().unwrap().refused_anonymous += 1;
                Err(Refused::Anonymous)
            }
        }
    }

    fn revoke_all(&self) {
        for token in self.tokens.lock().unwrap().values_mut() {
            token.revoked = true;
        }
    }
}

fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn metadata(front: &Front, path: &str, headers: &HeaderMap) -> Response {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        front.seen.lock().unwrap().metadata_without_flavor += 1;
        return (StatusCode::FORBIDDEN, "Missing required header \"Metadata-Flavor\": \"Google\"").into_response();
    }
    if !front.metadata_has_account.load(Ordering::SeqCst) {
        return (StatusCode::NOT_FOUND, "service account not found").into_response();
    }
    match path {
        "/computeMetadata/v1/instance/service-accounts/default/token" => {
            let token = front.issue(SERVICE_ACCOUNT, "metadata");
            json_reply(
                StatusCode::OK,
                serde_json::json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
            )
        }
        "/computeMetadata/v1/instance/service-accounts/default/email" => SERVICE_ACCOUNT.into_response(),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// The OAuth endpoint for user credentials: a refresh-token grant, JSON or form.
fn oauth(front: &Front, body: &[u8]) -> Response {
    let fields: HashMap<String, String> = serde_json::from_slice::<HashMap<String, serde_json::Value>>(body)
        .map(|m| m.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_string()))).collect())
        .unwrap_or_else(|_| form(body));
    let field = |k: &str| fields.get(k).map(String::as_str);
    if field("grant_type") != Some("refresh_token")
        || field("refresh_token") != Some(REFRESH_TOKEN)
        || field("client_secret") != Some(USER_CLIENT_SECRET)
    {
        return json_reply(StatusCode::BAD_REQUEST, serde_json::json!({"error": "invalid_grant"}));
    }
    let token = front.issue(USER, "oauth");
    json_reply(StatusCode::OK, serde_json::json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
}

/// STS: a workload's own token exchanged for a federated access token.
fn sts(front: &Front, body: &[u8]) -> Response {
    let fields = form(body);
    let field = |k: &str| fields.get(k).map(String::as_str);
    if field("grant_type") != Some("urn:ietf:params:oauth:grant-type:token-exchange")
        || field("subject_token") != Some(SUBJECT_TOKEN)
        || !field("audience").is_some_and(|a| a.contains("workloadIdentityPools"))
    {
        return json_reply(StatusCode::BAD_REQUEST, serde_json::json!({"error": "invalid_grant"}));
    }
    let token = front.issue(FEDERATED, "sts");
    json_reply(
        StatusCode::OK,
        serde_json::json!({
            "access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer", "expires_in": 3599,
        }),
    )
}

/// IAM credentials: a federated principal impersonates the service account.
fn impersonate(front: &Front, path: &str, headers: &HeaderMap) -> Response {
    let Ok(caller) = front.principal(headers) else {
        return json_reply(StatusCode::UNAUTHORIZED, serde_json::json!({"error": {"code": 401}}));
    };
    if caller != FEDERATED || !path.contains(&format!("/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken")) {
        return json_reply(StatusCode::FORBIDDEN, serde_json::json!({"error": {"code": 403}}));
    }
    let token = front.issue(SERVICE_ACCOUNT, "iam");
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json_reply(StatusCode::OK, serde_json::json!({"accessToken": token, "expireTime": expires}))
}

async fn handle(
    State(front): State<Arc<Front>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if path.starts_with("/computeMetadata/") {
        return metadata(&front, &path, &headers).await;
    }
    match (method.as_str(), path.as_str()) {
        ("POST", "/token") => return oauth(&front, &body),
        ("POST", "/v1/token") => return sts(&front, &body),
        ("POST", p) if p.starts_with("/v1/projects/-/serviceAccounts/") => {
            return impersonate(&front, p, &headers);
        }
        _ => {}
    }
    storage(front, method, uri, headers, body).await
}

/// What Cloud Storage's soft delete answers and fake-gcs-server cannot: the bucket's policy, and
/// the listing of soft-deleted objects (those the feed deleted through [`Google::feed_deletes`]).
fn soft_delete(front: &Front, method: &Method, path: &str, query: &str) -> Option<Response> {
    if method != Method::GET {
        return None;
    }
    let keeps = !front.plan.lock().unwrap().no_soft_delete;
    let rest = path.strip_prefix("/storage/v1/b/")?;
    if !rest.contains('/') && query.contains("softDeletePolicy") {
        let seconds = if keeps { "604800" } else { "0" };
        return Some(json_reply(
            StatusCode::OK,
            serde_json::json!({"softDeletePolicy": {"retentionDurationSeconds": seconds}}),
        ));
    }
    if rest.ends_with("/o") && query.split('&').any(|kv| kv == "softDeleted=true") {
        let prefix = query.split('&').find_map(|kv| kv.strip_prefix("prefix=")).unwrap_or("");
        let prefix = url::form_urlencoded::parse(format!("p={prefix}").as_bytes()).next().map(|(_, v)| v.into_owned());
        let prefix = prefix.unwrap_or_default();
        let items: Vec<serde_json::Value> = if keeps {
            let deleted = front.deleted.lock().unwrap();
            deleted.keys().filter(|n| n.starts_with(&prefix)).map(|n| serde_json::json!({"name": n})).collect()
        } else {
            Vec::new()
        };
        return Some(json_reply(StatusCode::OK, serde_json::json!({"kind": "storage#objects", "items": items})));
    }
    None
}

/// Cloud Storage: authorised, faults applied, then fake-gcs-server.
async fn storage(front: Arc<Front>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let principal = match front.principal(&headers) {
        Ok(p) => p,
        Err(refusal) => return refusal.into_response(),
    };
    *front.seen.lock().unwrap().principals.entry(principal).or_default() += 1;
    {
        let mut plan = front.plan.lock().unwrap();
        if let Some(left) = plan.revoke_tokens_after {
            if left == 0 {
                plan.revoke_tokens_after = None;
                drop(plan);
                front.revoke_all();
                front.seen.lock().unwrap().refused_revoked += 1;
                return Refused::Revoked.into_response();
            }
            plan.revoke_tokens_after = Some(left - 1);
        }
    }
    let query = uri.query().unwrap_or("");
    if let Some(reply) = soft_delete(&front, &method, uri.path(), query) {
        return reply;
    }
    let upload = uri.path().starts_with("/upload/");
    // Multipart uploads are POSTs; a PUT under /upload/ is always a resumable session's chunk.
    let session_chunk = upload && method == Method::PUT;
    if upload && method == Method::POST && query.contains("uploadType=resumable") {
        front.seen.lock().unwrap().resumable_starts += 1;
    }
    let progress_query = session_chunk
        && headers.get("content-range").and_then(|v| v.to_str().ok()).is_some_and(|r| r.starts_with("bytes */"));
    {
        let mut seen = front.seen.lock().unwrap();
        if progress_query {
            seen.progress_queries += 1;
        } else if session_chunk {
            seen.chunks += 1;
            seen.chunk_bytes += body.len();
        }
    }
    let upload_id = query.split('&').find_map(|kv| kv.strip_prefix("upload_id=")).map(str::to_string);
    if let (true, Some(id)) = (progress_query, &upload_id) {
        let sessions = front.sessions.lock().unwrap();
        return match sessions.get(id) {
            Some(Session { completed: Some((status, body)), .. }) => (*status, body.clone()).into_response(),
            Some(Session { received, .. }) if *received > 0 => {
                (StatusCode::PERMANENT_REDIRECT, [("range", format!("bytes=0-{}", received - 1))]).into_response()
            }
            Some(_) => StatusCode::PERMANENT_REDIRECT.into_response(),
            None => gcs_error(StatusCode::NOT_FOUND, "No such upload session."),
        };
    }
    // The permission a refused upload lacks: any upload, or one that replaces an object.
    let missing_permission = {
        let plan = front.plan.lock().unwrap();
        let replaces = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("ifGenerationMatch="))
            .is_some_and(|generation| generation != "0");
        if upload && plan.deny_uploads {
            Some("create")
        } else if upload && plan.deny_replacing && replaces {
            Some("delete")
        } else {
            None
        }
    };
    if let Some(permission) = missing_permission {
        return gcs_error(
            StatusCode::FORBIDDEN,
            &format!(
                "{SERVICE_ACCOUNT} does not have storage.objects.{permission} access to the Google Cloud Storage object."
            ),
        );
    }
    enum Fault {
        Fail,
        Lose,
        Stall(Duration),
        Expire,
    }
    let fault = {
        let mut plan = front.plan.lock().unwrap();
        let is_log_upload = upload && !session_chunk && String::from_utf8_lossy(&body).contains("/logs/20");
        if plan.fail_next > 0 {
            plan.fail_next -= 1;
            Some(Fault::Fail)
        } else if plan.stall_next > 0 {
            plan.stall_next -= 1;
            Some(Fault::Stall(plan.stall))
        } else if is_log_upload && plan.lose_next_log_upload_reply > 0 {
            plan.lose_next_log_upload_reply -= 1;
            Some(Fault::Lose)
        } else if is_log_upload && plan.die_after_next_log_upload {
            // This one goes through and its reply arrives; everything after it fails.
            plan.die_after_next_log_upload = false;
            plan.fail_next = u32::MAX;
            None
        } else if session_chunk && !progress_query && plan.expire_next_sessions > 0 {
            plan.expire_next_sessions -= 1;
            Some(Fault::Expire)
        } else if session_chunk && !progress_query && plan.lose_next_chunk_reply > 0 {
            plan.lose_next_chunk_reply -= 1;
            Some(Fault::Lose)
        } else {
            None
        }
    };
    match fault {
        Some(Fault::Fail) => {
            front.seen.lock().unwrap().failed += 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "injected").into_response();
        }
        Some(Fault::Expire) => return gcs_error(StatusCode::NOT_FOUND, "No such upload session."),
        Some(Fault::Stall(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let url = format!("{}{}", front.upstream, uri.path_and_query().map_or("", |pq| pq.as_str()));
    let method_is_delete = method == Method::DELETE;
    let mut request = front.client.request(method, url).body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" && k != "authorization" {
            request = request.header(k, v);
        }
    }
    let reply = request.send().await.unwrap();
    let status = reply.status();
    let reply_headers = reply.headers().clone();
    let bytes = reply.bytes().await.unwrap();
    if let (true, Some(id)) = (session_chunk, &upload_id) {
        let mut sessions = front.sessions.lock().unwrap();
        let session = sessions.entry(id.clone()).or_default();
        if status == StatusCode::PERMANENT_REDIRECT {
            let range = reply_headers.get("range").and_then(|v| v.to_str().ok());
            session.received =
                range.and_then(|r| r.strip_prefix("bytes=0-")).map_or(0, |n| n.parse::<usize>().unwrap() + 1);
        } else if status.is_success() {
            session.completed = Some((status, bytes.clone()));
        }
    }
    // Every deletion is soft: the name is remembered, as Cloud Storage's soft delete does.
    if method_is_delete && status.is_success() {
        let name = uri.path().rsplit_once("/o/").map(|(_, n)| n).unwrap_or_default();
        let name = url::form_urlencoded::parse(format!("n={name}").as_bytes()).next().map(|(_, v)| v.into_owned());
        front.deleted.lock().unwrap().entry(name.unwrap_or_default()).or_default();
    }
    if matches!(fault, Some(Fault::Lose)) {
        front.seen.lock().unwrap().lost_replies += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "reply lost").into_response();
    }
    let mut response = (status, bytes).into_response();
    let own = front.own_url.lock().unwrap().clone();
    for (k, v) in &reply_headers {
        if k == "content-length" || k == "transfer-encoding" {
            continue;
        }
        // Session URLs point back at this front, as Google's point at Google.
        let v = match (k.as_str(), v.to_str()) {
            ("location", Ok(location)) => location.replace(&front.upstream, &own).parse().unwrap(),
            _ => v.clone(),
        };
        response.headers_mut().insert(k, v);
    }
    response
}

impl Google {
    /// fake-gcs-server with `bucket`, behind the stand-in.
    pub fn start(bucket: &str, plan: Plan) -> Self {
        let gcs = FakeGcs::start(bucket);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let jwks: serde_json::Value = serde_json::from_str(include_str!("fixtures/oidc-test-jwks.json")).unwrap();
        let jwk = &jwks["keys"][0];
        let key =
            jsonwebtoken::DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
                .unwrap();
        let state = Arc::new(Front {
            upstream: gcs.endpoint(),
            deleted: Mutex::new(BTreeMap::new()),
            sessions: Mutex::new(HashMap::new()),
            own_url: Mutex::new(String::new()),
            plan: Mutex::new(plan),
            seen: Mutex::new(Seen::default()),
            tokens: Mutex::new(HashMap::new()),
            issued: AtomicU32::new(0),
            key,
            client: reqwest::Client::new(),
            metadata_has_account: std::sync::atomic::AtomicBool::new(true),
        });
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        *state.own_url.lock().unwrap() = format!("http://127.0.0.1:{port}");
        let router = axum::Router::new().fallback(handle).with_state(state.clone());
        runtime.spawn(async move { axum::serve(listener, router).await });
        Self { gcs, port, state, _runtime: runtime }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Points `cmd` at this stand-in with `credentials`, files written into `dir`. The metadata
    /// server is always this one, so nothing is asked of a real one.
    pub fn configure(&self, cmd: &mut Command, credentials: Credentials, dir: &Path) {
        cmd.env("GCE_METADATA_HOST", format!("127.0.0.1:{}", self.port))
            .env("MULESOFT_AUDIT_GCS_ENDPOINT", self.endpoint());
        match credentials {
            Credentials::MetadataServer => {}
            Credentials::KeyFile => {
                cmd.env("GOOGLE_APPLICATION_CREDENTIALS", self.write_key_file(dir));
            }
            Credentials::GcloudUser => {
                let gcloud = dir.join("home/.config/gcloud");
                std::fs::create_dir_all(&gcloud).unwrap();
                let file = serde_json::json!({
                    "type": "authorized_user", "client_id": "test-user-client.apps.googleusercontent.com",
                    "client_secret": USER_CLIENT_SECRET, "refresh_token": REFRESH_TOKEN,
                    "token_uri": format!("{}/token", self.endpoint()),
                });
                std::fs::write(gcloud.join("application_default_credentials.json"), file.to_string()).unwrap();
                cmd.env("HOME", dir.join("home"));
            }
            Credentials::Federation => {
                let subject = dir.join("subject-token");
                std::fs::write(&subject, SUBJECT_TOKEN).unwrap();
                let file = serde_json::json!({
                    "type": "external_account",
                    "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/ci",
                    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                    "token_url": format!("{}/v1/token", self.endpoint()),
                    "service_account_impersonation_url": format!(
                        "{}/v1/projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken", self.endpoint()
                    ),
                    "credential_source": {"file": subject, "format": {"type": "text"}},
                });
                let path = dir.join("federation.json");
                std::fs::write(&path, file.to_string()).unwrap();
                cmd.env("GOOGLE_APPLICATION_CREDENTIALS", path);
            }
        }
    }

    /// A service account key file for the test key (its `token_uri` here too, though a key signs
    /// its own tokens).
    pub fn write_key_file(&self, dir: &Path) -> PathBuf {
        let key = serde_json::json!({
            "type": "service_account", "project_id": "audit-project", "private_key_id": KEY_ID,
            "private_key": include_str!("fixtures/oidc-test-key.pem"), "client_email": SERVICE_ACCOUNT,
            "client_id": "1234567890", "token_uri": format!("{}/token", self.endpoint()),
        });
        let path = dir.join("key.json");
        std::fs::write(&path, key.to_string()).unwrap();
        path
    }

    /// The log objects under `prefix` in fake-gcs-server, as key → lines.
    pub fn log_objects(&self, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<String>> {
        gcs_log_objects(&self.gcs, bucket, prefix)
    }

    /// The SecOps feed with source deletion: every object under `prefix` is ingested (kept here
    /// for the oracle) and deleted.
    pub fn feed_deletes(&self, bucket: &str, prefix: &str) {
        for (name, (_, _, bytes)) in self.gcs.objects(bucket, prefix) {
            let url = format!("{}/storage/v1/b/{bucket}/o/{}", self.gcs.endpoint(), encode(&name));
            let (status, _, _) = http_request("DELETE", &url, &[], b"").unwrap();
            assert!(status == 204 || status == 200, "deleting {name}: {status}");
            self.state.deleted.lock().unwrap().insert(name, bytes);
        }
    }

    /// Every log object ever created under `prefix`, deleted ones too, as key → lines.
    pub fn log_objects_ever(&self, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<String>> {
        let mut objects = self.log_objects(bucket, prefix);
        let deleted = self.state.deleted.lock().unwrap();
        for (name, bytes) in deleted.iter().filter(|(n, b)| n.starts_with(prefix) && !b.is_empty()) {
            // A name can come back (a claim after a deletion): both count.
            let key = if objects.contains_key(name) { format!("{name} (deleted)") } else { name.clone() };
            objects.insert(key, lines(&gunzip(bytes)));
        }
        objects
    }
}
