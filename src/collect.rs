//! One pass: for each organization, read the window after its checkpoint, write new entries into
//! gzip NDJSON objects, and advance the checkpoint only past what is written.
//!
//! Order of writes for each object (why it is exactly-once):
//! 1. compare-and-swap the checkpoint to name the object as `pending` (a concurrent pass loses
//!    here, before it has written anything);
//! 2. create the object, create-only;
//! 3. the next compare-and-swap records the object's entries as seen and moves the cursor.
//!
//! A pass killed between 2 and 3 leaves `pending` behind; the next pass reads that object back
//! and counts its entries as delivered. A pass killed between 1 and 2 leaves a `pending` that
//! does not exist, which is simply dropped.

use crate::anypoint::Client;
use crate::checkpoint::{Checkpoint, Pending};
use crate::entry;
use crate::gzip::{GzipWriter, gunzip};
use crate::platform::{Method, ObjectStore, Platform, StoreError};
use crate::settings::{ErrorKind, Failure, OrgSummary, Paging, Settings};
use crate::window::{self, Window};
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};

pub const CONTENT_TYPE_LOGS: &str = "application/gzip";
pub const CONTENT_TYPE_STATE: &str = "application/json";
/// Deflate level: 6 is zlib's default balance of size and CPU.
pub const GZIP_LEVEL: u8 = 6;

/// The outcome of a pass over every organization.
#[derive(Debug, Default)]
pub struct PassResult {
    pub completed: Vec<OrgSummary>,
    pub failures: Vec<Failure>,
}

/// Runs one pass.
pub fn run_pass<P: Platform, S: ObjectStore>(platform: &mut P, store: &mut S, settings: &Settings) -> PassResult {
    let mut result = PassResult::default();
    let mut client = Client::new(platform, settings);
    let mut orgs = match organizations(&mut client, settings) {
        Ok(orgs) => orgs,
        Err(f) => {
            result.failures.push(f);
            return result;
        }
    };
    orgs.retain(|org| crate::settings::shard_of(org, settings.shard_count) == settings.shard_index);
    for org in &orgs {
        let before = client.stats;
        let mut summary = OrgSummary { org_id: org.clone(), ..OrgSummary::default() };
        let outcome = collect_org(&mut client, store, settings, org, &mut summary);
        let after = client.stats;
        summary.requests = after.requests - before.requests;
        summary.retries = after.retries - before.retries;
        summary.throttled_waits = after.throttled_waits - before.throttled_waits;
        summary.bytes_in = after.bytes_in - before.bytes_in;
        match outcome {
            Ok(()) => result.completed.push(summary),
            Err(mut failure) => {
                failure.org_id = Some(org.clone());
                let stop = failure.kind.stops_the_pass();
                result.failures.push(failure);
                if summary.entries_written > 0 {
                    result.completed.push(summary);
                }
                if stop {
                    break;
                }
            }
        }
    }
    result
}

/// Bytes of pages read ahead (not yet writable, because an earlier slice is still being read):
/// bounds memory while the slices behind the head keep reading.
const READ_AHEAD_BYTES: usize = 12 << 20;

/// A checked reply to a query, with what paging needs read out of it.
struct FetchedPage {
    raw: Vec<u8>,
    count: usize,
    cursor: Option<String>,
    total: Option<u64>,
    last_entry_ts: Option<i64>,
}

/// One time slice of a window, paged on its own.
struct Slice {
    from_ms: i64,
    to_ms: i64,
    cursor: Option<String>,
    offset: u64,
    done: bool,
    /// Pages read but not yet written (raw replies).
    pages: VecDeque<Vec<u8>>,
}

impl Slice {
    fn new(from_ms: i64, to_ms: i64) -> Self {
        Self { from_ms, to_ms, cursor: None, offset: 0, done: false, pages: VecDeque::new() }
    }

    /// Moves past a page of `count` entries.
    fn advance(&mut self, settings: &Settings, count: usize, cursor: Option<String>) {
        match settings.paging {
            Paging::Cursor => match cursor {
                Some(next) if count > 0 => self.cursor = Some(next),
                _ => self.done = true,
            },
            Paging::Offset => {
                self.offset += count as u64;
                self.done = count < settings.page_size as usize;
            }
        }
    }
}

