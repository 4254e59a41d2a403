//! Storage faults: GCS answering 503 or hanging for a while, a create whose reply was lost (so
//! its retry meets 412), a missing bucket, and the checkpoint changed underneath a pass.

use crate::google::{Credentials, Google, Plan};
use crate::harness::*;
use anypoint_sim::{OrgSpec, SimConfig};
use std::time::Duration;

/// A pass into `gs://faulty/base` through the stand-in, with the metadata server's credentials.
fn run_through(sim: &anypoint_sim::Simulator, google: &Google, extra: &[(&str, &str)]) -> RunResult {
    run(through(sim, google, extra))
}

fn through(sim: &anypoint_sim::Simulator, google: &Google, extra: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = command(sim, "gs://faulty/base");
    let files = tempfile::tempdir().unwrap();
    google.configure(&mut cmd, Credentials::MetadataServer, files.path());
    cmd.env("MULESOFT_AUDIT_OBJECT_KIB", "256");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

fn check_bucket(sim: &anypoint_sim::Simulator, google: &Google, org: &str, summaries: &[&serde_json::Value]) {
    let objects: std::collections::BTreeMap<String, Vec<String>> = google
        .log_objects("faulty", "base/logs/")
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("base/").to_string(), v))
        .collect();
    let (from, to) = covered(summaries, org);
    assert_exactly_once(sim, org, &objects, from, to);
}

#[test]
fn gcs_unavailable_for_a_while_then_back() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-503s", 1500)]));
    let google = Google::start("faulty", Plan { fail_next: 4, ..Plan::default() });
    let r = run_through(&sim, &google, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(google.state.seen.lock().unwrap().failed, 4);
    check_bucket(&sim, &google, "org-503s", &[&r.summary]);
}

#[test]
fn gcs_hanging_requests_time_out_and_are_retried() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-hang", 800)]));
    let google = Google::start("faulty", Plan { stall_next: 2, stall: Duration::from_secs(5), ..Plan::default() });
    let r = run_through(&sim, &google, &[("MULESOFT_AUDIT_GCS_TIMEOUT_SECS", "1")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    check_bucket(&sim, &google, "org-hang", &[&r.summary]);
}

#[test]
fn a_create_whose_reply_was_lost_is_recognised_by_its_checksum() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-lost", 1500)]));
    let google = Google::start("faulty", Plan { lose_next_log_upload_reply: 2, ..Plan::default() });
    let r = run_through(&sim, &google, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(google.state.seen.lock().unwrap().lost_replies, 2, "the fault happened");
    check_bucket(&sim, &google, "org-lost", &[&r.summary]);
}

#[test]
fn gcs_unavailable_beyond_the_retries_fails_the_run_and_the_next_completes() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-down", 900)]));
    let google = Google::start("faulty", Plan { fail_next: 1000, ..Plan::default() });
    let r = run_through(&sim, &google, &[("MULESOFT_AUDIT_GCS_TIMEOUT_SECS", "1")]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.summary["failures"][0]["kind"], "storage");
    google.state.plan.lock().unwrap().fail_next = 0;
    let r2 = run_through(&sim, &google, &[]);
    assert_eq!(r2.code, 0, "{}", r2.stderr);
    check_bucket(&sim, &google, "org-down", &[&r2.summary]);
}

#[test]
fn a_missing_bucket_is_a_configuration_error() {
    let google = Google::start("some-other-bucket", Plan::default());
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-nobucket", 100)]));
    let mut cmd = command(&sim, "gs://no-such-bucket");
    let files = tempfile::tempdir().unwrap();
    google.configure(&mut cmd, Credentials::MetadataServer, files.path());
    let r = run(cmd);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("no-such-bucket") && r.stderr.contains("does not exist"), "{}", r.stderr);
}

