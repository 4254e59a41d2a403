//! The model's oracle ([`super::model`]): what a schedule did ([`Record`]), and what must hold
//! of the store after it ([`check`]): no line twice, every line an API entry from the start on,
//! none missing that a completed pass was due to read. Apart from the schedules, so that the
//! rules the protocol is judged by read as one piece.

use crate::gzip::gunzip;
use crate::testing::doubles::{ApiEntry, FakeApi, MemoryStore};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The one organization of every schedule.
pub(super) const ORG: &str = "org-1";
/// Late entries mostly arrive at most this long after their own time; every generated setting
/// keeps lag + overlap above it, which is what the protocol needs to catch them.
pub(super) const MAX_DELAY_MS: i64 = 20_000;

/// What the schedule did, for the oracle.
#[derive(Default)]
pub(super) struct Record {
    /// Where collection starts: fixed by the first pass that saved a checkpoint or completed.
    pub(super) start_ms: Option<i64>,
    /// Objects a pass found missing without the store being able to tell whether the feed had
    /// deleted them: their entries may be delivered twice (and only theirs).
    pub(super) unknown: Vec<String>,
    /// For each completed pass that read a window: the clock when it began, and the window's
    /// start and end.
    pub(super) completed: Vec<(i64, i64, i64)>,
    pub(super) passes_completed: usize,
    /// A pass refused the organization for a person (its checkpoint cannot be trusted).
    pub(super) refused: bool,
    /// The state was lost and nothing is left that shows the organization was collected.
    pub(super) untraceable: bool,
    /// Times whose entries a checkpoint rebuilt where the store cannot tell deleted objects said
    /// it may deliver again (once for each rebuild).
    pub(super) unsure: Vec<(i64, i64)>,
    /// Where a rebuilt checkpoint said it reads again from: the start it was given (`--since`)
    /// or knew, or an overlap before its last entry where it knew none.
    pub(super) read_from_unknown_start: Option<i64>,
}

pub(super) fn parse_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
}

pub(super) fn window_end(summary: &crate::settings::OrgSummary) -> i64 {
    parse_ms(&summary.window_end).unwrap_or(i64::MIN)
}

/// Where a window began; a start that cannot be read vouches for nothing before its end.
pub(super) fn window_start(summary: &crate::settings::OrgSummary) -> i64 {
    parse_ms(&summary.window_start).unwrap_or(i64::MAX)
}

/// A pass about to run without a checkpoint where nothing shows the organization was collected
/// though it was, or with a restored one whose later objects nothing shows (module docs).
pub(super) fn note_untraceable(store: &MemoryStore, record: &Mutex<Record>, restored: Option<usize>) {
    let mut record = record.lock().unwrap_or_else(|p| p.into_inner());
    let lost = record.start_ms.is_some()
        && !store.objects.borrow().contains_key(&checkpoint_key())
        && !traces_remain(store, true);
    let behind = restored.is_some_and(|created| !remembered_since(store, created));
    if lost || behind {
        record.untraceable = true;
    }
}

pub(super) fn checkpoint_key() -> String {
    format!("state/{ORG}/checkpoint.json")
}

/// Whether a log object is the collector's (not another writer's).
pub(super) fn is_ours(key: &str) -> bool {
    key.starts_with("logs/") && key.contains(&format!("mulesoft-audit-{ORG}"))
}

/// Lines of every object the collector ever created.
pub(super) fn delivered_lines(store: &MemoryStore) -> usize {
    store
        .created
        .borrow()
        .iter()
        .filter(|(k, _)| is_ours(k))
        .map(|(_, bytes)| {
            gunzip(bytes).map_or(0, |plain| plain.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count())
        })
        .sum()
}

/// Whether something still shows the organization was collected: its status, where it shows
/// collection (unless it goes too), or one of its objects, there or remembered as deleted.
pub(super) fn traces_remain(store: &MemoryStore, status_stays: bool) -> bool {
    let status = status_stays
        && store
            .objects
            .borrow()
            .get(&format!("state/{ORG}/status.json"))
            .and_then(|(bytes, _)| crate::status::OrgStatus::decode(bytes))
            .is_some_and(|status| crate::ledger::shows_collection(&status));
    let remembered = |k: &String| {
        store.objects.borrow().contains_key(k)
            || (store.soft_delete && store.deleted.get(k).is_some_and(|at| store.now_ms - at <= store.remembers_ms))
    };
    status || store.created.borrow().iter().any(|(k, _)| is_ours(k) && remembered(k))
}

