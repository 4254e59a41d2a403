//! Time windows, and every key the collector writes or reads (log objects, checkpoints, status
//! objects, `check`'s probe): pure functions of the checkpoint, the clock and the settings, in
//! this one module.

use chrono::{DateTime, Datelike, Utc};

/// `2023-11-14T22:13:20.123Z`: the one date format we send, log and store (the reference function's
/// `...+00:00Z` is exactly what not to do).
pub fn rfc3339_ms(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => format!("@{ms}ms"),
    }
}

/// The UTC day (year, month, day) of a time in ms.
pub fn utc_day(ms: i64) -> (i32, u32, u32) {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    (t.year(), t.month(), t.day())
}

/// The closed window `[from, to]` (ms, both inclusive as the API treats them) one pass reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The window after a checkpoint at `cursor_ms`: from its read floor, up to `now - lag`. `None`
/// when there is nothing to read yet.
///
/// The floor is an overlap before the cursor, as the pass that last recorded an object set it
/// ([`crate::checkpoint::Checkpoint::prune`]), and the dedup keys are complete from it on: a
/// window from there catches late entries, delivers nothing twice, and takes a changed overlap
/// from the next recording on. Reading from `cursor - overlap` instead would skip late entries
/// that a stopped pass had read but never delivered, once the overlap is lowered.
pub fn next_window(cursor_ms: i64, read_from_ms: i64, now_ms: i64, lag_ms: i64) -> Option<Window> {
    let to_ms = now_ms - lag_ms;
    if to_ms < cursor_ms {
        return None;
    }
    Some(Window { from_ms: read_from_ms.min(cursor_ms), to_ms })
}

/// Where an organization's first pass starts: an explicit `since`, clamped to the retention floor
/// (older entries are gone anyway), else `lookback` before now.
pub fn first_cursor(now_ms: i64, since_ms: Option<i64>, lookback_ms: i64, retention_floor_ms: Option<i64>) -> i64 {
    match since_ms {
        Some(since) => since.max(retention_floor_ms.unwrap_or(i64::MIN)),
        None => now_ms - lookback_ms,
    }
}

/// `{prefix}YYYY/MM/DD/mulesoft-audit-{name}-{seq}.json.gz`: the layout of Google's published
/// function (which SecOps users already know), the day of the object's first entry, and the
/// object's number in its checkpoint, so that the name depends only on the checkpoint and a
/// re-run reproduces it. `name` is the organization and the checkpoint's lineage
/// ([`crate::checkpoint::Checkpoint::object_name`]): a checkpoint made anew numbers from 1 again
/// under names no earlier one gave.
pub fn object_key(prefix: &str, day: (i32, u32, u32), name: &str, seq: u64) -> String {
    format!("{}mulesoft-audit-{name}-{seq:010}.json.gz", day_folder(prefix, day))
}

/// `{prefix}YYYY/MM/DD/`: the folder of a day's objects.
pub fn day_folder(prefix: &str, (y, m, d): (i32, u32, u32)) -> String {
    format!("{prefix}{y:04}/{m:02}/{d:02}/")
}

/// What a repair's object names add to the organization id: a `.`, which no id has, so that no
/// organization's own objects can be taken for another's repair objects.
pub const REPAIR_SUFFIX: &str = ".repair";

/// An object name of an organization's, read back ([`object_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName<'k> {
    pub day: (i32, u32, u32),
    /// A repair's (`<org>.repair…`).
    pub repair: bool,
    /// The lineage of the checkpoint that gave it; `None` before version 3.
    pub lineage: Option<&'k str>,
    pub seq: u64,
}

/// `key` read as one of `org`'s objects under `prefix`:
/// `YYYY/MM/DD/mulesoft-audit-<org>[.repair][.<lineage>]-<seq>.json.gz`. No organization id has
/// a `.`, and only digits may follow the `-`, so `acme-eu`'s objects are not `acme`'s.
pub fn object_name<'k>(key: &'k str, prefix: &str, org: &str) -> Option<ObjectName<'k>> {
    let (folder, name) = key.strip_prefix(prefix)?.rsplit_once('/')?;
    let mut parts = folder.split('/').map(str::parse::<u32>);
    let day = (i32::try_from(parts.next()?.ok()?).ok()?, parts.next()?.ok()?, parts.next()?.ok()?);
    if parts.next().is_some() {
        return None;
    }
    let rest = name.strip_suffix(".json.gz")?.strip_prefix("mulesoft-audit-")?.strip_prefix(org)?;
    let (repair, rest) = match rest.strip_prefix(REPAIR_SUFFIX) {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let (lineage, seq) = match rest.strip_prefix('.') {
        Some(rest) => rest.split_once('-').map(|(lineage, seq)| (Some(lineage), seq))?,
        None => (None, rest.strip_prefix('-')?),
    };
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(ObjectName { day, repair, lineage, seq: seq.parse().ok()? })
}

/// `{state_prefix}{org}/repair.json`: the checkpoint of `verify --repair`'s objects.
pub fn repair_checkpoint_key(state_prefix: &str, org_id: &str) -> String {
    format!("{state_prefix}{org_id}/repair.json")
}

/// The last segment of every checkpoint's key.
pub const CHECKPOINT_NAME: &str = "checkpoint.json";

