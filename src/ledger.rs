//! What the destination shows of an organization that has no checkpoint.
//!
//! A missing checkpoint is no proof of a new organization: state is moved (`--state-dest`,
//! `--state-prefix`), lost with a container's disk, deleted by hand, or recreated, while the
//! organization's objects stay where the feed reads them. Starting anew from `--since` or the
//! lookback would then deliver again what those objects hold, or skip what came after them,
//! at exit 0. So before a first checkpoint is made, the destination is asked ([`search`]):
//!
//! - its `status.json` in the state, which every pass writes;
//! - its objects under the log prefix, live and deleted ones the store still keeps: one listing
//!   narrowed to its names ([`ObjectStore::find`]) a month folder at a time, newest first, back
//!   13 months.
//!
//! With no trace, the organization is new. Where its newest objects can be read, the bucket is
//! the ledger: the checkpoint is rebuilt from them (the cursor at their last entry, the
//! overlap's keys from their entries), and collection goes on after what was delivered. Where
//! they cannot (the feed deleted them and soft delete keeps names, not bytes; or only the status
//! shows), the organization is refused with one line naming the evidence, until a person puts
//! the checkpoint back or starts anew on purpose (`--start-anew`).

use crate::checkpoint::{self, Checkpoint};
use crate::entry;
use crate::gzip::gunzip;
use crate::platform::{ObjectStore, Stored, storage_failure};
use crate::settings::{ErrorKind, Failure, Settings};
use crate::{status, window};
use std::collections::{BTreeMap, HashSet};

/// Most keys one listing returns of each kind: more than a month of one organization's objects
/// written a minute apart.
const FIND_LIMIT: u32 = 100_000;
/// How many month folders back a search for a missing checkpoint's organization goes: further
/// than the audit log's retention.
const MONTHS_BACK: usize = 13;
const DAY_MS: i64 = 86_400_000;
/// How long a store that tells deleted objects is taken to remember them: Cloud Storage's
/// shortest soft delete retention (the default).
const DELETIONS_KEPT_MS: i64 = 7 * DAY_MS;

/// What the destination says of an organization without a checkpoint.
#[derive(Debug)]
pub enum Found {
    /// No trace: a new organization.
    Nothing,
    /// Its newest objects, read back: collection goes on after them. Where the store cannot
    /// tell which objects the feed deleted, entries from `unsure.0` to `unsure.1` that only such
    /// objects held are delivered again (and the summary says so). `began`: where collection
    /// began, where it can be told.
    Rebuilt { checkpoint: Box<Checkpoint>, objects: usize, unsure: Option<(i64, i64)>, began: Option<i64> },
}

/// The organization's objects in the destination, by day: live ones, and deleted ones that are
/// not live again.
#[derive(Debug, Default)]
struct Day {
    live: Vec<String>,
    deleted: Vec<String>,
}

/// The organization's objects by day folder `(year, month, day)`.
type Days = BTreeMap<(i32, u32, u32), Day>;

/// A month folder, `(year, month)`: the unit of a search, so that one listing holds a month of
/// one organization's objects at most (a busy one writes about 45,000 in a month).
type Month = (i32, u32);

fn month_of(ms: i64) -> Month {
    let (y, m, _) = window::utc_day(ms);
    (y, m)
}

fn month_before((y, m): Month) -> Month {
    if m == 1 { (y - 1, 12) } else { (y, m - 1) }
}

/// One month's objects of the organization.
struct Listed {
    days: Days,
    /// The store tells deleted objects.
    tells_deleted: bool,
    /// The listing reached its limit: objects may be missing from it.
    cut: bool,
}