/// `[from, to]` cut into `parts` consecutive closed slices (fewer if it is too short).
fn split(from_ms: i64, to_ms: i64, parts: i64) -> Vec<Slice> {
    let span = to_ms - from_ms + 1;
    let parts = parts.clamp(1, span.max(1));
    (0..parts)
        .map(|k| {
            let start = from_ms + span * k / parts;
            let end = if k == parts - 1 { to_ms } else { from_ms + span * (k + 1) / parts - 1 };
            Slice::new(start, end)
        })
        .collect()
}

/// The query for a slice's next page.
fn page_request(settings: &Settings, org: &str, slice: &Slice, with_total: bool) -> (String, Vec<u8>) {
    let mut body = serde_json::json!({
        "startDate": slice.from_ms,
        "endDate": slice.to_ms,
        "limit": settings.page_size,
        "ascending": true,
    });
    let path = match settings.paging {
        Paging::Cursor => {
            if let Some(c) = &slice.cursor {
                body["cursor"] = serde_json::Value::String(c.clone());
            }
            let total = if with_total { "&doIncludeTotal=true" } else { "" };
            format!("/audit/v2/organizations/{org}/query?cursorPagination=true{total}")
        }
        Paging::Offset => {
            body["offset"] = serde_json::Value::from(slice.offset);
            format!("/audit/v2/organizations/{org}/query")
        }
    };
    (path, body.to_string().into_bytes())
}

/// Writes a page's new entries (those not already delivered or already in the current object).
fn write_page<S: ObjectStore>(
    pass: &mut OrgPass<'_, S>,
    raw_page: &[u8],
    last_ts: &mut i64,
    summary: &mut OrgSummary,
) -> Result<(), Failure> {
    let page = entry::parse_page(raw_page).map_err(|e| Failure::new(ErrorKind::Api, e))?;
    for raw in &page.data {
        let meta = entry::meta(raw.get());
        let ts = meta.timestamp_ms.unwrap_or(*last_ts);
        *last_ts = ts;
        let known = pass.checkpoint.seen.contains_key(&meta.key)
            || pass.builder.as_ref().is_some_and(|b| b.keys.contains_key(&meta.key));
        if known {
            summary.duplicates_skipped += 1;
            continue;
        }
        let line = entry::ndjson_line(raw.get());
        pass.add(&line, meta.key, ts, summary)?;
    }
    Ok(())
}

/// Verifies credentials and access without writing anything (see the WIT `check`).
pub fn check<P: Platform>(platform: &mut P, settings: &Settings) -> Result<Vec<String>, Failure> {
    let mut client = Client::new(platform, settings);
    let mut lines = Vec::new();
    let orgs = organizations(&mut client, settings)?;
    let now = client.platform.now_ms();
    for org in &orgs {
        let with_org = |mut f: Failure| {
            f.org_id = Some(org.clone());
            f
        };
        let floor = retention_floor(&mut client, org, now).map_err(with_org)?;
        let days = (now - floor) / 86_400_000;
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
        lines.push(format!("organization {org}: audit log readable, retention {days} days"));
    }
    lines.insert(0, format!("token: issued for client `{}`", settings.client_id));
    Ok(lines)
}

#[derive(Deserialize)]
struct OrgNode {
    id: String,
    #[serde(default, rename = "subOrganizations")]
    sub_organizations: Vec<OrgNode>,
}

/// The configured organizations, or with `discover_children` every group under them.
fn organizations<P: Platform>(client: &mut Client<'_, P>, settings: &Settings) -> Result<Vec<String>, Failure> {
    if settings.discover_children { discover(client, &settings.org_ids) } else { Ok(settings.org_ids.clone()) }
}

fn discover<P: Platform>(client: &mut Client<'_, P>, roots: &[String]) -> Result<Vec<String>, Failure> {
    let mut ids = Vec::new();
    for root in roots {
        let tree: OrgNode = client.call(
            Method::Get,
            format!("/accounts/api/organizations/{root}/hierarchy"),
            Vec::new(),
            &format!("hierarchy request for organization {root}"),
            |b| serde_json::from_slice(b).map_err(|e| format!("hierarchy reply has the wrong shape ({e})")),
        )?;
        let mut stack = vec![tree];
        while let Some(node) = stack.pop() {
            if !crate::settings::valid_org_id(&node.id) {
                return Err(Failure::new(ErrorKind::Api, format!("hierarchy of {root} lists a malformed id")));
            }
            if !ids.contains(&node.id) {
                ids.push(node.id);
            }
            stack.extend(node.sub_organizations.into_iter().rev());
        }
    }
    Ok(ids)
}

