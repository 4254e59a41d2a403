//! The delivery protocol against the in-memory doubles, one scenario per way a setting, an API or
//! a stopped pass once lost or doubled entries. The model-based test ([`crate::testing::model`]) explores
//! the same ground at random; these name the cases.

use crate::collect::{PassResult, run_pass};
use crate::gzip::gunzip;
use crate::settings::{ErrorKind, Paging, RawConfig, Settings};
use crate::testing::doubles::{ApiEntry, FakeApi, MemoryStore, Shared, Stop};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub const ORG: &str = "org-1";
/// 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600_000;
pub const MINUTE: i64 = 60_000;

/// An API, a store and the settings of the next pass.
pub struct World {
    pub api: FakeApi,
    pub store: MemoryStore,
    pub raw: RawConfig,
    next_id: u64,
}

impl World {
    pub fn new() -> Self {
        let mut raw = crate::settings::tests::raw();
        raw.org_ids = vec![ORG.into()];
        raw.lag_seconds = 60;
        raw.overlap_seconds = 600;
        raw.lookback_seconds = 3600;
        raw.requests_per_minute = Some(1_000_000);
        raw.page_size = 50;
        raw.object_max_bytes = 4096;
        Self { api: FakeApi::new(T0), store: MemoryStore::default(), raw, next_id: 0 }
    }

