//! Storage faults: GCS answering 503 or hanging for a while, a create whose reply was lost (so
//! its retry meets 412), a missing bucket, and the checkpoint changed underneath a pass.

use crate::harness::*;
use anypoint_sim::{OrgSpec, SimConfig};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to the next requests.
#[derive(Default)]
struct Plan {
    /// Answer 503 without forwarding.
    fail_next: u32,
    /// Forward uploads of log objects, then answer 503 as if the reply was lost.
    lose_next_log_upload_reply: u32,
    /// Hang this long before forwarding (the client's timeout fires first).
    stall_next: u32,
    stall: Duration,
    /// Answer 403 to every upload, as a bucket the service account may not write.
    deny_uploads: bool,
    /// Answer 403 to uploads that replace an object (`ifGenerationMatch` other than 0), as GCS
    /// does for a service account with `storage.objects.create` but not `storage.objects.delete`.
    deny_replacing: bool,
}

struct Proxy {
    upstream: String,
    plan: Mutex<Plan>,
    client: reqwest::Client,
    lost_replies: AtomicU32,
    failed: AtomicU32,
    resumable_starts: AtomicU32,
}

/// A reverse proxy in front of fake-gcs-server that injects faults.
struct GcsProxy {
    port: u16,
    state: Arc<Proxy>,
    _runtime: tokio::runtime::Runtime,
}

async fn forward(State(p): State<Arc<Proxy>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if uri.query().is_some_and(|q| q.contains("uploadType=resumable")) {
        p.resumable_starts.fetch_add(1, Ordering::SeqCst);
    }
    // The permission a refused upload lacks: any upload, or one that replaces an object.
    let missing_permission = {
        let plan = p.plan.lock().unwrap();
        let replaces = uri
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ifGenerationMatch=")))
            .is_some_and(|generation| generation != "0");
        let upload = uri.path().starts_with("/upload/");
        if upload && plan.deny_uploads {
            Some("create")
        } else if upload && plan.deny_replacing && replaces {
            Some("delete")
        } else {
            None
        }
    };
    if let Some(permission) = missing_permission {
        let reply =
            format!(r#"{{"error":{{"code":403,"message":"does not have storage.objects.{permission} access"}}}}"#);
        return (StatusCode::FORBIDDEN, reply).into_response();
    }
    let (fail, lose, stall) = {
        let mut plan = p.plan.lock().unwrap();
        let is_log_upload = uri.path().starts_with("/upload/") && String::from_utf8_lossy(&body).contains("/logs/20");
        if plan.fail_next > 0 {
            plan.fail_next -= 1;
            (true, false, None)
        } else if plan.stall_next > 0 {
            plan.stall_next -= 1;
            (false, false, Some(plan.stall))
        } else if is_log_upload && plan.lose_next_log_upload_reply > 0 {
            plan.lose_next_log_upload_reply -= 1;
            (false, true, None)
        } else {
            (false, false, None)
        }
    };
    if fail {
        p.failed.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "injected").into_response();
    }
    if let Some(d) = stall {
        tokio::time::sleep(d).await;
    }
    let url = format!("{}{}", p.upstream, uri.path_and_query().map_or("", |pq| pq.as_str()));
    let mut request = p.client.request(method, url).body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            request = request.header(k, v);
        }
    }
    let reply = request.send().await.unwrap();
    if lose {
        p.lost_replies.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "reply lost").into_response();
    }
    let status = reply.status();
    let reply_headers = reply.headers().clone();
    let bytes = reply.bytes().await.unwrap();
    let mut response = (status, bytes).into_response();
    for (k, v) in &reply_headers {
        if k != "content-length" && k != "transfer-encoding" {
            response.headers_mut().insert(k, v.clone());
        }
    }
    response
}

impl GcsProxy {
    fn start(upstream: String, plan: Plan) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let state = Arc::new(Proxy {
            upstream,
            plan: Mutex::new(plan),
            client: reqwest::Client::new(),
            lost_replies: AtomicU32::new(0),
            failed: AtomicU32::new(0),
            resumable_starts: AtomicU32::new(0),
        });
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = axum::Router::new().fallback(forward).with_state(state.clone());
        runtime.spawn(async move { axum::serve(listener, router).await });
        Self { port, state, _runtime: runtime }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn run_through(sim: &anypoint_sim::Simulator, proxy: &GcsProxy, extra: &[(&str, &str)]) -> RunResult {
    let mut cmd = command(sim, "gs://faulty/base");
    cmd.env("STORAGE_EMULATOR_HOST", proxy.endpoint()).env("MULESOFT_AUDIT_OBJECT_KIB", "256");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    run(cmd)
}

fn check_bucket(sim: &anypoint_sim::Simulator, gcs: &FakeGcs, org: &str, summaries: &[&serde_json::Value]) {
    let objects: std::collections::BTreeMap<String, Vec<String>> = gcs_log_objects(gcs, "faulty", "base/logs/")
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("base/").to_string(), v))
        .collect();
    let (from, to) = covered(summaries, org);
    assert_exactly_once(sim, org, &objects, from, to);
}

