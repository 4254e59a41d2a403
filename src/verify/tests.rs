//! `verify` against the in-memory doubles.

use super::*;
use crate::settings::ErrorKind;
use crate::testing::scenarios::{MINUTE, T0, World};

/// What a host lists: the checkpoint, then the log objects.
fn listing(world: &World) -> Listing {
    let key = window::checkpoint_key("state/", "org-1");
    let checkpoint =
        crate::checkpoint::Checkpoint::decode(&world.store.objects.borrow()[&key].0, "org-1", &key).unwrap();
    Listing {
        checkpoints: vec![ListedCheckpoint {
            org_id: "org-1".into(),
            read_from_ms: checkpoint.read_from_ms,
            next_seq: checkpoint.next_seq,
            lineage: checkpoint.lineage,
        }],
        objects: world.store.objects.borrow().keys().filter(|k| k.starts_with("logs/")).cloned().collect(),
        deleted: None,
    }
}

fn verify_now(world: &mut World, repair: bool) -> VerifyReport {
    let settings = world.settings();
    let listing = listing(world);
    verify(&mut world.api, &world.store, &settings, Request { repair, ..Request::default() }, &listing)
}

/// A collected hour, and the regular log objects it left.
fn collected() -> (World, Vec<String>) {
    let mut world = World::new();
    world.add_spread(300, T0 - 60 * MINUTE, T0 - 2 * MINUTE);
    world.pass_ok();
    let objects: Vec<String> =
        world.store.objects.borrow().keys().filter(|k| k.starts_with("logs/")).cloned().collect();
    assert!(objects.len() >= 3, "{objects:?}");
    (world, objects)
}

#[test]
fn a_renamed_copy_under_the_prefix_counts_as_the_duplicates_the_feed_ingests() {
    let (mut world, objects) = collected();
    let (bytes, _) = world.store.objects.borrow()[&objects[1]].clone();
    let copy = "logs/2025/12/31/restored-copy.json.gz".to_string();
    crate::platform::ObjectStore::create(&world.store, &copy, &bytes, "application/gzip", None).unwrap();
    // Also one named almost the collector's way, and one that is not gzip.
    let near = objects[1].replace(".json.gz", "-copy.json.gz");
    crate::platform::ObjectStore::create(&world.store, &near, &bytes, "application/gzip", None).unwrap();
    crate::platform::ObjectStore::create(&world.store, "logs/notes.txt", b"hello", "text/plain", None).unwrap();
    let report = verify_now(&mut world, false);
    let v = &report.orgs[0];
    let copies = in_object(&world, &objects[1], v);
    assert!(copies > 0);
    assert_eq!((v.missing, v.duplicates), (0, 2 * copies), "{v:?}");
    assert_eq!(v.foreign_objects, [near.clone(), copy.clone()], "{v:?}");
    assert!(!report.complete(), "exit 1");
    assert!(report.lines().iter().any(|l| l.contains("did not name")), "{:?}", report.lines());
}

fn in_object(world: &World, key: &str, verdict: &OrgVerdict) -> u64 {
    let (since, until) = (ms(&verdict.window_start), ms(&verdict.window_end));
    let plain = gunzip(&world.store.objects.borrow()[key].0).unwrap();
    plain
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter(|l| entry::meta(std::str::from_utf8(l).unwrap()).timestamp_ms.is_some_and(|t| t >= since && t <= until))
        .count() as u64
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()
}

