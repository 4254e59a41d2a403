//! `verify`: the API's truth against the delivered objects, `--repair`, and what it costs.

use crate::harness::*;
use anypoint_sim::{OrgSpec, SimConfig, Simulator};

fn verify(sim: &Simulator, dest: &str, args: &[&str]) -> RunResult {
    let mut cmd = command(sim, dest);
    cmd.arg("verify").args(args);
    finish(cmd.output().unwrap())
}

fn summary(r: &RunResult) -> serde_json::Value {
    serde_json::from_str(r.stdout.lines().last().unwrap_or_default()).unwrap_or_default()
}

/// Entries of `object` timed inside the verdict's window.
fn in_window(object: &[String], verdict: &serde_json::Value) -> u64 {
    let (from, to) = (ms(&verdict["window_start"]), ms(&verdict["window_end"]));
    object
        .iter()
        .filter(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            let t = entry["timestamp"].as_i64().unwrap_or_else(|| ms(&entry["timestamp"]));
            (from..=to).contains(&t)
        })
        .count() as u64
}

#[test]
fn a_clean_delivery_of_100_000_entries_verifies_for_no_more_requests_than_its_pass() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-vf-big", 100_000)]));
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    run_ok(command(&sim, &dest));
    let pass_queries = sim.stats().query_requests;
    let r = verify(&sim, &dest, &["--since", "2000-01-01"]);
    assert_eq!(r.code, 0, "{}", r.report());
    let verify_queries = sim.stats().query_requests - pass_queries;
    let s = summary(&r);
    assert_eq!(s["status"], "complete");
    let v = &s["orgs"][0];
    let in_objects: usize = objects_in_dir(dir.path()).values().map(Vec::len).sum();
    assert!(v["expected"].as_u64().unwrap() > 99_000, "{v}");
    assert_eq!(v["delivered"], v["expected"]);
    assert!(v["delivered"].as_u64().unwrap() <= in_objects as u64);
    assert!(verify_queries <= pass_queries, "verify sent {verify_queries} queries, the pass {pass_queries}");
    assert!(r.stderr.contains("missing 0, duplicates 0"), "{}", r.stderr);
}

#[test]
fn verify_counts_what_is_missing_and_doubled_and_repair_restores_exactly_once() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-vf", 3000)]));
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let mut cmd = command(&sim, &dest);
    cmd.env("MULESOFT_AUDIT_OBJECT_KIB", "256");
    let pass = run_ok(cmd);
    let objects = objects_in_dir(dir.path());
    assert!(objects.len() >= 4, "{:?}", objects.keys());
    let keys: Vec<&String> = objects.keys().collect();
    // One object gone (the feed, a person), another copied under a name of the org's.
    let removed = dir.path().join(keys[1]);
    let removed_bytes = std::fs::read(&removed).unwrap();
    std::fs::remove_file(&removed).unwrap();
    let copied =
        keys[2].replace(".json.gz", "").rsplit_once('-').map(|(stem, _)| format!("{stem}-0000009999.json.gz")).unwrap();
    std::fs::copy(dir.path().join(keys[2]), dir.path().join(&copied)).unwrap();

    let r = verify(&sim, &dest, &[]);
    assert_eq!(r.code, 1, "{}", r.report());
    let s = summary(&r);
    assert_eq!(s["status"], "incomplete");
    let v = &s["orgs"][0];
    let missing = in_window(&objects[keys[1]], v);
    let doubled = in_window(&objects[keys[2]], v);
    assert!(missing > 0 && doubled > 0, "the window {v} holds the removed and the copied object's entries");
    assert_eq!((v["missing"].as_u64(), v["duplicates"].as_u64()), (Some(missing), Some(doubled)), "{v}");
    assert_eq!(v["objects_not_found"], 1);
    assert!(v["first_missing"][0]["key"].as_str().is_some_and(|k| k.starts_with("i:")), "{v}");
    assert!(r.stderr.contains(&format!("missing {missing}, duplicates {doubled}")), "{}", r.stderr);
    // With an object gone, what is missing may have been ingested already: repair refuses, for
    // this organization (the store's state, not a setting: exit 1).
    let refused = verify(&sim, &dest, &["--repair"]);
    assert_eq!(refused.code, 1, "{}", refused.report());
    assert_eq!(summary(&refused)["failures"][0]["kind"], "conflict", "{}", refused.stdout);
    assert!(refused.stderr.contains("not in the store"), "{}", refused.stderr);
    std::fs::write(&removed, removed_bytes).unwrap();
    std::fs::remove_file(dir.path().join(&copied)).unwrap();

    // Entries the API shows only now, timed before the read floor: no pass will read them.
    let late_from = ms(&v["window_start"]) + 60_000;
    sim.add_entries("org-vf", 40, late_from, late_from + 40_000);
    let r = verify(&sim, &dest, &[]);
    assert_eq!(summary(&r)["orgs"][0]["missing"], 40, "{}", r.report());
    let repaired = verify(&sim, &dest, &["--repair"]);
    assert_eq!(repaired.code, 0, "{}", repaired.report());
    let v = &summary(&repaired)["orgs"][0];
    assert_eq!(
        (v["repaired"].as_u64(), v["missing"].as_u64(), v["duplicates"].as_u64()),
        (Some(40), Some(0), Some(0)),
        "{v}"
    );
    let again = verify(&sim, &dest, &["--repair"]);
    assert_eq!(summary(&again)["orgs"][0]["repaired"], 0, "{}", again.report());
    // Every entry the pass covered exactly once, across its objects and the repair's.
    let (from, to) = covered(&[&pass.summary], "org-vf");
    assert_exactly_once(&sim, "org-vf", &objects_in_dir(dir.path()), from, to);
    // And the collector goes on as before.
    run_ok(command(&sim, &dest));
    assert_eq!(verify(&sim, &dest, &[]).code, 0);
}

