//! One pass: for each organization, read the window after its checkpoint and deliver new entries
//! ([`crate::delivery`]), reading pages by the plan of [`crate::paging`].
//!
//! Every entry's time is checked against the query that returned it: an API whose entries carry
//! another time than it filters on must not move the cursor to where no window reads again.

use crate::anypoint::{Client, organizations, retention_days, retention_floor};
use crate::delivery::{Delivery, Entry, Fresh};
use crate::entry;
use crate::paging::{FetchedPage, ReadPage, Slice, page_request, read_page, split};
use crate::platform::{Method, ObjectStore, Platform};
use crate::settings::{ErrorKind, Failure, OrgSummary, Settings};
use crate::status;
use crate::window::{self, Window};
use std::collections::VecDeque;

/// The outcome of a pass over every organization.
#[derive(Debug, Default)]
pub struct PassResult {
    pub completed: Vec<OrgSummary>,
    pub failures: Vec<Failure>,
}

/// The failure as it may be kept: without the secret.
fn scrubbed(failure: &Failure, settings: &Settings) -> Failure {
    Failure { message: crate::settings::scrub(&failure.message, &settings.client_secret), ..failure.clone() }
}

/// Runs one pass. Failure messages leave it scrubbed of the secret.
pub fn run_pass<P: Platform, S: ObjectStore + ?Sized>(platform: &mut P, store: &S, settings: &Settings) -> PassResult {
    let mut result = pass(platform, store, settings);
    for failure in &mut result.failures {
        failure.message = crate::settings::scrub(&failure.message, &settings.client_secret);
    }
    result
}

fn pass<P: Platform, S: ObjectStore + ?Sized>(platform: &mut P, store: &S, settings: &Settings) -> PassResult {
    let mut result = PassResult::default();
    let mut client = Client::new(platform, settings);
    let mut orgs = match organizations(&mut client, settings) {
        Ok(orgs) => orgs,
        Err(f) => {
            let now = client.platform.now_ms();
            let owned = settings.org_ids.iter().filter(|o| settings.owns(o));
            status::record_failed(store, &settings.state_prefix, owned, now, &scrubbed(&f, settings));
            result.failures.push(f);
            return result;
        }
    };
    orgs.retain(|org| settings.owns(org));
    for (at, org) in orgs.iter().enumerate() {
        let before = client.stats;
        let mut summary = OrgSummary { org_id: org.clone(), ..OrgSummary::default() };
        let mut started = None;
        let outcome = collect_org(&mut client, store, settings, org, &mut summary, &mut started);
        let after = client.stats;
        summary.requests = after.requests - before.requests;
        summary.retries = after.retries - before.retries;
        summary.throttled_waits = after.throttled_waits - before.throttled_waits;
        summary.bytes_in = after.bytes_in - before.bytes_in;
        summary.replies_2xx = after.replies_2xx - before.replies_2xx;
        summary.replies_4xx = after.replies_4xx - before.replies_4xx;
        summary.replies_5xx = after.replies_5xx - before.replies_5xx;
        summary.no_reply = after.no_reply - before.no_reply;
        let failure = outcome.as_ref().err().map(|f| scrubbed(f, settings));
        let now = client.platform.now_ms();
        let org = &summary.org_id;
        if let Err(why) =
            status::record(store, &settings.state_prefix, org, now, started, Some(&summary), failure.as_ref())
        {
            let why = crate::settings::scrub(&why, &settings.client_secret);
            summary
                .objects
                .push(format!("(status not recorded, {why}: `status` misses this pass, whose delivery stands)"));
        }
        match outcome {
            Ok(()) => result.completed.push(summary),
            Err(mut failure) => {
                failure.org_id = Some(org.clone());
                let stop = failure.kind.stops_the_pass().then(|| scrubbed(&failure, settings));
                result.failures.push(failure);
                // What it wrote, and what it recovered or claimed (notes the user must see).
                if !summary.objects.is_empty() {
                    result.completed.push(summary);
                }
                if let Some(failure) = stop {
                    // The organizations not reached failed too, for `status` to show.
                    status::record_failed(store, &settings.state_prefix, orgs.iter().skip(at + 1), now, &failure);
                    break;
                }
            }
        }
    }
    result
}

/// The longest a pass waits for a lease on a pending name to end rather than leave the name to
/// the next pass: a store whose requests time out within seconds takes leases that short.
const MAX_LEASE_WAIT_MS: i64 = 30_000;

/// How far before page 1's last shown time the slices after it start ([`collect_org`]).
const SPLIT_MARGIN_MS: i64 = 1000;

