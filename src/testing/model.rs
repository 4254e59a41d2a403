//! The model-based test of the delivery protocol: `proptest` generates schedules of passes,
//! stopped after any store call (before it, or after it with the reply lost), entries that arrive
//! late (some later than the smallest overlap, and than the largest), in same-millisecond
//! clusters and with odd or missing fields (times in whole seconds cut down or rounded up from
//! the one the API filters on), the feed deleting what it ingested, settings changed between
//! passes, two passes interleaved with different settings (one stalled for minutes while the
//! other recovers and the feed deletes, on a store that holds a lease on a name as Cloud
//! Storage's does), and the checkpoint's life: deleted, lost with the whole state (moved),
//! restored from an earlier snapshot, objects of other writers under the log prefix. After each
//! schedule:
//!
//! - **safety**: across every object ever created (deleted ones too), no line appears twice,
//!   every line is an API entry from the configured start on, and every entry a completed pass
//!   was due to read is there: one visible when the pass began, timed within its window (for an
//!   entry late by no more than every setting's lag and overlap catch, up to its end); a time
//!   shown later than the API's fails its organization loudly, which is no completion;
//! - **liveness**: once faults stop, passes with a page cap each deliver something new or
//!   complete, and one completes within a bound; or the organization is refused for a person
//!   (a checkpoint that cannot be trusted), never left behind at exit 0.
//!
//! A state lost when nothing is left that shows the organization was collected (no status, no
//! object there or remembered as deleted) makes it a new organization to any tool, and so does a
//! restored checkpoint once the objects made after its backup are neither there nor remembered;
//! from then on a schedule checks only that every line is an API entry.
//!
//! A failure prints the shrunk schedule; proptest keeps its seed under `proptest-regressions/`
//! and replays it first on the next run.

use super::oracle::{
    MAX_DELAY_MS, ORG, Record, check, checkpoint_key, delivered_lines, first_start, is_ours, note_start,
    note_untraceable, parse_ms, remembered_since, traces_remain, window_end, window_start,
};
use crate::collect::{PassResult, run_pass};
use crate::settings::{Paging, RawConfig, Settings};
use crate::testing::doubles::{ApiEntry, FakeApi, MemoryStore, Shared, Stop};
use proptest::prelude::*;
use std::cell::RefCell;
use std::sync::{Arc, Mutex, mpsc};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
/// Some arrive up to this late: past the smallest overlap generated (30 s), and past the largest
/// (600 s) with the largest lag (60 s). Such an entry is due only where a completed pass's window
/// reached back to its time after it arrived (README, "Late entries").
const MAX_LATE_MS: i64 = 900_000;
/// The store's lease on a name, as Cloud Storage's has one: two minutes here.
const LEASE_MS: u64 = 120_000;

/// How an entry shows its time (the API always files it under its true time).
#[derive(Debug, Clone, Copy)]
enum TimeForm {
    Millis,
    MillisText,
    Rfc3339,
    IsoWithoutOffset,
    SecondsWithFraction,
    /// Whole seconds, cut down from the millisecond the API files it under: the time shown runs
    /// up to a second before the one it filters on.
    WholeSeconds,
    /// Whole seconds, rounded up: the time shown runs up to a second *after* the one it filters
    /// on, which the collector cannot follow near a query's end (README, "Ordering"): it must
    /// fail loudly there, never lose or double an entry.
    WholeSecondsUp,
    Micros,
    Missing,
    Unreadable,
}

#[derive(Debug, Clone)]
struct Arrival {
    /// How long before now the entries are timed (at most [`MAX_LATE_MS`]).
    delay_ms: i64,
    /// How many share that millisecond.
    cluster: usize,
    with_id: bool,
    form: TimeForm,
}

/// The settings a user may pick or change between passes.
#[derive(Debug, Clone)]
struct Knobs {
    lag_s: u64,
    overlap_s: u64,
    lookback_s: u64,
    /// `--since`, as seconds before the first pass (only the first pass uses it).
    since_back_s: Option<u64>,
    object_bytes: u64,
    page_size: u32,
    paging: Paging,
    concurrency: u32,
    max_pages: u32,
}

