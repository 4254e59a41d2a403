//! `verify`: proves, per organization and window, that every entry the API shows was delivered
//! exactly once, by comparing the API's entries (identity and time only) with the entries of the
//! delivered objects. With `repair`, entries found missing are delivered in new objects through
//! the same write order and recovery as a pass ([`Role::Repair`]), and the objects are read again.
//!
//! The window ends, at the latest, just before the checkpoint's read floor: entries the collector
//! will never read again. Later ones may still be delivered by the next pass's overlap (entries
//! that became visible late), so neither verifying nor repairing them could be right yet.

use crate::anypoint::Client;
use crate::delivery::{Delivery, Entry, Fresh, Role};
use crate::entry;
use crate::gzip::gunzip;
use crate::paging::{Slice, page_request, read_page};
use crate::platform::{Method, ObjectStore, Platform, Stored, storage_failure};
use crate::settings::{ErrorKind, Failure, OrgSummary, Settings};
use crate::status::{OrgStatus, status_key};
use crate::window;
use std::collections::{HashMap, HashSet};

mod report;
pub use report::{MissingEntry, OrgVerdict, VerifyReport};

/// The window verified when none is given: the last day before the read floor.
const DEFAULT_SPAN_MS: i64 = 86_400_000;
/// Missing entries named in the report, oldest first.
const NAMED_MISSING: usize = 10;

/// What was asked: the window's bounds (Unix ms, inclusive), when given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub repair: bool,
}

/// What the host saw of the store, in this order: each organization's checkpoint, then the
/// objects under the log prefix. Objects a pass creates after the listing hold only entries from
/// the read floor the checkpoint had then on, so a window that ends before it is judged on a
/// listing that is complete for it.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub objects: Vec<String>,
    pub checkpoints: Vec<ListedCheckpoint>,
    /// Deleted objects the store still keeps (soft delete), listed after `objects`; `None` where
    /// it keeps none or cannot say.
    pub deleted: Option<Vec<String>>,
}

/// An organization's checkpoint as the host read it before listing the objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedCheckpoint {
    pub org_id: String,
    pub read_from_ms: i64,
    pub next_seq: u64,
    /// Its lineage, part of its objects' names (none before version 3).
    pub lineage: Option<String>,
}

/// Verifies (and with `request.repair`, repairs) every configured organization against what
/// the host listed.
pub fn verify<P: Platform, S: ObjectStore + ?Sized>(
    platform: &mut P,
    store: &S,
    settings: &Settings,
    request: Request,
    listing: &Listing,
) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut client = Client::new(platform, settings);
    let orgs = match crate::anypoint::organizations(&mut client, settings) {
        Ok(orgs) => orgs,
        Err(mut f) => {
            f.message = crate::settings::scrub(&f.message, &settings.client_secret);
            report.failures.push(f);
            return report;
        }
    };
    // What the feed ingests besides: every object under the prefix not named the collector's
    // way, read once for every organization.
    let foreign_keys: Vec<&str> =
        listing.objects.iter().map(String::as_str).filter(|k| !collector_named(k, &settings.key_prefix)).collect();
    let foreign = match read_foreign(store, &foreign_keys) {
        Ok(foreign) => foreign,
        Err(mut f) => {
            f.message = crate::settings::scrub(&f.message, &settings.client_secret);
            report.failures.push(f);
            return report;
        }
    };
    for org in orgs.iter().filter(|o| settings.owns(o)) {
        // As the state spells it: an id is the same in any case ([`crate::ledger::other_spelling`]).
        let mut spelled = listing.checkpoints.iter().map(|c| &c.org_id);
        let org = spelled
            .clone()
            .find(|c| *c == org)
            .or_else(|| spelled.find(|c| c.eq_ignore_ascii_case(org)))
            .unwrap_or(org);
        let before = client.stats.requests;
        match verify_org(&mut client, store, settings, request, listing, &foreign, org) {
            Ok(mut verdict) => {
                verdict.requests = client.stats.requests - before;
                report.orgs.push(verdict);
            }
            Err(mut failure) => {
                failure.org_id = Some(org.clone());
                failure.message = crate::settings::scrub(&failure.message, &settings.client_secret);
                // A setting an organization's verification needs (`--since` for a repair whose
                // start is not on record) is that organization's: the others go on.
                let stop = failure.kind.stops_the_pass() && failure.kind != ErrorKind::Config;
                report.failures.push(failure);
                if stop {
                    break;
                }
            }
        }
    }
    report
}

