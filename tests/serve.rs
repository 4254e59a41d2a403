//! `serve`: the HTTP trigger.

use crate::harness::*;
use anypoint_sim::{OrgSpec, SimConfig};
use std::process::{Child, Stdio};
use std::time::Duration;

pub struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(sim: &anypoint_sim::Simulator, dest: &str) -> Server {
    start_with(sim, dest, &[])
}

fn start_with(sim: &anypoint_sim::Simulator, dest: &str, env: &[(&str, String)]) -> Server {
    let mut cmd = command(sim, dest);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Server::spawn(cmd)
}

impl Server {
    /// `serve` from a prepared command, on a free loopback port, once it answers `/healthz`.
    pub fn spawn(mut cmd: std::process::Command) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        cmd.env("PORT", port.to_string())
            .env("MULESOFT_AUDIT_LISTEN", "127.0.0.1")
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let server = Server { child: cmd.spawn().unwrap(), port };
        wait_until("serve answering /healthz", Duration::from_secs(20), || {
            http_get(&format!("http://127.0.0.1:{port}/healthz")).is_some_and(|(s, _, b)| s == 200 && b == b"ok")
        });
        server
    }
}

pub const PUSH: &str = r#"{"message":{"data":"e30=","attributes":{},"messageId":"1","publishTime":"2026-01-01T00:00:00Z"},"subscription":"projects/p/subscriptions/s"}"#;

pub fn post(server: &Server, headers: &[(&str, &str)], body: &str) -> u16 {
    http_request("POST", &format!("http://127.0.0.1:{}/", server.port), headers, body.as_bytes())
        .expect("serve answers")
        .0
}

