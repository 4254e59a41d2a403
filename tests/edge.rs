//! The edge component (`just edge`: the trigger, the collector and the store composed with wac)
//! under a real `wasmtime serve` (the CLI from PyPI, as the `wasmtime run` tests use), with
//! nothing but WASI: it writes to Cloud Storage through the Google stand-in, which refuses
//! anonymous callers, with tokens the stand-in's metadata server mints only for requests that
//! carry its header. Exactly once, also when the runtime's time limit stops a pass.

use crate::google::{Google, Plan, SERVICE_ACCOUNT};
use crate::harness::*;
use crate::serve::PUSH;
use anypoint_sim::{OrgSpec, SimConfig, Simulator};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

const BUCKET: &str = "edge-bucket";

/// Which edge component: settings from the environment, or from `wasi:config` too.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Environment,
    Config,
}

/// Builds an edge component once, with the script `just edge` runs; one build at a time (they
/// share the collector's target dir and wac's installation).
fn edge_wasm(variant: Variant) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    static BUILT: [std::sync::OnceLock<PathBuf>; 2] = [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    let (slot, flag, name) = match variant {
        Variant::Environment => (&BUILT[0], None, "mulesoft-audit-edge.wasm"),
        Variant::Config => (&BUILT[1], Some("--config"), "mulesoft-audit-edge-config.wasm"),
    };
    slot.get_or_init(|| {
        let _one_at_a_time = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut build = Command::new("bash");
        build.arg(root.join("edge/build.sh")).args(flag).env("CARGO", env!("CARGO"));
        assert_succeeds("building the edge component (edge/build.sh)", build);
        root.join("target/edge").join(name)
    })
    .clone()
}

/// `wasmtime serve` of the edge component on a free loopback port, with what it printed so far.
struct Edge {
    child: Child,
    url: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Edge {
    /// Serves the component with the settings every test shares, `extra` on top (an empty
    /// value removes one), and `options` for wasmtime (its limits).
    fn start(sim: &Simulator, google: &Google, extra: &[(&str, &str)], options: &[&str]) -> Self {
        Self::start_variant(Variant::Environment, sim, google, extra, options)
    }

    fn start_variant(
        variant: Variant,
        sim: &Simulator,
        google: &Google,
        extra: &[(&str, &str)],
        options: &[&str],
    ) -> Self {
        let mut cmd = Command::new(wasmtime());
        cmd.args(["serve", "-S", "cli", "--addr", "127.0.0.1:0", "--no-logging-prefix"]).args(options);
        let mut env: Vec<(String, String)> = [
            ("MULE_ORG_ID", sim.org_ids().join(",")),
            ("MULE_BASE_URL", sim.url()),
            ("CLIENT_ID", anypoint_sim::DEMO_CLIENT_ID.to_string()),
            ("MULESOFT_AUDIT_LAG", "1s".to_string()),
            ("MULESOFT_AUDIT_RPM", "100000".to_string()),
            ("MULESOFT_AUDIT_OBJECT_KIB", "64".to_string()),
            ("MULESOFT_AUDIT_DEST", format!("gs://{BUCKET}/mulesoft")),
            // Google's endpoints as a deployment reaches them: the metadata server by the
            // variable Google's libraries read, Cloud Storage by the host's.
            ("MULESOFT_AUDIT_GCS_ENDPOINT", google.endpoint()),
            ("GCE_METADATA_HOST", format!("127.0.0.1:{}", google.port)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            if !v.is_empty() {
                env.push((k.to_string(), v.to_string()));
            }
        }
        for (k, v) in &env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        // The secret is inherited, never on the command line (as the README says).
        if variant == Variant::Environment {
            let secret =
                extra.iter().find(|(k, _)| *k == "CLIENT_SECRET").map_or(anypoint_sim::DEMO_CLIENT_SECRET, |(_, v)| v);
            cmd.env("CLIENT_SECRET", secret).arg("--env").arg("CLIENT_SECRET");
        }
        cmd.arg(edge_wasm(variant)).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut out = child.stdout.take().unwrap();
        let collected = stdout.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = out.read(&mut buffer) {
                collected.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let (address, serving) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        let collected = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Serving HTTP on ") {
                    let _ = address.send(url.trim().trim_end_matches('/').to_string());
                }
                collected.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        // Compiling the component comes first; the line says it is done.
        let url = serving
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("wasmtime serve did not start:\n{}", stderr.lock().unwrap()));
        Edge { child, url, stdout, stderr }
    }

    fn post(&self, headers: &[(&str, &str)], body: &[u8]) -> Option<(u16, Vec<u8>)> {
        http_request("POST", &format!("{}/", self.url), headers, body).map(|(status, _, body)| (status, body))
    }

    /// The summaries printed (the last line of each pass's report), once there are `passes` of
    /// them: the runtime forwards the guest's output apart from the reply, which may come first.
    fn summaries(&self, passes: usize) -> Vec<serde_json::Value> {
        let printed = || -> Vec<serde_json::Value> {
            self.stdout.lock().unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
        };
        wait_until("the summaries printed", Duration::from_secs(30), || printed().len() >= passes);
        let summaries = printed();
        assert_eq!(summaries.len(), passes, "{}", self.printed());
        summaries
    }

    fn printed(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout.lock().unwrap(), self.stderr.lock().unwrap())
    }
}