/// What the delivered objects hold of a window.
#[derive(Default)]
struct Delivered {
    /// Key → copies.
    copies: HashMap<String, u64>,
    outside: u64,
    objects: u64,
    /// Listed objects gone when read.
    vanished: u64,
}

/// One organization, in its steps: the window, what the checkpoint's objects show, settling a
/// stopped repair, reading the delivered objects, reading the API's entries (and with a repair,
/// delivering those missing), and the tally.
fn verify_org<P: Platform, S: ObjectStore + ?Sized>(
    client: &mut Client<'_, P>,
    store: &S,
    settings: &Settings,
    request: Request,
    listing: &Listing,
    foreign: &Foreign,
    org: &str,
) -> Result<OrgVerdict, Failure> {
    let Some(listed) = listing.checkpoints.iter().find(|c| c.org_id == org) else {
        return Err(Failure::new(
            ErrorKind::Checkpoint,
            format!(
                "no checkpoint `{}`: this organization was never collected into this destination",
                window::checkpoint_key(&settings.state_prefix, org)
            ),
        ));
    };
    let (since, until) = span(store, settings, request, listed, org)?;
    let mut verdict = OrgVerdict {
        org_id: org.to_string(),
        window_start: window::rfc3339_ms(since),
        window_end: window::rfc3339_ms(until),
        ..OrgVerdict::default()
    };
    let own = objects_of(settings, org, &listing.objects);
    (verdict.objects_not_found, verdict.objects_soft_deleted) = not_found(settings, org, listing, listed, &own);
    if since > until {
        return Ok(verdict);
    }
    // A repair first settles what a stopped repair left, and checks that every object its
    // checkpoint records was listed (another repair since the listing, or the feed, shows here).
    let (repair_seq, recovery) = if request.repair {
        if verdict.objects_not_found > 0 {
            return Err(not_found_failure(verdict.objects_not_found, "objects the checkpoint records"));
        }
        let (next_seq, recovery) = settle_repairs(client, store, settings, org, since, &own)?;
        (Some(next_seq), recovery)
    } else {
        (None, OrgSummary::default())
    };
    let in_days =
        |day: (i32, u32, u32)| day >= window::utc_day(since - DEFAULT_SPAN_MS) && day <= window::utc_day(until);
    let mut keys: Vec<&str> = own.iter().filter(|o| in_days(o.day)).map(|o| o.key.as_str()).collect();
    // An object a stopped repair created and this one just recorded.
    keys.extend(recovery.objects.iter().filter_map(|o| o.strip_prefix("(recovered) ")));
    let delivered = read_objects(store, &keys, since, until)?;
    let foreign: HashMap<&String, &Vec<String>> = foreign
        .iter()
        .filter(|(_, (time, _))| time.is_none_or(|(t, end)| end >= since && t <= until))
        .map(|(key, (_, objects))| (key, objects))
        .collect();
    verdict.objects_vanished = delivered.vanished;
    if repair_seq.is_some() && delivered.vanished > 0 {
        return Err(Failure::new(
            ErrorKind::Conflict,
            format!(
                "{} listed objects were gone when read (the SecOps feed's source deletion takes objects as it ingests them): their entries would be delivered again, so nothing is repaired",
                delivered.vanished
            ),
        ));
    }
    let mut repair = match repair_seq {
        Some(next_seq) => Some(reopen_repair(client, store, settings, org, since, next_seq)?),
        None => None,
    };
    let (expected, summary) =
        read_expected(client, settings, org, (since, until), (&delivered, &foreign), repair.as_mut())?;
    let delivered = match repair.take() {
        Some(mut delivery) => {
            let mut summary = summary;
            delivery.now_ms = client.platform.now_ms();
            delivery.flush(&mut summary)?;
            drop(delivery);
            verdict.repaired = summary.entries_written;
            // Verified again from the store, with the repair's new objects.
            keys.extend(summary.objects_written());
            read_objects(store, &keys, since, until)?
        }
        None => delivered,
    };
    tally(&mut verdict, delivered, &foreign, &expected);
    Ok(verdict)
}