/// The organization's objects in one month folder, live and deleted, by day: one narrowed
/// listing ([`ObjectStore::find`]) of at most `limit` of each.
fn month_objects<S: ObjectStore + ?Sized>(
    store: &S,
    settings: &Settings,
    org: &str,
    (y, m): Month,
    limit: u32,
) -> Result<Listed, Failure> {
    let folder = format!("{}{y:04}/{m:02}/", settings.key_prefix);
    let found = store
        .find(&folder, &format!("mulesoft-audit-{org}"), limit)
        .map_err(|e| storage_failure("looking for the organization's objects under", &folder, &e))?;
    let cut = found.live.len() >= limit as usize || found.deleted.as_ref().is_some_and(|d| d.len() >= limit as usize);
    let mut days = Days::new();
    let ours = |key: &String| window::object_name(key, &settings.key_prefix, org).map(|name| name.day);
    let live: HashSet<&String> = found.live.iter().collect();
    for key in &found.live {
        if let Some(day) = ours(key) {
            days.entry(day).or_default().live.push(key.clone());
        }
    }
    for key in found.deleted.iter().flatten().filter(|k| !live.contains(k)) {
        if let Some(day) = ours(key) {
            days.entry(day).or_default().deleted.push(key.clone());
        }
    }
    Ok(Listed { days, tells_deleted: found.deleted.is_some(), cut })
}

/// Whether a status object shows the organization was collected: a pass that made its
/// checkpoint, succeeded, or wrote. A pass that failed before making one (a wrong secret, an
/// outage, a time limit) leaves a status that shows nothing of the kind.
pub(crate) fn shows_collection(status: &status::OrgStatus) -> bool {
    status.started_ms.is_some() || status.last_success_ms.is_some() || status.objects_written > 0
}

/// Looks for the organization's traces (module docs) before a first checkpoint is made; a
/// refusal is its failure. Entries without a time are kept until `now_ms`: the window they came
/// from ended before it.
pub fn search<S: ObjectStore + ?Sized>(
    store: &S,
    settings: &Settings,
    org: &str,
    now_ms: i64,
    random: u64,
) -> Result<Found, Failure> {
    let status_key = status::status_key(&settings.state_prefix, org);
    let status = store
        .read(&status_key)
        .map_err(|e| storage_failure("reading status", &status_key, &e))?
        .and_then(|stored| status::OrgStatus::decode(&stored.data))
        .filter(shows_collection);
    let checkpoint_key = window::checkpoint_key(&settings.state_prefix, org);
    let refuse = |evidence: String, why: &str| {
        Failure::new(
            ErrorKind::Checkpoint,
            format!(
                "organization {org} has no checkpoint `{checkpoint_key}`, but {evidence}: it was collected before, and {why}, so starting anew would deliver its entries again or skip some; nothing was collected. Put the checkpoint back (the state moved? point --state-dest and --state-prefix at it), or start anew on purpose with --start-anew and --since at the first entry not yet delivered"
            ),
        )
    };
    // The newest month with objects of the organization, back to the horizon.
    let mut month = month_of(now_ms);
    let mut listed = None;
    for _ in 0..MONTHS_BACK {
        let found = month_objects(store, settings, org, month, FIND_LIMIT)?;
        if !found.days.is_empty() {
            listed = Some(found);
            break;
        }
        month = month_before(month);
    }
    let Some(mut listed) = listed else {
        if status.is_some() {
            return Err(refuse(
                format!("its status `{status_key}` shows passes that collected it"),
                "none of its objects is left to read where delivery got to",
            ));
        }
        return Ok(Found::Nothing);
    };
    if listed.cut {
        return Err(refuse(
            format!("over {FIND_LIMIT} of its objects are in one month folder"),
            "too many to find where delivery got to",
        ));
    }
    let Some((&newest, found)) = listed.days.iter().next_back() else {
        return Ok(Found::Nothing);
    };
    let (newest_live, newest_deleted) = (found.live.clone(), found.deleted.len());
    let folder = window::day_folder(&settings.key_prefix, newest);
    if newest_deleted > 0 {
        return Err(refuse(
            format!("{newest_deleted} of its newest objects, in {folder}, were deleted (the feed's source deletion)"),
            "what they held cannot be read back",
        ));
    }
    let mut entries = read_entries(store, &newest_live)?;
    let Some(last_ms) = entries.iter().filter_map(|(t, _)| *t).max() else {
        return Err(refuse(
            format!("its newest objects, in {folder}, hold no entry with a readable time"),
            "where delivery got to cannot be told",
        ));
    };
    let floor = last_ms.saturating_sub(settings.overlap_ms);
    // The overlap may reach into the months before.
    let mut earlier = month_before(month);
    while month_of(floor) <= earlier {
        let before = month_objects(store, settings, org, earlier, FIND_LIMIT)?;
        listed.tells_deleted &= before.tells_deleted;
        listed.days.extend(before.days);
        earlier = month_before(earlier);
    }
    // Never back before where collection began: the status says, or `--since` (what came
    // before was another collector's to deliver), unless the objects hold entries from before
    // it (a `--since` left set long after collection began: the objects show it began earlier).
    // Where neither does, the whole overlap is read (late entries are not lost), and the
    // summary says from when.
    let began = status.as_ref().and_then(|s| s.started_ms).or(settings.since_ms.filter(|since| *since <= last_ms));
    let floor = floor.max(began.unwrap_or(i64::MIN)).min(last_ms);
    let mut objects = newest_live.len();
    // The overlap reaches into the days before: their entries' keys are needed too.
    let first_day = window::utc_day(floor);
    if first_day < newest {
        for (&day, before) in listed.days.range(first_day..newest) {
            if !before.deleted.is_empty() {
                return Err(refuse(
                    format!(
                        "{} of its objects in {}, within the overlap before its newest entry, were deleted (the feed's source deletion)",
                        before.deleted.len(),
                        window::day_folder(&settings.key_prefix, day)
                    ),
                    "what they held cannot be read back",
                ));
            }
            entries.extend(read_entries(store, &before.live)?);
            objects += before.live.len();
        }
    }
    let mut checkpoint = Checkpoint::new(org, last_ms, Some(checkpoint::lineage(random)));
    checkpoint.read_from_ms = floor;
    checkpoint.superseded = lineages_in(&listed.days, settings, org);
    checkpoint.seen = entries
        .into_iter()
        .map(|(time, (key, keep))| (key, time.map_or(now_ms, |_| keep)))
        .filter(|(_, keep)| *keep >= floor)
        .collect();
    // A store that cannot tell deleted objects, or whose memory of them may not reach back to
    // the floor, may have lost some the feed took, in the overlap or after it: their entries
    // come again, said.
    let unsure = (!listed.tells_deleted || floor < now_ms.saturating_sub(DELETIONS_KEPT_MS)).then_some((floor, now_ms));
    Ok(Found::Rebuilt { checkpoint: Box::new(checkpoint), objects, unsure, began })
}

