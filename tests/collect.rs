//! End-to-end collection.

use crate::google::{Credentials, Google, Plan};
use crate::harness::*;
use anypoint_sim::{OrgSpec, SimConfig};
use regex_lite_free::key_ok;
use std::collections::BTreeMap;

mod regex_lite_free {
    /// `logs/YYYY/MM/DD/mulesoft-audit-<org>.<lineage>-<10 digits>.json.gz`, checked without a regex crate.
    pub fn key_ok(key: &str, org: &str) -> bool {
        let Some(rest) = key.strip_prefix("logs/") else {
            return false;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        parts.len() == 4
            && parts[0].len() == 4
            && parts[1].len() == 2
            && parts[2].len() == 2
            && parts[..3].iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
            && parts[3]
                .strip_prefix(&format!("mulesoft-audit-{org}."))
                .and_then(|s| s.strip_suffix(".json.gz"))
                .and_then(|s| s.split_once('-'))
                .is_some_and(|(lineage, n)| {
                    lineage.len() == 12
                        && lineage.bytes().all(|b| b.is_ascii_hexdigit())
                        && n.len() == 10
                        && n.bytes().all(|b| b.is_ascii_digit())
                })
    }
}

fn rich_config(orgs: Vec<OrgSpec>) -> SimConfig {
    let mut c = SimConfig::new(orgs);
    c.odd_permille = 30;
    c.same_ms_cluster = 450;
    c
}

#[test]
fn collects_into_a_directory_exactly_once_across_runs() {
    let sim = sim(rich_config(vec![OrgSpec::new("org-a", 3000), OrgSpec::new("org-b", 700)]));
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let first = run_ok(command(&sim, &dest));
    assert_eq!(first.summary["status"], "ok");
    // New entries arrive between runs, some inside the overlap of the first window.
    let now = anypoint_sim::now_ms();
    sim.add_entries("org-a", 150, now - 300_000, now - 2_000);
    let second = run_ok(command(&sim, &dest));
    let objects = objects_in_dir(dir.path());
    for org in ["org-a", "org-b"] {
        let (from, to) = covered(&[&first.summary, &second.summary], org);
        assert_exactly_once(&sim, org, &objects, from, to);
    }
    for key in objects.keys() {
        assert!(key_ok(key, "org-a") || key_ok(key, "org-b"), "key {key}");
    }
    // Each object holds one UTC day of entries.
    for (key, lines) in &objects {
        let day = &key[5..15];
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(ts) = v["timestamp"].as_i64() {
                let d = chrono::DateTime::from_timestamp_millis(ts).unwrap().format("%Y/%m/%d").to_string();
                assert_eq!(d, day, "{key}");
            }
        }
    }
    // The second run re-read its overlap and recognised it.
    let b = second.summary["orgs"].as_array().unwrap().iter().find(|o| o["org_id"] == "org-b").unwrap();
    assert_eq!(b["entries_written"], 0);
    // Checkpoints live outside the log prefix.
    assert!(dir.path().join("state/org-a/checkpoint.json").exists());
}

#[test]
fn entries_are_delivered_byte_for_byte_including_odd_ones() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-odd", 800)]);
    config.odd_permille = 1000;
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let r = run_ok(command(&sim, &format!("file://{}", dir.path().display())));
    let objects = objects_in_dir(dir.path());
    let (from, to) = covered(&[&r.summary], "org-odd");
    assert_exactly_once(&sim, "org-odd", &objects, from, to);
    let all: Vec<&String> = objects.values().flatten().collect();
    assert!(all.iter().any(|l| l.len() > 40 * 1024), "a 40 KB entry");
    assert!(all.iter().any(|l| !l.contains("\"id\"")), "an entry without id");
    assert!(all.iter().any(|l| !l.contains("\"timestamp\"")), "an entry without timestamp");
    assert!(all.iter().any(|l| l.contains("日本語") && l.contains("\\\"hi\\\"")), "unicode and escapes");
}

