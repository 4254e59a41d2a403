//! The delivery protocol against the in-memory doubles, one scenario per way a setting, an API or
//! a stopped pass once lost or doubled entries. The model-based test ([`crate::model`]) explores
//! the same ground at random; these name the cases.

use crate::collect::{PassResult, run_pass};
use crate::doubles::{ApiEntry, FakeApi, MemoryStore, Shared, Stop};
use crate::gzip::gunzip;
use crate::settings::{ErrorKind, Paging, RawConfig, Settings};
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
        run_pass(&mut self.api, &mut self.store, &settings)
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
        for (key, bytes) in &self.store.created {
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
        let (bytes, generation) = self.store.objects[&key].clone();
        let mut stored: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        stored["version"] = 1.into();
        stored.as_object_mut().map(|o| o.remove("read_from_ms"));
        stored["pending"].as_object_mut().map(|p| p.remove("effects"));
        self.store.objects.insert(key, (stored.to_string().into_bytes(), generation));
    }

    /// The stored checkpoint's cursor.
    pub fn cursor(&self) -> i64 {
        let (bytes, _) = &self.store.objects[&format!("state/{ORG}/checkpoint.json")];
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
    w.store.stop = Some((4, Stop::After));
    assert!(!w.pass().failures.is_empty());
    assert_eq!(w.store.created.len(), 1, "one object created before the stop");
    w.store.stop = None;
    w.store.delete_under("logs/");
    w.pass_ok();
    w.assert_exactly_once(T0 - 60 * MINUTE, T0 - MINUTE);
}

