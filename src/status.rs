//! What each organization's passes did, kept beside its checkpoint so that `status` can answer
//! from the state alone: the last success, the last failure, failures in a row, totals.
//!
//! It is a separate object (`<state prefix><org>/status.json`), not part of the checkpoint: the
//! checkpoint's compare-and-swap protocol stays exactly as it is, and a status that cannot be
//! written (a conflict with another pass, an outage) costs a line of history, never an entry.

use crate::platform::ObjectStore;
use crate::settings::{Failure, OrgSummary, Settings};
pub use crate::window::{status_key, status_org};
use serde::{Deserialize, Serialize};

/// Identifies our status objects.
pub const FORMAT: &str = "mulesoft-audit/status";

/// Organizations by the state's spelling: `ids` added to `orgs` unless already there in any case
/// (an id is the same in any case; the state's spelling is the one its checkpoint has, see
/// [`crate::ledger::other_spelling`]). Add those with checkpoints first.
pub fn add_spellings(orgs: &mut Vec<String>, ids: impl IntoIterator<Item = String>) {
    for id in ids {
        if !orgs.iter().any(|o| o.eq_ignore_ascii_case(&id)) {
            orgs.push(id);
        }
    }
}

/// One organization's pass history, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrgStatus {
    pub format: String,
    pub org_id: String,
    /// Where collection began (Unix ms), recorded by the pass that made the checkpoint: `verify`
    /// checks nothing earlier unless asked to. Unknown for checkpoints older than status objects.
    pub started_ms: Option<i64>,
    /// When the last pass that succeeded for it ended (Unix ms).
    pub last_success_ms: Option<i64>,
    /// The last failure, whenever it was.
    pub last_failure: Option<LastFailure>,
    /// Passes failed since the last success.
    pub failed_in_a_row: u32,
    /// Entries and objects delivered by every pass that recorded its status.
    pub entries_written: u64,
    pub objects_written: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFailure {
    pub at_ms: i64,
    /// The report's kind name.
    pub kind: String,
    pub message: String,
}

impl OrgStatus {
    /// Adds a pass's outcome for this organization: what it wrote (also when it then failed),
    /// and whether it failed.
    pub fn add(&mut self, now_ms: i64, summary: Option<&OrgSummary>, failure: Option<&Failure>) {
        if let Some(summary) = summary {
            self.entries_written += summary.entries_written;
            self.objects_written += summary.objects_written().count() as u64;
        }
        match failure {
            None => {
                self.last_success_ms = Some(now_ms);
                self.failed_in_a_row = 0;
            }
            Some(f) => self.failed(now_ms, f.kind.name(), &f.message),
        }
    }

    /// A failed pass: `kind` is the report's kind name (an [`ErrorKind`](crate::settings::ErrorKind)'s,
    /// or the host's for a pass it stopped, such as `time-limit`).
    pub fn failed(&mut self, now_ms: i64, kind: &str, message: &str) {
        self.failed_in_a_row += 1;
        self.last_failure = Some(LastFailure { at_ms: now_ms, kind: kind.to_string(), message: message.to_string() });
    }