#[test]
fn each_trigger_shape_runs_a_pass() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-srv", 900)]));
    let dir = tempfile::tempdir().unwrap();
    let server = start(&sim, &format!("file://{}", dir.path().display()));
    assert_eq!(post(&server, &[("content-type", "application/json")], PUSH), 204);
    let tokens_after_push = sim.stats().tokens_issued;
    assert_eq!(tokens_after_push, 1, "the push ran a pass");
    let binary = [
        ("content-type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-id", "abc"),
        ("ce-type", "google.cloud.pubsub.topic.v1.messagePublished"),
        ("ce-source", "//pubsub.googleapis.com/projects/p/topics/t"),
    ];
    assert_eq!(post(&server, &binary, PUSH), 204);
    let structured = format!(
        r#"{{"specversion":"1.0","id":"s1","type":"google.cloud.pubsub.topic.v1.messagePublished","source":"//pubsub.googleapis.com/projects/p/topics/t","data":{PUSH}}}"#
    );
    assert_eq!(post(&server, &[("content-type", "application/cloudevents+json")], &structured), 204);
    assert_eq!(sim.stats().tokens_issued, 3, "three triggers, three passes");
    let objects = objects_in_dir(dir.path());
    let now = anypoint_sim::now_ms();
    assert_exactly_once(&sim, "org-srv", &objects, now - 25 * 3_600_000, now - 5_000);
    // The metrics count what the destination holds, and what the simulator saw asked of it.
    let delivered: usize = objects.values().map(Vec::len).sum();
    assert!(delivered > 0);
    assert_eq!(metric(&server, r#"mulesoft_audit_entries_written_total{org="org-srv"}"#), Some(delivered as f64));
    assert_eq!(metric(&server, r#"mulesoft_audit_objects_written_total{org="org-srv"}"#), Some(objects.len() as f64));
    // Every request of the organization's passes: its queries and each pass's token exchange,
    // all the simulator answered.
    let stats = sim.stats();
    assert!(stats.query_requests >= 3 && stats.tokens_issued == 3);
    let asked = stats.requests as f64;
    assert_eq!(metric(&server, r#"mulesoft_audit_requests_total{org="org-srv"}"#), Some(asked));
    let replies =
        |class: &str| metric(&server, &format!(r#"mulesoft_audit_replies_total{{org="org-srv",class="{class}"}}"#));
    let classes: Vec<f64> = ["2xx", "4xx", "5xx", "none"].iter().filter_map(|c| replies(c)).collect();
    assert_eq!(classes.len(), 4);
    assert_eq!(classes.iter().sum::<f64>(), asked, "each request counted once, by what came back");
    let sent_5xx: u64 = stats.statuses.range(500..600).map(|(_, n)| n).sum();
    assert_eq!(replies("5xx"), Some(sent_5xx as f64));
    assert_eq!(metric(&server, r#"mulesoft_audit_passes_total{status="ok"}"#), Some(3.0));
    assert_eq!(metric(&server, "mulesoft_audit_failed_passes_in_a_row"), Some(0.0));
    assert_eq!(metric(&server, "mulesoft_audit_pass_duration_seconds_count"), Some(3.0));
    let lag = metric(&server, r#"mulesoft_audit_lag_seconds{org="org-srv"}"#).expect("a lag for the org");
    assert!((0.0..120.0).contains(&lag), "the window ends a lag (1 s here) before the last pass: {lag}");
}

/// A sample's value in `GET /metrics`, by its name and labels as printed.
fn metric(server: &Server, sample: &str) -> Option<f64> {
    let (status, _, body) = http_get(&format!("http://127.0.0.1:{}/metrics", server.port)).expect("serve answers");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    text.lines().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn bad_bodies_are_refused_without_a_pass() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-bad-body", 10)]));
    let dir = tempfile::tempdir().unwrap();
    let server = start(&sim, &format!("file://{}", dir.path().display()));
    assert_eq!(post(&server, &[("content-type", "application/json")], "not json"), 400);
    assert_eq!(post(&server, &[("content-type", "application/json")], r#"{"message":{"data":"%%%"}}"#), 400);
    assert_eq!(post(&server, &[("ce-specversion", "1.0")], PUSH), 400);
    assert_eq!(sim.stats().requests, 0);
}

#[test]
fn concurrent_triggers_share_one_pass() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-conc", 1000)]);
    // Slow enough that the three triggers below arrive while the first pass runs.
    config.latency = Duration::from_millis(700);
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let server = start(&sim, &format!("file://{}", dir.path().display()));
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..3).map(|_| s.spawn(|| post(&server, &[("content-type", "application/json")], PUSH))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses, vec![204, 204, 204]);
    assert_eq!(sim.stats().tokens_issued, 1, "one pass for three overlapping triggers");
    let now = anypoint_sim::now_ms();
    assert_exactly_once(&sim, "org-conc", &objects_in_dir(dir.path()), now - 25 * 3_600_000, now - 10_000);
}

#[test]
fn a_failed_pass_answers_500_so_pubsub_redelivers() {
    let mut forbidden = OrgSpec::new("org-403", 10);
    forbidden.forbidden = true;
    let sim = sim(SimConfig::new(vec![forbidden]));
    let dir = tempfile::tempdir().unwrap();
    let server = start(&sim, &format!("file://{}", dir.path().display()));
    assert_eq!(post(&server, &[("content-type", "application/json")], PUSH), 500);
    assert_eq!(post(&server, &[("content-type", "application/json")], PUSH), 500);
    assert_eq!(metric(&server, r#"mulesoft_audit_failures_total{kind="forbidden"}"#), Some(2.0));
    assert_eq!(metric(&server, r#"mulesoft_audit_passes_total{status="failed"}"#), Some(2.0));
    assert_eq!(metric(&server, "mulesoft_audit_failed_passes_in_a_row"), Some(2.0));
}

/// Serves the test key's public half, as Google serves its signing keys.
fn jwks_server() -> (tokio::runtime::Runtime, String) {
    jwks_server_taking(Duration::ZERO)
}

/// The same, each reply taking `delay`, as over a slow network.
fn jwks_server_taking(delay: Duration) -> (tokio::runtime::Runtime, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/certs", listener.local_addr().unwrap());
    let jwks = include_str!("fixtures/oidc-test-jwks.json");
    let router = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || async move {
            tokio::time::sleep(delay).await;
            ([("content-type", "application/json")], jwks)
        }),
    );
    runtime.spawn(async move { axum::serve(listener, router).await });
    (runtime, url)
}

/// `serve` verifying pushes for [`AUDIENCE`] with the keys at `jwks_url`; `sender` says who may push.
fn verifying(
    sim: &anypoint_sim::Simulator,
    dir: &std::path::Path,
    jwks_url: String,
    sender: (&'static str, String),
) -> Server {
    let env =
        [("MULESOFT_AUDIT_OIDC_AUDIENCE", AUDIENCE.to_string()), sender, ("MULESOFT_AUDIT_OIDC_JWKS_URL", jwks_url)];
    start_with(sim, &format!("file://{}", dir.display()), &env)
}

const AUDIENCE: &str = "https://collector.example/push";
const PUSHER: &str = "pusher@project.iam.gserviceaccount.com";

fn token(audience: &str, email: &str, expires_in: i64, key: &[u8]) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": "https://accounts.google.com", "aud": audience, "email": email, "email_verified": true,
        "sub": "1234", "iat": now - 5, "exp": now + expires_in,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(key).unwrap()).unwrap()
}

#[test]
fn push_tokens_are_verified_when_verification_is_on() {
    let (_jwks_runtime, jwks_url) = jwks_server();
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-oidc", 100)]));
    let dir = tempfile::tempdir().unwrap();
    let server = verifying(&sim, dir.path(), jwks_url, ("MULESOFT_AUDIT_OIDC_EMAIL", PUSHER.to_string()));
    let key = include_bytes!("fixtures/oidc-test-key.pem");
    let bearer = |t: &str| format!("Bearer {t}");
    let json = ("content-type", "application/json");
    assert_eq!(post(&server, &[json], PUSH), 401, "no token");
    assert_eq!(post(&server, &[json, ("authorization", &bearer("not.a.jwt"))], PUSH), 403, "garbage");
    assert_eq!(
        post(&server, &[json, ("authorization", &bearer(&token("https://elsewhere", PUSHER, 300, key)))], PUSH),
        403,
        "audience"
    );
    assert_eq!(
        post(
            &server,
            &[json, ("authorization", &bearer(&token(AUDIENCE, "intruder@x.iam.gserviceaccount.com", 300, key)))],
            PUSH
        ),
        403,
        "email"
    );
    assert_eq!(
        post(&server, &[json, ("authorization", &bearer(&token(AUDIENCE, PUSHER, -600, key)))], PUSH),
        403,
        "expired"
    );
    assert_eq!(sim.stats().requests, 0, "no refused push ran a pass");
    assert_eq!(
        post(&server, &[json, ("authorization", &bearer(&token(AUDIENCE, PUSHER, 300, key)))], PUSH),
        204,
        "valid"
    );
    assert_eq!(sim.stats().tokens_issued, 1);
}

#[test]
fn concurrent_pushes_on_a_cold_key_cache_are_all_verified() {
    // The keys take a while to arrive, so every push below waits on the same first fetch.
    let (_jwks_runtime, jwks_url) = jwks_server_taking(Duration::from_millis(500));
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-oidc-cold", 100)]));
    let dir = tempfile::tempdir().unwrap();
    let server = verifying(&sim, dir.path(), jwks_url, ("MULESOFT_AUDIT_OIDC_EMAIL", PUSHER.to_string()));
    let key = include_bytes!("fixtures/oidc-test-key.pem");
    let authorization = format!("Bearer {}", token(AUDIENCE, PUSHER, 300, key));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let pushes: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    post(&server, &[("content-type", "application/json"), ("authorization", &authorization)], PUSH)
                })
            })
            .collect();
        pushes.into_iter().map(|p| p.join().unwrap()).collect()
    });
    assert_eq!(statuses, vec![204; 4], "no push was refused for want of the key cache");
}

#[test]
fn oidc_settings_that_would_verify_less_than_they_seem_are_refused() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-oidc-cfg", 1)]));
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("MULESOFT_AUDIT_OIDC_EMAIL", PUSHER)], "without MULESOFT_AUDIT_OIDC_AUDIENCE"),
        (&[("MULESOFT_AUDIT_OIDC_AUDIENCE", AUDIENCE)], "without MULESOFT_AUDIT_OIDC_EMAIL"),
        (&[("MULESOFT_AUDIT_OIDC_ANY_SENDER", "true")], "without MULESOFT_AUDIT_OIDC_AUDIENCE"),
    ];
    for (env, needle) in cases {
        let mut cmd = command(&sim, "file:///tmp");
        cmd.envs(env.iter().copied()).arg("serve");
        let r = finish(cmd.output().unwrap());
        assert_eq!(r.code, 2, "{env:?}: {}", r.stderr);
        let last = r.stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("error: ") && last.contains(needle), "{env:?}: {}", r.stderr);
    }
}