fn delivered(google: &Google) -> BTreeMap<String, Vec<String>> {
    google.log_objects(BUCKET, "mulesoft/logs/")
}

#[test]
fn a_post_delivers_every_entry_exactly_once_through_wasmtime_serve() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-edge", 1500)]);
    config.odd_permille = 30;
    let sim = sim(config);
    let google = Google::start(BUCKET, Plan::default());
    let edge = Edge::start(&sim, &google, &[], &[]);

    let first = edge.post(&[("content-type", "application/json")], PUSH.as_bytes()).unwrap();
    assert_eq!(first.0, 204, "{}", edge.printed());
    let binary = [
        ("ce-specversion", "1.0"),
        ("ce-id", "e-1"),
        ("ce-type", "google.cloud.pubsub.topic.v1.messagePublished"),
        ("ce-source", "//pubsub.googleapis.com/projects/p/topics/t"),
    ];
    assert_eq!(edge.post(&binary, PUSH.as_bytes()).unwrap().0, 204, "{}", edge.printed());
    let summaries = edge.summaries(2);
    assert!(summaries[0]["orgs"][0]["entries_written"].as_u64().unwrap() >= 1500, "{}", edge.printed());
    let (from, to) = covered(&summaries.iter().collect::<Vec<_>>(), "org-edge");
    let objects = delivered(&google);
    assert!(objects.len() > 3, "64 KiB objects: {}", objects.len());
    assert_exactly_once(&sim, "org-edge", &objects, from, to);

    let seen = google.state.seen.lock().unwrap();
    assert_eq!(seen.refused_anonymous, 0, "every Cloud Storage request carried a token");
    assert_eq!(seen.metadata_without_flavor, 0, "every metadata request carried its header");
    assert_eq!(seen.principals.keys().cloned().collect::<Vec<_>>(), vec![SERVICE_ACCOUNT.to_string()]);
    // wasmtime serve gives each request an instance of its own: one token each.
    assert_eq!(seen.token_requests.get("metadata"), Some(&2), "{:?}", seen.token_requests);
    drop(seen);

    // Not a trigger: refused before any work.
    let (status, body) = edge.post(&[], b"hello").unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("not a Pub/Sub push body"));
    assert_eq!(http_get(&format!("{}/", edge.url)).unwrap().0, 405);
    // serve's other routes: the health check, and nothing else.
    assert_eq!(http_get(&format!("{}/healthz", edge.url)).map(|(s, _, b)| (s, b)), Some((200, b"ok".to_vec())));
    let huge = vec![b' '; mulesoft_audit::trigger::MAX_BODY + 1];
    assert_eq!(edge.post(&[], &huge).map(|r| r.0), Some(413), "a body past the limit, refused unread");
    let elsewhere = http_request("POST", &format!("{}/run", edge.url), &[], PUSH.as_bytes()).map(|r| r.0);
    assert_eq!(elsewhere, Some(404), "a trigger runs a pass only at /");
    assert_eq!(edge.summaries(2).len(), 2, "no pass for a bad request");
}