#[test]
fn a_bucket_that_denies_writes_is_a_configuration_error_and_nothing_is_marked_done() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-denied", 300)]));
    let google = Google::start("faulty", Plan { deny_uploads: true, ..Plan::default() });
    let r = run_through(&sim, &google, &[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("403") && r.stderr.contains("objectUser"), "{}", r.stderr);
    assert!(google.gcs.objects("faulty", "base/").is_empty(), "nothing written");
}

#[test]
fn create_without_replace_permission_is_caught_by_check_and_recovered_once_granted() {
    // objectCreator + objectViewer only: creating works, replacing a checkpoint does not.
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-noreplace", 400)]));
    let google = Google::start("faulty", Plan { deny_replacing: true, ..Plan::default() });
    let mut cmd = through(&sim, &google, &[]);
    cmd.arg("check");
    let checked = finish(cmd.output().unwrap());
    assert_eq!(checked.code, 2, "{}\n{}", checked.stdout, checked.stderr);
    assert!(checked.stderr.contains("storage.objects.delete"), "{}", checked.stderr);

    let denied = run_through(&sim, &google, &[]);
    assert_eq!(denied.code, 2, "{}\n{}", denied.stdout, denied.stderr);
    assert_eq!(denied.summary["failures"][0]["kind"], "denied", "{}", denied.stdout);
    // The first checkpoint is created (that needs no delete); naming the first object in it is
    // a replacement, refused before the object is written.
    assert!(google.log_objects("faulty", "base/logs/").is_empty(), "no object written before its record");
    // The role is granted: the next pass delivers everything.
    google.state.plan.lock().unwrap().deny_replacing = false;
    let granted = run_through(&sim, &google, &[]);
    assert_eq!(granted.code, 0, "{}", granted.stderr);
    check_bucket(&sim, &google, "org-noreplace", &[&denied.summary, &granted.summary]);
}

#[test]
fn large_objects_go_up_in_resumable_uploads() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-resumable", 1200)]));
    let google = Google::start("faulty", Plan::default());
    // Every log object above 0 bytes takes the resumable path.
    let r = run_through(&sim, &google, &[("MULESOFT_AUDIT_GCS_RESUMABLE_ABOVE", "0")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(google.state.seen.lock().unwrap().resumable_starts >= 1, "uploads were resumable");
    check_bucket(&sim, &google, "org-resumable", &[&r.summary]);
}

#[test]
fn a_chunk_whose_reply_was_lost_is_followed_by_a_progress_query_not_a_blind_resend() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-chunk", 6000)]));
    let google = Google::start("faulty", Plan { lose_next_chunk_reply: 2, ..Plan::default() });
    // Objects of several 256 KiB chunks each.
    let settings = [
        ("MULESOFT_AUDIT_GCS_RESUMABLE_ABOVE", "0"),
        ("MULESOFT_AUDIT_GCS_CHUNK_KIB", "256"),
        ("MULESOFT_AUDIT_OBJECT_KIB", "8192"),
    ];
    let r = run_through(&sim, &google, &settings);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let logs = google.gcs.objects("faulty", "base/logs/");
    let uploaded: usize = logs.values().map(|(_, _, bytes)| bytes.len()).sum();
    let seen = google.state.seen.lock().unwrap();
    assert_eq!(seen.lost_replies, 2, "the fault happened");
    assert!(seen.chunks as usize > logs.len(), "objects went up in several chunks");
    assert!(seen.progress_queries >= 2, "each lost chunk reply was followed by a progress query");
    assert_eq!(seen.chunk_bytes, uploaded, "no chunk the session already held was sent again");
    drop(seen);
    check_bucket(&sim, &google, "org-chunk", &[&r.summary]);
}

#[test]
fn an_expired_upload_session_starts_over_and_is_not_a_missing_bucket() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-session", 1200)]));
    let google = Google::start("faulty", Plan { expire_next_sessions: 2, ..Plan::default() });
    let r = run_through(&sim, &google, &[("MULESOFT_AUDIT_GCS_RESUMABLE_ABOVE", "0")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("does not exist"), "{}", r.stderr);
    let objects = google.log_objects("faulty", "base/logs/").len() as u32;
    assert_eq!(google.state.seen.lock().unwrap().resumable_starts, objects + 2, "two sessions started again");
    check_bucket(&sim, &google, "org-session", &[&r.summary]);
}