#[derive(Deserialize)]
struct Retention {
    data: Vec<RetentionItem>,
}
#[derive(Deserialize)]
struct RetentionItem {
    #[serde(rename = "retentionPeriod")]
    retention_period: u32,
}

/// The oldest time still retained for `org` (365 days when the API will not say).
fn retention_floor<P: Platform>(client: &mut Client<'_, P>, org: &str, now_ms: i64) -> Result<i64, Failure> {
    let days = match client.call(
        Method::Get,
        format!("/audit/v2/organizations/{org}/retentionSettings"),
        Vec::new(),
        &format!("retention request for organization {org}"),
        |b| serde_json::from_slice::<Retention>(b).map_err(|e| format!("retention reply has the wrong shape ({e})")),
    ) {
        Ok(r) => r.data.first().map(|i| i.retention_period).unwrap_or(365),
        Err(f) if f.kind == ErrorKind::Forbidden => 365,
        Err(f) => return Err(f),
    };
    Ok(now_ms - i64::from(days) * 86_400_000)
}

fn compress_failure(e: crate::gzip::GzipError) -> Failure {
    Failure::new(ErrorKind::Storage, format!("compressing: {}", e.0))
}

fn storage_failure(what: &str, key: &str, e: &StoreError) -> Failure {
    let kind = match e {
        StoreError::GenerationMismatch => ErrorKind::Conflict,
        StoreError::Denied(_) => ErrorKind::Denied,
        _ => ErrorKind::Storage,
    };
    let advice = match e {
        StoreError::GenerationMismatch => {
            "another pass for this organization advanced it meanwhile; nothing was lost, the next pass continues"
        }
        StoreError::Unavailable(_) => "the next pass retries",
        StoreError::Denied(_) => {
            "check that the bucket exists and that the service account may create and read objects in it"
        }
        StoreError::AlreadyExists => "another writer uses this prefix; give each collector its own key prefix",
        StoreError::Other(_) => "see the store's message",
    };
    Failure::new(kind, format!("{what} `{key}`: {e}; {advice}"))
}

/// The object being filled.
struct Builder {
    day: (i32, u32, u32),
    gzip: GzipWriter,
    /// Dedup keys and times of its entries: recorded as seen only once the object exists.
    keys: HashMap<String, i64>,
    last_ms: i64,
    /// Size of `keys` at which old keys are dropped next.
    prune_at: usize,
}

/// Smallest key count at which an object's keys are pruned.
const KEYS_PRUNE_MIN: usize = 16 * 1024;

struct OrgPass<'s, S: ObjectStore> {
    store: &'s mut S,
    settings: &'s Settings,
    org: String,
    checkpoint_key: String,
    checkpoint: Checkpoint,
    /// Generation of the stored checkpoint; 0 when there is none yet.
    generation: u64,
    builder: Option<Builder>,
}

