//! Delivery under faults: after each fault, a clean run, then every entry of the covered window
//! is in the destination exactly once.

use crate::harness::*;
use anypoint_sim::{Faults, OrgSpec, SimConfig, Simulator};
use clap::Parser;
use mulesoft_audit_host::runtime::{Limits, Runtime};
use mulesoft_audit_host::settings::{CollectArgs, Resolved};
use mulesoft_audit_host::store::{Found, ObjectStore, Presence, Store, StoreError, Stored, file::FileStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    collect: CollectArgs,
}

/// Settings as the binary would resolve them, for in-process runs.
fn resolved(sim: &Simulator, dest: &str, extra: &[&str]) -> Resolved {
    let mut argv =
        vec!["test".to_string(), format!("--org={}", sim.org_ids().join(",")), format!("--base-url={}", sim.url())];
    argv.extend([
        format!("--client-id={}", anypoint_sim::DEMO_CLIENT_ID),
        format!("--client-secret={}", anypoint_sim::DEMO_CLIENT_SECRET),
    ]);
    argv.extend([format!("--dest={dest}"), "--lag=1s".into(), "--requests-per-minute=100000".into()]);
    argv.extend(extra.iter().map(|s| s.to_string()));
    Args::try_parse_from(argv).unwrap().collect.resolve().unwrap()
}

fn runtime() -> Runtime {
    Runtime::new(Some(&cache_dir())).unwrap()
}

/// A store that "dies" after a number of writes: the write that uses up the budget happens, and
/// nothing after it reaches storage, exactly as if the process had been killed right then.
struct DyingStore {
    inner: FileStore,
    writes_left: AtomicU32,
    dead: AtomicBool,
    /// Whether the pass asked anything of the store after it died, other than for its status
    /// (best effort): only then did the crash cut the delivery, rather than follow it.
    refused: AtomicBool,
    /// Whether the pass's status was refused.
    refused_status: AtomicBool,
}

impl DyingStore {
    fn new(dir: &std::path::Path, writes: u32) -> Self {
        DyingStore {
            inner: FileStore::new(dir.to_str().unwrap()).unwrap(),
            writes_left: AtomicU32::new(writes),
            dead: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            refused_status: AtomicBool::new(false),
        }
    }

    fn alive(&self, key: &str) -> Result<(), StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            let refused = if key.ends_with("/status.json") { &self.refused_status } else { &self.refused };
            refused.store(true, Ordering::SeqCst);
            return Err(StoreError::Unavailable("process died".into()));
        }
        Ok(())
    }

    fn write<T>(&self, key: &str, op: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.alive(key)?;
        let result = op();
        if self.writes_left.fetch_sub(1, Ordering::SeqCst) <= 1 {
            self.dead.store(true, Ordering::SeqCst);
        }
        result
    }
}

impl ObjectStore for DyingStore {
    fn create(&self, key: &str, data: &[u8], ct: &str, deadline_ms: Option<i64>) -> Result<u64, StoreError> {
        self.write(key, || self.inner.create(key, data, ct, deadline_ms))
    }
    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        self.alive(key)?;
        self.inner.read(key)
    }
    fn write_if_generation(&self, key: &str, data: &[u8], ct: &str, generation: u64) -> Result<u64, StoreError> {
        self.write(key, || self.inner.write_if_generation(key, data, ct, generation))
    }
    fn presence(&self, key: &str, since_ms: Option<i64>) -> Result<Presence, StoreError> {
        self.alive(key)?;
        self.inner.presence(key, since_ms)
    }
    fn find(&self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
        self.inner.find(prefix, name, limit)
    }
}

impl Store for DyingStore {
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix)
    }
    fn describe(&self) -> String {
        "dying".into()
    }
}

fn summary_json(
    outcome: &Result<mulesoft_audit_host::runtime::wit::RunSummary, mulesoft_audit_host::runtime::wit::RunError>,
) -> serde_json::Value {
    let orgs = match outcome {
        Ok(s) => &s.orgs,
        Err(e) => &e.completed,
    };
    serde_json::json!({ "orgs": orgs.iter().map(|o| serde_json::json!({"org_id": o.org_id, "window_start": o.window_start, "window_end": o.window_end})).collect::<Vec<_>>() })
}

