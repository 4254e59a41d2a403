//! The container image as Cloud Run runs it (issue #24), built by `tests/container.sh` (which
//! runs these): the Dockerfile's runtime stage on a stand-in for distroless, as uid 65532, with
//! the root read-only (stricter than Cloud Run, whose root is writable: `/tmp` is a tmpfs here),
//! on the host's network with every peer on 127.0.0.1 (the Anypoint simulator, the Google
//! stand-in with its metadata server, fake-gcs-server), so nothing but loopback is contacted.
//!
//! `serve` answers `/healthz`, collects on a Pub/Sub push with the metadata server's credentials
//! (no emulator variable), shows `/metrics`, and stops cleanly on SIGTERM mid-pass; `run` as a
//! Cloud Run job's tasks shares the organizations; `check`, `status` and `--help` work inside; the
//! image has no shell and no simulator.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared with the main suite, which uses all of them; this binary uses a part.
#[allow(dead_code, unused_imports)]
mod google;
#[allow(dead_code, unused_imports)]
mod harness;

use anypoint_sim::{OrgSpec, SimConfig, Simulator};
use google::{Credentials, Google, Plan};
use harness::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const BUCKET: &str = "audit-bucket";

const PUSH: &str = r#"{"message":{"data":"e30=","attributes":{},"messageId":"1","publishTime":"2026-01-01T00:00:00Z"},"subscription":"projects/p/subscriptions/s"}"#;

fn image() -> String {
    std::env::var("MULESOFT_AUDIT_IMAGE").expect("MULESOFT_AUDIT_IMAGE names the image (tests/container.sh)")
}

/// A container, removed when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "-f", &self.0]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn unique(what: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("mulesoft-audit-{what}-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

/// The settings a test prepared for the binary (`command` and the Google stand-in), as a
/// container's variables: the image's own cache directory stays.
fn settings(sim: &Simulator, google: &Google, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut prepared = command(sim, &format!("gs://{BUCKET}/mule"));
    let files = tempfile::tempdir().unwrap();
    google.configure(&mut prepared, Credentials::MetadataServer, files.path());
    for (k, v) in extra {
        prepared.env(k, v);
    }
    prepared
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?.to_string_lossy().into_owned())))
        .filter(|(k, _)| k != "MULESOFT_AUDIT_CACHE_DIR")
        .collect()
}

/// `podman run` of the image as Cloud Run runs it: uid 65532, root read-only, host network.
fn podman_run(name: &str, vars: &[(String, String)], detached: bool, args: &[&str]) -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["run", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp", "--user", "65532:65532"]);
    cmd.arg(if detached { "--detach" } else { "--rm" });
    for (k, v) in vars {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.arg(image()).args(args);
    cmd
}

fn bucket_objects(google: &Google) -> std::collections::BTreeMap<String, Vec<String>> {
    google
        .log_objects(BUCKET, "mule/logs/")
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("mule/").to_string(), v))
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `serve` in a detached container, once it answers `/healthz`.
fn serve(vars: &[(String, String)]) -> (Container, u16) {
    let port = free_port();
    let mut vars = vars.to_vec();
    vars.push(("PORT".into(), port.to_string()));
    vars.push(("MULESOFT_AUDIT_LISTEN".into(), "127.0.0.1".into()));
    let name = unique("serve");
    let started = podman_run(&name, &vars, true, &[]).output().unwrap();
    assert!(started.status.success(), "podman run: {}", String::from_utf8_lossy(&started.stderr));
    let container = Container(name);
    wait_until("serve answering /healthz in its container", Duration::from_secs(60), || {
        http_get(&format!("http://127.0.0.1:{port}/healthz")).is_some_and(|(s, _, b)| s == 200 && b == b"ok")
    });
    (container, port)
}

fn push(port: u16) -> Option<u16> {
    http_request("POST", &format!("http://127.0.0.1:{port}/"), &[("content-type", "application/json")], PUSH.as_bytes())
        .map(|(status, _, _)| status)
}

