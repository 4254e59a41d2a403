//! `status`: from the state alone (no API call, no Anypoint credentials), how far each
//! organization's delivery got, its last success and failure, and `--max-lag` for a cron check.

use crate::google::{Credentials, Google, Plan};
use crate::harness::*;
use anypoint_sim::{OrgSpec, SimConfig, Simulator};
use std::process::Command;

/// `status` with `args`, without any Anypoint setting: it must not need them.
fn status(sim: &Simulator, dest: &str, args: &[&str]) -> (RunResult, serde_json::Value) {
    let mut cmd = command(sim, dest);
    cmd.env_remove("CLIENT_ID").env_remove("CLIENT_SECRET").env_remove("MULE_BASE_URL").arg("status").args(args);
    let r = finish_status(cmd);
    let json = if args.contains(&"--json") {
        serde_json::from_str(r.stdout.trim()).unwrap_or_default()
    } else {
        serde_json::Value::Null
    };
    (r, json)
}

fn finish_status(mut cmd: Command) -> RunResult {
    finish(cmd.output().unwrap())
}

fn org<'a>(json: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    json["orgs"].as_array().and_then(|orgs| orgs.iter().find(|o| o["org_id"] == id)).unwrap_or(&serde_json::Value::Null)
}

#[test]
fn status_shows_what_passes_did_and_the_last_failure() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-st", 700)]));
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    run_ok(command(&sim, &dest));
    let delivered: usize = objects_in_dir(dir.path()).values().map(Vec::len).sum();
    assert!(delivered > 0);

    let (r, json) = status(&sim, &dest, &["--json", "--max-lag", "2h"]);
    assert_eq!(r.code, 0, "{}", r.report());
    let row = org(&json, "org-st");
    assert_eq!(row["entries_written"], delivered as u64, "{}", r.stdout);
    assert_eq!(row["objects_written"], objects_in_dir(dir.path()).len() as u64);
    assert!(row["lag_seconds"].as_i64().is_some_and(|lag| (0..120).contains(&lag)), "{}", r.stdout);
    assert!(row["last_success"].is_string() && row["last_failure"].is_null(), "{}", r.stdout);

    // A pass with a wrong secret: its failure is on record, without the secret.
    let mut cmd = command(&sim, &dest);
    cmd.env("CLIENT_SECRET", "wrong-secret-for-status");
    assert_eq!(run(cmd).code, 2);
    let (r, json) = status(&sim, &dest, &["--json"]);
    let row = org(&json, "org-st");
    assert_eq!(
        (row["last_failure"]["kind"].as_str(), row["failed_in_a_row"].as_u64()),
        (Some("unauthorized"), Some(1)),
        "{}",
        r.stdout
    );
    assert_eq!(row["entries_written"], delivered as u64, "the failed pass wrote nothing");
    assert!(!r.stdout.contains("wrong-secret-for-status"));
    let (table, _) = status(&sim, &dest, &[]);
    assert_eq!(table.code, 0);
    assert!(table.stdout.contains("org-st") && table.stdout.contains("unauthorized (1 in a row)"), "{}", table.stdout);

    // The next good pass ends the streak and keeps the failure on record.
    run_ok(command(&sim, &dest));
    let (_, json) = status(&sim, &dest, &["--json"]);
    let row = org(&json, "org-st");
    assert_eq!(
        (row["failed_in_a_row"].as_u64(), row["last_failure"]["kind"].as_str()),
        (Some(0), Some("unauthorized"))
    );
}

#[test]
fn max_lag_fails_for_an_organization_behind_or_never_collected() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-lag", 300)]));
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    // Windows that end three hours before now leave the cursor three hours behind.
    let mut cmd = command(&sim, &dest);
    cmd.env("MULESOFT_AUDIT_LAG", "3h");
    run_ok(cmd);
    let (r, json) = status(&sim, &dest, &["--json", "--max-lag", "2h"]);
    assert_eq!(r.code, 1, "{}", r.report());
    assert!(org(&json, "org-lag")["lag_seconds"].as_i64().is_some_and(|lag| lag >= 3 * 3600));
    assert_eq!(status(&sim, &dest, &["--max-lag", "4h"]).0.code, 0);
    assert_eq!(status(&sim, &dest, &[]).0.code, 0, "without --max-lag no verdict");
    // A configured organization with no state at all is behind by any measure.
    let mut cmd = command(&sim, &dest);
    cmd.env("MULE_ORG_ID", "org-lag,org-never").env_remove("CLIENT_SECRET").arg("status").args([
        "--json",
        "--max-lag",
        "4h",
    ]);
    let r = finish_status(cmd);
    assert_eq!(r.code, 1, "{}", r.report());
    let json: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert!(org(&json, "org-never")["cursor"].is_null(), "{}", r.stdout);
    let (bad, _) = status(&sim, &dest, &["--max-lag", "soon"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("--max-lag `soon` is not a duration"), "{}", bad.stderr);
}

#[test]
fn status_reads_a_bucket_through_google_credentials() {
    let google = Google::start("status-bucket", Plan::default());
    let files = tempfile::tempdir().unwrap();
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-gs-st", 400)]));
    let dest = "gs://status-bucket/collector";
    let mut cmd = command(&sim, dest);
    google.configure(&mut cmd, Credentials::MetadataServer, files.path());
    let pass = run_ok(cmd);
    let mut cmd = command(&sim, dest);
    google.configure(&mut cmd, Credentials::MetadataServer, files.path());
    cmd.env_remove("CLIENT_SECRET").arg("status").arg("--json");
    let r = finish_status(cmd);
    assert_eq!(r.code, 0, "{}", r.report());
    let json: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(org(&json, "org-gs-st")["entries_written"], pass.summary["orgs"][0]["entries_written"], "{}", r.stdout);
    assert_eq!(google.state.seen.lock().unwrap().refused_anonymous, 0);
}

#[test]
fn an_id_configured_in_another_case_is_one_organization_in_status_and_in_a_pass() {
    let id = "7f8e6c2a-0d1b-4c3e-9a5f-00000000abcd";
    let sim = sim(SimConfig::new(vec![OrgSpec::new(id, 300)]));
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let first = run_ok(command(&sim, &dest));
    let upper = id.to_ascii_uppercase();
    let mut cmd = command(&sim, &dest);
    cmd.env("MULE_ORG_ID", &upper);
    let again = run_ok(cmd);
    assert_eq!(again.summary["orgs"][0]["org_id"], id, "as the state spells it: {}", again.report());
    let objects = objects_in_dir(dir.path());
    let (from, to) = covered(&[&first.summary, &again.summary], id);
    assert_exactly_once(&sim, id, &objects, from, to);
    // One row, within the lag: no second organization without a checkpoint.
    let mut cmd = command(&sim, &dest);
    cmd.env("MULE_ORG_ID", &upper)
        .env_remove("CLIENT_ID")
        .env_remove("CLIENT_SECRET")
        .env_remove("MULE_BASE_URL")
        .args(["status", "--json", "--max-lag", "2h"]);
    let r = finish_status(cmd);
    assert_eq!(r.code, 0, "{}", r.report());
    let json: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap_or_default();
    assert_eq!(json["orgs"].as_array().map(Vec::len), Some(1), "{}", r.stdout);
}