#[test]
fn a_pass_stopped_by_the_runtimes_time_limit_is_repeated_without_loss_or_double() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-edge-stopped", 8000)]);
    // Every reply takes a while and the pages come one at a time, so the pass (80 pages, 8 s)
    // outlives the limit after writing objects.
    config.latency = Duration::from_millis(100);
    let sim = sim(config);
    let google = Google::start(BUCKET, Plan::default());
    // Requests of at most 5 s: a lease on a name the stopped pass may have left pending is then
    // 25 s, which the next pass waits out (README, "A stalled writer").
    let paced = [
        ("MULESOFT_AUDIT_PAGE_SIZE", "100"),
        ("MULESOFT_AUDIT_CONCURRENCY", "1"),
        ("MULESOFT_AUDIT_GCS_TIMEOUT_SECS", "5"),
    ];

    let limited = Edge::start(&sim, &google, &paced, &["-W", "timeout=2s"]);
    let stopped = limited.post(&[("content-type", "application/json")], PUSH.as_bytes());
    // wasmtime answers 500 for a handler it stopped before it answered (Pub/Sub then delivers the
    // trigger again).
    assert_eq!(stopped.map(|r| r.0), Some(500), "the pass outlived the limit: {}", limited.printed());
    let partial = delivered(&google).len();
    assert!(partial > 0, "the stopped pass wrote objects first: {}", limited.printed());
    drop(limited);

    let edge = Edge::start(&sim, &google, &paced, &[]);
    assert_eq!(edge.post(&[], PUSH.as_bytes()).unwrap().0, 204, "{}", edge.printed());
    let summaries = edge.summaries(1);
    let (_, to) = covered(&summaries.iter().collect::<Vec<_>>(), "org-edge-stopped");
    let objects = delivered(&google);
    assert!(objects.len() > partial, "the repeat went on where the stopped pass ended");
    assert_exactly_once(&sim, "org-edge-stopped", &objects, ms_of_first_window(), to);
}