fn exit_code(container: &Container) -> i64 {
    let out =
        Command::new("podman").args(["inspect", &container.0, "--format", "{{.State.ExitCode}}"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(-1)
}

#[test]
fn serve_collects_a_push_with_metadata_credentials_and_stops_cleanly_on_sigterm() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-ctr", 900)]);
    config.latency = Duration::from_millis(5);
    // A push's summary is not at hand to say where its window ended: no entry after it.
    config.token_audit_entries = false;
    let sim = sim(config);
    let google = Google::start(BUCKET, Plan::default());
    let vars = settings(&sim, &google, &[]);
    let (container, port) = serve(&vars);
    assert_eq!(push(port), Some(204), "the push collects");
    let objects = bucket_objects(&google);
    let now = anypoint_sim::now_ms();
    assert_exactly_once(&sim, "org-ctr", &objects, now - 25 * 3_600_000, now - 5_000);
    let (status, _, body) = http_get(&format!("http://127.0.0.1:{port}/metrics")).unwrap();
    let delivered: usize = objects.values().map(Vec::len).sum();
    let sample = format!("mulesoft_audit_entries_written_total{{org=\"org-ctr\"}} {delivered}");
    assert!(status == 200 && String::from_utf8_lossy(&body).contains(&sample), "{}", String::from_utf8_lossy(&body));
    // Idle: SIGTERM (`podman stop`) ends it at once, cleanly.
    let stopped = Command::new("podman").args(["stop", "--time", "10", &container.0]).output().unwrap();
    assert!(stopped.status.success());
    assert_eq!(exit_code(&container), 0, "a clean stop, not SIGKILL's 137");
}

#[test]
fn sigterm_during_a_pass_in_the_container_records_it_and_the_next_push_completes_exactly_once() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-ctr-term", 2000)]);
    config.latency = Duration::from_millis(150);
    config.token_audit_entries = false;
    let sim = sim(config);
    let google = Google::start(BUCKET, Plan::default());
    let vars = settings(&sim, &google, &[("MULESOFT_AUDIT_PAGE_SIZE", "20"), ("MULESOFT_AUDIT_CONCURRENCY", "1")]);
    let (container, port) = serve(&vars);
    let pending = std::thread::spawn(move || push(port));
    wait_until("the pass querying", Duration::from_secs(60), || sim.stats().query_requests >= 5);
    // As Cloud Run does: SIGTERM, then SIGKILL 10 s later.
    let stopped = Command::new("podman").args(["stop", "--time", "10", &container.0]).output().unwrap();
    assert!(stopped.status.success());
    assert_eq!(exit_code(&container), 1, "stopped mid-pass within the grace, not killed");
    assert_ne!(pending.join().unwrap(), Some(204), "the push is not acknowledged: Pub/Sub delivers it again");
    // Redelivered to a new instance: everything, once.
    let (_next, port) = serve(&settings(&sim, &google, &[]));
    assert_eq!(push(port), Some(204));
    let now = anypoint_sim::now_ms();
    assert_exactly_once(&sim, "org-ctr-term", &bucket_objects(&google), now - 25 * 3_600_000, now - 5_000);
    let status = google.gcs.objects(BUCKET, "mule/state/org-ctr-term/status.json");
    let (_, (_, _, bytes)) = status.into_iter().next().expect("a status");
    let status: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status["last_failure"]["kind"], "stopped", "the cut pass is on record: {status}");
}

#[test]
fn run_as_a_cloud_run_jobs_tasks_collects_every_organization_once() {
    let orgs = ["org-job-a", "org-job-b", "org-job-c", "org-job-d"];
    let sim = sim(SimConfig::new(orgs.iter().map(|o| OrgSpec::new(o, 300)).collect()));
    let google = Google::start(BUCKET, Plan::default());
    let mut summaries = Vec::new();
    for task in ["0", "1"] {
        let vars = settings(&sim, &google, &[("CLOUD_RUN_TASK_INDEX", task), ("CLOUD_RUN_TASK_COUNT", "2")]);
        let r = finish(podman_run(&unique("job"), &vars, false, &["run"]).output().unwrap());
        assert_eq!(r.code, 0, "{}", r.report());
        summaries.push(r.summary);
    }
    let collected: Vec<&str> = summaries
        .iter()
        .flat_map(|s| s["orgs"].as_array().unwrap().iter().map(|o| o["org_id"].as_str().unwrap()))
        .collect();
    assert_eq!(collected.len(), orgs.len(), "each organization by one task: {collected:?}");
    let objects = bucket_objects(&google);
    let refs: Vec<&serde_json::Value> = summaries.iter().collect();
    for org in orgs {
        let (from, to) = covered(&refs, org);
        let mine = objects.iter().filter(|(k, _)| is_objects_of(k, org)).map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_exactly_once(&sim, org, &mine, from, to);
    }
}