#[derive(Debug, Clone)]
enum Step {
    /// Time passes, and entries arrive.
    Arrive { advance_ms: i64, arrivals: Vec<Arrival> },
    /// A pass with these settings, stopped after `stop` store calls if given; the feed may
    /// delete every log object just before it.
    Pass { knobs: Knobs, stop: Option<(u32, Stop)>, feed_first: bool },
    /// Two passes at once, each with its own settings: the first pauses after `pause_after`
    /// store calls while the second runs to its end (or its own stop), then goes on. With a
    /// `stall_ms`, the first stalls (in its create's retries, say): the second starts that much
    /// later, the feed deletes what it finds, and the first goes on that much later again.
    Race { knobs: Knobs, second: Knobs, pause_after: u32, second_stop: Option<(u32, Stop)>, stall_ms: i64 },
    /// The SecOps feed ingests and deletes every log object.
    FeedDeletes,
    /// The checkpoint is deleted by hand (its status stays).
    LoseCheckpoint,
    /// The whole state is lost, or moved elsewhere: checkpoint and status.
    LoseState,
    /// The checkpoint as it is now is kept aside, as a backup.
    Snapshot,
    /// The last snapshot is written back over the checkpoint.
    Restore,
    /// Another writer puts an object of its own under the log prefix.
    Foreign,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    let timing = (
        prop_oneof![Just(0u64), Just(5), Just(60)],
        prop_oneof![Just(30u64), Just(120), Just(600)],
        prop_oneof![Just(0u64), Just(600), Just(3600)],
        proptest::option::weighted(0.2, 0u64..1800),
    );
    let sizes = (
        prop_oneof![Just(1024u64), Just(3000), Just(1 << 20)],
        prop_oneof![Just(1u32), Just(3), Just(7), Just(50)],
        prop_oneof![Just(Paging::Cursor), Just(Paging::Offset)],
        prop_oneof![Just(1u32), Just(4)],
        prop_oneof![4 => Just(100_000u32), 1 => Just(3u32)],
    );
    (timing, sizes).prop_map(
        |((lag_s, overlap_s, lookback_s, since_back_s), (object_bytes, page_size, paging, concurrency, max_pages))| {
            Knobs {
                lag_s,
                overlap_s,
                lookback_s,
                since_back_s,
                object_bytes,
                page_size,
                paging,
                concurrency,
                max_pages,
            }
        },
    )
}

fn arrival() -> impl Strategy<Value = Arrival> {
    let form = prop_oneof![
        6 => Just(TimeForm::Millis),
        1 => Just(TimeForm::MillisText),
        1 => Just(TimeForm::Rfc3339),
        1 => Just(TimeForm::IsoWithoutOffset),
        1 => Just(TimeForm::SecondsWithFraction),
        1 => Just(TimeForm::WholeSeconds),
        1 => Just(TimeForm::WholeSecondsUp),
        1 => Just(TimeForm::Micros),
        1 => Just(TimeForm::Missing),
        1 => Just(TimeForm::Unreadable),
    ];
    let delay = prop_oneof![12 => 0..=MAX_DELAY_MS, 1 => MAX_DELAY_MS..=MAX_LATE_MS];
    (delay, prop_oneof![4 => Just(1usize), 1 => 2usize..6], proptest::bool::weighted(0.85), form)
        .prop_map(|(delay_ms, cluster, with_id, form)| Arrival { delay_ms, cluster, with_id, form })
}

fn stop() -> impl Strategy<Value = Option<(u32, Stop)>> {
    proptest::option::weighted(0.4, (1u32..30, prop_oneof![Just(Stop::Before), Just(Stop::After)]))
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0i64..600_000, proptest::collection::vec(arrival(), 0..12))
            .prop_map(|(advance_ms, arrivals)| Step::Arrive { advance_ms, arrivals }),
        // The collector stopped for over a week: soft delete has forgotten what it deleted.
        1 => Just(Step::Arrive { advance_ms: 8 * 86_400_000, arrivals: Vec::new() }),
        4 => (knobs(), stop(), proptest::bool::weighted(0.3))
            .prop_map(|(knobs, stop, feed_first)| Step::Pass { knobs, stop, feed_first }),
        1 => (knobs(), knobs(), 1u32..12, stop(), prop_oneof![2 => Just(0i64), 1 => 1i64..400_000]).prop_map(
            |(knobs, second, pause_after, second_stop, stall_ms)| Step::Race {
                knobs,
                second,
                pause_after,
                second_stop,
                stall_ms
            }
        ),
        2 => Just(Step::FeedDeletes),
        1 => Just(Step::LoseCheckpoint),
        1 => Just(Step::LoseState),
        1 => Just(Step::Snapshot),
        1 => Just(Step::Restore),
        1 => Just(Step::Foreign),
    ]
}