#[test]
fn any_sender_is_accepted_only_when_asked_for() {
    let (_jwks_runtime, jwks_url) = jwks_server();
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-oidc-any", 100)]));
    let dir = tempfile::tempdir().unwrap();
    let server = verifying(&sim, dir.path(), jwks_url, ("MULESOFT_AUDIT_OIDC_ANY_SENDER", "true".to_string()));
    let key = include_bytes!("fixtures/oidc-test-key.pem");
    let from = |email: &str, audience: &str| format!("Bearer {}", token(audience, email, 300, key));
    let json = ("content-type", "application/json");
    let elsewhere = from("someone@else.example", "https://elsewhere");
    assert_eq!(post(&server, &[json, ("authorization", &elsewhere)], PUSH), 403, "the audience still holds");
    let anyone = from("someone@else.example", AUDIENCE);
    assert_eq!(post(&server, &[json, ("authorization", &anyone)], PUSH), 204);
}

#[test]
fn a_schedule_runs_passes_by_itself_and_they_deliver_exactly_once() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-cron", 600)]));
    let dir = tempfile::tempdir().unwrap();
    // Every second (croner's optional seconds field), so the test waits seconds, not minutes.
    let dest = format!("file://{}", dir.path().display());
    let server = start_with(&sim, &dest, &[("MULESOFT_AUDIT_SCHEDULE", "* * * * * *".into())]);
    // Each pass takes one token; no trigger is ever posted.
    let passes_started = |at_least: u64| {
        wait_until(&format!("{at_least} scheduled passes"), Duration::from_secs(30), || {
            sim.stats().tokens_issued >= at_least
        });
    };
    passes_started(1);
    let added_at = anypoint_sim::now_ms();
    sim.add_entries("org-cron", 30, added_at - 20_000, added_at - 2_000);
    // Passes never overlap, so once two more have started, one that began after the new entries
    // has finished.
    passes_started(sim.stats().tokens_issued + 2);
    let delivered: Vec<String> = objects_in_dir(dir.path()).into_values().flatten().collect();
    for entry in sim.entries_in("org-cron", added_at - 20_000, added_at - 2_000) {
        assert_eq!(delivered.iter().filter(|l| **l == entry).count(), 1, "scheduled passes delivered {entry:.120}");
    }
    // Every pass audits its own token, so entries keep coming: stop the server (perhaps in the
    // middle of a pass), let one plain run catch up, and check the whole record.
    drop(server);
    let last = run_ok(command(&sim, &dest));
    let (_, to) = covered(&[&last.summary], "org-cron");
    assert_exactly_once(&sim, "org-cron", &objects_in_dir(dir.path()), added_at - 25 * 3_600_000, to);
}