    /// Whether a pass that began at `pass_started_ms` recorded its outcome here.
    fn recorded_since(&self, pass_started_ms: i64) -> bool {
        self.last_success_ms.is_some_and(|t| t >= pass_started_ms)
            || self.last_failure.as_ref().is_some_and(|f| f.at_ms >= pass_started_ms)
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Self>(bytes).ok().filter(|s| s.format == FORMAT)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Records a pass's outcome for `org` in its status object, by compare-and-swap so that two
/// passes do not lose each other's counts. Best effort (see the module docs): what kept it from
/// being recorded is returned, for the pass's summary to say.
pub fn record<S: ObjectStore + ?Sized>(
    store: &S,
    state_prefix: &str,
    org: &str,
    now_ms: i64,
    started_ms: Option<i64>,
    summary: Option<&OrgSummary>,
    failure: Option<&Failure>,
) -> Result<(), String> {
    update(store, state_prefix, org, |status| {
        status.add(now_ms, summary, failure);
        // A pass that made the checkpoint says where collection (again) began: a checkpoint
        // deleted and made anew from a later start must not leave the old start on record, or
        // a repair would deliver again what the old checkpoint's objects hold.
        status.started_ms = started_ms.or(status.started_ms);
        true
    })
}

/// A failure that kept the pass from each of `orgs` (its organizations could not be listed, or
/// a failure every organization would meet stopped it), recorded for each.
pub fn record_failed<'o, S: ObjectStore + ?Sized>(
    store: &S,
    state_prefix: &str,
    orgs: impl IntoIterator<Item = &'o String>,
    now_ms: i64,
    failure: &Failure,
) {
    // Nowhere to say it failed: these organizations have no summary.
    for org in orgs {
        let _ = record(store, state_prefix, org, now_ms, None, None, Some(failure));
    }
}

/// A pass the host stopped (its time or memory limit, a trap): recorded as failed for each of
/// `orgs` this shard owns (the configured ones and those with state: business groups found by
/// discovery are only known from their state) that the pass, begun at `pass_started_ms`, did
/// not record itself, so that `status` and its `--max-lag` see it. Best effort, like [`record`].
pub fn record_stopped<S: ObjectStore + ?Sized>(
    store: &S,
    settings: &Settings,
    orgs: &[String],
    pass_started_ms: i64,
    now_ms: i64,
    kind: &str,
    message: &str,
) {
    for org in orgs.iter().filter(|o| settings.owns(o)) {
        let _ = update(store, &settings.state_prefix, org, |status| {
            let fresh = !status.recorded_since(pass_started_ms);
            if fresh {
                status.failed(now_ms, kind, message);
            }
            fresh
        });
    }
}

/// Changes `org`'s status object by compare-and-swap, a few times over a concurrent writer;
/// `change` says whether there is anything to write. The error says why nothing was written.
fn update<S: ObjectStore + ?Sized>(
    store: &S,
    state_prefix: &str,
    org: &str,
    change: impl Fn(&mut OrgStatus) -> bool,
) -> Result<(), String> {
    use crate::platform::StoreError;
    let key = status_key(state_prefix, org);
    for _ in 0..3 {
        let (mut status, generation) = match store.read(&key) {
            Ok(Some(stored)) => (OrgStatus::decode(&stored.data).unwrap_or_default(), stored.generation),
            Ok(None) => (OrgStatus::default(), 0),
            Err(e) => return Err(format!("reading `{key}`: {e}")),
        };
        status.format = FORMAT.to_string();
        status.org_id = org.to_string();
        if !change(&mut status) {
            return Ok(());
        }
        match store.write_if_generation(&key, &status.encode(), crate::platform::CONTENT_TYPE_STATE, generation) {
            Err(StoreError::GenerationMismatch) => continue,
            Err(e) => return Err(format!("writing `{key}`: {e}")),
            Ok(_) => return Ok(()),
        }
    }
    Err(format!("`{key}` changed under three attempts in a row"))
}

/// One organization as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub org_id: String,
    /// Every entry before this time is delivered (RFC 3339); `None` without a checkpoint.
    pub cursor: Option<String>,
    /// How far the cursor is behind now, in seconds.
    pub lag_seconds: Option<i64>,
    pub last_success: Option<String>,
    pub last_failure: Option<RowFailure>,
    pub failed_in_a_row: u32,
    pub entries_written: u64,
    pub objects_written: u64,
    /// A pass stopped between creating an object and recording it; the next pass settles it.
    pub pending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowFailure {
    pub at: String,
    pub kind: String,
    pub message: String,
}

/// The row for an organization from its checkpoint (`cursor_ms`, whether a pending object
/// waits) and its status object, at `now_ms`.
pub fn row(org_id: &str, checkpoint: Option<(i64, bool)>, status: Option<&OrgStatus>, now_ms: i64) -> Row {
    let time = crate::window::rfc3339_ms;
    let status = status.cloned().unwrap_or_default();
    Row {
        org_id: org_id.to_string(),
        cursor: checkpoint.map(|(cursor, _)| time(cursor)),
        lag_seconds: checkpoint.map(|(cursor, _)| now_ms.saturating_sub(cursor) / 1000),
        last_success: status.last_success_ms.map(time),
        last_failure: status.last_failure.map(|f| RowFailure { at: time(f.at_ms), kind: f.kind, message: f.message }),
        failed_in_a_row: status.failed_in_a_row,
        entries_written: status.entries_written,
        objects_written: status.objects_written,
        pending: checkpoint.is_some_and(|(_, pending)| pending),
    }
}

/// `status`'s exit code: 1 when an organization is further behind than `max_lag_seconds` (or has
/// no checkpoint at all), else 0.
pub fn exit_code(rows: &[Row], max_lag_seconds: Option<i64>) -> u8 {
    let behind = |r: &Row| r.lag_seconds.is_none_or(|lag| max_lag_seconds.is_some_and(|max| lag > max));
    u8::from(max_lag_seconds.is_some() && rows.iter().any(behind))
}

/// `status --json`: `{"orgs": [rows]}`.
pub fn json(rows: &[Row]) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        orgs: &'a [Row],
    }
    serde_json::to_string(&Out { orgs: rows }).unwrap_or_default()
}