/// A schedule, whether the bucket keeps deleted objects (soft delete), and whether the API caps
/// its pages below the limit asked for.
fn schedule() -> impl Strategy<Value = (bool, Option<usize>, Vec<Step>)> {
    (
        proptest::bool::weighted(0.7),
        proptest::option::weighted(0.2, 1usize..4),
        proptest::collection::vec(step(), 1..24),
    )
}

/// The settings of one pass.
fn raw(knobs: &Knobs, since_ms: Option<i64>) -> RawConfig {
    let mut raw = crate::settings::tests::raw();
    raw.org_ids = vec![ORG.into()];
    raw.lag_seconds = knobs.lag_s;
    raw.overlap_seconds = knobs.overlap_s;
    raw.lookback_seconds = knobs.lookback_s;
    raw.since_ms = since_ms;
    raw.object_max_bytes = knobs.object_bytes;
    raw.page_size = knobs.page_size;
    raw.paging = knobs.paging;
    raw.concurrency = knobs.concurrency;
    raw.requests_per_minute = Some(600_000);
    raw.max_pages = knobs.max_pages;
    raw
}

/// The entry's JSON with its time shown as `form`; `n` makes every entry's line its own, as
/// real entries' payloads do.
fn json(n: u64, api_ms: i64, with_id: bool, form: TimeForm) -> String {
    let time = match form {
        TimeForm::Millis => format!(r#","timestamp":{api_ms}"#),
        TimeForm::MillisText => format!(r#","timestamp":"{api_ms}""#),
        TimeForm::Rfc3339 => format!(r#","timestamp":"{}""#, crate::window::rfc3339_ms(api_ms)),
        TimeForm::IsoWithoutOffset => {
            format!(r#","timestamp":"{}""#, crate::window::rfc3339_ms(api_ms).trim_end_matches('Z'))
        }
        TimeForm::SecondsWithFraction => format!(r#","timestamp":{}.{:03}"#, api_ms / 1000, api_ms % 1000),
        TimeForm::WholeSeconds => format!(r#","timestamp":{}"#, api_ms / 1000),
        TimeForm::WholeSecondsUp => format!(r#","timestamp":{}"#, (api_ms + 999) / 1000),
        TimeForm::Micros => format!(r#","timestamp":{}"#, api_ms * 1000 + 999),
        TimeForm::Missing => String::new(),
        TimeForm::Unreadable => r#","timestamp":"about now""#.into(),
    };
    let id = if with_id { format!(r#""id":"e{n}","#) } else { String::new() };
    format!(r#"{{{id}"n":{n}{time},"action":"Update"}}"#)
}

fn checkpoint_exists(store: &Arc<Mutex<MemoryStore>>) -> bool {
    let store = store.lock().unwrap_or_else(|p| p.into_inner());
    store.objects.borrow().contains_key(&format!("state/{ORG}/checkpoint.json"))
}

/// One pass on `store` from the API as it is now; notes what the oracle needs. Returns the clock
/// at its end.
fn pass(api: &FakeApi, store: Shared, settings: &Settings, record: &Mutex<Record>) -> i64 {
    passed(api, store, settings, record).0.now_ms
}

/// [`pass`], with the API as the pass left it and what the pass returned.
fn passed(api: &FakeApi, store: Shared, settings: &Settings, record: &Mutex<Record>) -> (FakeApi, PassResult) {
    let mut api = api.clone();
    let began = api.now_ms;
    let queries = api.queries;
    let store = store;
    let result = run_pass(&mut api, &store, settings);
    if std::env::var_os("MODEL_DEBUG").is_some() {
        eprintln!(
            "PASS {:?} {:?}",
            result
                .completed
                .iter()
                .map(|s| (&s.window_start, &s.window_end, s.entries_written, &s.objects))
                .collect::<Vec<_>>(),
            result.failures
        );
    }
    let mut record = record.lock().unwrap_or_else(|p| p.into_inner());
    let unknown = result
        .completed
        .iter()
        .flat_map(|summary| &summary.objects)
        .filter(|o| o.starts_with("(missing, and the store cannot tell"))
        .filter_map(|o| o.rsplit(' ').next().map(str::to_string));
    record.unknown.extend(unknown);
    let unsure = result
        .completed
        .iter()
        .flat_map(|summary| &summary.objects)
        .filter_map(|o| o.split_once("so entries timed ")?.1.split_once(" that only those held")?.0.split_once(" to "))
        .filter_map(|(from, to)| Some((parse_ms(from)?, parse_ms(to)?)));
    let unsure: Vec<(i64, i64)> = unsure.collect();
    record.unsure.extend(unsure);
    let reads_from: Vec<i64> = result
        .completed
        .iter()
        .flat_map(|summary| &summary.objects)
        .filter_map(|o| {
            let from = o.split_once("reading again from ")?.1;
            parse_ms(from.split([' ', ';', ')']).next()?)
        })
        .collect();
    for from in reads_from {
        record.read_from_unknown_start = Some(record.read_from_unknown_start.map_or(from, |r| r.min(from)));
    }
    record.passes_completed += usize::from(result.failures.is_empty());
    record.refused |= result.failures.iter().any(|f| f.kind == crate::settings::ErrorKind::Checkpoint);
    // Only a pass that read a window vouches for it (one with nothing to read yet reads none).
    if result.failures.is_empty() && api.queries > queries {
        record
            .completed
            .extend(result.completed.iter().map(|summary| (began, window_start(summary), window_end(summary))));
    }
    (api, result)
}

fn run_schedule(soft_delete: bool, page_cap: Option<usize>, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut api = FakeApi::new(T0);
    api.page_cap = page_cap;
    // Each batch of requests takes a quarter second, so windows with many pages are split into
    // slices read concurrently.
    api.latency_ms = 250;
    let mut memory = MemoryStore::default();
    memory.soft_delete = soft_delete;
    // Cloud Storage's shortest soft delete retention.
    memory.remembers_ms = 7 * 86_400_000;
    // A pass may stop in the search before a first checkpoint too.
    memory.stops_in_search = true;
    memory.lease_ms = LEASE_MS;
    let store = Arc::new(Mutex::new(memory));
    let record = Mutex::new(Record::default());
    let mut n = 0u64;
    let mut snapshot: Option<(Vec<u8>, usize)> = None;
    // The objects made before the snapshot a restored checkpoint came from.
    let mut restored: Option<usize> = None;
    let first_since = |knobs: &Knobs, now: i64| knobs.since_back_s.map(|s| now - s as i64 * 1000);
    let shared = |pause| Shared { store: store.clone(), pause: RefCell::new(pause) };
    let lock = || store.lock().unwrap_or_else(|p| p.into_inner());
    for step in steps {
        lock().now_ms = api.now_ms;
        if matches!(step, Step::Race { .. }) {
            note_untraceable(&lock(), &record, restored);
        }
        let had_checkpoint = checkpoint_exists(&store);
        let completed_before = record.lock().unwrap_or_else(|p| p.into_inner()).passes_completed;
        let calls_before = lock().calls.borrow().len();
        let began = api.now_ms;
        let start_of = |knobs: &Knobs| {
            let since = first_since(knobs, began);
            since.unwrap_or(began - knobs.lookback_s as i64 * 1000)
        };
        let settings_of = |knobs: &Knobs| {
            Settings::from_raw(raw(knobs, first_since(knobs, began)))
                .map_err(|e| TestCaseError::fail(format!("settings: {e}")))
        };
        match step {
            Step::Arrive { advance_ms, arrivals } => {
                api.now_ms += advance_ms;
                for a in arrivals {
                    let api_ms = api.now_ms - a.delay_ms;
                    for _ in 0..a.cluster {
                        n += 1;
                        api.add(
                            ORG,
                            ApiEntry { api_ms, json: json(n, api_ms, a.with_id, a.form), visible_from_ms: api.now_ms },
                        );
                    }
                }
            }
            Step::Pass { knobs, stop, feed_first } => {
                if *feed_first {
                    lock().delete_under("logs/");
                }
                note_untraceable(&lock(), &record, restored);
                let settings = settings_of(knobs)?;
                lock().stop.set(*stop);
                api.now_ms = pass(&api, shared(None), &settings, &record);
                lock().stop.set(None);
                let start = first_start(&lock(), calls_before).unwrap_or(start_of(knobs));
                note_start(&record, had_checkpoint, checkpoint_exists(&store), completed_before, start);
            }
            Step::Race { knobs, second, pause_after, second_stop, stall_ms } => {
                let (first_settings, second_settings) = (settings_of(knobs)?, settings_of(second)?);
                let (paused_tx, paused_rx) = mpsc::channel();
                let (resume_tx, resume_rx) = mpsc::channel();
                let mut later = api.clone();
                later.now_ms += stall_ms;
                let ended = std::thread::scope(|scope| {
                    let first = scope.spawn(|| {
                        pass(&api, shared(Some((*pause_after, paused_tx, resume_rx))), &first_settings, &record)
                    });
                    // Paused, or finished before reaching the pause (the sender is then dropped).
                    let _ = paused_rx.recv();
                    lock().now_ms = later.now_ms;
                    lock().stop.set(*second_stop);
                    let second = pass(&later, shared(None), &second_settings, &record);
                    lock().stop.set(None);
                    if *stall_ms > 0 {
                        // The feed takes what is there, a claim of the first's name among it,
                        // while the first is still stalled.
                        lock().delete_under("logs/");
                        lock().now_ms = second.max(later.now_ms + stall_ms);
                        // The first may look for traces of the organization only now.
                        note_untraceable(&lock(), &record, restored);
                    }
                    let _ = resume_tx.send(());
                    first.join().unwrap_or(second).max(second)
                });
                api.now_ms = ended.max(lock().now_ms);
                let start = first_start(&lock(), calls_before).unwrap_or(start_of(knobs));
                note_start(&record, had_checkpoint, checkpoint_exists(&store), completed_before, start);
            }
            Step::FeedDeletes => lock().delete_under("logs/"),
            Step::LoseCheckpoint | Step::LoseState => {
                let mut memory = lock();
                let whole = matches!(step, Step::LoseState);
                // What no tool can tell from a new organization is not generated: nothing left
                // that shows it was collected (README, "Moved, lost or restored state").
                if traces_remain(&memory, !whole) {
                    memory
                        .objects
                        .get_mut()
                        .retain(|k, _| if whole { !k.starts_with("state/") } else { *k != checkpoint_key() });
                }
                // Nothing was ever delivered nor recorded: the organization is new again.
                if !memory.objects.borrow().keys().any(|k| k.starts_with("state/"))
                    && !memory.created.borrow().iter().any(|(k, _)| is_ours(k))
                {
                    record.lock().unwrap_or_else(|p| p.into_inner()).start_ms = None;
                }
            }
            Step::Snapshot => {
                let memory = lock();
                snapshot = memory
                    .objects
                    .borrow()
                    .get(&checkpoint_key())
                    .map(|(bytes, _)| (bytes.clone(), memory.created.borrow().len()));
            }
            Step::Restore => {
                let memory = lock();
                // Only where every object made since the snapshot is there or remembered as
                // deleted: otherwise nothing shows the restored checkpoint is behind.
                if let Some((bytes, created)) = snapshot.clone()
                    && memory.soft_delete
                    && remembered_since(&memory, created)
                {
                    let generation = memory.objects.borrow().get(&checkpoint_key()).map_or(0, |(_, g)| *g);
                    let _ = crate::platform::ObjectStore::write_if_generation(
                        &*memory,
                        &checkpoint_key(),
                        &bytes,
                        "application/json",
                        generation,
                    );
                    restored = Some(restored.map_or(created, |r| r.min(created)));
                }
            }
            Step::Foreign => {
                n += 1;
                let mut gzip = crate::gzip::GzipWriter::new(1);
                let _ = gzip.write(format!("{{\"copied-by\":\"another tool\",\"n\":{n}}}\n").as_bytes());
                if let Ok(bytes) = gzip.finish() {
                    let key = format!("logs/2026/01/01/other-tool-{n}.json.gz");
                    let _ = crate::platform::ObjectStore::create(&*lock(), &key, &bytes, "application/gzip", None);
                }
            }
        }
        api.now_ms += 1;
    }
    lock().now_ms = api.now_ms;
    note_untraceable(&lock(), &record, restored);
    liveness(&mut api, &store, &record)?;
    check(&api, &lock(), &record.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Once faults stop: passes with a small page cap each deliver something new (or complete), and
/// one completes within a bound; or the organization is refused for a person.
fn liveness(api: &mut FakeApi, store: &Arc<Mutex<MemoryStore>>, record: &Mutex<Record>) -> Result<(), TestCaseError> {
    let knobs = Knobs {
        lag_s: 5,
        overlap_s: 120,
        lookback_s: 600,
        since_back_s: None,
        object_bytes: 1 << 20,
        page_size: 50,
        paging: Paging::Cursor,
        concurrency: 4,
        max_pages: 5,
    };
    let settings = Settings::from_raw(raw(&knobs, None)).map_err(|e| TestCaseError::fail(format!("settings: {e}")))?;
    // Past every lease a stopped or stalled pass left on a name: until then, no pass may claim
    // it, and that is time, not a fault.
    api.now_ms += 60_000 + LEASE_MS as i64 + crate::delivery::LEASE_MARGIN_MS;
    // Every capped pass delivers at least a page of new entries (as many as the API puts in one).
    let per_page = api.page_cap.unwrap_or(50).min(50);
    let bound = 3 + api.entries(ORG).len().div_ceil(per_page);
    for attempt in 0..bound {
        let lines = |store: &Arc<Mutex<MemoryStore>>| delivered_lines(&store.lock().unwrap_or_else(|p| p.into_inner()));
        let before = lines(store);
        let had_checkpoint = checkpoint_exists(store);
        let calls_before = store.lock().unwrap_or_else(|p| p.into_inner()).calls.borrow().len();
        let completed_before = record.lock().unwrap_or_else(|p| p.into_inner()).passes_completed;
        store.lock().unwrap_or_else(|p| p.into_inner()).now_ms = api.now_ms;
        let began = api.now_ms;
        let (after, result) =
            passed(api, Shared { store: store.clone(), pause: RefCell::new(None) }, &settings, record);
        api.now_ms = after.now_ms + 1;
        api.queries = after.queries;
        let start = first_start(&store.lock().unwrap_or_else(|p| p.into_inner()), calls_before)
            .unwrap_or(began - knobs.lookback_s as i64 * 1000);
        note_start(record, had_checkpoint, checkpoint_exists(store), completed_before, start);
        let Some(failure) = result.failures.first() else {
            return Ok(());
        };
        match failure.kind {
            crate::settings::ErrorKind::Checkpoint => return Ok(()),
            crate::settings::ErrorKind::PageCap => {
                prop_assert!(
                    lines(store) > before,
                    "capped pass {} delivered nothing new: {}",
                    attempt + 1,
                    failure.message
                );
            }
            _ => prop_assert!(false, "a pass without faults failed: {:?}", failure),
        }
    }
    prop_assert!(false, "no pass completed within {} passes without faults", bound);
    Ok(())
}

/// The same 3000 schedules on every run by default, so that CI judges a change and not a draw;
/// `PROPTEST_RNG_SEED=<n>` (with `PROPTEST_CASES=<n>`) explores others.
const SEED: u64 = 20_261_129;

fn config() -> ProptestConfig {
    let config = ProptestConfig { cases: 3000, max_shrink_iters: 4096, ..ProptestConfig::default() };
    if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
        config
    } else {
        ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(SEED), ..config }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_schedule_delivers_each_entry_exactly_once((soft_delete, page_cap, steps) in schedule()) {
        run_schedule(soft_delete, page_cap, &steps)?;
    }
}