#[test]
fn a_crash_after_any_write_loses_and_duplicates_nothing() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-crash", 1200)]);
    config.same_ms_cluster = 120;
    config.odd_permille = 20;
    let sim = sim(config);
    let runtime = runtime();
    let settings = resolved(&sim, "unused", &["--object-kib=64", "--page-size=50"]);
    // The crash comes after write 1, 2, 3, … until a pass makes no write after it. How many
    // writes a pass makes is not fixed in advance: the simulator's token requests add entries,
    // and a window's slices move with the clock, so one pass counted first (as this test once
    // did) is no measure of a later one.
    let mut die_after = 1;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let dying = Arc::new(DyingStore::new(dir.path(), die_after));
        let crashed =
            runtime.run(&Limits::default(), settings.origin.clone(), dying.clone(), &settings.config, None).unwrap();
        let cut = dying.refused.load(Ordering::SeqCst);
        if cut {
            assert!(crashed.is_err(), "the pass cut after write {die_after} must report the failure");
        } else {
            let summary =
                crashed.unwrap_or_else(|e| panic!("a pass that made all its writes succeeds: {:?}", e.failures));
            // Its status alone refused: the pass says so, and its delivery stands.
            let noted = summary.orgs.iter().flat_map(|o| &o.objects).any(|o| o.starts_with("(status not recorded"));
            assert_eq!(
                noted,
                dying.refused_status.load(Ordering::SeqCst),
                "after write {die_after}: {:?}",
                summary.orgs
            );
        }
        let store = Arc::new(FileStore::new(dir.path().to_str().unwrap()).unwrap());
        let clean = runtime.run(&Limits::default(), settings.origin.clone(), store, &settings.config, None).unwrap();
        let clean = clean.unwrap_or_else(|e| panic!("clean run after a crash at write {die_after}: {:?}", e.failures));
        let objects = objects_in_dir(dir.path());
        let (from, to) = covered(&[&summary_json(&Ok(clean))], "org-crash");
        assert_exactly_once(&sim, "org-crash", &objects, from.min(ms_of_first_window()), to);
        if !cut && !dying.refused_status.load(Ordering::SeqCst) {
            break;
        }
        die_after += 1;
        assert!(die_after < 1_000, "a pass of 1,200 entries makes fewer than 1,000 writes");
    }
    assert!(die_after >= 10, "the pass makes several writes ({die_after}), each a crash point");
}

/// The first pass's window starts a lookback (24 h) plus the overlap before its run; every
/// simulated entry is younger than that.
#[test]
fn killed_processes_then_a_rerun_deliver_exactly_once() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-kill", 2500)]);
    config.latency = Duration::from_millis(15);
    config.same_ms_cluster = 300;
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let mut rng = fastrand::Rng::with_seed(7);
    let mut summaries = Vec::new();
    for round in 0..6 {
        let mut cmd = command(&sim, &dest);
        cmd.env("MULESOFT_AUDIT_OBJECT_KIB", "48")
            .env("MULESOFT_AUDIT_PAGE_SIZE", "40")
            .arg("run")
            .stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // The fault: SIGKILL at a random moment of the pass.
        std::thread::sleep(Duration::from_millis(rng.u64(20..900)));
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        if let Some(s) = String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            summaries.push(s);
        }
        if round == 2 {
            let now = anypoint_sim::now_ms();
            sim.add_entries("org-kill", 100, now - 120_000, now - 1_500);
        }
    }
    let last = run_ok({
        let mut c = command(&sim, &dest);
        c.env("MULESOFT_AUDIT_OBJECT_KIB", "48");
        c
    });
    summaries.push(last.summary);
    let refs: Vec<&serde_json::Value> = summaries.iter().collect();
    let (_, to) = covered(&refs, "org-kill");
    assert_exactly_once(&sim, "org-kill", &objects_in_dir(dir.path()), ms_of_first_window(), to);
}

#[test]
fn two_passes_at_once_deliver_exactly_once() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-twin", 3000)]);
    config.latency = Duration::from_millis(10);
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let racers = run_at_once((0..2).map(|_| {
        let mut c = command(&sim, &dest);
        c.env("MULESOFT_AUDIT_OBJECT_KIB", "100").arg("run");
        c
    }));
    let catch_up = run_ok(command(&sim, &dest));
    assert_race_delivered_once(&sim, "org-twin", dir.path(), &racers, &catch_up);
}