#[test]
fn check_status_and_help_work_inside_and_the_image_has_no_shell_or_simulator() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-ctr-check", 50)]));
    let google = Google::start(BUCKET, Plan::default());
    let vars = settings(&sim, &google, &[]);
    let checked = finish(podman_run(&unique("check"), &vars, false, &["check"]).output().unwrap());
    assert_eq!(checked.code, 0, "{}", checked.report());
    assert!(checked.stdout.contains("ok: credentials: metadata server"), "{}", checked.report());
    let status = finish(podman_run(&unique("status"), &vars, false, &["status"]).output().unwrap());
    assert_eq!(status.code, 0, "{}", status.report());
    let help = finish(podman_run(&unique("help"), &[], false, &["--help"]).output().unwrap());
    assert_eq!(help.code, 0, "{}", help.report());
    assert!(help.stdout.contains("serve") && !help.stdout.contains("demo"), "no simulator: {}", help.stdout);
    let mut shell = Command::new("podman");
    shell.args(["run", "--rm", "--entrypoint", "/bin/sh", &image(), "-c", "true"]);
    let shell = shell.output().unwrap();
    assert!(!shell.status.success(), "the image has no shell");
    // The CA bundle the HTTPS clients trust (Anypoint, Cloud Storage, Google's token endpoints).
    let name = unique("files");
    let created = Command::new("podman").args(["create", "--name", &name, &image()]).output().unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let _created = Container(name.clone());
    let bundle = Command::new("podman")
        .args(["cp", &format!("{name}:/etc/ssl/certs/ca-certificates.crt"), "-"])
        .output()
        .unwrap();
    let certificates = String::from_utf8_lossy(&bundle.stdout).matches("BEGIN CERTIFICATE").count();
    assert!(bundle.status.success() && certificates > 100, "the CA bundle: {certificates} certificates");
}

#[test]
fn sigterm_during_a_job_in_the_container_records_it_and_the_next_run_completes_exactly_once() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-job-term", 2000)]);
    config.latency = Duration::from_millis(150);
    let sim = sim(config);
    let google = Google::start(BUCKET, Plan::default());
    let vars = settings(&sim, &google, &[("MULESOFT_AUDIT_PAGE_SIZE", "20"), ("MULESOFT_AUDIT_CONCURRENCY", "1")]);
    let name = unique("job-term");
    let started = podman_run(&name, &vars, true, &["run"]).output().unwrap();
    assert!(started.status.success(), "podman run: {}", String::from_utf8_lossy(&started.stderr));
    let job = Container(name);
    wait_until("the job querying", Duration::from_secs(60), || sim.stats().query_requests >= 5);
    // A task's timeout, as Cloud Run ends it: SIGTERM, then SIGKILL 10 s later.
    let stopped = Command::new("podman").args(["stop", "--time", "10", &job.0]).output().unwrap();
    assert!(stopped.status.success());
    assert_eq!(exit_code(&job), 1, "stopped within the grace, not killed");
    let logs = Command::new("podman").args(["logs", &job.0]).output().unwrap();
    let summary = String::from_utf8_lossy(&logs.stdout);
    assert!(summary.contains(r#""kind":"stopped""#), "its report says so: {summary}");
    let next = finish(podman_run(&unique("job-next"), &vars, false, &["run"]).output().unwrap());
    assert_eq!(next.code, 0, "{}", next.report());
    // Up to where the last run read (entries after it, its own token's audit entry among them,
    // are the next run's).
    let (_, to) = covered(&[&next.summary], "org-job-term");
    assert_exactly_once(&sim, "org-job-term", &bucket_objects(&google), ms_of_first_window(), to);
}