/// The window verified, `(since, until)` (Unix ms, inclusive): as asked, ending before the
/// checkpoint's read floor, and for a repair never before collection began.
fn span<S: ObjectStore + ?Sized>(
    store: &S,
    settings: &Settings,
    request: Request,
    listed: &ListedCheckpoint,
    org: &str,
) -> Result<(i64, i64), Failure> {
    // Where collection began, when the status remembers it: nothing earlier was meant to arrive.
    let started = match store.read(&status_key(&settings.state_prefix, org)) {
        Ok(Some(stored)) => OrgStatus::decode(&stored.data).and_then(|s| s.started_ms),
        _ => None,
    };
    if request.repair && request.since_ms.is_none() && started.is_none() {
        return Err(Failure::new(
            ErrorKind::Config,
            "where collection of this organization began is not on record: give --since with --repair, so that entries from before it are not delivered as if they were missing",
        ));
    }
    let until = request.until_ms.map_or(listed.read_from_ms - 1, |u| u.min(listed.read_from_ms - 1));
    let since = match request.since_ms {
        // Entries from before collection began are not this collector's: a repair delivering
        // them would double what another one (the function it replaced) shipped.
        Some(since) if request.repair => since.max(started.unwrap_or(i64::MIN)),
        Some(since) => since,
        None => (until - DEFAULT_SPAN_MS + 1).max(started.unwrap_or(i64::MIN)),
    };
    Ok((since, until))
}

/// How many of the objects the checkpoint records were not listed, and how many of those the
/// store keeps as deleted (`None` where it cannot say).
fn not_found(
    settings: &Settings,
    org: &str,
    listing: &Listing,
    listed: &ListedCheckpoint,
    own: &[Named],
) -> (u64, Option<u64>) {
    // Matched by the whole name: another lineage's objects with the same numbers are not the
    // checkpoint's.
    let lineage = listed.lineage.as_deref();
    let regular: HashSet<u64> = own.iter().filter(|o| o.of(false, lineage)).map(|o| o.seq).collect();
    let not_found: Vec<u64> = (1..listed.next_seq).filter(|seq| !regular.contains(seq)).collect();
    let soft_deleted = listing.deleted.as_ref().map(|deleted| {
        let deleted: HashSet<u64> =
            objects_of(settings, org, deleted).into_iter().filter(|o| o.of(false, lineage)).map(|o| o.seq).collect();
        not_found.iter().filter(|seq| deleted.contains(seq)).count() as u64
    });
    (not_found.len() as u64, soft_deleted)
}

/// Settles what a stopped repair left (its pending object) and checks that every object the
/// repairs' checkpoint records was listed or just settled: the repairs' next number, and what
/// settling did.
fn settle_repairs<P: Platform, S: ObjectStore + ?Sized>(
    client: &mut Client<'_, P>,
    store: &S,
    settings: &Settings,
    org: &str,
    since: i64,
    own: &[Named],
) -> Result<(u64, OrgSummary), Failure> {
    let mut recovery = OrgSummary::default();
    let mut delivery = Delivery::open_as(store, settings, org, Role::Repair, || {
        Ok(Fresh { start_ms: since, now_ms: client.platform.now_ms(), random: client.platform.random() })
    })?;
    delivery.now_ms = client.platform.now_ms();
    delivery.recover(&mut recovery)?;
    let repair_lineage = delivery.checkpoint.lineage.as_deref();
    let listed_repairs: HashSet<u64> = own.iter().filter(|o| o.of(true, repair_lineage)).map(|o| o.seq).collect();
    // Settled just now: recorded, or its name taken by an empty claim.
    let recovered: Vec<String> = recovery
        .objects
        .iter()
        .filter_map(|o| o.strip_prefix("(recovered) ").or_else(|| o.strip_prefix("(claimed) ")))
        .map(str::to_string)
        .collect();
    let recovered: HashSet<u64> = objects_of(settings, org, &recovered)
        .into_iter()
        .filter(|o| o.of(true, repair_lineage))
        .map(|o| o.seq)
        .collect();
    let unseen =
        (1..delivery.checkpoint.next_seq).filter(|s| !listed_repairs.contains(s) && !recovered.contains(s)).count();
    if unseen > 0 {
        return Err(not_found_failure(unseen as u64, "repair objects"));
    }
    Ok((delivery.checkpoint.next_seq, recovery))
}

/// The repairs' checkpoint opened again after the objects were read: a repair that recorded an
/// object meanwhile changed the numbers; one that records from now on makes this one's first
/// write fail.
fn reopen_repair<'s, P: Platform, S: ObjectStore + ?Sized>(
    client: &mut Client<'_, P>,
    store: &'s S,
    settings: &'s Settings,
    org: &str,
    since: i64,
    next_seq: u64,
) -> Result<Delivery<'s, S>, Failure> {
    let mut delivery = Delivery::open_as(store, settings, org, Role::Repair, || {
        Ok(Fresh { start_ms: since, now_ms: client.platform.now_ms(), random: client.platform.random() })
    })?;
    if delivery.checkpoint.next_seq != next_seq || delivery.checkpoint.pending.is_some() {
        return Err(Failure::new(
            ErrorKind::Conflict,
            "another repair of this organization ran meanwhile; nothing was repaired: run verify --repair again",
        ));
    }
    delivery.now_ms = client.platform.now_ms();
    Ok(delivery)
}