#[test]
fn sessions_that_always_expire_fail_the_pass_as_unavailable_and_the_next_completes() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-expiring", 600)]));
    let google = Google::start("faulty", Plan { expire_next_sessions: 1000, ..Plan::default() });
    // The object named and never created keeps its name leased for three requests' time (2 s
    // each here) and 10 s: the next run waits that out, then claims the name.
    let tuned = [("MULESOFT_AUDIT_GCS_RESUMABLE_ABOVE", "0"), ("MULESOFT_AUDIT_GCS_TIMEOUT_SECS", "2")];
    let r = run_through(&sim, &google, &tuned);
    assert_eq!(r.code, 1, "transient, not configuration: {}\n{}", r.stdout, r.stderr);
    assert_eq!(r.summary["failures"][0]["kind"], "storage", "{}", r.stdout);
    google.state.plan.lock().unwrap().expire_next_sessions = 0;
    let r2 = run_through(&sim, &google, &tuned);
    assert_eq!(r2.code, 0, "{}", r2.stderr);
    assert!(r2.stdout.contains("(claimed)"), "the name was claimed after its lease: {}", r2.stdout);
    check_bucket(&sim, &google, "org-expiring", &[&r.summary, &r2.summary]);
}

#[test]
fn a_name_leased_for_longer_than_a_pass_waits_is_left_to_a_later_pass_with_a_conflict() {
    // The default lease (three 300 s requests): the run right after a failed create may not
    // claim the name, says until when, and writes nothing; a changed timeout does not shorten
    // a lease already recorded.
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-leased", 600)]));
    let google = Google::start("faulty", Plan { expire_next_sessions: 1000, ..Plan::default() });
    let resumable = [("MULESOFT_AUDIT_GCS_RESUMABLE_ABOVE", "0")];
    let r = run_through(&sim, &google, &resumable);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    google.state.plan.lock().unwrap().expire_next_sessions = 0;
    let before = google.log_objects_ever("faulty", "base/logs/").len();
    let r2 = run_through(&sim, &google, &[resumable[0], ("MULESOFT_AUDIT_GCS_TIMEOUT_SECS", "1")]);
    assert_eq!(r2.code, 1, "{}\n{}", r2.stdout, r2.stderr);
    assert_eq!(r2.summary["failures"][0]["kind"], "conflict", "{}", r2.stdout);
    assert!(r2.stderr.contains("may still create it until"), "{}", r2.stderr);
    assert_eq!(google.log_objects_ever("faulty", "base/logs/").len(), before, "no claim, no object");
}

/// What the feed ingested, deleted ones included, keyed as the harness expects.
fn ever(google: &Google) -> std::collections::BTreeMap<String, Vec<String>> {
    google
        .log_objects_ever("faulty", "base/logs/")
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("base/").to_string(), v))
        .collect()
}

#[test]
fn an_object_the_feed_deleted_before_it_was_recorded_is_not_delivered_again() {
    // The pass dies right after creating an object; the feed (source deletion on) ingests and
    // deletes it; the next pass finds it among the soft-deleted objects and counts it delivered.
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-feed", 1500)]));
    let google = Google::start("faulty", Plan { die_after_next_log_upload: true, ..Plan::default() });
    let died = run_through(&sim, &google, &[("MULESOFT_AUDIT_GCS_TIMEOUT_SECS", "1")]);
    assert_eq!(died.code, 1, "{}\n{}", died.stdout, died.stderr);
    assert_eq!(google.log_objects("faulty", "base/logs/").len(), 1, "one object created, not recorded");
    google.state.plan.lock().unwrap().fail_next = 0;
    google.feed_deletes("faulty", "base/logs/");
    let next = run_through(&sim, &google, &[]);
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert!(next.stdout.contains("(recovered)"), "{}", next.stdout);
    let (from, to) = covered(&[&next.summary], "org-feed");
    assert_exactly_once(&sim, "org-feed", &ever(&google), ms_of_first_window().min(from), to);
}