/// Bytes of pages read ahead (not yet writable, because an earlier slice is still being read):
/// bounds memory while the slices behind the head keep reading.
const READ_AHEAD_BYTES: usize = 12 << 20;

/// Writes a page's new entries (those not already delivered or already in the current object),
/// and says how many there were. The page answered the query for `slice`: an entry whose time
/// lies outside it fails the org.
fn write_page<S: ObjectStore + ?Sized>(
    delivery: &mut Delivery<'_, S>,
    page: &ReadPage,
    slice: (i64, i64),
    summary: &mut OrgSummary,
    aside: &mut SetAside,
) -> Result<usize, Failure> {
    let mut new = 0;
    let (from_ms, to_ms) = slice;
    for raw in page.entries() {
        if !entry::is_object(raw) {
            // Not an audit entry (`1`, `null`, `[…]`): the feed reads objects. Set aside, counted
            // and said in the summary, never delivered unsaid.
            aside.add(raw);
            continue;
        }
        let line = entry::ndjson_line(raw);
        let meta = entry::meta(&line);
        // A time given in whole seconds spans a thousand ms: any of them in the query will do.
        let span_end = |t: i64| t.saturating_add(meta.precision_ms - 1);
        if let Some(t) = meta.timestamp_ms.filter(|t| span_end(*t) < from_ms || *t > to_ms) {
            return Err(Failure::new(
                ErrorKind::Api,
                format!(
                    "the API returned an entry timed {} for a query of {}..{}: its `timestamp` is not the time it filters on, so the cursor cannot follow it; nothing past the last object is marked done",
                    window::rfc3339_ms(t),
                    window::rfc3339_ms(from_ms),
                    window::rfc3339_ms(to_ms)
                ),
            ));
        }
        if delivery.knows(&meta.key) {
            summary.duplicates_skipped += 1;
            continue;
        }
        let entry = Entry {
            line: &line,
            key: meta.key,
            time_ms: meta.timestamp_ms,
            keep_ms: meta.timestamp_ms.map_or(to_ms, span_end),
        };
        delivery.add(entry, summary)?;
        new += 1;
    }
    Ok(new)
}

/// What a retention of `days` does to a backfill from `since_ms`, when it cuts it: said in the
/// summary of the pass that starts the organization there, and by `check`.
fn since_clamp(since_ms: i64, days: u32, now_ms: i64) -> Option<String> {
    let floor = retention_floor(days, now_ms);
    (since_ms < floor).then(|| {
        format!(
            "--since {} is before the organization's {days}-day retention: collection begins at {}, the oldest time the API keeps",
            window::rfc3339_ms(since_ms),
            window::rfc3339_ms(floor)
        )
    })
}

/// Verifies credentials and access without writing anything (see the WIT `check`).
pub fn check<P: Platform>(platform: &mut P, settings: &Settings) -> Result<Vec<String>, Failure> {
    verify_access(platform, settings).map_err(|mut failure| {
        failure.message = crate::settings::scrub(&failure.message, &settings.client_secret);
        failure
    })
}

fn verify_access<P: Platform>(platform: &mut P, settings: &Settings) -> Result<Vec<String>, Failure> {
    let mut client = Client::new(platform, settings);
    let mut lines = Vec::new();
    let orgs = organizations(&mut client, settings)?;
    let now = client.platform.now_ms();
    for org in &orgs {
        let with_org = |mut f: Failure| {
            f.org_id = Some(org.clone());
            f
        };
        let retention = match retention_days(&mut client, org).map_err(with_org)? {
            Some(days) => {
                let mut line = format!("retention {days} days");
                if let Some(clamp) = settings.since_ms.and_then(|since| since_clamp(since, days, now)) {
                    line.push_str(&format!("; {clamp}"));
                }
                line
            }
            None => "retention not stated (nothing is clamped)".to_string(),
        };
        let body = serde_json::json!({ "startDate": now - 86_400_000, "endDate": now, "limit": 1, "ascending": true });
        client
            .call(
                Method::Post,
                format!("/audit/v2/organizations/{org}/query"),
                body.to_string().into_bytes(),
                &format!("audit query for organization {org}"),
                |b| entry::parse_page(b).map(|_| ()),
            )
            .map_err(with_org)?;
        lines.push(format!("organization {org}: audit log readable, {retention}"));
    }
    lines.insert(0, format!("token: issued for client `{}`", settings.client_id));
    Ok(lines)
}