#[test]
fn five_percent_server_errors_drops_and_truncations() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-flaky", 6000)]);
    config.faults = Faults {
        server_error_permille: 30,
        drop_permille: 10,
        truncate_permille: 10,
        garbage_first: 1,
        ..Faults::default()
    };
    config.seed = 11;
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULESOFT_AUDIT_PAGE_SIZE", "50");
    let r = run_ok(cmd);
    assert!(sim.stats().injected_faults >= 3, "faults were injected: {:?}", sim.stats());
    assert!(r.summary["orgs"][0]["retries"].as_u64().unwrap() >= 3);
    // Every request is counted once by what came back: the 5xx ones as the simulator sent them.
    let org = &r.summary["orgs"][0];
    let count = |field: &str| org[field].as_u64().unwrap();
    let sent_5xx: u64 = sim.stats().statuses.range(500..600).map(|(_, n)| n).sum();
    assert_eq!(count("replies_5xx"), sent_5xx, "{org}");
    assert_eq!(
        count("replies_2xx") + count("replies_4xx") + count("replies_5xx") + count("no_reply"),
        count("requests")
    );
    let (from, to) = covered(&[&r.summary], "org-flaky");
    assert_exactly_once(&sim, "org-flaky", &objects_in_dir(dir.path()), from, to);
}

#[test]
fn hung_replies_time_out_and_are_retried() {
    // The API accepts the first two queries and never answers them; the host's first-byte
    // ceiling (1 s here) ends each wait and the request is sent again.
    let mut config = SimConfig::new(vec![OrgSpec::new("org-hung", 900)]);
    config.faults = Faults { hang_first: 2, ..Faults::default() };
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULESOFT_AUDIT_HTTP_TIMEOUT", "1s");
    let r = run_ok(cmd);
    assert_eq!(sim.stats().injected_faults, 2, "{:?}", sim.stats());
    assert!(r.summary["orgs"][0]["retries"].as_u64().unwrap() >= 2, "{}", r.stdout);
    let (from, to) = covered(&[&r.summary], "org-hung");
    assert_exactly_once(&sim, "org-hung", &objects_in_dir(dir.path()), from, to);
}

#[test]
fn throttling_429_with_retry_after_seconds_and_dates() {
    for as_date in [false, true] {
        let mut config = SimConfig::new(vec![OrgSpec::new("org-429", 600)]);
        config.faults = Faults {
            throttle_429_first: 2,
            retry_after_as_date: as_date,
            // The token endpoint throttles once too: 429 in one round, 503 in the other.
            token_fail_once: Some(if as_date { 503 } else { 429 }),
            ..Faults::default()
        };
        let sim = sim(config);
        let dir = tempfile::tempdir().unwrap();
        let r = run_ok(command(&sim, &format!("file://{}", dir.path().display())));
        assert_eq!(r.summary["orgs"][0]["throttled_waits"], 3, "{}", r.stdout);
        let (from, to) = covered(&[&r.summary], "org-429");
        assert_exactly_once(&sim, "org-429", &objects_in_dir(dir.path()), from, to);
    }
}

#[test]
fn rate_limit_503_until_the_minute_ends_is_waited_out() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-503", 900)]);
    config.rate_limit_per_minute = Some(4);
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULESOFT_AUDIT_PAGE_SIZE", "200");
    let r = run_ok(cmd);
    assert!(sim.stats().throttled_503 >= 1, "the limit was hit");
    assert!(r.summary["orgs"][0]["throttled_waits"].as_u64().unwrap() >= 1);
    let (from, to) = covered(&[&r.summary], "org-503");
    assert_exactly_once(&sim, "org-503", &objects_in_dir(dir.path()), from, to);
}

#[test]
fn pacing_keeps_a_normal_run_free_of_503() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-paced", 1000)]);
    config.rate_limit_per_minute = Some(120);
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    cmd.env("MULESOFT_AUDIT_RPM", "110").env("MULESOFT_AUDIT_PAGE_SIZE", "100");
    run_ok(cmd);
    assert_eq!(sim.stats().throttled_503, 0);
}