#[test]
fn wrong_settings_and_secrets_fail_the_trigger_with_one_line_and_write_nothing() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-edge-bad", 300)]));
    let google = Google::start(BUCKET, Plan::default());
    // Each a failure a person must fix (exit code 2, never retried into success).
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 6] = [
        (&[("CLIENT_SECRET", "the-wrong-secret-value")], "unauthorized", "CLIENT_SECRET"),
        (&[("MULESOFT_AUDIT_DEST", "/data")], "denied", "Cloud Storage only"),
        (&[("MULESOFT_AUDIT_LAG", "soon")], "config", "MULESOFT_AUDIT_LAG"),
        // Plain http to another machine: the secret would travel unencrypted.
        (&[("MULE_BASE_URL", "http://anypoint.example")], "config", "unencrypted"),
        // The same rule for the storage endpoint: its token would travel unencrypted.
        (&[("MULESOFT_AUDIT_GCS_ENDPOINT", "http://storage.example")], "denied", "unencrypted"),
        // The host's push-token check is not there: refused, not ignored.
        (&[("MULESOFT_AUDIT_OIDC_AUDIENCE", "https://edge.example/")], "config", "not available at the edge"),
    ];
    for (extra, kind, needle) in cases {
        let edge = Edge::start(&sim, &google, extra, &[]);
        let (status, body) = edge.post(&[], PUSH.as_bytes()).unwrap();
        assert_eq!(status, 500, "{extra:?}: {}", edge.printed());
        let summary = edge.summaries(1).pop().unwrap_or_default();
        assert_eq!(summary["status"], "failed", "{extra:?}: {}", edge.printed());
        assert_eq!(summary["failures"][0]["kind"], kind, "{extra:?}: {}", edge.printed());
        assert!(summary["failures"][0]["message"].as_str().unwrap_or_default().contains(needle), "{}", edge.printed());
        // The same line for a person, on stderr.
        wait_until("the failure's line on stderr", Duration::from_secs(30), || {
            edge.stderr.lock().unwrap().lines().filter(|l| l.contains(needle)).count() == 1
        });
        let printed = edge.printed();
        assert!(!printed.contains("the-wrong-secret-value") && !printed.contains(anypoint_sim::DEMO_CLIENT_SECRET));
        assert!(
            String::from_utf8_lossy(&body).contains("exit code 2"),
            "{extra:?}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let stored = google.gcs.objects(BUCKET, "mulesoft/");
    assert_nothing_marked_done(
        &stored
            .into_iter()
            .map(|(name, (_, _, bytes))| (name.trim_start_matches("mulesoft/").to_string(), bytes))
            .collect(),
    );
}

#[test]
fn built_for_wasi_config_it_reads_settings_from_the_runtimes_configuration() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-edge-config", 700)]));
    let google = Google::start(BUCKET, Plan::default());
    // The secret and the organization only in the runtime's configuration, lowercase as Spin's
    // variables are; a wrong organization in the environment that the configuration overrides.
    let secret = format!("config-var=client_secret={}", anypoint_sim::DEMO_CLIENT_SECRET);
    let org = "config-var=mule_org_id=org-edge-config";
    let options = ["-S", "config", "-S", secret.as_str(), "-S", org];
    let edge = Edge::start_variant(Variant::Config, &sim, &google, &[("MULE_ORG_ID", "org-not-this-one")], &options);
    assert_eq!(edge.post(&[], PUSH.as_bytes()).unwrap().0, 204, "{}", edge.printed());
    let summaries = edge.summaries(1);
    let (from, to) = covered(&summaries.iter().collect::<Vec<_>>(), "org-edge-config");
    assert_exactly_once(&sim, "org-edge-config", &delivered(&google), from, to);
    assert_eq!(summaries[0]["orgs"].as_array().map(Vec::len), Some(1), "only the configured organization");
}

#[test]
fn an_object_the_feed_took_before_it_was_recorded_is_not_delivered_again() {
    // The store dies right after creating an object, before the checkpoint records it; the feed
    // ingests and deletes it; the next trigger asks the store what became of it, and Cloud
    // Storage's soft-deleted listing (through wasi:http) says it was delivered.
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-edge-feed", 1500)]));
    let google = Google::start(BUCKET, Plan { die_after_next_log_upload: true, ..Plan::default() });
    let quick = [("MULESOFT_AUDIT_MAX_ATTEMPTS", "2")];
    let edge = Edge::start(&sim, &google, &quick, &[]);
    assert_eq!(edge.post(&[], PUSH.as_bytes()).unwrap().0, 500, "{}", edge.printed());
    let died = edge.summaries(1).pop().unwrap_or_default();
    assert_eq!(died["failures"][0]["kind"], "storage", "{}", edge.printed());
    assert_eq!(delivered(&google).len(), 1, "one object created, not recorded");
    google.state.plan.lock().unwrap().fail_next = 0;
    google.feed_deletes(BUCKET, "mulesoft/logs/");

    assert_eq!(edge.post(&[], PUSH.as_bytes()).unwrap().0, 204, "{}", edge.printed());
    let next = edge.summaries(2).pop().unwrap_or_default();
    assert!(next.to_string().contains("(recovered)"), "the object counted as delivered: {next}");
    let (_, to) = covered(&[&next], "org-edge-feed");
    assert_exactly_once(
        &sim,
        "org-edge-feed",
        &google.log_objects_ever(BUCKET, "mulesoft/logs/"),
        ms_of_first_window(),
        to,
    );
}