#[test]
fn without_soft_delete_check_warns_and_a_deleted_unrecorded_object_comes_again_not_never() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-nosoft", 1500)]));
    let google = Google::start("faulty", Plan { no_soft_delete: true, ..Plan::default() });
    let mut cmd = through(&sim, &google, &[]);
    cmd.arg("check");
    let checked = finish(cmd.output().unwrap());
    assert_eq!(checked.code, 0, "{}\n{}", checked.stdout, checked.stderr);
    assert!(checked.stdout.contains("warning:") && checked.stdout.contains("soft delete"), "{}", checked.stdout);
    google.state.plan.lock().unwrap().die_after_next_log_upload = true;
    let died = run_through(&sim, &google, &[("MULESOFT_AUDIT_GCS_TIMEOUT_SECS", "1")]);
    assert_eq!(died.code, 1, "{}", died.stderr);
    google.state.plan.lock().unwrap().fail_next = 0;
    google.feed_deletes("faulty", "base/logs/");
    let next = run_through(&sim, &google, &[]);
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert!(next.stdout.contains("cannot tell"), "the summary says so: {}", next.stdout);
    let delivered: std::collections::BTreeSet<String> = ever(&google).into_values().flatten().collect();
    let (_, to) = covered(&[&next.summary], "org-nosoft");
    let missing =
        sim.entries_in("org-nosoft", ms_of_first_window(), to).into_iter().filter(|e| !delivered.contains(e)).count();
    assert_eq!(missing, 0, "nothing lost");
}

#[test]
fn check_says_deleted_objects_are_told_apart_where_the_bucket_keeps_them() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-softcheck", 10)]));
    let google = Google::start("faulty", Plan::default());
    let mut cmd = through(&sim, &google, &[]);
    cmd.arg("check");
    let checked = finish(cmd.output().unwrap());
    assert_eq!(checked.code, 0, "{}\n{}", checked.stdout, checked.stderr);
    assert!(checked.stdout.contains("safe with the feed's source deletion"), "{}", checked.stdout);
    assert!(!checked.stdout.contains("warning:"), "{}", checked.stdout);
}

#[test]
fn a_log_bucket_that_refuses_replacing_works_with_checkpoints_elsewhere() {
    // A retention policy or a bucket lock: objects can be created, never replaced or deleted.
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-locked", 1200)]));
    let google = Google::start("faulty", Plan { deny_replacing: true, ..Plan::default() });
    let state = tempfile::tempdir().unwrap();
    let state_dest = format!("file://{}", state.path().display());
    let mut cmd = through(&sim, &google, &[("MULESOFT_AUDIT_STATE_DEST", &state_dest)]);
    cmd.arg("check");
    let checked = finish(cmd.output().unwrap());
    assert_eq!(checked.code, 0, "{}\n{}", checked.stdout, checked.stderr);
    assert!(checked.stdout.contains("log destination takes new objects"), "{}", checked.stdout);
    let first = run_through(&sim, &google, &[("MULESOFT_AUDIT_STATE_DEST", &state_dest)]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let now = anypoint_sim::now_ms();
    sim.add_entries("org-locked", 30, now - 30_000, now - 2_000);
    let second = run_through(&sim, &google, &[("MULESOFT_AUDIT_STATE_DEST", &state_dest)]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    check_bucket(&sim, &google, "org-locked", &[&first.summary, &second.summary]);
    assert!(
        state.path().join("state/org-locked/checkpoint.json").exists(),
        "the checkpoint is in the state destination"
    );
    assert!(google.gcs.objects("faulty", "base/state/").is_empty(), "and not in the log bucket");
}