/// `{state_prefix}{org}/checkpoint.json`.
pub fn checkpoint_key(state_prefix: &str, org_id: &str) -> String {
    format!("{state_prefix}{org_id}/{CHECKPOINT_NAME}")
}

/// Whether `key` is a checkpoint's, under whatever state prefix.
pub fn is_checkpoint_key(key: &str) -> bool {
    key.rsplit_once('/').is_some_and(|(_, last)| last == CHECKPOINT_NAME)
}

/// The last segment of every status object's key.
pub const STATUS_NAME: &str = "status.json";

/// The status object's key for an organization ([`crate::status`]).
pub fn status_key(state_prefix: &str, org_id: &str) -> String {
    format!("{state_prefix}{org_id}/{STATUS_NAME}")
}

/// The organization whose status object `key` is ([`status_key`] read back).
pub fn status_org<'k>(state_prefix: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(state_prefix)?.strip_suffix(STATUS_NAME)?.strip_suffix('/')
}

/// The key of `check`'s write probe: under the state prefix, outside the log prefix, its own
/// for each process and moment, so that two checks never meet.
pub fn probe_key(state_prefix: &str, process: u32, now_ms: i64) -> String {
    format!("{state_prefix}check-probe-{process}-{now_ms}")
}

/// The organization whose checkpoint `key` is ([`checkpoint_key`] read back).
pub fn checkpoint_org<'k>(state_prefix: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(state_prefix)?.strip_suffix(CHECKPOINT_NAME)?.strip_suffix('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_key_names_its_organization() {
        assert_eq!(checkpoint_org("state/", &checkpoint_key("state/", "org-1")), Some("org-1"));
        assert_eq!(checkpoint_org("state/", "state/org-1/status.json"), None);
        assert_eq!(checkpoint_org("other/", &checkpoint_key("state/", "org-1")), None);
        assert_eq!(checkpoint_org("state/", "state/org-1checkpoint.json"), None, "a whole segment");
        assert!(is_checkpoint_key(&checkpoint_key("a/b/", "org-1")));
        assert!(!is_checkpoint_key("state/org-1/status.json"));
        assert!(!is_checkpoint_key("state/org-1/old-checkpoint.json"));
    }

    #[test]
    fn formats_times_with_milliseconds_and_z() {
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn windows_start_at_the_read_floor_and_lag_behind() {
        let w = next_window(1_000_000, 400_000, 2_000_000, 60_000).unwrap();
        assert_eq!(w, Window { from_ms: 400_000, to_ms: 1_940_000 });
        assert_eq!(next_window(1_000_000, 400_000, 1_050_000, 60_000), None);
        // Exactly at the cursor: a one-millisecond window is still read.
        assert_eq!(next_window(1_000, 1_000, 61_000, 60_000), Some(Window { from_ms: 1_000, to_ms: 1_000 }));
    }

    #[test]
    fn first_cursor_prefers_since_within_retention() {
        assert_eq!(first_cursor(10_000, None, 3_000, Some(0)), 7_000);
        assert_eq!(first_cursor(10_000, Some(5_000), 3_000, Some(6_000)), 6_000);
        assert_eq!(first_cursor(10_000, Some(5_000), 3_000, None), 5_000);
    }

    #[test]
    fn an_object_name_reads_back_as_its_organization_only() {
        let name = |key| object_name(key, "logs/", "acme");
        let lineage = "0123456789ab";
        let key = object_key("logs/", (2026, 1, 2), &format!("acme.{lineage}"), 7);
        assert_eq!(name(&key), Some(ObjectName { day: (2026, 1, 2), repair: false, lineage: Some(lineage), seq: 7 }));
        let old = object_key("logs/", (2026, 1, 2), "acme", 3);
        assert_eq!(name(&old).map(|n| (n.lineage, n.seq)), Some((None, 3)));
        let repair = name("logs/2026/01/02/mulesoft-audit-acme.repair.0123456789ab-0000000001.json.gz").unwrap();
        assert_eq!((repair.repair, repair.lineage), (true, Some(lineage)));
        assert!(name("logs/2026/01/02/mulesoft-audit-acme.repair-0000000001.json.gz").is_some_and(|n| n.repair));
        assert_eq!(name("logs/2026/01/02/mulesoft-audit-acme-eu-0000000001.json.gz"), None);
        assert_eq!(name("logs/2026/01/02/mulesoft-audit-acme-eu.0123456789ab-0000000001.json.gz"), None);
        assert_eq!(name("logs/2026/01/02/mulesoft-audit-acme.0123456789ab-0000000001.json"), None);
        assert_eq!(name("logs/2026/01/02/x/mulesoft-audit-acme-0000000001.json.gz"), None);
    }

    #[test]
    fn keys_are_partitioned_by_day_and_sortable() {
        let k = object_key("mulesoft/", utc_day(1_700_000_000_123), "org-1", 42);
        assert_eq!(k, "mulesoft/2023/11/14/mulesoft-audit-org-1-0000000042.json.gz");
        assert!(object_key("", (2024, 1, 1), "o", 9) < object_key("", (2024, 1, 1), "o", 10));
        assert_eq!(checkpoint_key("state/", "org-1"), "state/org-1/checkpoint.json");
    }
}