/// Whether every object created after the first `created` is there or remembered as deleted.
pub(super) fn remembered_since(store: &MemoryStore, created: usize) -> bool {
    store.created.borrow().iter().skip(created).filter(|(k, _)| is_ours(k)).all(|(k, _)| {
        store.objects.borrow().contains_key(k)
            || store.deleted.get(k).is_some_and(|at| store.now_ms - at <= store.remembers_ms)
    })
}

/// Where a first checkpoint written from call `from` on starts (its read floor as first saved).
pub(super) fn first_start(store: &MemoryStore, from: usize) -> Option<i64> {
    let calls = store.calls.borrow();
    let (_, bytes) = calls.iter().skip(from).find(|(call, _)| *call == format!("write {}", checkpoint_key()))?;
    let checkpoint = crate::checkpoint::Checkpoint::decode(bytes, ORG, "k").ok()?;
    (checkpoint.next_seq == 1 && checkpoint.pending.is_none() && checkpoint.seen.is_empty())
        .then_some(checkpoint.read_from_ms)
}

/// The start is fixed by the first pass that saved a checkpoint, or that completed: a first
/// pass with nothing to read yet must still fix it ("from now on" is from that pass on).
pub(super) fn note_start(
    record: &Mutex<Record>,
    had_checkpoint: bool,
    has_checkpoint: bool,
    completed_before: usize,
    start: i64,
) {
    let mut record = record.lock().unwrap_or_else(|p| p.into_inner());
    let completed = record.passes_completed > completed_before;
    if record.start_ms.is_none() && !had_checkpoint && (has_checkpoint || completed) {
        record.start_ms = Some(start);
    }
}

/// The oracle.
pub(super) fn check(api: &FakeApi, store: &MemoryStore, record: &Record) -> Result<(), TestCaseError> {
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    // Copies in objects a pass said it could not account for (a bucket without soft delete):
    // each such object may have been delivered and its entries read again once.
    let mut in_unknown: BTreeMap<String, usize> = BTreeMap::new();
    for (key, bytes) in store.created.borrow().iter().filter(|(k, _)| is_ours(k)) {
        let plain = gunzip(bytes).map_err(|e| TestCaseError::fail(format!("{key} is not gzip: {}", e.0)))?;
        for line in String::from_utf8_lossy(&plain).lines() {
            *delivered.entry(line.to_string()).or_default() += 1;
            if record.unknown.contains(key) {
                *in_unknown.entry(line.to_string()).or_default() += 1;
            }
        }
    }
    let entries: BTreeMap<&str, &ApiEntry> = api.entries(ORG).iter().map(|e| (e.json.as_str(), e)).collect();
    if record.untraceable {
        for line in delivered.keys() {
            prop_assert!(entries.contains_key(line.as_str()), "not an API entry: {}", line);
        }
        return Ok(());
    }
    for (line, copies) in &delivered {
        // A rebuild that said so may deliver an entry of its unsure times once more.
        let unsure = entries
            .get(line.as_str())
            .map_or(0, |e| record.unsure.iter().filter(|(from, to)| (*from..=*to).contains(&e.api_ms)).count());
        let allowed = 1 + in_unknown.get(line).copied().unwrap_or(0) + unsure;
        prop_assert!(*copies <= allowed, "delivered {} times: {}", copies, line);
        let entry = entries.get(line.as_str());
        prop_assert!(entry.is_some(), "not an API entry: {}", line);
        if let (Some(entry), Some(start)) = (entry, record.start_ms) {
            // A rebuild that could not know where collection began reads from where it said.
            let start = record.read_from_unknown_start.map_or(start, |from| start.min(from));
            prop_assert!(entry.api_ms >= start, "before the start {}: {}", start, line);
        }
    }
    let Some(start) = record.start_ms else {
        prop_assert!(delivered.is_empty(), "delivered without a checkpoint");
        return Ok(());
    };
    for entry in entries.values() {
        // Due: a completed pass began after the entry was visible, and its window reached it: up
        // to its end, for an entry within the lateness every setting catches; for a later one,
        // only a window that also began at or before its time.
        let late = entry.visible_from_ms - entry.api_ms > MAX_DELAY_MS;
        let due = entry.api_ms >= start
            && record.completed.iter().any(|(began, from, end)| {
                *began >= entry.visible_from_ms && *end >= entry.api_ms && (!late || *from <= entry.api_ms)
            });
        prop_assert!(!due || delivered.contains_key(&entry.json), "missing: {} (start {})", entry.json, start);
    }
    Ok(())
}