/// Reads the API's entries of the window, page by page: each entry's key and time. With a
/// repair, entries found neither in the delivered objects nor in foreign ones are delivered
/// (what that wrote is the summary's).
fn read_expected<P: Platform, S: ObjectStore + ?Sized>(
    client: &mut Client<'_, P>,
    settings: &Settings,
    org: &str,
    (since, until): (i64, i64),
    (delivered, foreign): (&Delivered, &HashMap<&String, &Vec<String>>),
    mut repair: Option<&mut Delivery<'_, S>>,
) -> Result<(HashMap<String, Option<i64>>, OrgSummary), Failure> {
    let mut summary = OrgSummary::default();
    let mut expected: HashMap<String, Option<i64>> = HashMap::new();
    let mut slice = Slice::new(since, until);
    let mut pages = 0u32;
    while !slice.done {
        if pages >= settings.max_pages {
            return Err(Failure::new(
                ErrorKind::PageCap,
                format!(
                    "reached the cap of {} pages; raise --max-pages or verify a shorter window",
                    settings.max_pages
                ),
            ));
        }
        pages += 1;
        let (path, body) = page_request(settings, org, &slice, false);
        let what = format!("audit query for organization {org} (page {pages})");
        let fetched = client.call(Method::Post, path, body, &what, read_page)?;
        // The clock the repair's objects are named by: a lease runs from the naming.
        if let Some(delivery) = repair.as_deref_mut() {
            delivery.now_ms = client.platform.now_ms();
        }
        // Entries that are not JSON objects are set aside by passes, never delivered: not expected.
        for raw_entry in fetched.page.entries().filter(|raw| entry::is_object(raw)) {
            let line = entry::ndjson_line(raw_entry);
            let meta = entry::meta(&line);
            if expected.insert(meta.key.clone(), meta.timestamp_ms).is_some() {
                continue;
            }
            // An entry without a time is filed under the day its pass's window ended, which may
            // lie past the days read here: it may be delivered, so a repair leaves it alone.
            let placed = meta.timestamp_ms.is_some();
            let somewhere = delivered.copies.contains_key(&meta.key) || foreign.contains_key(&&meta.key);
            if let Some(delivery) = repair.as_deref_mut().filter(|_| placed && !somewhere) {
                let entry = Entry {
                    line: &line,
                    key: meta.key,
                    time_ms: meta.timestamp_ms,
                    keep_ms: meta.timestamp_ms.unwrap_or(until),
                };
                delivery.add(entry, &mut summary)?;
            }
        }
        slice
            .advance(settings.paging, fetched.count, fetched.cursor)
            .map_err(|why| Failure::new(ErrorKind::Api, format!("audit query for organization {org}: {why}")))?;
    }
    Ok((expected, summary))
}

/// The verdict's counts: the API's entries against the copies in the delivered objects and, for
/// this window's entries, in foreign ones (others may be another organization's).
fn tally(
    verdict: &mut OrgVerdict,
    mut delivered: Delivered,
    foreign: &HashMap<&String, &Vec<String>>,
    expected: &HashMap<String, Option<i64>>,
) {
    let mut named = std::collections::BTreeSet::new();
    for (key, copies) in foreign.iter().filter(|(key, _)| expected.contains_key(key.as_str())) {
        *delivered.copies.entry((*key).clone()).or_default() += copies.len() as u64;
        named.extend(copies.iter().cloned());
    }
    verdict.foreign_objects = named.into_iter().collect();
    verdict.objects_read = delivered.objects;
    verdict.outside_window = delivered.outside;
    verdict.expected = expected.len() as u64;
    verdict.delivered = delivered.copies.values().sum();
    verdict.duplicates = delivered.copies.values().map(|c| c - 1).sum();
    verdict.unexpected = delivered.copies.keys().filter(|k| !expected.contains_key(*k)).count() as u64;
    let mut missing: Vec<(Option<i64>, &String)> =
        expected.iter().filter(|(k, _)| !delivered.copies.contains_key(*k)).map(|(k, t)| (*t, k)).collect();
    verdict.missing = missing.len() as u64;
    missing.sort();
    verdict.first_missing = missing
        .into_iter()
        .take(NAMED_MISSING)
        .map(|(t, k)| MissingEntry { key: k.clone(), timestamp: t.map(window::rfc3339_ms) })
        .collect();
}

