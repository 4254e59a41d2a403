//! The checkpoint's whole life, through the release binary as users run it: state moved, lost or
//! made anew, a page cap that must always progress, and `verify` over what the feed ingests (the
//! reproductions of issue #22).

use crate::google::{Credentials, Google, Plan};
use crate::harness::*;
use anypoint_sim::{OrgSpec, SimConfig};
use std::time::Duration;

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    anypoint_sim::now_ms()
}

/// Every delivered entry of `org` once, over the windows every run's summary covered.
fn exactly_once_over(sim: &anypoint_sim::Simulator, org: &str, dir: &std::path::Path, runs: &[&RunResult]) {
    let summaries: Vec<&serde_json::Value> = runs.iter().map(|r| &r.summary).collect();
    let (from, to) = covered(&summaries, org);
    assert_exactly_once(sim, org, &objects_in_dir(dir), from, to);
}

#[test]
fn state_moved_and_started_again_at_the_old_cursor_loses_nothing() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-moved", 300)]));
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    // A minute behind now, so that entries can arrive after the cursor.
    let mut cmd = command(&sim, &dest);
    cmd.env("MULESOFT_AUDIT_LAG", "60s");
    let first = run_ok(cmd);
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/org-moved/checkpoint.json")).unwrap()).unwrap();
    let cursor = checkpoint["cursor_ms"].as_i64().unwrap();
    let now = now_ms();
    sim.add_entries("org-moved", 40, cursor, now - 2_000);
    let moved = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &dest);
    cmd.env("MULESOFT_AUDIT_STATE_DEST", format!("file://{}", moved.path().display()))
        .env("MULESOFT_AUDIT_SINCE", cursor.to_string());
    let again = run_ok(cmd);
    let written = again.summary["orgs"][0]["entries_written"].as_u64().unwrap_or_default();
    assert!(written >= 40, "the new entries are written: {}", again.report());
    exactly_once_over(&sim, "org-moved", dir.path(), &[&first, &again]);
}

#[test]
fn a_new_state_prefix_after_a_backfill_delivers_nothing_twice_and_says_so() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-backfill", 3000)]);
    config.span = Duration::from_secs(3 * 24 * 3600);
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let since = (now_ms() - 3 * 24 * HOUR_MS - HOUR_MS).to_string();
    let mut cmd = command(&sim, &dest);
    cmd.env("MULESOFT_AUDIT_SINCE", &since);
    let backfill = run_ok(cmd);
    // MULESOFT_AUDIT_SINCE left in the service's environment, and the state somewhere new.
    let mut cmd = command(&sim, &dest);
    cmd.env("MULESOFT_AUDIT_SINCE", &since).env("MULESOFT_AUDIT_STATE_PREFIX", "elsewhere/");
    let again = run_ok(cmd);
    let said = again.summary["orgs"][0]["objects"].to_string();
    assert!(said.contains("checkpoint rebuilt"), "{}", again.report());
    assert_eq!(again.summary["orgs"][0]["duplicates_skipped"].as_u64().map(|d| d > 0), Some(true));
    exactly_once_over(&sim, "org-backfill", dir.path(), &[&backfill, &again]);
}

#[test]
fn a_lost_state_whose_objects_the_feed_took_is_refused_until_started_anew() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-taken", 200)]));
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    run_ok(command(&sim, &dest));
    // The checkpoint deleted by hand, and the feed took every object: the status is all that is left.
    std::fs::remove_file(dir.path().join("state/org-taken/checkpoint.json")).unwrap();
    std::fs::remove_dir_all(dir.path().join("logs")).unwrap();
    let refused = run(command(&sim, &dest));
    assert_eq!(refused.code, 2, "{}", refused.report());
    assert!(refused.stderr.contains("--start-anew") && refused.stderr.contains("status"), "{}", refused.stderr);
    assert!(!dir.path().join("logs").exists(), "nothing collected");
    let mut cmd = command(&sim, &dest);
    cmd.env("MULESOFT_AUDIT_START_ANEW", "true").env("MULESOFT_AUDIT_SINCE", now_ms().to_string());
    run_ok(cmd);
}

