//! The delivery protocol across a checkpoint's whole life (issue #22), against the in-memory
//! doubles: names a checkpoint owns, checkpoints restored, lost, rebuilt or made anew, late
//! entries after a stopped pass, and page caps that always progress.

use super::doubles::{ApiEntry, Stop};
use super::scenarios::*;
use crate::settings::ErrorKind;

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
    let backup = w.store.objects.borrow()[CHECKPOINT].0.clone();
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
    let generation = w.store.objects.borrow()[CHECKPOINT].1;
    crate::platform::ObjectStore::write_if_generation(&w.store, CHECKPOINT, &backup, "application/json", generation)
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
        let calls = if self.store.objects.borrow().contains_key(CHECKPOINT) { 2 } else { 3 };
        self.store.stop.set(Some((calls, Stop::Before)));
        assert!(!self.pass().failures.is_empty());
        self.store.stop.set(None);
        self.checkpoint().pending.map(|p| p.key).unwrap_or_else(|| panic!("no pending object"))
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
    crate::platform::ObjectStore::create(&w.store, &key, &other, "application/gzip", None)
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
    crate::platform::ObjectStore::create(&w.store, &key, &empty, "application/gzip", None)
        .unwrap_or_else(|e| panic!("{e}"));
    let result = w.pass_ok();
    assert!(
        result.completed[0].objects.iter().any(|o| o.starts_with("(claimed)")),
        "{:?}",
        result.completed[0].objects
    );
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

impl World {
    /// The pending object's lease, as the checkpoint records it.
    fn lease_until(&self) -> Option<i64> {
        self.checkpoint().pending.and_then(|p| p.lease_until_ms)
    }

    /// The store's clock and the API's move on together.
    fn wait(&mut self, ms: i64) {
        self.api.now_ms += ms;
        self.store.now_ms = self.api.now_ms;
    }
}