#[test]
fn without_soft_delete_a_deleted_unrecorded_object_is_delivered_again_and_said() {
    // The one case the store cannot prove: twice rather than never, and the summary says so.
    let mut w = World::new();
    w.add_spread(60, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.store.stop = Some((4, Stop::After));
    assert!(!w.pass().failures.is_empty());
    w.store.stop = None;
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
    w.store.stop = Some((4, Stop::After));
    assert!(!w.pass().failures.is_empty());
    w.store.stop = None;
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
    w.store.stop = Some((3, Stop::Before));
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
    let calls = &w.store.calls;
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
        meanwhile: impl FnOnce(&mut FakeApi, &mut Shared, &Settings) -> T + Send,
    ) -> (PassResult, T) {
        let settings = self.settings();
        let store = Arc::new(Mutex::new(std::mem::take(&mut self.store)));
        let (paused_tx, paused_rx) = std::sync::mpsc::channel();
        let (resume_tx, resume_rx) = std::sync::mpsc::channel();
        let api = self.api.clone();
        let outcome = std::thread::scope(|scope| {
            let a = scope.spawn(|| {
                let mut shared = Shared { store: store.clone(), pause: Some((pause_after, paused_tx, resume_rx)) };
                run_pass(&mut api.clone(), &mut shared, &settings)
            });
            paused_rx.recv().unwrap_or_else(|e| panic!("A never paused: {e}"));
            let b = meanwhile(&mut api.clone(), &mut Shared { store: store.clone(), pause: None }, &settings);
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
    w.store.stop = Some((3, Stop::Before));
    assert!(!w.pass().failures.is_empty());
    w.store.stop = None;
    // A's calls: read the checkpoint, look the object up, save the mark; then the pause. B's:
    // read, look up, claim; its save is refused.
    let (a, b) = w.while_a_pauses(3, |api, store, settings| {
        store.store.lock().unwrap_or_else(|p| p.into_inner()).stop = Some((3, Stop::Before));
        let b = run_pass(api, store, settings);
        store.store.lock().unwrap_or_else(|p| p.into_inner()).stop = None;
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
    w.store.stop = Some((4, Stop::After));
    assert!(!w.pass().failures.is_empty());
    w.store.stop = None;
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
    w.store.stop = Some((4, Stop::After));
    assert!(!w.pass().failures.is_empty());
    w.store.stop = None;
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

/// The key of the organization's checkpoint in [`World`]'s settings.
const CHECKPOINT: &str = "state/org-1/checkpoint.json";

#[test]
fn a_checkpoint_made_anew_never_takes_an_earlier_ones_objects() {
    // The state moved (or was lost) and collection starts again with --since at the old cursor:
    // the new checkpoint numbers its objects from 1 again, on the day the old one wrote its own.
    let mut w = World::new();
    w.api.now_ms = T0 + 120 * MINUTE;
    w.add_spread(60, T0 + 70 * MINUTE, T0 + 118 * MINUTE);
    w.pass_ok();
    let cursor = w.cursor();
    w.add_spread(40, T0 + 121 * MINUTE, T0 + 140 * MINUTE);
    w.api.now_ms = T0 + 150 * MINUTE;
    w.raw.state_prefix = "moved/".into();
    w.raw.since_ms = Some(cursor);
    let moved = w.pass_ok();
    assert!(moved.completed[0].entries_written == 40, "{:?}", moved.completed[0]);
    w.assert_exactly_once(T0, T0 + 149 * MINUTE);
}

#[test]
fn a_checkpoint_restored_from_a_backup_refuses_rather_than_record_anothers_object() {
    let mut w = World::new();
    w.store.soft_delete = true;
    w.api.now_ms = T0 + 120 * MINUTE;
    w.add_spread(30, T0 + 70 * MINUTE, T0 + 100 * MINUTE);
    w.pass_ok();
    let backup = w.store.objects[CHECKPOINT].0.clone();
    w.add_spread(30, T0 + 121 * MINUTE, T0 + 130 * MINUTE);
    w.api.now_ms = T0 + 140 * MINUTE;
    w.pass_ok();
    // A late entry the newer checkpoint's pass never saw: the restored pass's next object holds
    // it, so it differs from the object already under that name.
    let late = w.add_at(T0 + 125 * MINUTE, T0 + 141 * MINUTE);
    w.api.now_ms = T0 + 145 * MINUTE;
    // The feed took the newer objects: their deleted names are what is left of them.
    w.store.now_ms = w.api.now_ms;
    w.store.delete_under("logs/");
    let generation = w.store.objects[CHECKPOINT].1;
    crate::platform::ObjectStore::write_if_generation(
        &mut w.store,
        CHECKPOINT,
        &backup,
        "application/json",
        generation,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..2 {
        let restored = w.pass();
        assert_eq!(restored.failures.len(), 1, "{:?}", restored.failures);
        let failure = &restored.failures[0];
        assert_eq!(failure.kind, ErrorKind::Checkpoint, "{}", failure.message);
        assert!(failure.message.contains("older than the objects in the destination"), "{}", failure.message);
    }
    let delivered = w.delivered();
    assert!(!delivered.contains_key(&late), "nothing written under another's name");
    assert_eq!((delivered.len(), delivered.values().max()), (60, Some(&1)), "each delivered once");
}

impl World {
    /// A pass stopped after naming its first object (never created): its pending key.
    fn stopped_after_naming(&mut self) -> String {
        // Calls: read the checkpoint, save a first one (when there is none), name the object; the
        // create never happens.
        let calls = if self.store.objects.contains_key(CHECKPOINT) { 2 } else { 3 };
        self.store.stop = Some((calls, Stop::Before));
        assert!(!self.pass().failures.is_empty());
        self.store.stop = None;
        let checkpoint = crate::checkpoint::Checkpoint::decode(&self.store.objects[CHECKPOINT].0, ORG, "k")
            .unwrap_or_else(|e| panic!("{}", e.0));
        checkpoint.pending.map(|p| p.key).unwrap_or_else(|| panic!("no pending object"))
    }
}

#[test]
fn another_object_under_a_pending_name_is_refused_not_recorded() {
    // What a backup taken between naming and recording meets: its name now holds other bytes.
    let mut w = World::new();
    w.add_spread(60, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    let key = w.stopped_after_naming();
    let mut other = crate::gzip::GzipWriter::new(1);
    other.write(br#"{"id":"not-this-one"}"#).unwrap_or_else(|e| panic!("{}", e.0));
    let other = other.finish().unwrap_or_else(|e| panic!("{}", e.0));
    crate::platform::ObjectStore::create(&mut w.store, &key, &other, "application/gzip")
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = w.pass();
    assert_eq!(refused.failures.len(), 1, "{:?}", refused.failures);
    assert_eq!(refused.failures[0].kind, ErrorKind::Checkpoint, "{}", refused.failures[0].message);
    assert_eq!(w.cursor(), T0 - 60 * MINUTE, "nothing marked done");
}

#[test]
fn an_empty_claim_under_a_pending_name_is_a_claim_whatever_the_mark_says() {
    // A claim left under the name by a later life of this checkpoint: nothing of it was
    // delivered, so its entries are read again.
    let mut w = World::new();
    w.add_spread(60, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    let key = w.stopped_after_naming();
    let empty = crate::gzip::GzipWriter::new(6).finish().unwrap_or_else(|e| panic!("{}", e.0));
    crate::platform::ObjectStore::create(&mut w.store, &key, &empty, "application/gzip")
        .unwrap_or_else(|e| panic!("{e}"));
    let result = w.pass_ok();
    assert!(
        result.completed[0].objects.iter().any(|o| o.starts_with("(claimed)")),
        "{:?}",
        result.completed[0].objects
    );
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

#[test]
fn a_stopped_passes_late_entries_are_read_again_by_a_pass_with_a_smaller_overlap() {
    // The stopped pass read a late entry (in its 10-minute overlap) and named an object holding
    // it, never created. The next pass is given a 1-minute overlap: it must still reach back.
    let mut w = World::new();
    w.add_spread(20, T0 - 50 * MINUTE, T0 - 30 * MINUTE);
    w.pass_ok();
    w.add_at(T0 - 5 * MINUTE, T0 + 2 * MINUTE);
    w.api.now_ms = T0 + 3 * MINUTE;
    w.stopped_after_naming();
    w.raw.overlap_seconds = 60;
    w.pass_ok();
    w.assert_exactly_once(T0 - 60 * MINUTE, T0 + 2 * MINUTE);
}

#[test]
fn a_page_cap_below_the_backlog_finishes_with_any_concurrency() {
    // 720 entries over 72 minutes, 20 a page, 12 pages a pass, 4 requests in flight, 250 ms a
    // reply: every pass delivers something new, and the backlog is worked off.
    let mut w = World::new();
    w.api.latency_ms = 250;
    w.raw.max_pages = 12;
    w.raw.page_size = 20;
    w.raw.concurrency = 4;
    w.raw.object_max_bytes = 1 << 20;
    w.raw.since_ms = Some(T0 - 75 * MINUTE);
    w.add_spread(720, T0 - 74 * MINUTE, T0 - 2 * MINUTE);
    let mut passes = 0;
    loop {
        passes += 1;
        let before = w.delivered().len();
        let result = w.pass();
        if result.failures.is_empty() {
            break;
        }
        assert_eq!(result.failures[0].kind, ErrorKind::PageCap, "{}", result.failures[0].message);
        assert!(w.delivered().len() > before, "capped pass {passes} delivered nothing new");
        assert!(passes < 8, "not finished in 8 passes");
    }
    assert!(passes >= 3, "the cap was met: {passes}");
    w.assert_exactly_once(T0 - 75 * MINUTE, T0);
}

impl World {
    /// The state is lost: every checkpoint and status object goes.
    fn lose_state(&mut self) {
        self.store.objects.retain(|k, _| !k.starts_with("state/"));
    }
}

#[test]
fn a_lost_checkpoint_is_rebuilt_from_the_delivered_objects_whatever_since_says() {
    // A three-day backfill, then the state is lost; --since stays in the service's environment.
    let mut w = World::new();
    w.raw.since_ms = Some(T0 - 3 * 1440 * MINUTE);
    w.add_spread(3000, T0 - 3 * 1440 * MINUTE + MINUTE, T0 - 2 * MINUTE);
    w.pass_ok();
    w.add_spread(40, T0 + MINUTE, T0 + 20 * MINUTE);
    w.api.now_ms = T0 + 30 * MINUTE;
    w.lose_state();
    let rebuilt = w.pass_ok();
    let said = &rebuilt.completed[0].objects;
    assert!(said.iter().any(|o| o.starts_with("(checkpoint rebuilt from")), "{said:?}");
    assert_eq!(rebuilt.completed[0].entries_written, 40, "only what is new: {:?}", rebuilt.completed[0]);
    // And in a new state location (--state-prefix or --state-dest changed).
    w.add_spread(10, T0 + 21 * MINUTE, T0 + 25 * MINUTE);
    w.api.now_ms = T0 + 40 * MINUTE;
    w.raw.state_prefix = "elsewhere/".into();
    w.pass_ok();
    w.assert_exactly_once(T0 - 3 * 1440 * MINUTE, T0 + 39 * MINUTE);
}

#[test]
fn a_collector_stopped_for_days_whose_state_is_lost_fills_the_gap() {
    // The lookback (an hour) would start after three days nobody collected: the objects say
    // where delivery stopped, and collection goes on from there.
    let mut w = World::new();
    w.add_spread(30, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.pass_ok();
    w.add_spread(300, T0 + MINUTE, T0 + 3 * 1440 * MINUTE);
    w.api.now_ms = T0 + 3 * 1440 * MINUTE + 10 * MINUTE;
    w.lose_state();
    w.pass_ok();
    w.assert_exactly_once(T0 - 60 * MINUTE, T0 + 3 * 1440 * MINUTE);
}

#[test]
fn a_lost_checkpoint_whose_objects_the_feed_took_is_refused_until_started_anew_on_purpose() {
    let mut w = World::new();
    w.store.soft_delete = true;
    w.store.remembers_ms = 7 * 1440 * MINUTE;
    w.add_spread(30, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.pass_ok();
    w.store.now_ms = w.api.now_ms;
    w.store.delete_under("logs/");
    w.lose_state();
    for _ in 0..2 {
        let refused = w.pass();
        assert_eq!(refused.failures.len(), 1, "{:?}", refused.failures);
        let failure = &refused.failures[0];
        assert_eq!(failure.kind, ErrorKind::Checkpoint, "{}", failure.message);
        assert!(
            failure.message.contains("were deleted") && failure.message.contains("--start-anew"),
            "{}",
            failure.message
        );
        assert!(!w.store.objects.contains_key(CHECKPOINT), "no checkpoint made");
    }
    assert_eq!(crate::settings::exit_code([ErrorKind::Checkpoint]), 2, "a person must act");
    // On purpose, from the first entry not yet delivered: nothing comes twice.
    w.add_spread(10, T0 + MINUTE, T0 + 5 * MINUTE);
    w.api.now_ms = T0 + 10 * MINUTE;
    w.raw.start_anew = true;
    w.raw.since_ms = Some(T0);
    let anew = w.pass_ok();
    // Its earlier objects all lie before the new start: nothing of theirs comes again.
    assert!(!anew.completed[0].objects.iter().any(|o| o.starts_with("(started anew")), "{anew:?}");
    w.assert_exactly_once(T0 - 60 * MINUTE, T0 + 9 * MINUTE);
}

#[test]
fn starting_anew_over_earlier_objects_says_their_entries_come_again() {
    let mut w = World::new();
    w.add_spread(30, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.pass_ok();
    w.lose_state();
    w.raw.start_anew = true;
    w.raw.since_ms = Some(T0 - 30 * MINUTE);
    let anew = w.pass_ok();
    assert!(anew.completed[0].objects.iter().any(|o| o.starts_with("(started anew on purpose")), "{anew:?}");
}

#[test]
fn a_status_without_a_checkpoint_or_objects_is_refused() {
    // The checkpoint was deleted by hand; the feed took the objects and the bucket keeps no
    // deleted names: the status is the only trace.
    let mut w = World::new();
    w.add_spread(30, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.pass_ok();
    w.store.delete_under("logs/");
    w.store.objects.remove(CHECKPOINT);
    let refused = w.pass();
    assert_eq!(refused.failures.len(), 1, "{:?}", refused.failures);
    assert!(refused.failures[0].message.contains("status"), "{}", refused.failures[0].message);
}

#[test]
fn another_organizations_objects_are_no_trace_of_this_one() {
    // `org-1-eu`'s objects share the name's beginning: org-1 is still new.
    let mut w = World::new();
    let key = "logs/2025/12/31/mulesoft-audit-org-1-eu.0123456789ab-0000000001.json.gz";
    let data = crate::gzip::GzipWriter::new(1).finish().unwrap_or_else(|e| panic!("{}", e.0));
    crate::platform::ObjectStore::create(&mut w.store, key, &data, "application/gzip")
        .unwrap_or_else(|e| panic!("{e}"));
    w.add_spread(30, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    let result = w.pass_ok();
    assert!(!result.completed[0].objects.iter().any(|o| o.starts_with("(checkpoint rebuilt")));
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

#[test]
fn a_status_left_by_a_first_pass_that_failed_is_no_trace_of_collection() {
    // A wrong secret, an outage or a time limit before the first checkpoint was made: the status
    // records the failure, and shows nothing collected.
    let mut w = World::new();
    let status = crate::status::OrgStatus {
        format: crate::status::FORMAT.into(),
        org_id: ORG.into(),
        last_failure: Some(crate::status::LastFailure {
            at_ms: T0,
            kind: "unauthorized".into(),
            message: "401".into(),
        }),
        failed_in_a_row: 1,
        ..crate::status::OrgStatus::default()
    };
    let bytes = serde_json::to_vec(&status).unwrap_or_default();
    crate::platform::ObjectStore::create(&mut w.store, "state/org-1/status.json", &bytes, "application/json")
        .unwrap_or_else(|e| panic!("{e}"));
    w.add_spread(30, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.pass_ok();
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

#[test]
fn an_old_deployment_still_writing_after_a_rebuild_is_seen() {
    // The state moved to a new deployment, which rebuilt the checkpoint; the old one, still
    // running, then created one more object of its own lineage.
    let mut w = World::new();
    w.add_spread(30, T0 - 50 * MINUTE, T0 - 20 * MINUTE);
    w.pass_ok();
    let old = crate::checkpoint::Checkpoint::decode(&w.store.objects[CHECKPOINT].0, ORG, "k")
        .unwrap_or_else(|e| panic!("{}", e.0));
    w.raw.state_prefix = "moved/".into();
    assert!(w.pass_ok().completed[0].objects.iter().any(|o| o.starts_with("(checkpoint rebuilt")));
    let late = w.add_at(T0 - 10 * MINUTE, i64::MIN);
    let mut gzip = crate::gzip::GzipWriter::new(1);
    gzip.write(late.as_bytes()).unwrap_or_else(|e| panic!("{}", e.0));
    gzip.write(b"\n").unwrap_or_else(|e| panic!("{}", e.0));
    let bytes = gzip.finish().unwrap_or_else(|e| panic!("{}", e.0));
    let key = crate::window::object_key(
        "logs/",
        crate::window::utc_day(T0 - 10 * MINUTE),
        &old.object_name(ORG),
        old.next_seq,
    );
    crate::platform::ObjectStore::create(&mut w.store, &key, &bytes, "application/gzip")
        .unwrap_or_else(|e| panic!("{e}"));
    w.api.now_ms += 5 * MINUTE;
    let refused = w.pass();
    assert_eq!(refused.failures.len(), 1, "{:?}", refused.failures);
    assert_eq!(refused.failures[0].kind, ErrorKind::Checkpoint, "{}", refused.failures[0].message);
}

#[test]
fn an_object_in_an_earlier_days_folder_than_its_entries_does_not_stop_a_rebuild() {
    // Copied by hand into the wrong day's folder: its entry is of the next day.
    let mut w = World::new();
    let json = format!(r#"{{"id":"moved","timestamp":{},"action":"Login"}}"#, T0 + 30 * MINUTE);
    let mut gzip = crate::gzip::GzipWriter::new(1);
    gzip.write(json.as_bytes()).unwrap_or_else(|e| panic!("{}", e.0));
    let bytes = gzip.finish().unwrap_or_else(|e| panic!("{}", e.0));
    let key = "logs/2025/12/31/mulesoft-audit-org-1.0123456789ab-0000000001.json.gz";
    crate::platform::ObjectStore::create(&mut w.store, key, &bytes, "application/gzip")
        .unwrap_or_else(|e| panic!("{e}"));
    w.api.now_ms = T0 + 60 * MINUTE;
    let result = w.pass_ok();
    assert!(result.completed[0].objects.iter().any(|o| o.starts_with("(checkpoint rebuilt")), "{result:?}");
}

#[test]
fn pages_with_nothing_new_have_a_cap_of_their_own() {
    // 1,100 delivered entries in the overlap, one a page: the re-read ends at its own cap.
    let mut w = World::new();
    w.raw.overlap_seconds = 3600;
    w.raw.object_max_bytes = 1 << 20;
    w.add_spread(1100, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.pass_ok();
    w.api.now_ms += MINUTE;
    w.raw.page_size = 1;
    w.raw.max_pages = 1;
    let capped = w.pass();
    assert_eq!(capped.failures.len(), 1, "{:?}", capped.failures);
    assert_eq!(capped.failures[0].kind, ErrorKind::PageCap);
    assert!(capped.failures[0].message.contains("already delivered"), "{}", capped.failures[0].message);
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

#[test]
fn slices_after_the_first_page_start_before_a_time_shown_rounded_up() {
    // The API filters on the millisecond but shows the time rounded up to the second: page 1
    // ends inside a second whose other entries come after it, all shown at the second's end.
    let mut w = World::new();
    // Replies slow enough for slices to be read side by side.
    w.api.latency_ms = 250;
    w.raw.page_size = 5;
    w.raw.concurrency = 4;
    w.raw.object_max_bytes = 1 << 20;
    let second = T0 - 30 * MINUTE;
    for k in 0..12 {
        let api_ms = second - 999 + k * 50;
        let shown = (api_ms + 999) / 1000 * 1000;
        w.add_json(api_ms, format!(r#"{{"id":"r{k}","timestamp":{shown},"action":"Login"}}"#));
    }
    w.add_spread(200, T0 - 29 * MINUTE, T0 - 2 * MINUTE);
    w.raw.since_ms = Some(second - 999);
    w.pass_ok();
    w.assert_exactly_once(second - 999, T0);
}

#[test]
fn a_cursor_that_never_moves_fails_its_organization_at_once_and_the_next_is_collected() {
    let mut w = World::new();
    w.raw.org_ids = vec![ORG.into(), "org-2".into()];
    w.api.looping = vec![ORG.into()];
    w.add_spread(200, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    for k in 0..30 {
        let api_ms = T0 - 40 * MINUTE + k * MINUTE;
        w.api.add(
            "org-2",
            ApiEntry { api_ms, json: format!(r#"{{"id":"o2-{k}","timestamp":{api_ms}}}"#), visible_from_ms: i64::MIN },
        );
    }
    let result = w.pass();
    assert_eq!(result.failures.len(), 1, "{:?}", result.failures);
    let failure = &result.failures[0];
    assert_eq!((failure.kind, failure.org_id.as_deref()), (ErrorKind::Api, Some(ORG)), "{}", failure.message);
    assert!(failure.message.contains("same cursor twice"), "{}", failure.message);
    assert!(w.api.queries < 10, "refused at once: {} queries", w.api.queries);
    let other = result.completed.iter().find(|s| s.org_id == "org-2").map(|s| s.entries_written);
    assert_eq!(other, Some(30), "the next organization is collected");
}