#[test]
fn token_expiring_mid_run_is_renewed() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-exp", 1500)]);
    config.token_lifetime_secs = 2;
    config.latency = Duration::from_millis(120);
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&sim, &format!("file://{}", dir.path().display()));
    // One request at a time, so that the pass (30 pages at 120 ms) outlives the 2 s token.
    cmd.env("MULESOFT_AUDIT_PAGE_SIZE", "50").env("MULESOFT_AUDIT_CONCURRENCY", "1");
    let r = run_ok(cmd);
    assert!(sim.stats().tokens_issued >= 2, "{:?}", sim.stats());
    let (from, to) = covered(&[&r.summary], "org-exp");
    assert_exactly_once(&sim, "org-exp", &objects_in_dir(dir.path()), from, to);
}

#[test]
fn late_entries_are_delivered_by_a_later_pass_once() {
    let mut config = SimConfig::new(vec![OrgSpec::new("org-late", 800)]);
    config.span = Duration::from_secs(240);
    config.late_permille = 150;
    let sim = sim(config);
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let first = run_ok(command(&sim, &dest));
    let hidden = sim.all_entries("org-late").iter().filter(|e| e.late).count();
    assert!(hidden > 50);
    sim.release_late();
    let second = run_ok(command(&sim, &dest));
    assert!(second.summary["orgs"][0]["entries_written"].as_u64().unwrap() >= hidden as u64);
    let (from, to) = covered(&[&first.summary, &second.summary], "org-late");
    assert_exactly_once(&sim, "org-late", &objects_in_dir(dir.path()), from, to);
}

/// Another writer advances the checkpoint between a pass's read and its first swap.
struct MeddlingStore {
    inner: FileStore,
    meddled: AtomicBool,
}

impl ObjectStore for MeddlingStore {
    fn create(&self, key: &str, data: &[u8], ct: &str, deadline_ms: Option<i64>) -> Result<u64, StoreError> {
        self.inner.create(key, data, ct, deadline_ms)
    }
    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        self.inner.read(key)
    }
    fn write_if_generation(&self, key: &str, data: &[u8], ct: &str, generation: u64) -> Result<u64, StoreError> {
        if !self.meddled.swap(true, Ordering::SeqCst) {
            // The other writer stores the very state this pass read, under a new generation.
            let current = self.inner.read(key)?.map(|o| (o.data, o.generation));
            match current {
                Some((bytes, g)) => self.inner.write_if_generation(key, &bytes, ct, g)?,
                None => self.inner.write_if_generation(key, data, ct, 0)?,
            };
        }
        self.inner.write_if_generation(key, data, ct, generation)
    }
    fn presence(&self, key: &str, since_ms: Option<i64>) -> Result<Presence, StoreError> {
        self.inner.presence(key, since_ms)
    }
    fn find(&self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
        self.inner.find(prefix, name, limit)
    }
}

impl Store for MeddlingStore {
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix)
    }
    fn describe(&self) -> String {
        "meddling".into()
    }
}

#[test]
fn a_checkpoint_changed_underneath_stops_the_pass_before_it_writes() {
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-cas", 900)]));
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let settings = resolved(&sim, "unused", &["--object-kib=64"]);
    let path = dir.path().to_str().unwrap();
    let plain_pass = || {
        let store = Arc::new(FileStore::new(path).unwrap());
        runtime.run(&Limits::default(), settings.origin.clone(), store, &settings.config, None).unwrap().unwrap()
    };
    // A first pass, so that there is a checkpoint to change.
    plain_pass();
    let before = objects_in_dir(dir.path()).len();
    let now = anypoint_sim::now_ms();
    sim.add_entries("org-cas", 300, now - 100_000, now - 2_000);
    let meddling = Arc::new(MeddlingStore { inner: FileStore::new(path).unwrap(), meddled: AtomicBool::new(false) });
    let outcome = runtime.run(&Limits::default(), settings.origin.clone(), meddling, &settings.config, None).unwrap();
    let error = outcome.expect_err("the pass stops");
    assert_eq!(error.failures[0].kind, mulesoft_audit_host::runtime::wit::ErrorKind::Conflict);
    assert_eq!(objects_in_dir(dir.path()).len(), before, "nothing written after the conflict");
    let clean = plain_pass();
    let (_, to) = covered(&[&summary_json(&Ok(clean))], "org-cas");
    assert_exactly_once(&sim, "org-cas", &objects_in_dir(dir.path()), ms_of_first_window(), to);
}