#[test]
fn a_stalled_owners_name_is_not_claimed_during_its_lease_and_its_late_create_is_refused_after() {
    // The owner named its object and stalls in its create's retries (Cloud Storage's lease).
    let mut w = World::new();
    w.store.lease_ms = 2 * MINUTE as u64;
    w.store.soft_delete = true;
    w.add_spread(60, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.store.now_ms = w.api.now_ms;
    let key = w.stopped_after_naming();
    let until = w.lease_until().unwrap_or_else(|| panic!("a store with a lease gives a deadline"));
    // Within the lease, too long before its end to wait for: the name stays the owner's, and
    // no claim is made.
    w.wait(MINUTE);
    let waiting = w.pass();
    assert_eq!(waiting.failures.len(), 1, "{:?}", waiting.failures);
    assert_eq!(waiting.failures[0].kind, ErrorKind::Conflict, "{}", waiting.failures[0].message);
    assert!(waiting.failures[0].message.contains("may still create it"), "{}", waiting.failures[0].message);
    assert!(!w.store.objects.borrow().contains_key(&key), "no claim during the lease");
    // After it: the claim, and the feed takes it; the owner's create, late, is refused.
    w.wait(2 * MINUTE);
    let claimed = w.pass_ok();
    assert!(claimed.completed[0].objects.iter().any(|o| o.starts_with("(claimed)")), "{:?}", claimed.completed[0]);
    w.store.delete_under("logs/");
    let late =
        crate::platform::ObjectStore::create(&w.store, &key, b"the owner's bytes", "application/gzip", Some(until));
    assert!(matches!(late, Err(crate::platform::StoreError::Unavailable(_))), "{late:?}");
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

#[test]
fn an_owners_object_that_is_there_is_recorded_at_once_whatever_its_lease() {
    // The lease holds back only a claim: an object that is there is the owner's, recorded by
    // the next pass without waiting.
    let mut w = World::new();
    w.store.lease_ms = 2 * MINUTE as u64;
    w.add_spread(60, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.store.now_ms = w.api.now_ms;
    // Stopped with its create carried out and the reply lost: read the checkpoint, save a first
    // one, name the object, create it.
    w.store.stop.set(Some((4, Stop::After)));
    assert!(!w.pass().failures.is_empty());
    w.store.stop.set(None);
    assert!(w.lease_until().is_some());
    let next = w.pass_ok();
    assert!(next.completed[0].objects.iter().any(|o| o.starts_with("(recovered)")), "{:?}", next.completed[0]);
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
        self.store.objects.get_mut().retain(|k, _| !k.starts_with("state/"));
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
fn a_since_left_set_after_the_objects_does_not_cut_the_overlap_of_a_rebuild() {
    // Found by the model: collection began long before a `--since` still set in the service's
    // environment, and a late entry came in, within the overlap, after the last pass. The state
    // is lost: the rebuild reads again an overlap before the newest delivered entry, since the
    // objects show collection began before that --since.
    let mut w = World::new();
    w.add_spread(30, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
    w.pass_ok();
    let late = w.add_at(T0 - 5 * MINUTE, T0 + MINUTE);
    w.api.now_ms = T0 + 8 * 1440 * MINUTE;
    w.raw.since_ms = Some(w.api.now_ms);
    w.lose_state();
    let rebuilt = w.pass_ok();
    assert_eq!(rebuilt.completed[0].entries_written, 1, "the late entry: {:?}", rebuilt.completed[0]);
    assert_eq!(w.delivered().get(&late), Some(&1), "{late}");
    w.assert_exactly_once(T0 - 60 * MINUTE, T0);
}

#[test]
fn a_rebuild_whose_pass_stopped_once_it_was_saved_is_still_said() {
    // Found by the model: the pass that rebuilt a lost checkpoint, in a bucket that cannot tell
    // what the feed deleted, wrote it and stopped; the next pass went on from it and never said
    // that entries in the overlap may come twice. Stopped at the rebuilt checkpoint's save (its
    // reply lost), and later, after it named and created its first object.
    for later in [0, 3] {
        let mut w = World::new();
        w.add_spread(30, T0 - 50 * MINUTE, T0 - 2 * MINUTE);
        w.pass_ok();
        w.store.objects.get_mut().remove(CHECKPOINT);
        w.add_spread(30, T0 + MINUTE, T0 + 8 * MINUTE);
        w.api.now_ms += 10 * MINUTE;
        // Read the checkpoint, read the objects the rebuild needs, write the rebuilt checkpoint
        // (then name, create and record an object).
        let objects = w.store.objects.borrow().keys().filter(|k| k.starts_with("logs/")).count() as u32;
        w.store.stop.set(Some((2 + objects + later, Stop::After)));
        let stopped = w.pass();
        w.store.stop.set(None);
        assert!(!stopped.failures.is_empty());
        assert!(w.store.objects.borrow().contains_key(CHECKPOINT), "the rebuilt checkpoint was written");
        let said = |result: &crate::collect::PassResult| {
            result.completed.iter().flat_map(|s| &s.objects).any(|o| o.starts_with("(checkpoint rebuilt from"))
        };
        // A pass killed there gives no summary at all: what it returned here is dropped.
        assert!(later > 0 || !said(&stopped), "{:?}", stopped.completed);
        let next = w.pass_ok();
        assert!(said(&next), "stopped {later} calls later: {:?}", next.completed);
        assert!(!said(&w.pass_ok()), "said once");
    }
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
        assert!(!w.store.objects.borrow().contains_key(CHECKPOINT), "no checkpoint made");
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
    w.store.objects.get_mut().remove(CHECKPOINT);
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
    crate::platform::ObjectStore::create(&w.store, key, &data, "application/gzip", None)
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
    crate::platform::ObjectStore::create(&w.store, "state/org-1/status.json", &bytes, "application/json", None)
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
    let old = w.checkpoint();
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
    crate::platform::ObjectStore::create(&w.store, &key, &bytes, "application/gzip", None)
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
    crate::platform::ObjectStore::create(&w.store, key, &bytes, "application/gzip", None)
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