/// `status` as a table for a person.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<38} {:<24} {:>10} {:<24} {:>12} {}\n",
        "ORGANIZATION", "DELIVERED UP TO", "LAG", "LAST SUCCESS", "ENTRIES", "LAST FAILURE"
    );
    for r in rows {
        let lag = r.lag_seconds.map_or("-".to_string(), human_seconds);
        let failure = match &r.last_failure {
            Some(f) => {
                let streak =
                    if r.failed_in_a_row > 0 { format!(" ({} in a row)", r.failed_in_a_row) } else { String::new() };
                format!("{} {}{streak}: {}", f.at, f.kind, f.message)
            }
            None => "-".to_string(),
        };
        out.push_str(&format!(
            "{:<38} {:<24} {:>10} {:<24} {:>12} {}{}\n",
            r.org_id,
            r.cursor.as_deref().unwrap_or("(no checkpoint)"),
            lag,
            r.last_success.as_deref().unwrap_or("-"),
            r.entries_written,
            failure,
            if r.pending { " [an object awaits recovery]" } else { "" }
        ));
    }
    out
}

/// `95s`, `12m`, `3h10m`, `2d4h`.
fn human_seconds(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ErrorKind;
    use crate::testing::doubles::MemoryStore;

    #[test]
    fn a_status_that_cannot_be_recorded_says_which_object_and_why() {
        let mut store = MemoryStore::default();
        store.stop.set(Some((0, crate::testing::doubles::Stop::Before)));
        store.stops_in_search = true;
        let why = record(&store, "state/", "org-1", 1_000, None, Some(&summary(3)), None).unwrap_err();
        assert_eq!(why, "reading `state/org-1/status.json`: store unavailable: the pass was stopped");
        assert!(store.objects.borrow().is_empty());
    }

    #[test]
    fn a_stopped_pass_is_recorded_for_the_organizations_it_did_not_record() {
        let mut world = crate::testing::scenarios::World::new();
        world.raw.org_ids = (1..=40).map(|k| format!("org-{k}")).collect();
        world.raw.shard_count = 2;
        let settings = world.settings();
        let owned: Vec<&String> = settings.org_ids.iter().filter(|o| settings.owns(o)).collect();
        let (done, stopped) = (owned[0], owned[1]);
        let store = MemoryStore::default();
        record(&store, "state/", stopped, 500, None, Some(&summary(3)), None).unwrap();
        // The pass began at 1,000 and recorded one organization before the host stopped it.
        record(&store, "state/", done, 1_500, None, Some(&summary(5)), None).unwrap();
        let orgs = settings.org_ids.clone();
        record_stopped(&store, &settings, &orgs, 1_000, 2_000, "time-limit", "the pass ran past --max-run-time 1s");
        let read = |org: &str| {
            store.read(&status_key("state/", org)).unwrap().and_then(|stored| OrgStatus::decode(&stored.data))
        };
        let done = read(done).unwrap();
        assert_eq!((done.last_success_ms, done.failed_in_a_row, done.last_failure), (Some(1_500), 0, None));
        let stopped = read(stopped).unwrap();
        assert_eq!((stopped.last_success_ms, stopped.failed_in_a_row), (Some(500), 1));
        assert_eq!(stopped.last_failure.map(|f| (f.at_ms, f.kind)), Some((2_000, "time-limit".to_string())));
        assert_eq!(stopped.entries_written, 3, "its totals kept");
        let other = settings.org_ids.iter().find(|o| !settings.owns(o)).unwrap();
        assert!(read(other).is_none(), "another shard's organization is not this pass's");
    }

    fn summary(entries: u64) -> OrgSummary {
        OrgSummary {
            org_id: "org-1".into(),
            entries_written: entries,
            objects: vec!["logs/a".into(), "(claimed) logs/b".into()],
            ..OrgSummary::default()
        }
    }

    #[test]
    fn passes_add_up_and_a_success_ends_a_streak() {
        let store = MemoryStore::default();
        let failure = Failure::new(ErrorKind::Unavailable, "HTTP 503 for 6 attempts");
        record(&store, "state/", "org-1", 1_000, Some(500), Some(&summary(10)), None).unwrap();
        record(&store, "state/", "org-1", 2_000, None, Some(&summary(5)), Some(&failure)).unwrap();
        record(&store, "state/", "org-1", 3_000, Some(900), None, Some(&failure)).unwrap();
        let bytes = store.read("state/org-1/status.json").unwrap().unwrap().data;
        let status = OrgStatus::decode(&bytes).unwrap();
        assert_eq!((status.entries_written, status.objects_written), (15, 2));
        assert_eq!(status.started_ms, Some(900), "where collection began, by the pass that made the checkpoint last");
        assert_eq!((status.last_success_ms, status.failed_in_a_row), (Some(1_000), 2));
        assert_eq!(status.last_failure.as_ref().map(|f| (f.at_ms, f.kind.as_str())), Some((3_000, "unavailable")));
        record(&store, "state/", "org-1", 4_000, None, Some(&summary(0)), None).unwrap();
        let bytes = store.read("state/org-1/status.json").unwrap().unwrap().data;
        let status = OrgStatus::decode(&bytes).unwrap();
        assert_eq!((status.last_success_ms, status.failed_in_a_row), (Some(4_000), 0));
        assert!(status.last_failure.is_some(), "the last failure stays on record");
    }

    #[test]
    fn rows_lag_and_the_exit_code() {
        let hour = 3_600_000;
        let status = OrgStatus { failed_in_a_row: 3, ..OrgStatus::default() };
        let fresh = row("org-1", Some((10 * hour, false)), Some(&status), 10 * hour + 95_000);
        assert_eq!(fresh.lag_seconds, Some(95));
        let stale = row("org-2", Some((7 * hour, true)), None, 10 * hour);
        assert_eq!(stale.lag_seconds, Some(3 * 3600));
        let never = row("org-3", None, None, 10 * hour);
        assert_eq!(exit_code(std::slice::from_ref(&fresh), Some(7200)), 0);
        assert_eq!(exit_code(&[fresh.clone(), stale.clone()], Some(7200)), 1);
        assert_eq!(exit_code(&[fresh.clone(), stale.clone()], None), 0, "no threshold, no verdict");
        assert_eq!(exit_code(&[fresh.clone(), never.clone()], Some(7200)), 1, "never collected is behind");
        let table = table(&[fresh, stale, never]);
        assert!(table.contains("95s") && table.contains("3h0m") && table.contains("(no checkpoint)"), "{table}");
        assert!(table.contains("[an object awaits recovery]"), "{table}");
    }
}