#[test]
fn a_bad_schedule_is_one_line_and_exit_code_2() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-cron-bad", 1)]));
    let mut cmd = command(&sim, "file:///tmp");
    cmd.env("MULESOFT_AUDIT_SCHEDULE", "every fifteen minutes").arg("serve");
    let r = finish(cmd.output().unwrap());
    assert_eq!(r.code, 2, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(lines[0].contains("every fifteen minutes") && lines[0].contains("cron"), "{}", r.stderr);
}

#[test]
fn idle_and_half_sent_connections_cannot_starve_a_push() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-crowd", 300)]));
    let dir = tempfile::tempdir().unwrap();
    // A low open-file limit, as a container may have: more idle connections than it allows.
    let base = command(&sim, &format!("file://{}", dir.path().display()));
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "ulimit -n 160 && exec \"$0\" \"$@\"", BIN]).env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let server = Server::spawn(cmd);
    let address = format!("127.0.0.1:{}", server.port);
    let mut crowd: Vec<std::net::TcpStream> =
        (0..170).map(|_| std::net::TcpStream::connect(&address).unwrap()).collect();
    // Some send half a request and stop.
    for stream in crowd.iter_mut().take(20) {
        use std::io::Write;
        stream.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{").unwrap();
    }
    assert_eq!(post(&server, &[("content-type", "application/json")], PUSH), 204, "the push is served");
    let now = anypoint_sim::now_ms();
    assert_exactly_once(&sim, "org-crowd", &objects_in_dir(dir.path()), now - 25 * 3_600_000, now - 5_000);
    // The server closed the idle ones (a read ends, rather than waiting for ever).
    for stream in crowd.iter_mut().skip(20).take(5) {
        use std::io::Read;
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = [0u8; 16];
        let read = stream.read(&mut buf);
        assert!(
            matches!(read, Ok(0)) || read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{read:?}"
        );
    }
}

impl Server {
    /// Sends SIGTERM, as Cloud Run does, and waits for the process to end: its exit code.
    fn terminate(&mut self) -> i32 {
        signal_term(self.child.id());
        let mut code = None;
        wait_until("serve ending after SIGTERM", Duration::from_secs(30), || {
            code = self.child.try_wait().unwrap().map(|status| status.code().unwrap_or(-1));
            code.is_some()
        });
        code.unwrap_or(-1)
    }
}

/// A push that waits for its pass on a thread of its own: its answer, or `None` when the
/// connection ended without one.
fn push_in_background(port: u16) -> std::thread::JoinHandle<Option<(u16, String, Vec<u8>)>> {
    std::thread::spawn(move || {
        http_request(
            "POST",
            &format!("http://127.0.0.1:{port}/"),
            &[("content-type", "application/json")],
            PUSH.as_bytes(),
        )
    })
}

/// `kill -TERM pid`.
pub fn signal_term(pid: u32) {
    let sent = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(sent.success(), "kill -TERM {pid}");
}