    /// An entry with the usual fields, timed `api_ms`, shown by the API from `visible_from_ms`.
    pub fn add_at(&mut self, api_ms: i64, visible_from_ms: i64) -> String {
        let id = self.next_id;
        self.next_id += 1;
        let json = format!(r#"{{"id":"e{id}","timestamp":{api_ms},"action":"Login","objectType":"user"}}"#);
        self.api.add(ORG, ApiEntry { api_ms, json: json.clone(), visible_from_ms });
        json
    }

    /// `n` entries spread over `[from, to)`, all visible now.
    pub fn add_spread(&mut self, n: i64, from: i64, to: i64) {
        for k in 0..n {
            self.add_at(from + (to - from) * k / n, i64::MIN);
        }
    }

    /// An entry with exactly this JSON.
    pub fn add_json(&mut self, api_ms: i64, json: String) {
        self.api.add(ORG, ApiEntry { api_ms, json, visible_from_ms: i64::MIN });
    }

    pub fn settings(&self) -> Settings {
        Settings::from_raw(self.raw.clone()).unwrap_or_else(|e| panic!("settings: {e}"))
    }

    pub fn pass(&mut self) -> PassResult {
        let settings = self.settings();
        run_pass(&mut self.api, &self.store, &settings)
    }

    /// A pass that must complete.
    pub fn pass_ok(&mut self) -> PassResult {
        let result = self.pass();
        assert!(result.failures.is_empty(), "the pass failed: {:?}", result.failures);
        result
    }

    /// Every line of every log object ever created, deleted ones too: line → copies.
    pub fn delivered(&self) -> BTreeMap<String, usize> {
        let mut lines = BTreeMap::new();
        for (key, bytes) in self.store.created.borrow().iter() {
            if !key.starts_with(&self.raw.key_prefix) {
                continue;
            }
            let plain = gunzip(bytes).unwrap_or_else(|e| panic!("{key}: {}", e.0));
            for line in String::from_utf8(plain).unwrap_or_default().lines() {
                *lines.entry(line.to_string()).or_insert(0) += 1;
            }
        }
        lines
    }

    /// The entries of the API timed in `[from, to]`, each delivered exactly once, and nothing else.
    pub fn assert_exactly_once(&self, from: i64, to: i64) {
        let expected: BTreeMap<String, usize> = self
            .api
            .entries(ORG)
            .iter()
            .filter(|e| (from..=to).contains(&e.api_ms))
            .map(|e| (e.json.clone(), 1))
            .collect();
        let delivered = self.delivered();
        let missing: Vec<&String> = expected.keys().filter(|k| !delivered.contains_key(*k)).collect();
        let twice: Vec<(&String, &usize)> = delivered.iter().filter(|(_, n)| **n > 1).collect();
        let extra: Vec<&String> = delivered.keys().filter(|k| !expected.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && twice.is_empty() && extra.is_empty(),
            "{} expected; missing {:?}; twice {:?}; unexpected {:?}",
            expected.len(),
            missing.iter().take(3).collect::<Vec<_>>(),
            twice.iter().take(3).collect::<Vec<_>>(),
            extra.iter().take(3).collect::<Vec<_>>()
        );
    }

    /// Rewrites the stored checkpoint as a version 1 build left it: no read floor, and a pending
    /// object without its effects.
    pub fn as_left_by_version_1(&mut self) {
        let key = format!("state/{ORG}/checkpoint.json");
        let (bytes, generation) = self.store.objects.borrow()[&key].clone();
        let mut stored: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        stored["version"] = 1.into();
        stored.as_object_mut().map(|o| o.remove("read_from_ms"));
        stored["pending"].as_object_mut().map(|p| p.remove("effects"));
        self.store.objects.get_mut().insert(key, (stored.to_string().into_bytes(), generation));
    }

    /// The stored checkpoint's cursor.
    /// The organization's checkpoint as stored.
    pub fn checkpoint(&self) -> crate::checkpoint::Checkpoint {
        let (bytes, _) = &self.store.objects.borrow()[&format!("state/{ORG}/checkpoint.json")];
        crate::checkpoint::Checkpoint::decode(bytes, ORG, "k").unwrap_or_else(|e| panic!("{}", e.0))
    }

    pub fn cursor(&self) -> i64 {
        let (bytes, _) = &self.store.objects.borrow()[&format!("state/{ORG}/checkpoint.json")];
        crate::checkpoint::Checkpoint::decode(bytes, ORG, "k").map(|c| c.cursor_ms).unwrap_or(i64::MIN)
    }
}

#[test]
fn since_starts_exactly_at_since_not_an_overlap_before() {
    // A migration: the old collector delivered everything before `since`.
    let mut w = World::new();
    let since = T0 - 30 * MINUTE;
    w.add_spread(40, since - 20 * MINUTE, since + 20 * MINUTE);
    w.raw.since_ms = Some(since);
    w.pass_ok();
    w.assert_exactly_once(since, T0 - MINUTE);
}

#[test]
fn lookback_zero_pins_the_start_on_the_first_pass() {
    // "From now on": the first pass has nothing to read yet, and must still fix where it starts.
    let mut w = World::new();
    w.raw.lookback_seconds = 0;
    w.pass_ok();
    w.add_spread(20, T0 + MINUTE, T0 + 5 * MINUTE);
    w.api.now_ms = T0 + 15 * MINUTE;
    w.pass_ok();
    w.assert_exactly_once(T0, T0 + 14 * MINUTE);
}

#[test]
fn a_created_object_deleted_by_the_feed_before_it_was_recorded_is_not_delivered_again() {
    let mut w = World::new();
    w.store.soft_delete = true;
    w.add_spread(60, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    // Calls: read checkpoint, save it, then per object: pending, create. The create goes
    // through and its reply is lost: the object exists, unrecorded.
    w.store.stop.set(Some((4, Stop::After)));
    assert!(!w.pass().failures.is_empty());
    assert_eq!(w.store.created.borrow().len(), 1, "one object created before the stop");
    w.store.stop.set(None);
    w.store.delete_under("logs/");
    w.pass_ok();
    w.assert_exactly_once(T0 - 60 * MINUTE, T0 - MINUTE);
}

#[test]
fn without_soft_delete_a_deleted_unrecorded_object_is_delivered_again_and_said() {
    // The one case the store cannot prove: twice rather than never, and the summary says so.
    let mut w = World::new();
    w.add_spread(60, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.store.stop.set(Some((4, Stop::After)));
    assert!(!w.pass().failures.is_empty());
    w.store.stop.set(None);
    w.store.delete_under("logs/");
    let result = w.pass_ok();
    let objects = &result.completed[0].objects;
    assert!(objects.iter().any(|o| o.contains("cannot tell")), "{objects:?}");
    let delivered = w.delivered();
    let missing = w.api.entries(ORG).iter().filter(|e| !delivered.contains_key(&e.json)).count();
    assert_eq!(missing, 0, "nothing lost");
}

#[test]
fn an_entry_timed_outside_its_query_fails_the_org_and_moves_no_cursor() {
    let mut w = World::new();
    w.add_spread(10, T0 - 30 * MINUTE, T0 - 20 * MINUTE);
    // The API files it under one time and shows another (a far future one).
    w.add_json(T0 - 10 * MINUTE, r#"{"id":"odd","timestamp":4102444800000}"#.into());
    let result = w.pass();
    assert_eq!(result.failures.len(), 1);
    assert_eq!(result.failures[0].kind, ErrorKind::Api);
    assert!(w.cursor() < T0, "the cursor stayed where entries are read again");
    // And the next pass says so again rather than finding nothing to do.
    assert_eq!(w.pass().failures[0].kind, ErrorKind::Api);
}

#[test]
fn microsecond_and_second_timestamps_are_read_as_their_time() {
    let mut w = World::new();
    for k in 0..10 {
        let ms = T0 - 30 * MINUTE + k * MINUTE;
        w.add_json(ms, format!(r#"{{"id":"us{k}","timestamp":{}}}"#, ms * 1000));
        w.add_json(
            ms + 1,
            format!(r#"{{"id":"s{k}","timestamp":"{}"}}"#, crate::window::rfc3339_ms(ms + 1).trim_end_matches('Z')),
        );
    }
    w.pass_ok();
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

#[test]
fn entries_whose_time_cannot_be_read_are_kept_until_no_window_reads_them() {
    let mut w = World::new();
    // Near the window's end, so that the next passes' overlap reads them again.
    for k in 0..30 {
        let ms = T0 - 9 * MINUTE + k * 10_000;
        w.add_json(ms, format!(r#"{{"id":"t{k}","timestamp":"sometime"}}"#));
    }
    w.pass_ok();
    // The next passes re-read the overlap: the keys must still be there.
    for step in 1..=3 {
        w.api.now_ms = T0 + step * 4 * MINUTE;
        w.pass_ok();
    }
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

#[test]
fn raising_the_overlap_reads_no_further_back_than_the_keys_reach() {
    let mut w = World::new();
    w.raw.overlap_seconds = 60;
    w.add_spread(60, T0 - 50 * MINUTE, T0 + 9 * MINUTE);
    w.pass_ok();
    w.api.now_ms = T0 + 10 * MINUTE;
    w.pass_ok();
    // The README advises a larger overlap for slow control planes.
    w.raw.overlap_seconds = 1800;
    w.api.now_ms = T0 + 20 * MINUTE;
    w.pass_ok();
    w.assert_exactly_once(T0 - 60 * MINUTE, T0 + 19 * MINUTE);
}

#[test]
fn an_id_less_pretty_printed_entry_read_back_after_a_stop_is_not_delivered_twice() {
    // A version 1 checkpoint's pending object is read back; its keys come from its lines, which
    // must agree with the keys of the same entries paged again.
    let mut w = World::new();
    for k in 0..5 {
        let ms = T0 - 20 * MINUTE + k * MINUTE;
        w.add_json(ms, format!("{{\n  \"timestamp\": {ms},\n  \"action\": \"a{k}\"\n}}"));
    }
    w.raw.lookback_seconds = 1800;
    w.store.stop.set(Some((4, Stop::After)));
    assert!(!w.pass().failures.is_empty());
    w.store.stop.set(None);
    // What a version 1 build left: the pending object without its effects.
    w.as_left_by_version_1();
    w.pass_ok();
    let delivered = w.delivered();
    assert_eq!(delivered.len(), 5, "{delivered:?}");
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
}

#[test]
fn offset_paging_reads_past_pages_the_api_caps_below_the_limit() {
    let mut w = World::new();
    w.raw.paging = Paging::Offset;
    w.raw.page_size = 200;
    w.api.page_cap = Some(40);
    w.add_spread(300, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.pass_ok();
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

#[test]
fn a_failed_orgs_summary_counts_only_entries_written() {
    let mut w = World::new();
    w.add_spread(60, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    // Stopped before the first object is created: nothing was written.
    w.store.stop.set(Some((3, Stop::Before)));
    let result = w.pass();
    assert_eq!(result.failures.len(), 1);
    let written: u64 = result.completed.iter().map(|s| s.entries_written).sum();
    assert_eq!(written, 0, "{:?}", result.completed);
}

#[test]
fn each_object_is_recorded_by_the_very_next_call_after_its_creation() {
    // The feed may ingest and delete an object at any time: the time it exists unrecorded is
    // kept to one store call, not to the next object's flush.
    let mut w = World::new();
    w.add_spread(300, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.pass_ok();
    let calls = w.store.calls.borrow();
    let creates: Vec<usize> = (0..calls.len()).filter(|&i| calls[i].0.starts_with("create logs/")).collect();
    assert!(creates.len() > 3, "several objects: {}", creates.len());
    for i in creates {
        let (call, bytes) = &calls[i + 1];
        assert_eq!(call, &format!("write state/{ORG}/checkpoint.json"), "the call after {}", calls[i].0);
        let checkpoint = crate::checkpoint::Checkpoint::decode(bytes, ORG, "k").unwrap_or_else(|e| panic!("{}", e.0));
        assert_eq!(checkpoint.pending, None, "{} is recorded by that write", calls[i].0);
    }
}

impl World {
    /// Pass A pauses after `pause_after` store calls; `meanwhile` runs (pass B, on the same store
    /// through a [`Shared`] it is given); then A goes on. Returns A's result and `meanwhile`'s.
    fn while_a_pauses<T: Send>(
        &mut self,
        pause_after: u32,
        meanwhile: impl FnOnce(&mut FakeApi, &Shared, &Settings) -> T + Send,
    ) -> (PassResult, T) {
        let settings = self.settings();
        let store = Arc::new(Mutex::new(std::mem::take(&mut self.store)));
        let (paused_tx, paused_rx) = std::sync::mpsc::channel();
        let (resume_tx, resume_rx) = std::sync::mpsc::channel();
        let api = self.api.clone();
        let outcome = std::thread::scope(|scope| {
            let a = scope.spawn(|| {
                let shared =
                    Shared { store: store.clone(), pause: RefCell::new(Some((pause_after, paused_tx, resume_rx))) };
                run_pass(&mut api.clone(), &shared, &settings)
            });
            paused_rx.recv().unwrap_or_else(|e| panic!("A never paused: {e}"));
            let b = meanwhile(&mut api.clone(), &Shared { store: store.clone(), pause: RefCell::new(None) }, &settings);
            resume_tx.send(()).unwrap_or_else(|e| panic!("{e}"));
            (a.join().unwrap_or_else(|_| panic!("A panicked")), b)
        });
        self.store = std::mem::take(&mut *store.lock().unwrap_or_else(|p| p.into_inner()));
        outcome
    }
}

#[test]
fn a_pass_that_finds_another_passes_pending_object_missing_claims_it_first() {
    // Pass A names its first object as pending and pauses before creating it. Pass B, meanwhile,
    // finds that object missing: it must take the name, or A would create it after B has
    // delivered the same entries again.
    let mut w = World::new();
    w.add_spread(60, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    // A's calls: read the checkpoint, save the first one, name the object; then the pause.
    let (a, b) = w.while_a_pauses(3, run_pass);
    assert!(b.failures.is_empty(), "B completes: {:?}", b.failures);
    assert!(b.completed[0].objects.iter().any(|o| o.starts_with("(claimed)")), "{:?}", b.completed[0].objects);
    assert_eq!(a.failures.len(), 1, "A stops");
    assert_eq!(a.failures[0].kind, ErrorKind::Conflict, "{}", a.failures[0].message);
    w.pass_ok();
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

#[test]
fn a_claim_left_by_a_stopped_pass_is_not_taken_for_the_owners_object() {
    // A pass stops after naming its object (pending, never created). Recovering pass A marks the
    // name for claiming and pauses; pass B claims it and stops before saving. When A resumes, its
    // own claim finds B's: an empty claim, not the owner's object, so nothing of it was delivered.
    let mut w = World::new();
    w.add_spread(60, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    // Calls: read the checkpoint, save the first one, name the object; the create never happens.
    w.store.stop.set(Some((3, Stop::Before)));
    assert!(!w.pass().failures.is_empty());
    w.store.stop.set(None);
    // A's calls: read the checkpoint, look the object up, save the mark; then the pause. B's:
    // read, look up, claim; its save is refused.
    let (a, b) = w.while_a_pauses(3, |api, store, settings| {
        store.store.lock().unwrap_or_else(|p| p.into_inner()).stop.set(Some((3, Stop::Before)));
        let b = run_pass(api, store, settings);
        store.store.lock().unwrap_or_else(|p| p.into_inner()).stop.set(None);
        b
    });
    assert!(!b.failures.is_empty(), "B stops");
    assert!(a.failures.is_empty(), "A completes: {:?}", a.failures);
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

#[test]
fn a_window_over_the_page_cap_still_moves_on_with_every_pass() {
    // Too small a --max-pages for the backlog: each pass writes what it read before stopping,
    // so the next one starts further on instead of meeting the same cap in the same window.
    let mut w = World::new();
    w.raw.max_pages = 3;
    w.raw.page_size = 5;
    w.raw.overlap_seconds = 60;
    w.raw.object_max_bytes = 1 << 20;
    w.add_spread(60, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    let mut capped = 0;
    while !w.pass().failures.is_empty() {
        capped += 1;
        assert!(capped < 30, "no progress under the page cap");
    }
    assert!(capped >= 3, "the cap was met: {capped}");
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

#[test]
fn whole_second_timestamps_at_the_window_start_are_accepted() {
    // The API files entries by the ms but shows whole seconds: an entry early in the window's
    // first second shows a time just before the window.
    let mut w = World::new();
    let since = T0 - 30 * MINUTE + 400;
    w.raw.since_ms = Some(since);
    for k in 0..10 {
        let ms = since + 200 + k * MINUTE;
        w.add_json(ms, format!(r#"{{"id":"s{k}","timestamp":{}}}"#, ms / 1000));
    }
    w.pass_ok();
    w.assert_exactly_once(since, T0);
}

#[test]
fn a_version_1_pending_object_the_feed_deleted_is_delivered_again_not_stuck() {
    let mut w = World::new();
    w.store.soft_delete = true;
    w.add_spread(20, T0 - 20 * MINUTE, T0 - 2 * MINUTE);
    w.raw.lookback_seconds = 1800;
    w.store.stop.set(Some((4, Stop::After)));
    assert!(!w.pass().failures.is_empty());
    w.store.stop.set(None);
    // What a version 1 build left: a pending object without its effects, since deleted.
    w.as_left_by_version_1();
    w.store.delete_under("logs/");
    let result = w.pass_ok();
    assert!(
        result.completed[0].objects.iter().any(|o| o.contains("cannot tell")),
        "said: {:?}",
        result.completed[0].objects
    );
    let delivered = w.delivered();
    assert!(w.api.entries(ORG).iter().all(|e| delivered.contains_key(&e.json)), "nothing lost");
}

#[test]
fn a_pending_object_older_than_soft_deletes_memory_is_not_taken_for_never_created() {
    // The pass died after creating an object, the feed deleted it, and the collector was down
    // for longer than soft delete keeps deleted objects: absence can no longer be proven.
    let mut w = World::new();
    w.store.soft_delete = true;
    w.store.remembers_ms = 7 * 24 * 60 * MINUTE;
    w.add_spread(60, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.store.stop.set(Some((4, Stop::After)));
    assert!(!w.pass().failures.is_empty());
    w.store.stop.set(None);
    w.store.delete_under("logs/");
    w.api.now_ms = T0 + 8 * 24 * 60 * MINUTE;
    w.store.now_ms = w.api.now_ms;
    let result = w.pass_ok();
    assert!(
        result.completed[0].objects.iter().any(|o| o.contains("cannot tell")),
        "said: {:?}",
        result.completed[0].objects
    );
}