/// Entries a page held that are not JSON objects, and so no audit entries the feed can read.
#[derive(Default)]
struct SetAside {
    count: u64,
    first: Option<String>,
}

impl SetAside {
    fn add(&mut self, raw: &str) {
        self.count += 1;
        self.first.get_or_insert_with(|| raw.chars().filter(|c| !c.is_control()).take(40).collect());
    }

    /// The summary's note, when any was set aside.
    fn note(&self) -> Option<String> {
        let first = self.first.as_deref()?;
        Some(format!(
            "({} entries set aside, not delivered: they are not JSON objects, which the feed reads as audit entries; the first was `{first}`)",
            self.count
        ))
    }
}

/// Collects one organization; what it set aside is said in its summary however it ends.
fn collect_org<P: Platform, S: ObjectStore + ?Sized>(
    client: &mut Client<'_, P>,
    store: &S,
    settings: &Settings,
    org: &str,
    summary: &mut OrgSummary,
    started: &mut Option<i64>,
) -> Result<(), Failure> {
    let mut aside = SetAside::default();
    let outcome = collect_window(client, store, settings, org, summary, started, &mut aside);
    summary.objects.extend(aside.note());
    outcome
}

fn collect_window<P: Platform, S: ObjectStore + ?Sized>(
    client: &mut Client<'_, P>,
    store: &S,
    settings: &Settings,
    org: &str,
    summary: &mut OrgSummary,
    started: &mut Option<i64>,
    aside: &mut SetAside,
) -> Result<(), Failure> {
    let mut clamped = None;
    let start = || {
        let now = client.platform.now_ms();
        let floor = match settings.since_ms {
            Some(since) => retention_days(client, org)?.map(|days| {
                clamped = since_clamp(since, days, now).map(|clamp| format!("({clamp})"));
                retention_floor(days, now)
            }),
            None => None,
        };
        let start_ms = window::first_cursor(now, settings.since_ms, settings.lookback_ms, floor);
        Ok(Fresh { start_ms, now_ms: now, random: client.platform.random() })
    };
    let mut delivery = Delivery::open(store, settings, org, start)?;
    // The organization as the state spells it, for the queries, the summary and the status.
    summary.org_id.clone_from(&delivery.org);
    let org = delivery.org.clone();
    let org = org.as_str();
    *started = delivery.began;
    summary.objects.extend(delivery.rebuilt.take());
    summary.objects.extend(clamped);
    let mut now = client.platform.now_ms();
    delivery.now_ms = now;
    if let Err(failure) = delivery.recover(summary) {
        // A name its owner may still create, for a short lease: waited out, then settled.
        match delivery.leased_until.take() {
            Some(free_at) if free_at - now <= MAX_LEASE_WAIT_MS => {
                client.platform.sleep_ms(u64::try_from(free_at - now).unwrap_or(0));
                now = client.platform.now_ms();
                delivery.now_ms = now;
                delivery.recover(summary)?;
            }
            _ => return Err(failure),
        }
    }
    delivery.refuse_if_behind()?;

    let checkpoint = &delivery.checkpoint;
    let Some(Window { from_ms, to_ms }) =
        window::next_window(checkpoint.cursor_ms, checkpoint.read_from_ms, now, settings.lag_ms)
    else {
        // Nothing to read yet: what is delivered ends just before the cursor.
        summary.window_start = window::rfc3339_ms(checkpoint.cursor_ms - 1);
        summary.window_end = summary.window_start.clone();
        return Ok(());
    };
    summary.window_start = window::rfc3339_ms(from_ms);
    summary.window_end = window::rfc3339_ms(to_ms);

    let mut slices: VecDeque<Slice> = VecDeque::from([Slice::new(from_ms, to_ms)]);
    let mut split_considered = false;
    let mut in_flight = 1usize;
    let mut pages = 0u32;
    // The cap counts pages that brought a new entry (and pages read ahead, not yet written):
    // re-reading what is already delivered (the overlap) costs none of it, so every capped pass
    // delivers something new, and the next one goes on from there.
    let mut spent = 0u32;
    // Pages with nothing new have a cap of their own, so that an API that serves the same page
    // again and again (or an overlap far larger than the cap) still ends the pass.
    let (mut free, free_cap) = (0u32, settings.max_pages.saturating_mul(4).max(1000));
    loop {
        // The clock objects are named by, after each round of replies and before each page: a
        // lease runs from the naming, however long the pass.
        delivery.now_ms = client.platform.now_ms();
        while let Some(head) = slices.front_mut() {
            while let Some(page) = head.pages.pop_front() {
                delivery.now_ms = client.platform.now_ms();
                if write_page(&mut delivery, &page, (head.from_ms, head.to_ms), summary, aside)? > 0 {
                    spent += 1;
                } else {
                    free += 1;
                }
            }
            if free > free_cap {
                delivery.flush(summary)?;
                return Err(Failure::new(
                    ErrorKind::PageCap,
                    format!(
                        "read {free} pages holding only entries already delivered in window {}..{}: the API repeats pages, or the overlap holds more than that; lower --overlap, or raise --max-pages",
                        summary.window_start, summary.window_end
                    ),
                ));
            }
            if head.done {
                slices.pop_front();
            } else {
                break;
            }
        }
        if slices.is_empty() {
            break;
        }
        // The head slice always reads, while the cap allows; the ones behind it while the cap
        // and the read-ahead budget last (what they read is dropped if the cap stops the head).
        let buffered: usize = slices.iter().flat_map(|s| s.pages.iter()).map(|p| p.text.len()).sum();
        let ahead = slices.iter().map(|s| s.pages.len() as u32).sum::<u32>();
        let budget = settings.max_pages.saturating_sub(spent.saturating_add(ahead)) as usize;
        let mut chosen = Vec::new();
        for (i, slice) in slices.iter().enumerate() {
            if chosen.len() == in_flight.min(budget) || (i > 0 && buffered >= READ_AHEAD_BYTES) {
                break;
            }
            if !slice.done {
                chosen.push(i);
            }
        }
        if chosen.is_empty() {
            // What was read so far is written: the next pass goes on from there instead of
            // meeting the same cap in the same window for ever.
            delivery.flush(summary)?;
            return Err(Failure::new(
                ErrorKind::PageCap,
                format!(
                    "reached the cap of {} pages of new entries in window {}..{}; what was read is delivered and the next pass goes on from there; raise --max-pages to catch up in fewer passes",
                    settings.max_pages, summary.window_start, summary.window_end
                ),
            ));
        }
        let with_total = !split_considered;
        let requests: Vec<(String, Vec<u8>)> =
            chosen.iter().map(|&i| page_request(settings, org, &slices[i], with_total)).collect();
        let whats: Vec<String> = chosen
            .iter()
            .enumerate()
            .map(|(k, _)| format!("audit query for organization {org} (page {})", pages + 1 + k as u32))
            .collect();
        pages += chosen.len() as u32;
        let replies = client.call_many(Method::Post, requests, &whats, read_page);
        for (&i, reply) in chosen.iter().zip(replies) {
            let FetchedPage { page, count, cursor, total, last_entry_ts } = reply?;
            let slice = &mut slices[i];
            slice.advance(settings.paging, count, cursor).map_err(|why| {
                Failure::new(
                    ErrorKind::Api,
                    format!("audit query for organization {org}: {why}; nothing past the last object is marked done"),
                )
            })?;
            if count > 0 {
                slice.pages.push_back(page);
            }
            if !split_considered {
                split_considered = true;
                let head = &slices[i];
                // The split starts a second before the page's last entry as it shows its time,
                // within the slice whatever the entry says (an entry outside it fails the org
                // when the page is written): an API may show a time rounded up from the one it
                // filters on, and the entries after this page at that time must not fall before
                // the split. Those read twice are recognised.
                let split_from = last_entry_ts.map(|t| {
                    t.saturating_sub(SPLIT_MARGIN_MS.min(settings.overlap_ms)).clamp(head.from_ms, head.to_ms)
                });
                if let (Some(total), Some(split_from), false) = (total, split_from, head.done) {
                    let remaining_pages = total.saturating_sub(count as u64) / u64::from(settings.page_size);
                    let useful = client.useful_concurrency(settings.concurrency);
                    // Each slice costs one extra (empty) page at its end: a few slices per request
                    // in flight keep them all busy without wasting many requests.
                    let parts = (remaining_pages / 2).min(u64::from(useful) * 2);
                    // A window the cap will cut is read in order: pages read for later slices
                    // would be dropped at the cap, and the head would move less.
                    let fits = remaining_pages + 1 < u64::from(settings.max_pages.saturating_sub(spent));
                    if useful > 1 && parts >= 2 && fits {
                        in_flight = useful as usize;
                        // The first slice ends with this page; the rest starts at its last
                        // entry's millisecond (entries there already read are recognised).
                        slices[i].done = true;
                        slices.extend(split(split_from, to_ms, parts as i64));
                    }
                }
            }
        }
    }
    delivery.finish_window(to_ms, summary)
}