/// Why a repair refuses: objects gone from the store cannot be told from missing entries. The
/// organization's alone: the others are verified and repaired.
fn not_found_failure(count: u64, what: &str) -> Failure {
    Failure::new(
        ErrorKind::Conflict,
        format!(
            "{count} {what} are not in the store (the SecOps feed's source deletion removes what it ingested, or another repair wrote them since the listing): their entries would be delivered again, so nothing is repaired; run verify --repair before the feed ingests, with source deletion off, and one repair at a time"
        ),
    )
}

/// One of an organization's objects, from its key.
struct Named {
    /// Its number: among the pass's objects, or among the repair's.
    seq: u64,
    repair: bool,
    /// The lineage of the checkpoint that named it (none before version 3).
    lineage: Option<String>,
    day: (i32, u32, u32),
    key: String,
}

impl Named {
    /// Whether the checkpoint `listed` (of lineage `lineage`) gave this name.
    fn of(&self, repair: bool, lineage: Option<&str>) -> bool {
        self.repair == repair && self.lineage.as_deref() == lineage
    }
}

/// The organization's objects among `keys`, the pass's and the repair's, of any lineage:
/// `mulesoft-audit-<org>[.repair][.<lineage>]-<seq>.json.gz` ([`window::object_key`]; no
/// organization id has a `.`, so none's objects are taken for another's).
fn objects_of(settings: &Settings, org: &str, keys: &[String]) -> Vec<Named> {
    keys.iter()
        .filter_map(|key| {
            let name = window::object_name(key, &settings.key_prefix, org)?;
            let lineage = name.lineage.map(str::to_string);
            Some(Named { seq: name.seq, repair: name.repair, lineage, day: name.day, key: key.clone() })
        })
        .collect()
}

/// Whether a key is named as the collector names objects: `<prefix>YYYY/MM/DD/mulesoft-audit-
/// <name>-<10 digits>.json.gz`.
fn collector_named(key: &str, key_prefix: &str) -> bool {
    let Some(rest) = key.strip_prefix(key_prefix) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let [y, m, d, name] = parts.as_slice() else {
        return false;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    digits(y, 4)
        && digits(m, 2)
        && digits(d, 2)
        && name
            .strip_prefix("mulesoft-audit-")
            .and_then(|n| n.strip_suffix(".json.gz"))
            .and_then(|n| n.rsplit_once('-'))
            .is_some_and(|(_, seq)| digits(seq, 10))
}

/// Entry key → its time and the last millisecond it spans (where it has one), and the foreign
/// objects holding it, once per copy.
type Foreign = HashMap<String, (Option<(i64, i64)>, Vec<String>)>;

/// Reads the objects under the prefix that the collector did not name. One that is not gzip, or
/// gone, holds nothing the feed could read from it either.
fn read_foreign<S: ObjectStore + ?Sized>(store: &S, keys: &[&str]) -> Result<Foreign, Failure> {
    let mut copies = Foreign::new();
    for key in keys {
        let Some(Stored { data: bytes, .. }) =
            store.read(key).map_err(|e| storage_failure("reading object", key, &e))?
        else {
            continue;
        };
        let Ok(plain) = gunzip(&bytes) else {
            continue;
        };
        for line in plain.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let meta = entry::meta(&String::from_utf8_lossy(line));
            let time = meta.timestamp_ms.map(|t| (t, t.saturating_add(meta.precision_ms - 1)));
            copies.entry(meta.key).or_insert_with(|| (time, Vec::new())).1.push((*key).to_string());
        }
    }
    Ok(copies)
}

fn read_objects<S: ObjectStore + ?Sized>(
    store: &S,
    keys: &[&str],
    since: i64,
    until: i64,
) -> Result<Delivered, Failure> {
    let mut delivered = Delivered::default();
    let mut seen_keys = HashSet::new();
    for key in keys {
        if !seen_keys.insert(*key) {
            continue;
        }
        let Some(Stored { data: bytes, .. }) =
            store.read(key).map_err(|e| storage_failure("reading log object", key, &e))?
        else {
            delivered.vanished += 1;
            continue;
        };
        let plain = gunzip(&bytes)
            .map_err(|e| Failure::new(ErrorKind::Storage, format!("log object `{key}` is not gzip: {}", e.0)))?;
        delivered.objects += 1;
        for line in plain.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let text = String::from_utf8_lossy(line);
            let meta = entry::meta(&text);
            let within =
                meta.timestamp_ms.is_none_or(|t| t.saturating_add(meta.precision_ms - 1) >= since && t <= until);
            if within {
                *delivered.copies.entry(meta.key).or_default() += 1;
            } else {
                delivered.outside += 1;
            }
        }
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests;