#[test]
fn triggers_that_arrive_together_deliver_each_entry_once() {
    // Pub/Sub redelivers a push whose pass outlasts the ack deadline, and the runtime gives each
    // request an instance of its own: passes overlap, and the checkpoints keep them apart.
    let mut config = SimConfig::new(vec![OrgSpec::new("org-edge-twice", 3000)]);
    config.latency = Duration::from_millis(20);
    let sim = sim(config);
    let google = Google::start(BUCKET, Plan::default());
    let edge = Edge::start(&sim, &google, &[("MULESOFT_AUDIT_PAGE_SIZE", "100")], &[]);
    let answers: Vec<u16> = std::thread::scope(|s| {
        let posts: Vec<_> = (0..3).map(|_| s.spawn(|| edge.post(&[], PUSH.as_bytes()).map(|r| r.0))).collect();
        posts.into_iter().map(|p| p.join().unwrap().unwrap_or(0)).collect()
    });
    // A pass that lost the race says so (conflict, retried by the next trigger); none fails otherwise.
    assert!(answers.iter().all(|a| *a == 204 || *a == 500), "{answers:?}: {}", edge.printed());
    for summary in edge.summaries(3) {
        for failure in summary["failures"].as_array().cloned().unwrap_or_default() {
            assert_eq!(failure["kind"], "conflict", "{}", edge.printed());
        }
    }
    assert_eq!(edge.post(&[], PUSH.as_bytes()).unwrap().0, 204, "{}", edge.printed());
    let last = edge.summaries(4).pop().unwrap_or_default();
    let (_, to) = covered(&[&last], "org-edge-twice");
    assert_exactly_once(&sim, "org-edge-twice", &delivered(&google), ms_of_first_window(), to);
}

#[test]
fn without_soft_delete_an_object_the_feed_took_comes_again_said_never_lost() {
    // The bucket keeps no deleted objects: whether the feed took the unrecorded object cannot be
    // told, so its entries are delivered again (twice rather than never), and the summary says so.
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-edge-nosoft", 1500)]));
    let plan = Plan { die_after_next_log_upload: true, no_soft_delete: true, ..Plan::default() };
    let google = Google::start(BUCKET, plan);
    // The unrecorded object's name is leased (three 2 s requests, and 10 s): the next pass waits
    // that out before it claims the name, since nothing shows the feed took the object.
    let edge = Edge::start(
        &sim,
        &google,
        &[("MULESOFT_AUDIT_MAX_ATTEMPTS", "2"), ("MULESOFT_AUDIT_GCS_TIMEOUT_SECS", "2")],
        &[],
    );
    assert_eq!(edge.post(&[], PUSH.as_bytes()).unwrap().0, 500, "{}", edge.printed());
    google.state.plan.lock().unwrap().fail_next = 0;
    google.feed_deletes(BUCKET, "mulesoft/logs/");
    assert_eq!(edge.post(&[], PUSH.as_bytes()).unwrap().0, 204, "{}", edge.printed());
    let next = edge.summaries(2).pop().unwrap_or_default();
    assert!(next.to_string().contains("cannot tell"), "the summary says so: {next}");
    let delivered: std::collections::BTreeSet<String> =
        google.log_objects_ever(BUCKET, "mulesoft/logs/").into_values().flatten().collect();
    let (_, to) = covered(&[&next], "org-edge-nosoft");
    let missing =
        sim.entries_in("org-edge-nosoft", ms_of_first_window(), to).into_iter().filter(|e| !delivered.contains(e));
    assert_eq!(missing.count(), 0, "nothing lost");
}