#[test]
fn a_clean_delivery_is_complete_and_costs_no_more_requests_than_the_pass() {
    let mut world = World::new();
    world.add_spread(300, T0 - 60 * MINUTE, T0 - 2 * MINUTE);
    let pass = world.pass_ok();
    let report = verify_now(&mut world, false);
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.exit_code(), 0);
    let v = &report.orgs[0];
    assert_eq!(v.window_start, window::rfc3339_ms(T0 - 60 * MINUTE), "from where collection began");
    assert!(v.expected > 200 && v.delivered == v.expected && v.missing == 0 && v.duplicates == 0, "{v:?}");
    assert!(v.requests <= pass.completed[0].requests, "{} > {}", v.requests, pass.completed[0].requests);
    assert!(report.json().starts_with(r#"{"status":"complete","orgs":[{"org_id":"org-1""#), "{}", report.json());
}

#[test]
fn a_removed_object_is_missing_and_a_copied_one_doubled() {
    let (mut world, objects) = collected();
    let removed = world.store.objects.get_mut().remove(&objects[0]).unwrap();
    let copy = objects[1].replace("-0000000002.json.gz", "-0000000999.json.gz");
    let second = world.store.objects.get_mut()[&objects[1]].clone();
    world.store.objects.get_mut().insert(copy.clone(), second);
    let report = verify_now(&mut world, false);
    let v = &report.orgs[0];
    world.store.objects.get_mut().insert(objects[0].clone(), removed);
    let lost = in_object(&world, &objects[0], v);
    let doubled = in_object(&world, &copy, v);
    assert!(lost > 0 && doubled > 0);
    assert_eq!((v.missing, v.duplicates, v.objects_not_found), (lost, doubled, 1), "{v:?}");
    assert_eq!(v.first_missing.len(), NAMED_MISSING.min(lost as usize));
    assert!(!report.complete());
    assert_eq!(report.exit_code(), 1);
    assert!(report.json().contains(r#""status":"incomplete""#));
    assert!(report.lines()[0].contains(&format!("missing {lost}, duplicates {doubled}")), "{:?}", report.lines());
}

#[test]
fn objects_the_store_keeps_as_deleted_are_counted_apart_from_those_gone_without_a_trace() {
    let (mut world, objects) = collected();
    // The feed took two objects; the bucket keeps one of them (soft delete), and a key that
    // is no object of this organization's is not counted.
    world.store.objects.get_mut().remove(&objects[0]);
    world.store.objects.get_mut().remove(&objects[1]);
    let mut listed = listing(&world);
    listed.deleted = Some(vec![objects[1].clone(), "logs/2024/01/01/other.json.gz".into()]);
    let settings = world.settings();
    let report = verify(&mut world.api, &world.store, &settings, Request::default(), &listed);
    let v = &report.orgs[0];
    assert_eq!((v.objects_not_found, v.objects_soft_deleted), (2, Some(1)), "{v:?}");
    assert!(report.json().contains(r#""objects_not_found":2,"objects_soft_deleted":1"#), "{}", report.json());
    let lines = report.lines();
    assert!(lines.iter().any(|l| l.contains("1 of them are soft-deleted") && l.contains("1 are gone")), "{lines:?}");
    // A store that keeps no deleted objects says so rather than a count of nothing.
    let unknown = verify_now(&mut world, false);
    assert_eq!(unknown.orgs[0].objects_soft_deleted, None);
    assert!(unknown.json().contains(r#""objects_soft_deleted":null"#), "{}", unknown.json());
    assert!(unknown.lines().iter().any(|l| l.contains("keeps no deleted objects")), "{:?}", unknown.lines());
}

/// Entries the API shows only now, timed well before the read floor: no pass reads them.
fn shown_late(world: &mut World, n: i64) {
    for k in 0..n {
        world.add_at(T0 - 50 * MINUTE + k * 1000, i64::MIN);
    }
}

#[test]
fn repair_delivers_what_is_missing_once_and_then_nothing() {
    let (mut world, _) = collected();
    shown_late(&mut world, 25);
    let before = verify_now(&mut world, false);
    assert_eq!(before.orgs[0].missing, 25, "{before:?}");
    let first = verify_now(&mut world, true);
    let v = &first.orgs[0];
    assert_eq!((v.repaired, v.missing, v.duplicates), (25, 0, 0), "verified again after the repair: {v:?}");
    assert!(first.complete());
    assert!(world.store.objects.borrow().keys().any(|k| k.contains("-org-1.repair.")), "named apart from the pass's");
    let second = verify_now(&mut world, true);
    assert_eq!((second.orgs[0].repaired, second.orgs[0].missing, second.orgs[0].duplicates), (0, 0, 0));
    // The pass goes on as before: the repair's objects and checkpoint are its own.
    world.api.now_ms += 30 * MINUTE;
    world.add_spread(20, T0 + MINUTE, T0 + 10 * MINUTE);
    world.pass_ok();
    assert!(verify_now(&mut world, false).complete());
}

#[test]
fn a_repair_refuses_where_objects_are_gone_or_another_repair_wrote_since_the_listing() {
    let (mut world, objects) = collected();
    shown_late(&mut world, 5);
    // The feed took an object: its entries cannot be told from missing ones.
    let taken = world.store.objects.get_mut().remove(&objects[1]).unwrap();
    let refused = verify_now(&mut world, true);
    assert_eq!(refused.failures[0].kind, ErrorKind::Conflict, "{refused:?}");
    assert_eq!(refused.exit_code(), 1, "an organization's state, not a setting");
    assert!(refused.failures[0].message.contains("not in the store"), "{refused:?}");
    assert!(!world.store.objects.borrow().keys().any(|k| k.contains(".repair-")), "nothing repaired");
    world.store.objects.get_mut().insert(objects[1].clone(), taken);
    // Another repair records an object between this one's listing and its repair.
    let stale = listing(&world);
    assert_eq!(verify_now(&mut world, true).orgs[0].repaired, 5);
    shown_late(&mut world, 3);
    let settings = world.settings();
    let repair = Request { repair: true, ..Request::default() };
    let late = verify(&mut world.api, &world.store, &settings, repair, &stale);
    assert!(late.failures.iter().any(|f| f.message.contains("repair objects are not in the store")), "{late:?}");
    let v = &verify_now(&mut world, false).orgs[0];
    assert_eq!((v.missing, v.duplicates), (3, 0), "{v:?}");
}

#[test]
fn an_object_the_feed_takes_between_the_listing_and_the_read_refuses_the_repair() {
    let (mut world, objects) = collected();
    shown_late(&mut world, 5);
    let listed = listing(&world);
    world.store.objects.get_mut().remove(&objects[1]);
    let settings = world.settings();
    let repair = Request { repair: true, ..Request::default() };
    let refused = verify(&mut world.api, &world.store, &settings, repair, &listed);
    assert!(refused.failures.iter().any(|f| f.message.contains("gone when read")), "{refused:?}");
    assert!(!world.store.objects.borrow().keys().any(|k| k.contains(".repair-")), "nothing repaired");
    let plain = verify(&mut world.api, &world.store, &settings, Request::default(), &listed);
    assert_eq!((plain.orgs[0].objects_vanished, plain.orgs[0].objects_not_found), (1, 0), "{plain:?}");
    assert!(plain.lines().iter().any(|l| l.contains("1 listed objects were gone")), "{:?}", plain.lines());
}

#[test]
fn a_repair_never_reaches_before_where_collection_began() {
    let (mut world, _) = collected();
    // Entries from before collection began: another collector's (the function replaced).
    for k in 0..7 {
        world.add_at(T0 - 3 * 60 * MINUTE + k * 1000, i64::MIN);
    }
    let settings = world.settings();
    let since = Some(T0 - 4 * 60 * MINUTE);
    let listed = listing(&world);
    let asked =
        verify(&mut world.api, &world.store, &settings, Request { since_ms: since, ..Request::default() }, &listed);
    assert_eq!(asked.orgs[0].missing, 7, "verify reports what was asked: {asked:?}");
    let repair = Request { since_ms: since, repair: true, ..Request::default() };
    let repaired = verify(&mut world.api, &world.store, &settings, repair, &listed);
    let v = &repaired.orgs[0];
    assert_eq!((v.repaired, v.missing), (0, 0), "{v:?}");
    assert_eq!(v.window_start, window::rfc3339_ms(T0 - 60 * MINUTE), "from where collection began");
}

#[test]
fn another_organization_whose_id_extends_this_ones_is_not_read_as_its() {
    let (mut world, objects) = collected();
    let other = objects[0].replace("-org-1-", "-org-1-eu-");
    let first = world.store.objects.get_mut()[&objects[0]].clone();
    world.store.objects.get_mut().insert(other, first);
    let report = verify_now(&mut world, false);
    let v = &report.orgs[0];
    assert_eq!((v.unexpected, v.duplicates, v.objects_read), (0, 0, objects.len() as u64), "{v:?}");
}

#[test]
fn a_repair_leaves_an_entry_without_a_time_alone() {
    let (mut world, _) = collected();
    world.add_json(T0 - 40 * MINUTE, r#"{"id":"no-time","action":"Login"}"#.into());
    let report = verify_now(&mut world, true);
    let v = &report.orgs[0];
    assert_eq!((v.repaired, v.missing), (0, 1), "{v:?}");
}

#[test]
fn an_object_created_after_the_listing_is_not_taken_for_missing() {
    let (mut world, _) = collected();
    let before = listing(&world);
    // A pass runs between the listing and the verification.
    world.api.now_ms += 30 * MINUTE;
    world.add_spread(40, T0 - 5 * MINUTE, T0 + 20 * MINUTE);
    world.pass_ok();
    let settings = world.settings();
    let report = verify(&mut world.api, &world.store, &settings, Request::default(), &before);
    assert!(report.complete(), "{report:?}");
}

#[test]
fn a_repair_without_a_known_start_needs_since() {
    let (mut world, _) = collected();
    world.store.objects.get_mut().remove(&status_key("state/", "org-1"));
    shown_late(&mut world, 5);
    let report = verify_now(&mut world, true);
    assert!(report.failures.iter().any(|f| f.message.contains("give --since")), "{report:?}");
    assert!(!world.store.objects.borrow().keys().any(|k| k.contains(".repair-")), "nothing repaired");
}

#[test]
fn a_repair_stopped_at_any_store_call_never_doubles_and_the_next_completes_it() {
    for stop_after in 1..40 {
        let (mut world, _) = collected();
        shown_late(&mut world, 30);
        // The store stops after this many calls, the last one's reply lost: the repair stops
        // anywhere in its write order, its object perhaps created and not recorded.
        world.store.stop.set(Some((stop_after, crate::testing::doubles::Stop::After)));
        let _ = verify_now(&mut world, true);
        world.store.stop.set(None);
        let after = verify_now(&mut world, true);
        assert!(after.failures.is_empty(), "stopped after {stop_after} store calls: {after:?}");
        let v = &after.orgs[0];
        assert_eq!((v.missing, v.duplicates), (0, 0), "stopped after {stop_after} store calls: {v:?} {after:?}");
    }
}