#[test]
fn offset_paging_and_small_objects() {
    let sim = sim(rich_config(vec![OrgSpec::new("org-off", 2500)]));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    let cap = 256 * 1024;
    cmd.env("MULESOFT_AUDIT_PAGING", "offset")
        .env("MULESOFT_AUDIT_OBJECT_KIB", (cap / 1024).to_string())
        .env("MULESOFT_AUDIT_PAGE_SIZE", "57");
    let r = run_ok(cmd);
    let objects = objects_in_dir(dir.path());
    let (from, to) = covered(&[&r.summary], "org-off");
    assert_exactly_once(&sim, "org-off", &objects, from, to);
    // Sequence numbers run 1..=n without gaps.
    let seq = |k: &str| -> u64 { k[k.len() - 18..k.len() - 8].parse().unwrap() };
    let mut seqs: Vec<u64> = objects.keys().map(|k| seq(k)).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // An object never exceeds the cap (unless one entry alone does), and it is closed only by the
    // entry that would have: within a day (objects never span midnight, so how many days the
    // window touches depends on the time of day) every object but the day's last is full up to
    // the first entry of the next.
    let size = |lines: &[String]| lines.iter().map(|l| l.len() + 1).sum::<usize>();
    let total: usize = objects.values().map(|l| size(l)).sum();
    assert!(total > 3 * cap, "enough data to need the cap: {total} bytes");
    let mut by_day: BTreeMap<&str, Vec<(u64, &Vec<String>)>> = BTreeMap::new();
    for (key, lines) in &objects {
        by_day.entry(&key[..key.rfind('/').unwrap()]).or_default().push((seq(key), lines));
    }
    for day in by_day.values_mut() {
        day.sort_by_key(|(s, _)| *s);
        for (s, lines) in day.iter() {
            assert!(size(lines) <= cap || lines.len() == 1, "object {s} exceeds the cap: {} bytes", size(lines));
        }
        // Objects numbered one after the other: an object between them in another day's folder
        // (an entry without a time, filed under its window's end) closes one early.
        for pair in day.windows(2).filter(|pair| pair[1].0 == pair[0].0 + 1) {
            let ((s, lines), (_, next)) = (pair[0], pair[1]);
            let with_next = size(lines) + next[0].len() + 1;
            assert!(
                with_next > cap,
                "object {s} was closed early: {} bytes, {with_next} with the next entry",
                size(lines)
            );
        }
    }
}

#[test]
fn collects_into_cloud_storage_with_the_metadata_servers_credentials() {
    let google = Google::start("audit-bucket", Plan::default());
    let files = tempfile::tempdir().unwrap();
    let sim = sim(rich_config(vec![OrgSpec::new("org-g", 1500)]));
    let mut cmd = command(&sim, "gs://audit-bucket/mulesoft");
    google.configure(&mut cmd, Credentials::MetadataServer, files.path());
    cmd.env("MULESOFT_AUDIT_OBJECT_KIB", "1024");
    let first = run_ok(cmd);
    let now = anypoint_sim::now_ms();
    sim.add_entries("org-g", 40, now - 60_000, now - 2_000);
    let mut cmd = command(&sim, "gs://audit-bucket/mulesoft");
    google.configure(&mut cmd, Credentials::MetadataServer, files.path());
    let second = run_ok(cmd);
    let objects = google.log_objects("audit-bucket", "mulesoft/logs/");
    let objects = objects.into_iter().map(|(k, v)| (k.trim_start_matches("mulesoft/").to_string(), v)).collect();
    let (from, to) = covered(&[&first.summary, &second.summary], "org-g");
    assert_exactly_once(&sim, "org-g", &objects, from, to);
    let state = google.gcs.objects("audit-bucket", "mulesoft/state/");
    assert!(state.contains_key("mulesoft/state/org-g/checkpoint.json"), "{:?}", state.keys());
    assert_eq!(google.state.seen.lock().unwrap().refused_anonymous, 0, "every request carried a token");
}