/// Every lineage among the organization's objects, each with the highest number seen.
fn lineages_in(days: &Days, settings: &Settings, org: &str) -> Vec<(String, u64)> {
    let mut lineages: BTreeMap<String, u64> = BTreeMap::new();
    for (lineage, seq) in days
        .values()
        .flat_map(|day| day.live.iter().chain(&day.deleted))
        .filter_map(|key| lineage_of(key, settings, org))
    {
        let highest = lineages.entry(lineage.to_string()).or_default();
        *highest = (*highest).max(seq);
    }
    lineages.into_iter().collect()
}

/// The lineages of the organization's objects from `from_ms`'s month on, which a checkpoint
/// started anew on purpose (`--start-anew`) leaves behind it.
pub fn lineages<S: ObjectStore + ?Sized>(
    store: &S,
    settings: &Settings,
    org: &str,
    from_ms: i64,
    now_ms: i64,
) -> Result<Vec<(String, u64)>, Failure> {
    let mut days = Days::new();
    let mut month = month_of(now_ms);
    let first = month_of(from_ms.min(now_ms));
    for _ in 0..MONTHS_BACK {
        days.extend(month_objects(store, settings, org, month, FIND_LIMIT)?.days);
        if month <= first {
            break;
        }
        month = month_before(month);
    }
    Ok(lineages_in(&days, settings, org))
}

/// The lineage in the name of an object of `org`'s (`""` for a name without one) and its
/// number; `None` for a repair's object or another organization's.
fn lineage_of<'k>(key: &'k str, settings: &Settings, org: &str) -> Option<(&'k str, u64)> {
    let name = window::object_name(key, &settings.key_prefix, org).filter(|name| !name.repair)?;
    Some((name.lineage.unwrap_or_default(), name.seq))
}

