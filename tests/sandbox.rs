//! The sandbox: the guest reaches only the configured control plane, stays within its memory,
//! and secrets stay out of every output.

use crate::harness::*;
use anypoint_sim::{OrgSpec, SimConfig};
use mulesoft_audit_host::runtime::{Limits, Runtime, wit};
use mulesoft_audit_host::sandbox::Origin;
use mulesoft_audit_host::store::memory::MemoryStore;
use std::sync::Arc;

fn config(base_url: &str) -> wit::Config {
    wit::Config {
        org_ids: vec!["org-sb".into()],
        discover_children: false,
        endpoint: wit::Endpoint::BaseUrl(base_url.into()),
        client_id: anypoint_sim::DEMO_CLIENT_ID.into(),
        client_secret: anypoint_sim::DEMO_CLIENT_SECRET.into(),
        lookback_seconds: 86_400,
        since_ms: None,
        start_anew: false,
        lag_seconds: 1,
        overlap_seconds: 600,
        page_size: 200,
        max_pages: 1000,
        object_max_bytes: 1 << 20,
        key_prefix: "logs/".into(),
        state_prefix: "state/".into(),
        requests_per_minute: Some(100_000),
        max_attempts: 3,
        paging: wit::Paging::Cursor,
        shard_index: 0,
        shard_count: 1,
        concurrency: 4,
        http_timeout_ms: 60_000,
    }
}

#[test]
fn requests_to_any_other_origin_are_refused() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-sb", 100)]));
    let runtime = Runtime::new(Some(&cache_dir())).unwrap();
    // The host allows only another port on loopback; the guest asks for the simulator.
    let allowed = Origin::from_base_url("http://127.0.0.1:9").unwrap();
    let store = Arc::new(MemoryStore::default());
    let outcome = runtime.run(&Limits::default(), allowed, store.clone(), &config(&sim.url()), None).unwrap();
    let error = outcome.expect_err("the run fails");
    assert_eq!(error.failures[0].kind, wit::ErrorKind::Denied, "{}", error.failures[0].message);
    assert!(error.failures[0].message.contains("refused by the host"), "{}", error.failures[0].message);
    assert_eq!(sim.stats().requests, 0, "nothing reached the simulator");
    assert_nothing_marked_done(&store.snapshot());
}

#[test]
fn a_guest_over_its_memory_limit_is_stopped_and_reported() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-mem", 100)]));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULE_ORG_ID", "org-mem").env("MULESOFT_AUDIT_MEMORY_MIB", "1");
    let r = run(cmd);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.summary["failures"][0]["kind"], "memory-limit", "{}", r.stdout);
    assert!(r.stderr.contains("memory limit of 1 MiB"), "{}", r.stderr);
}

#[test]
fn the_secret_never_appears_in_output() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-sec", 300)]));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULE_ORG_ID", "org-sec").env("MULESOFT_AUDIT_LOG", "trace");
    let r = run_ok(cmd);
    assert!(!r.stdout.contains(anypoint_sim::DEMO_CLIENT_SECRET));
    assert!(!r.stderr.contains(anypoint_sim::DEMO_CLIENT_SECRET));
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.arg("run").arg("--help");
    let help = cmd.output().unwrap();
    assert!(
        !String::from_utf8_lossy(&help.stdout).contains(anypoint_sim::DEMO_CLIENT_SECRET),
        "--help hides the secret's value"
    );
}

#[test]
fn a_pass_over_its_time_limit_is_stopped_and_reported() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-slow", 2000)]);
    config.latency = std::time::Duration::from_millis(300);
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULESOFT_AUDIT_MAX_RUN_TIME", "1s").env("MULESOFT_AUDIT_PAGE_SIZE", "20");
    let r = run(cmd);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.summary["failures"][0]["kind"], "time-limit", "{}", r.stdout);
    // The whole pass needs 100 pages; the limit stopped it after a few.
    let pages = sim.stats().query_requests;
    assert!(pages < 50, "stopped early, after {pages} pages");
    // The component cannot record what happens after its trap: the host does, for `status`.
    let mut status = command(&sim, &format!("file://{}", dir.path().display()));
    status.args(["status", "--json"]);
    let status = finish(status.output().unwrap());
    let json: serde_json::Value = serde_json::from_str(status.stdout.trim()).unwrap_or_default();
    let row = &json["orgs"][0];
    assert_eq!((&row["org_id"], &row["last_failure"]["kind"]), (&"org-slow".into(), &"time-limit".into()), "{json}");
    assert_eq!(row["failed_in_a_row"], 1, "{json}");
}
