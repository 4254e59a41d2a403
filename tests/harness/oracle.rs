//! What arrived, read back from the destination and judged against what the simulator holds.

use super::process::RunResult;
use anypoint_sim::Simulator;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("valid gzip");
    out
}

/// Every file under `dir` (none if it does not exist), as paths relative to it.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path().strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    files
}

/// Every log object under `dir/logs` (hidden files aside): key → its NDJSON lines.
pub fn objects_in_dir(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let logs = Path::new("logs");
    files_in(&dir.join(logs))
        .into_iter()
        .filter(|rel| !rel.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|rel| {
            let key = logs.join(rel);
            let objects = lines(&gunzip(&std::fs::read(dir.join(&key)).unwrap()));
            (key.to_string_lossy().into_owned(), objects)
        })
        .collect()
}

pub fn lines(ndjson: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(ndjson).expect("UTF-8 NDJSON");
    assert!(text.is_empty() || text.ends_with('\n'), "NDJSON ends with a newline");
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("line is not JSON ({e}): {l:.200}"));
            l.to_string()
        })
        .collect()
}

pub fn ms(rfc3339: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().expect("a time")).expect("RFC 3339").timestamp_millis()
}

/// The window [start, end] covered by a sequence of successful runs for `org`.
pub fn covered(summaries: &[&serde_json::Value], org: &str) -> (i64, i64) {
    let windows: Vec<(i64, i64)> = summaries
        .iter()
        .flat_map(|s| s["orgs"].as_array().cloned().unwrap_or_default())
        .filter(|o| o["org_id"] == org)
        .map(|o| (ms(&o["window_start"]), ms(&o["window_end"])))
        .collect();
    assert!(!windows.is_empty(), "no summary for {org}");
    (windows.iter().map(|w| w.0).min().unwrap(), windows.iter().map(|w| w.1).max().unwrap())
}

/// The heart of every test: the objects hold exactly the simulator's entries of `org` in
/// `[from, to]`, each once, byte for byte.
pub fn assert_exactly_once(sim: &Simulator, org: &str, objects: &BTreeMap<String, Vec<String>>, from: i64, to: i64) {
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    let wanted = sim.entries_in(org, from, to);
    for e in &wanted {
        *expected.entry(e.as_str()).or_default() += 1;
    }
    let mut got: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, lines) in objects {
        // The pass's objects and a repair's (`<org>.repair`).
        if !is_objects_of(key, org) {
            continue;
        }
        for l in lines {
            *got.entry(l.as_str()).or_default() += 1;
        }
    }
    let missing: Vec<&&str> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let twice: Vec<(&&str, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    let extra: Vec<&&str> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && twice.is_empty() && extra.is_empty() && !wanted.is_empty(),
        "org {org}: {} expected, {} missing (first: {:.200?}), {} delivered twice (first: {:.200?}), {} unexpected (first: {:.200?})",
        wanted.len(),
        missing.len(),
        missing.first(),
        twice.len(),
        twice.first(),
        extra.len(),
        extra.first()
    );
}

/// The earliest a first pass can start reading: its lookback (24 h) with an hour to spare.
pub fn ms_of_first_window() -> i64 {
    anypoint_sim::now_ms() - 25 * 3600 * 1000
}

/// Nothing marked done among a store's objects (key → bytes): no log object, and every checkpoint
/// still where it started (a first pass saves its start at once, so that a later pass starts
/// from the same point).
pub fn assert_nothing_marked_done(objects: &BTreeMap<String, Vec<u8>>) {
    for (key, bytes) in objects {
        assert!(!key.starts_with("logs/"), "a log object was written: {key}");
        if key.ends_with("checkpoint.json") {
            let cp: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            let untouched = cp["cursor_ms"] == cp["read_from_ms"]
                && cp["next_seq"] == 1
                && cp["seen"].as_array().is_some_and(Vec::is_empty)
                && cp["pending"].is_null();
            assert!(untouched, "checkpoint {key} marks something done: {cp}");
        }
    }
}

/// The same for a directory store (lock and other hidden files aside).
pub fn assert_nothing_marked_done_in(dir: &Path) {
    let objects = files_in(dir)
        .into_iter()
        .filter(|rel| !rel.file_name().unwrap().to_string_lossy().starts_with('.'))
        .filter(|rel| rel.extension().is_none_or(|e| e != "lock"))
        .map(|rel| (rel.to_string_lossy().into_owned(), std::fs::read(dir.join(&rel)).unwrap()))
        .collect();
    assert_nothing_marked_done(&objects);
}

/// Temporary and lock files in a directory store (`*.tmp`, `*.lock`): none may be left behind.
pub fn temporaries_in(dir: &Path) -> Vec<PathBuf> {
    files_in(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "tmp" || e == "lock")).collect()
}

/// Passes raced on one directory, then one catch-up pass: a racer completed, any other stopped on
/// `conflict`, the catch-up completed, and every entry since the first window up to the last
/// window's end is in the directory once.
pub fn assert_race_delivered_once(sim: &Simulator, org: &str, dir: &Path, racers: &[RunResult], catch_up: &RunResult) {
    assert!(racers.iter().any(|r| r.code == 0), "one completes: {racers:?}");
    for r in racers.iter().filter(|r| r.code != 0) {
        assert_eq!(r.summary["failures"][0]["kind"], "conflict", "the other stops on the conflict: {}", r.stdout);
    }
    assert_eq!(catch_up.code, 0, "the catch-up pass failed:{}", catch_up.report());
    let summaries: Vec<&serde_json::Value> = racers.iter().chain([catch_up]).map(|r| &r.summary).collect();
    let (_, to) = covered(&summaries, org);
    assert_exactly_once(sim, org, &objects_in_dir(dir), ms_of_first_window(), to);
}

/// Whether `key` names an object of `org`'s: `<org>.<lineage>-<seq>`, `<org>.repair.<lineage>-<seq>`,
/// or before lineages `<org>-<seq>` and `<org>.repair-<seq>` (no organization id has a `.`, and
/// only digits follow the `-`, so `acme-eu`'s objects are not `acme`'s).
pub fn is_objects_of(key: &str, org: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or_default();
    let Some(rest) = name.strip_prefix(&format!("mulesoft-audit-{org}")).and_then(|r| r.strip_suffix(".json.gz"))
    else {
        return false;
    };
    match rest.strip_prefix('-') {
        Some(seq) => !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()),
        None => rest.starts_with('.'),
    }
}