#[test]
fn a_page_cap_below_the_backlog_finishes_within_eight_passes_with_four_in_flight() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-capped", 720)]);
    config.span = Duration::from_secs(72 * 60);
    config.latency = Duration::from_millis(100);
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let since = (now_ms() - 75 * 60_000).to_string();
    let mut runs = Vec::new();
    for pass in 1..=8 {
        let mut cmd = command(&sim, &dest);
        cmd.env("MULESOFT_AUDIT_SINCE", &since)
            .env("MULESOFT_AUDIT_MAX_PAGES", "12")
            .env("MULESOFT_AUDIT_PAGE_SIZE", "20")
            .env("MULESOFT_AUDIT_CONCURRENCY", "4");
        let r = run(cmd);
        if r.code == 0 {
            runs.push(r);
            let refs: Vec<&RunResult> = runs.iter().collect();
            exactly_once_over(&sim, "org-capped", dir.path(), &refs);
            assert!(pass >= 3, "the cap was met: finished in {pass}");
            return;
        }
        assert_eq!(r.code, 1, "{}", r.report());
        assert!(r.stderr.contains("page"), "{}", r.stderr);
        assert!(r.summary["orgs"][0]["entries_written"].as_u64() > Some(0), "capped pass {pass} moved: {}", r.report());
        runs.push(r);
    }
    panic!("not finished within 8 passes");
}

#[test]
fn verify_counts_a_renamed_copy_under_the_prefix_as_duplicates() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-copied", 500)]));
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    run_ok(command(&sim, &dest));
    let objects = objects_in_dir(dir.path());
    let (original, lines) = objects.iter().next().unwrap();
    let folder = dir.path().join(original).parent().unwrap().to_path_buf();
    std::fs::copy(dir.path().join(original), folder.join("restored-by-hand.json.gz")).unwrap();
    let mut cmd = command(&sim, &dest);
    cmd.arg("verify").args(["--since", "2000-01-01"]);
    let r = finish(cmd.output().unwrap());
    assert_eq!(r.code, 1, "{}", r.report());
    let verdict: serde_json::Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    // The copy's entries of the verified window (it ends before the read floor) come twice.
    let until = ms(&verdict["orgs"][0]["window_end"]);
    let in_window = lines
        .iter()
        .filter(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            entry["timestamp"].as_i64().unwrap_or_else(|| ms(&entry["timestamp"])) <= until
        })
        .count() as u64;
    assert!(in_window > 0);
    assert_eq!(verdict["orgs"][0]["duplicates"].as_u64(), Some(in_window), "{}", r.stdout);
    assert!(r.stderr.contains("did not name"), "{}", r.stderr);
}

#[test]
fn a_moved_state_in_a_bucket_is_rebuilt_through_google_credentials() {
    // As deployed: Cloud Storage through the metadata server's credentials (no emulator
    // variable), the organization's objects found with a narrowed listing, then the state moved.
    let google = Google::start("audit-bucket", Plan::default());
    let files = tempfile::tempdir().unwrap();
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-gm", 800)]));
    let mut cmd = command(&sim, "gs://audit-bucket/mulesoft");
    google.configure(&mut cmd, Credentials::MetadataServer, files.path());
    let first = run_ok(cmd);
    let now = now_ms();
    sim.add_entries("org-gm", 30, now - 30_000, now - 2_000);
    let mut cmd = command(&sim, "gs://audit-bucket/mulesoft");
    google.configure(&mut cmd, Credentials::MetadataServer, files.path());
    cmd.env("MULESOFT_AUDIT_STATE_PREFIX", "moved/");
    let moved = run_ok(cmd);
    assert!(moved.summary["orgs"][0]["objects"].to_string().contains("checkpoint rebuilt"), "{}", moved.report());
    let objects = google.log_objects("audit-bucket", "mulesoft/logs/");
    let objects = objects.into_iter().map(|(k, v)| (k.trim_start_matches("mulesoft/").to_string(), v)).collect();
    let (from, to) = covered(&[&first.summary, &moved.summary], "org-gm");
    assert_exactly_once(&sim, "org-gm", &objects, from, to);
    assert_eq!(google.state.seen.lock().unwrap().refused_anonymous, 0, "every request carried a token");
}