#[test]
fn verify_refuses_a_window_the_wrong_way_round_and_an_organization_never_collected() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-vf-none", 10)]));
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let r = verify(&sim, &dest, &["--since", "2026-01-02", "--until", "2026-01-01"]);
    assert_eq!(r.code, 2, "{}", r.report());
    assert!(r.stderr.contains("--since is after --until"), "{}", r.stderr);
    let r = verify(&sim, &dest, &[]);
    assert_eq!(r.code, 2, "{}", r.report());
    assert_eq!(summary(&r)["failures"][0]["kind"], "checkpoint", "{}", r.stdout);
    assert!(r.stderr.contains("never collected"), "{}", r.stderr);
}

#[test]
fn verify_reads_a_bucket_with_google_credentials_and_says_what_the_feed_took() {
    use crate::google::{Credentials, Google, Plan};
    let google = Google::start("verify-bucket", Plan::default());
    let files = tempfile::tempdir().unwrap();
    // Checkpoints apart from the logs (a locked log bucket): status and verify read both.
    let state = tempfile::tempdir().unwrap();
    let state_dest = format!("file://{}", state.path().display());
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-vf-gs", 1500)]));
    let dest = "gs://verify-bucket/collector";
    let through = |args: &[&str]| {
        let mut cmd = command(&sim, dest);
        google.configure(&mut cmd, Credentials::MetadataServer, files.path());
        cmd.env("MULESOFT_AUDIT_OBJECT_KIB", "128").env("MULESOFT_AUDIT_STATE_DEST", &state_dest).args(args);
        finish(cmd.output().unwrap())
    };
    let pass = through(&["run"]);
    assert_eq!(pass.code, 0, "{}", pass.report());
    assert!(state.path().join("state/org-vf-gs/checkpoint.json").exists(), "{}", pass.report());
    let status = through(&["status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.report());
    let delivered = &summary(&pass)["orgs"][0]["entries_written"];
    assert!(delivered.as_u64().unwrap() > 0, "{}", pass.stdout);
    assert_eq!(&summary(&status)["orgs"][0]["entries_written"], delivered, "{}", status.stdout);
    let clean = through(&["verify"]);
    assert_eq!(clean.code, 0, "{}", clean.report());
    let v = &summary(&clean)["orgs"][0];
    assert!(v["expected"].as_u64().unwrap() > 0 && v["objects_not_found"] == 0, "{v}");
    assert_eq!(v["objects_soft_deleted"], 0, "the bucket keeps deleted objects, and none was: {v}");
    // The feed ingests and deletes: the entries are gone from the bucket, and verify says why,
    // counting the objects the bucket keeps as soft-deleted.
    let written = google.log_objects("verify-bucket", "collector/logs/").len();
    assert!(written >= 2, "{written}");
    google.feed_deletes("verify-bucket", "collector/logs/");
    let taken = through(&["verify"]);
    assert_eq!(taken.code, 1, "{}", taken.report());
    let v = &summary(&taken)["orgs"][0];
    assert!(v["missing"] == v["expected"], "{v}");
    assert_eq!((&v["objects_not_found"], &v["objects_soft_deleted"]), (&written.into(), &written.into()), "{v}");
    assert!(taken.stderr.contains("source deletion"), "{}", taken.stderr);
    assert!(taken.stderr.contains(&format!("{written} of them are soft-deleted")), "{}", taken.stderr);
    // A bucket without soft delete keeps nothing to count: verify says it cannot tell.
    google.state.plan.lock().unwrap().no_soft_delete = true;
    let unknown = through(&["verify"]);
    let v = &summary(&unknown)["orgs"][0];
    assert_eq!((&v["objects_not_found"], &v["objects_soft_deleted"]), (&written.into(), &serde_json::Value::Null));
    assert!(unknown.stderr.contains("keeps no deleted objects"), "{}", unknown.stderr);
    assert_eq!(google.state.seen.lock().unwrap().refused_anonymous, 0);
}