#[test]
fn gcs_unavailable_for_a_while_then_back() {
    let gcs = FakeGcs::start("faulty");
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-503s", 1500)]));
    let proxy = GcsProxy::start(gcs.endpoint(), Plan { fail_next: 4, ..Plan::default() });
    let r = run_through(&sim, &proxy, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(proxy.state.failed.load(Ordering::SeqCst), 4);
    check_bucket(&sim, &gcs, "org-503s", &[&r.summary]);
}

#[test]
fn gcs_hanging_requests_time_out_and_are_retried() {
    let gcs = FakeGcs::start("faulty");
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-hang", 800)]));
    let proxy =
        GcsProxy::start(gcs.endpoint(), Plan { stall_next: 2, stall: Duration::from_secs(5), ..Plan::default() });
    let r = run_through(&sim, &proxy, &[("MULESOFT_AUDIT_GCS_TIMEOUT_SECS", "1")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    check_bucket(&sim, &gcs, "org-hang", &[&r.summary]);
}

#[test]
fn a_create_whose_reply_was_lost_is_recognised_by_its_checksum() {
    let gcs = FakeGcs::start("faulty");
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-lost", 1500)]));
    let proxy = GcsProxy::start(gcs.endpoint(), Plan { lose_next_log_upload_reply: 2, ..Plan::default() });
    let r = run_through(&sim, &proxy, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(proxy.state.lost_replies.load(Ordering::SeqCst), 2, "the fault happened");
    check_bucket(&sim, &gcs, "org-lost", &[&r.summary]);
}

#[test]
fn gcs_unavailable_beyond_the_retries_fails_the_run_and_the_next_completes() {
    let gcs = FakeGcs::start("faulty");
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-down", 900)]));
    let proxy = GcsProxy::start(gcs.endpoint(), Plan { fail_next: 1000, ..Plan::default() });
    let r = run_through(&sim, &proxy, &[("MULESOFT_AUDIT_GCS_TIMEOUT_SECS", "1")]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.summary["failures"][0]["kind"], "storage");
    proxy.state.plan.lock().unwrap().fail_next = 0;
    let r2 = run_through(&sim, &proxy, &[]);
    assert_eq!(r2.code, 0, "{}", r2.stderr);
    check_bucket(&sim, &gcs, "org-down", &[&r2.summary]);
}

#[test]
fn a_missing_bucket_is_a_configuration_error() {
    let gcs = FakeGcs::start("some-other-bucket");
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-nobucket", 100)]));
    let mut cmd = command(&sim, "gs://no-such-bucket");
    cmd.env("STORAGE_EMULATOR_HOST", gcs.endpoint());
    let r = run(cmd);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("no-such-bucket") && r.stderr.contains("does not exist"), "{}", r.stderr);
}

#[test]
fn a_bucket_that_denies_writes_is_a_configuration_error_and_nothing_is_marked_done() {
    let gcs = FakeGcs::start("faulty");
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-denied", 300)]));
    let proxy = GcsProxy::start(gcs.endpoint(), Plan { deny_uploads: true, ..Plan::default() });
    let r = run_through(&sim, &proxy, &[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("403") && r.stderr.contains("objectUser"), "{}", r.stderr);
    assert!(gcs.objects("faulty", "base/").is_empty(), "nothing written");
}

#[test]
fn create_without_replace_permission_is_caught_by_check_and_recovered_once_granted() {
    // objectCreator + objectViewer only: creating works, replacing a checkpoint does not.
    let gcs = FakeGcs::start("faulty");
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-noreplace", 400)]));
    let proxy = GcsProxy::start(gcs.endpoint(), Plan { deny_replacing: true, ..Plan::default() });
    let mut cmd = command(&sim, "gs://faulty/base");
    cmd.env("STORAGE_EMULATOR_HOST", proxy.endpoint()).arg("check");
    let checked = finish(cmd.output().unwrap());
    assert_eq!(checked.code, 2, "{}\n{}", checked.stdout, checked.stderr);
    assert!(checked.stderr.contains("storage.objects.delete"), "{}", checked.stderr);

    let denied = run_through(&sim, &proxy, &[]);
    assert_eq!(denied.code, 2, "{}\n{}", denied.stdout, denied.stderr);
    assert_eq!(denied.summary["failures"][0]["kind"], "denied", "{}", denied.stdout);
    let written_before = gcs_log_objects(&gcs, "faulty", "base/logs/");
    assert_eq!(written_before.len(), 1, "one object created, its checkpoint record refused");
    // The role is granted: the next pass delivers everything, the object already created once.
    proxy.state.plan.lock().unwrap().deny_replacing = false;
    let granted = run_through(&sim, &proxy, &[]);
    assert_eq!(granted.code, 0, "{}", granted.stderr);
    check_bucket(&sim, &gcs, "org-noreplace", &[&denied.summary, &granted.summary]);
    let after = gcs_log_objects(&gcs, "faulty", "base/logs/");
    assert!(written_before.keys().all(|k| after.contains_key(k)), "the pending object was adopted");
}

#[test]
fn large_objects_go_up_in_resumable_uploads() {
    let gcs = FakeGcs::start("faulty");
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-resumable", 1200)]));
    let proxy = GcsProxy::start(gcs.endpoint(), Plan::default());
    // Every log object above 0 bytes takes the resumable path.
    let r = run_through(&sim, &proxy, &[("MULESOFT_AUDIT_GCS_RESUMABLE_ABOVE", "0")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(proxy.state.resumable_starts.load(Ordering::SeqCst) >= 1, "uploads were resumable");
    check_bucket(&sim, &gcs, "org-resumable", &[&r.summary]);
}