impl<S: ObjectStore> OrgPass<'_, S> {
    /// Compare-and-swap of the checkpoint as it is now.
    fn save(&mut self) -> Result<(), Failure> {
        let bytes = self.checkpoint.encode();
        self.generation = self
            .store
            .write_if_generation(&self.checkpoint_key, &bytes, CONTENT_TYPE_STATE, self.generation)
            .map_err(|e| storage_failure("writing checkpoint", &self.checkpoint_key, &e))?;
        Ok(())
    }

    /// Adopts the object a killed pass may have created, then clears `pending` in memory.
    /// Returns whether the stored checkpoint had a `pending` (and so needs saving).
    fn recover_pending(&mut self, summary: &mut OrgSummary) -> Result<bool, Failure> {
        let Some(pending) = self.checkpoint.pending.take() else {
            return Ok(false);
        };
        let stored =
            self.store.read(&pending.key).map_err(|e| storage_failure("reading pending object", &pending.key, &e))?;
        let Some((bytes, _)) = stored else {
            return Ok(true);
        };
        let plain = gunzip(&bytes).map_err(|e| {
            Failure::new(
                ErrorKind::Checkpoint,
                format!(
                    "pending object `{}` cannot be read back ({}); inspect it before running again",
                    pending.key, e.0
                ),
            )
        })?;
        let mut last_ms = self.checkpoint.cursor_ms;
        for line in plain.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let text = std::str::from_utf8(line).map_err(|_| {
                Failure::new(
                    ErrorKind::Checkpoint,
                    format!("pending object `{}` holds a line that is not UTF-8", pending.key),
                )
            })?;
            let meta = entry::meta(text);
            let ts = meta.timestamp_ms.unwrap_or(last_ms);
            last_ms = ts;
            self.checkpoint.seen.insert(meta.key, ts);
        }
        self.checkpoint.cursor_ms = self.checkpoint.cursor_ms.max(last_ms);
        self.checkpoint.next_seq = self.checkpoint.next_seq.max(pending.seq + 1);
        summary.objects.push(format!("(recovered) {}", pending.key));
        Ok(true)
    }

    fn add(&mut self, line: &str, key: String, ts: i64, summary: &mut OrgSummary) -> Result<(), Failure> {
        let day = window::utc_day(ts);
        let line_len = line.len() as u64 + 1;
        if let Some(b) = &self.builder
            && (b.day != day || b.gzip.uncompressed_len() + line_len > self.settings.object_max_bytes)
            && !b.keys.is_empty()
        {
            self.flush(summary)?;
        }
        let builder = self.builder.get_or_insert_with(|| Builder {
            day,
            gzip: GzipWriter::new(GZIP_LEVEL),
            keys: HashMap::new(),
            last_ms: ts,
            prune_at: KEYS_PRUNE_MIN,
        });
        builder.gzip.write(line.as_bytes()).map_err(compress_failure)?;
        builder.gzip.write(b"\n").map_err(compress_failure)?;
        builder.keys.insert(key, ts);
        builder.last_ms = ts;
        // Entries are read oldest first: keys older than the overlap before this one cannot come
        // back, in this pass or (after the checkpoint's pruning) the next, so an object of a
        // busy day does not hold every key it has written.
        if builder.keys.len() >= builder.prune_at {
            let floor = ts - self.settings.overlap_ms;
            builder.keys.retain(|_, t| *t >= floor);
            builder.prune_at = (builder.keys.len() * 2).max(KEYS_PRUNE_MIN);
        }
        summary.entries_written += 1;
        Ok(())
    }

    /// Writes the current object (steps 1 and 2 of the module docs; step 3 is the next save).
    fn flush(&mut self, summary: &mut OrgSummary) -> Result<(), Failure> {
        let Some(builder) = self.builder.take() else {
            return Ok(());
        };
        let seq = self.checkpoint.next_seq;
        let key = window::object_key(&self.settings.key_prefix, builder.day, &self.org, seq);
        self.checkpoint.pending = Some(Pending { key: key.clone(), seq });
        self.save()?;
        let bytes = builder.gzip.finish().map_err(compress_failure)?;
        self.store
            .create(&key, &bytes, CONTENT_TYPE_LOGS)
            .map_err(|e| storage_failure("creating log object", &key, &e))?;
        summary.objects.push(key);
        summary.bytes_out += bytes.len() as u64;
        // Everything before this object's last entry is now delivered.
        self.checkpoint.cursor_ms = self.checkpoint.cursor_ms.max(builder.last_ms);
        // Paging runs oldest first, so nothing older than the overlap before the cursor is read
        // again, by this pass or the next: the seen set stays bounded during a long backfill.
        let floor = self.checkpoint.cursor_ms - self.settings.overlap_ms;
        self.checkpoint.seen.extend(builder.keys.into_iter().filter(|(_, t)| *t >= floor));
        self.checkpoint.prune(floor);
        self.checkpoint.next_seq = seq + 1;
        self.checkpoint.pending = None;
        Ok(())
    }
}