/// Another spelling of `org` under which the state holds a checkpoint, asked where `org` has
/// none: an id is a UUID, the same in any case, and an organization collected as `abc` keeps its
/// checkpoint, objects and status under that spelling when it is configured as `ABC` (one
/// checkpoint an organization, nothing delivered twice). Refused where two spellings have one.
pub fn other_spelling<S: ObjectStore + ?Sized>(
    store: &S,
    settings: &Settings,
    org: &str,
) -> Result<Option<String>, Failure> {
    let found = store
        .find(&settings.state_prefix, window::CHECKPOINT_NAME, FIND_LIMIT)
        .map_err(|e| storage_failure("listing checkpoints under", &settings.state_prefix, &e))?;
    let mut others: Vec<&str> = found
        .live
        .iter()
        .filter_map(|key| window::checkpoint_org(&settings.state_prefix, key))
        .filter(|other| other.eq_ignore_ascii_case(org) && *other != org)
        .collect();
    others.dedup();
    match others.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).to_string())),
        many => Err(Failure::new(
            ErrorKind::Checkpoint,
            format!(
                "organization {org} has checkpoints under {} spellings ({}): an id is the same in any case, so its entries may have been delivered twice already; keep the newest checkpoint, delete the others, and run `verify`",
                many.len(),
                many.join(", ")
            ),
        )),
    }
}

/// The objects that show this checkpoint is behind, live or deleted, in the days it may still
/// write to (from its read floor's, since objects are filed under their first entry's day, to
/// today): its own lineage's numbered from its `next_seq` on, which only a later state of it gave
/// (restored from a backup, or copied back); and another lineage's that it was not rebuilt from,
/// or numbered past the highest it saw then, which only another checkpoint of the organization
/// wrote (this one restored over it, or an old deployment still writing). A checkpoint without a
/// lineage (made before version 3) is not searched.
pub fn ahead<S: ObjectStore + ?Sized>(
    store: &S,
    settings: &Settings,
    checkpoint: &Checkpoint,
    now_ms: i64,
) -> Result<Vec<String>, Failure> {
    let Some(own) = &checkpoint.lineage else {
        return Ok(Vec::new());
    };
    let org = &checkpoint.org_id;
    let mut later = Vec::new();
    let first = window::utc_day(checkpoint.read_from_ms.min(now_ms));
    let mut at = now_ms;
    loop {
        let day = window::utc_day(at);
        if day < first {
            break;
        }
        at -= DAY_MS;
        let folder = window::day_folder(&settings.key_prefix, day);
        let found = store
            .find(&folder, &format!("mulesoft-audit-{org}"), FIND_LIMIT)
            .map_err(|e| storage_failure("looking for objects under", &folder, &e))?;
        let behind = |key: &&String| match lineage_of(key, settings, org) {
            Some((lineage, seq)) if lineage == own => seq >= checkpoint.next_seq,
            Some((lineage, seq)) => {
                checkpoint.superseded.iter().find(|(l, _)| l == lineage).is_none_or(|(_, highest)| seq > *highest)
            }
            None => false,
        };
        later.extend(found.live.iter().chain(found.deleted.iter().flatten()).filter(behind).cloned());
    }
    later.sort();
    later.dedup();
    Ok(later)
}

/// Each entry of the objects: its time (if readable) and its dedup key with how long to keep it.
type Read = (Option<i64>, (String, i64));

fn read_entries<S: ObjectStore + ?Sized>(store: &S, keys: &[String]) -> Result<Vec<Read>, Failure> {
    let mut entries = Vec::new();
    for key in keys {
        let Some(Stored { data: bytes, .. }) =
            store.read(key).map_err(|e| storage_failure("reading log object", key, &e))?
        else {
            // Gone since the listing: the feed took it; what it held is not known.
            return Err(Failure::new(
                ErrorKind::Conflict,
                format!(
                    "log object `{key}` went while the checkpoint was being rebuilt from it; the next pass looks again"
                ),
            ));
        };
        let plain = gunzip(&bytes)
            .map_err(|e| Failure::new(ErrorKind::Storage, format!("log object `{key}` is not gzip: {}", e.0)))?;
        for line in plain.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let text = String::from_utf8_lossy(line);
            let meta = entry::meta(&text);
            let keep = meta.timestamp_ms.map_or(i64::MAX, |t| t.saturating_add(meta.precision_ms - 1));
            entries.push((meta.timestamp_ms, (meta.key, keep)));
        }
    }
    Ok(entries)
}