#[test]
fn business_groups_are_discovered_through_the_hierarchy() {
    let mut child = OrgSpec::new("org-child", 300);
    child.parent = Some("org-root".into());
    let mut grandchild = OrgSpec::new("org-grandchild", 200);
    grandchild.parent = Some("org-child".into());
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-root", 400), child, grandchild]));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULE_ORG_ID", "org-root").env("MULE_DISCOVER_CHILDREN", "true");
    let r = run_ok(cmd);
    let objects = objects_in_dir(dir.path());
    for org in ["org-root", "org-child", "org-grandchild"] {
        let (from, to) = covered(&[&r.summary], org);
        assert_exactly_once(&sim, org, &objects, from, to);
    }
}

#[test]
fn backfill_since_is_clamped_to_retention() {
    let mut spec = OrgSpec::new("org-ret", 500);
    spec.retention_days = 30;
    let sim = sim(SimConfig::new(vec![spec]));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULESOFT_AUDIT_SINCE", "2020-01-01");
    let r = run_ok(cmd);
    let start = ms(&r.summary["orgs"][0]["window_start"]);
    let thirty_days_ago = anypoint_sim::now_ms() - 30 * 86_400_000;
    assert!((start - thirty_days_ago).abs() < 15 * 60_000, "window starts at the retention floor, not 2020");
    let (from, to) = covered(&[&r.summary], "org-ret");
    assert_exactly_once(&sim, "org-ret", &objects_in_dir(dir.path()), from, to);
}

#[test]
fn one_token_per_run() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-t1", 2000), OrgSpec::new("org-t2", 2000)]));
    let dir = tempfile::tempdir().unwrap();
    run_ok(command(&sim, &format!("file://{}", dir.path().display())));
    assert_eq!(sim.stats().tokens_issued, 1);
    assert!(sim.stats().query_requests > 20);
}

#[test]
fn four_shards_split_twenty_orgs_exactly_once() {
    let orgs: Vec<OrgSpec> = (0..20).map(|i| OrgSpec::new(&format!("org-shard-{i:02}"), 120)).collect();
    let sim = sim(SimConfig::new(orgs));
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let results = run_at_once((0..4).map(|i| {
        let mut cmd = command(&sim, &dest);
        // Two shards the Cloud Run way, two the Kubernetes way.
        if i < 2 {
            cmd.env("CLOUD_RUN_TASK_INDEX", i.to_string()).env("CLOUD_RUN_TASK_COUNT", "4");
        } else {
            cmd.env("JOB_COMPLETION_INDEX", i.to_string()).env("MULESOFT_AUDIT_SHARD_COUNT", "4");
        }
        cmd.arg("run");
        cmd
    }));
    let mut owners = std::collections::BTreeMap::new();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.code, 0, "shard {i}: {}", r.stderr);
        let orgs = r.summary["orgs"].as_array().unwrap();
        assert!(!orgs.is_empty() && orgs.len() < 20, "shard {i} took a share: {}", orgs.len());
        for o in orgs {
            assert!(owners.insert(o["org_id"].as_str().unwrap().to_string(), i).is_none(), "an org in two shards");
        }
    }
    assert_eq!(owners.len(), 20, "every org in one shard");
    let objects = objects_in_dir(dir.path());
    let summaries: Vec<&serde_json::Value> = results.iter().map(|r| &r.summary).collect();
    for i in 0..20 {
        let org = format!("org-shard-{i:02}");
        let (from, to) = covered(&summaries, &org);
        assert_exactly_once(&sim, &org, &objects, from, to);
    }
}

#[test]
fn a_large_window_is_paged_with_several_requests_in_flight() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-wide", 6000)]);
    config.latency = std::time::Duration::from_millis(60);
    config.same_ms_cluster = 300;
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULESOFT_AUDIT_CONCURRENCY", "4");
    let r = run_ok(cmd);
    assert!(sim.stats().max_in_flight >= 3, "requests overlapped: {:?}", sim.stats());
    let (from, to) = covered(&[&r.summary], "org-wide");
    assert_exactly_once(&sim, "org-wide", &objects_in_dir(dir.path()), from, to);
    // Objects are in time order: each object's entries are no older than the previous object's.
    let objects = objects_in_dir(dir.path());
    let mut last = i64::MIN;
    for lines in objects.values() {
        for l in lines {
            if let Some(ts) = serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"].as_i64() {
                assert!(ts >= last, "entries written in time order");
                last = ts;
            }
        }
    }
}