#[test]
fn sigterm_when_idle_stops_serve_at_once_with_exit_0() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-idle", 50)]));
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&sim, &format!("file://{}", dir.path().display()));
    assert_eq!(post(&server, &[("content-type", "application/json")], PUSH), 204);
    assert_eq!(server.terminate(), 0, "a clean stop");
}

#[test]
fn sigterm_during_a_pass_records_it_as_stopped_and_the_next_pass_completes_exactly_once() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-term", 3000)]);
    // Slow enough that the pass outlasts the grace.
    config.latency = Duration::from_millis(150);
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let mut cmd = command(&sim, &dest);
    cmd.env("MULESOFT_AUDIT_PAGE_SIZE", "20").env("MULESOFT_AUDIT_CONCURRENCY", "1");
    let mut server = Server::spawn(cmd);
    let port = server.port;
    let push = push_in_background(port);
    wait_until("the pass querying", Duration::from_secs(30), || sim.stats().query_requests >= 5);
    assert_eq!(server.terminate(), 1, "stopped mid-pass: a later pass goes on");
    // The push was not acknowledged: Pub/Sub delivers it again.
    assert!(push.join().unwrap().is_none_or(|(status, _, _)| status != 204));
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/org-term/status.json")).unwrap()).unwrap();
    assert_eq!(status["last_failure"]["kind"], "stopped", "{status}");
    let next = run_ok(command(&sim, &dest));
    let (from, to) = covered(&[&next.summary], "org-term");
    let started = ms_of_first_window();
    assert_exactly_once(&sim, "org-term", &objects_in_dir(dir.path()), started.min(from), to);
}

#[test]
fn sigterm_at_any_moment_of_a_run_loses_and_doubles_nothing() {
    // Slow pages, one at a time: each run outlasts the grace, so that the signal cuts it.
    let mut config = SimConfig::new(vec![OrgSpec::new("org-runterm", 1200)]);
    config.latency = Duration::from_millis(250);
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let mut runs = Vec::new();
    // Moments drawn at random (printed for a failure's reproduction): after that many queries.
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let moments: Vec<u64> = (0..3).map(|_| rng.u64(1..16)).collect();
    eprintln!("SIGTERM after queries {moments:?} (seed {seed})");
    for moment in moments {
        let before = sim.stats().query_requests;
        let mut cmd = command(&sim, &dest);
        cmd.arg("run")
            .env("MULESOFT_AUDIT_PAGE_SIZE", "10")
            .env("MULESOFT_AUDIT_CONCURRENCY", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut ended = false;
        wait_until("the run querying", Duration::from_secs(30), || {
            ended = child.try_wait().unwrap().is_some();
            ended || sim.stats().query_requests >= before + moment
        });
        if !ended {
            signal_term(child.id());
        }
        let r = finish(child.wait_with_output().unwrap());
        assert!(matches!(r.code, 0 | 1), "{}", r.report());
        if r.code == 1 {
            assert_eq!(r.summary["failures"][0]["kind"], "stopped", "{}", r.report());
        }
        runs.push(r);
    }
    assert!(runs.iter().any(|r| r.code == 1), "a run was cut by the signal");
    runs.push(run_ok(command(&sim, &dest)));
    let summaries: Vec<&serde_json::Value> = runs.iter().map(|r| &r.summary).filter(|s| !s["orgs"].is_null()).collect();
    let (_, to) = covered(&summaries, "org-runterm");
    assert_exactly_once(&sim, "org-runterm", &objects_in_dir(dir.path()), ms_of_first_window(), to);
}

#[test]
fn sigterm_during_a_pass_that_ends_within_the_grace_lets_it_finish_and_answer() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-grace", 300)]);
    config.latency = Duration::from_millis(100);
    // A push's summary is not at hand to say where its window ended: no entry after it.
    config.token_audit_entries = false;
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULESOFT_AUDIT_PAGE_SIZE", "50").env("MULESOFT_AUDIT_CONCURRENCY", "1");
    let mut server = Server::spawn(cmd);
    let port = server.port;
    let push = push_in_background(port);
    wait_until("the pass querying", Duration::from_secs(30), || sim.stats().query_requests >= 1);
    assert_eq!(server.terminate(), 0, "the pass finished within the grace");
    assert_eq!(push.join().unwrap().map(|(status, _, _)| status), Some(204), "and its push was answered");
    let now = anypoint_sim::now_ms();
    assert_exactly_once(&sim, "org-grace", &objects_in_dir(dir.path()), now - 25 * 3_600_000, now - 5_000);
}