fn collect_org<P: Platform, S: ObjectStore>(
    client: &mut Client<'_, P>,
    store: &mut S,
    settings: &Settings,
    org: &str,
    summary: &mut OrgSummary,
) -> Result<(), Failure> {
    let checkpoint_key = window::checkpoint_key(&settings.state_prefix, org);
    let (checkpoint, generation) =
        match store.read(&checkpoint_key).map_err(|e| storage_failure("reading checkpoint", &checkpoint_key, &e))? {
            Some((bytes, generation)) => {
                let cp = Checkpoint::decode(&bytes, org, &checkpoint_key)
                    .map_err(|e| Failure::new(ErrorKind::Checkpoint, e.0))?;
                (cp, generation)
            }
            None => {
                let now = client.platform.now_ms();
                let floor = match settings.since_ms {
                    Some(_) => Some(retention_floor(client, org, now)?),
                    None => None,
                };
                (Checkpoint::new(org, window::first_cursor(now, settings.since_ms, settings.lookback_ms, floor)), 0)
            }
        };
    let mut pass =
        OrgPass { store, settings, org: org.to_string(), checkpoint_key, checkpoint, generation, builder: None };
    let recovered = pass.recover_pending(summary)?;

    let now = client.platform.now_ms();
    let Some(Window { from_ms, to_ms }) =
        window::next_window(pass.checkpoint.cursor_ms, now, settings.lag_ms, settings.overlap_ms)
    else {
        summary.window_start = window::rfc3339_ms(pass.checkpoint.cursor_ms);
        summary.window_end = summary.window_start.clone();
        return if recovered { pass.save() } else { Ok(()) };
    };
    summary.window_start = window::rfc3339_ms(from_ms);
    summary.window_end = window::rfc3339_ms(to_ms);
    pass.checkpoint.prune(from_ms);

    // Page 1 covers the whole window. When its total shows much more to read, the rest of the
    // window is split into time slices paged concurrently; pages are still written strictly in
    // time order (the head slice first), so the checkpoint's meaning is unchanged.
    let mut slices: VecDeque<Slice> = VecDeque::from([Slice::new(from_ms, to_ms)]);
    let mut split_considered = false;
    let mut in_flight = 1usize;
    let mut pages = 0u32;
    let mut last_ts = from_ms;
    loop {
        while let Some(head) = slices.front_mut() {
            while let Some(raw) = head.pages.pop_front() {
                write_page(&mut pass, &raw, &mut last_ts, summary)?;
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
        // The head slice always reads; the ones behind it while the read-ahead budget lasts.
        let buffered: usize = slices.iter().flat_map(|s| s.pages.iter()).map(Vec::len).sum();
        let mut chosen = Vec::new();
        for (i, slice) in slices.iter().enumerate() {
            if chosen.len() == in_flight || (i > 0 && buffered >= READ_AHEAD_BYTES) {
                break;
            }
            if !slice.done {
                chosen.push(i);
            }
        }
        if pages.saturating_add(chosen.len() as u32) > settings.max_pages {
            return Err(Failure::new(
                ErrorKind::PageCap,
                format!(
                    "reached the cap of {} pages in window {}..{}; raise --max-pages or collect a shorter window with --since",
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
        // The reply is parsed once here, to check it (a garbled page is retried) and to read what
        // paging needs; the entries themselves are read again only when the page is written.
        let replies = client.call_many(Method::Post, requests, &whats, |b| {
            let page = entry::parse_page(b)?;
            Ok(FetchedPage {
                count: page.data.len(),
                cursor: page.cursor,
                total: page.total,
                last_entry_ts: page.data.iter().rev().find_map(|r| entry::meta(r.get()).timestamp_ms),
                raw: b.to_vec(),
            })
        });
        for (&i, reply) in chosen.iter().zip(replies) {
            let FetchedPage { raw, count, cursor, total, last_entry_ts } = reply?;
            let slice = &mut slices[i];
            slice.advance(settings, count, cursor);
            if count > 0 {
                slice.pages.push_back(raw);
            }
            if !split_considered {
                split_considered = true;
                if let (Some(total), Some(split_from), false) = (total, last_entry_ts, slices[i].done) {
                    let remaining_pages = total.saturating_sub(count as u64) / u64::from(settings.page_size);
                    let useful = client.useful_concurrency(settings.concurrency);
                    // Each slice costs one extra (empty) page at its end: a few slices per request
                    // in flight keep them all busy without wasting many requests.
                    let parts = (remaining_pages / 2).min(u64::from(useful) * 2);
                    if useful > 1 && parts >= 2 {
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
    pass.flush(summary)?;
    pass.checkpoint.cursor_ms = pass.checkpoint.cursor_ms.max(to_ms + 1);
    pass.checkpoint.prune(pass.checkpoint.cursor_ms - settings.overlap_ms);
    pass.save()
}
