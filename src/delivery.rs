//! Delivery of one organization's entries: objects filled in time order, each created and
//! recorded through the checkpoint, so that every entry is delivered exactly once.
//!
//! The order of writes for each object (why it is exactly-once):
//! 1. compare-and-swap the checkpoint to name the object as `pending`, with the [`Effects`]
//!    recording it will have (a concurrent pass loses here, before it has written anything);
//! 2. create the object, create-only;
//! 3. compare-and-swap the checkpoint again to record it, at once: the time an object exists
//!    unrecorded is as short as two store calls, because the SecOps feed may ingest and delete it.
//!
//! A pass stopped between 1 and 3 leaves `pending` behind, and the next pass asks the store what
//! became of that object ([`Presence`]):
//! - **present**, or **deleted** since (the feed took it; Cloud Storage's soft delete remembers):
//!   it was created, so its recorded effects are applied, without reading it;
//! - **absent** (never created) or **unknown** (missing, and the store cannot tell whether the
//!   feed deleted it): the checkpoint marks the name `claimed`, then the name is taken with an
//!   empty object, create-only, so that a pass still running between its steps 1 and 2 cannot
//!   create it later; its number is never reused. If the claim finds an object there after all,
//!   reading it tells another recovering pass's empty claim from the owner's real object, created
//!   just now, which is then recorded instead. After an `unknown`, its entries are read and
//!   delivered again: twice rather than never, and said in the summary. So, too, when a pass
//!   stopped between marking and claiming and the object is deleted by the time another pass
//!   looks: the owner's deleted object and a deleted claim cannot be told apart.
//!
//! A claim alone does not hold the name for good: the feed may take the empty claim, and then a
//! create still under way (an owner stalled in its retries, not stopped) would succeed after
//! all, and its entries, read again by the claimant, arrive twice. So where the store's create
//! can go on for long ([`ObjectStore::lease_ms`]: Cloud Storage), step 1 records the end of a
//! lease on the name, the store writes nothing after it, and no pass claims the name before it
//! (and [`LEASE_MARGIN_MS`]) has passed: until then, recovery is a `conflict` that the next pass
//! settles.

use crate::checkpoint::{self, Checkpoint, Effects, Identity, Pending};
use crate::entry;
use crate::gzip::{GzipError, GzipWriter, gunzip};
use crate::ledger;
use crate::platform::{
    CONTENT_TYPE_LOGS, CONTENT_TYPE_STATE, ObjectStore, Presence, StoreError, Stored, storage_failure,
};
use crate::settings::{ErrorKind, Failure, OrgSummary, Settings};
use crate::window;
use std::collections::HashMap;

/// Deflate level. Measured on the simulator's entries (`just bench -- cpu`, BENCHMARKS.md):
/// level 1 compresses 4.2x faster than level 6 (3.1 against 13.2 µs an entry natively) for
/// objects 19% larger; CPU is what a Cloud Run user pays for, storage of these objects is cheap.
pub const GZIP_LEVEL: u8 = 1;

/// Smallest key count at which an object's keys are pruned.
const KEYS_PRUNE_MIN: usize = 16 * 1024;

/// How long past a lease's end a pass still leaves the name to its owner: for a claimant whose
/// clock runs ahead of the owner's, and for a request the store finishes after its client gave
/// up on it.
pub const LEASE_MARGIN_MS: i64 = 10_000;

fn compress_failure(e: GzipError) -> Failure {
    Failure::new(ErrorKind::Storage, format!("compressing: {}", e.0))
}

/// An entry on its way into an object.
pub struct Entry<'a> {
    /// The NDJSON line, without its line break.
    pub line: &'a str,
    /// Its dedup key, computed from `line` (so recovery, which reads lines, agrees).
    pub key: String,
    /// Its own time, when it has one we can read.
    pub time_ms: Option<i64>,
    /// How long its key must be kept: its time, or for an entry without one the end of the query
    /// window it came from (after which no window reads it again).
    pub keep_ms: i64,
}

/// The object being filled.
struct Builder {
    day: (i32, u32, u32),
    gzip: GzipWriter,
    /// Dedup keys and keep-times of its entries: recorded as seen only once the object exists.
    keys: HashMap<String, i64>,
    last_ms: Option<i64>,
    entries: u64,
    /// Size of `keys` at which old keys are dropped next.
    prune_at: usize,
}

/// Whose objects a delivery writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A pass's: the organization's checkpoint, objects named by the organization.
    Collect,
    /// `verify --repair`'s: a checkpoint and object names of its own (`<org>.repair`), so that
    /// its sequence never meets the pass's, through the same write order and recovery.
    Repair,
}

/// One organization's checkpoint and the object being filled.
pub struct Delivery<'s, S: ObjectStore + ?Sized> {
    /// The organization as the state spells it ([`ledger::other_spelling`]).
    pub org: String,
    store: &'s S,
    settings: &'s Settings,
    /// The organization's part of object names.
    name: String,
    checkpoint_key: String,
    pub checkpoint: Checkpoint,
    /// Generation of the stored checkpoint; 0 when there is none yet.
    generation: u64,
    builder: Option<Builder>,
    /// The pass's clock, when it began reading (pending objects are named with it).
    pub now_ms: i64,
    /// The checkpoint was rebuilt from the destination's objects, or started anew over them:
    /// what the summary says of it.
    pub rebuilt: Option<String>,
    /// Where collection began, where this delivery made the checkpoint and can tell.
    pub began: Option<i64>,
    /// The newest time of an entry this delivery has added (entries come oldest first).
    position_ms: Option<i64>,
    /// Where [`Delivery::recover`] left a pending name to its owner: when the name is free.
    pub leased_until: Option<i64>,
}

/// What a first checkpoint needs: where collection starts, the clock, and the random bits of
/// its lineage.
pub struct Fresh {
    pub start_ms: i64,
    pub now_ms: i64,
    pub random: u64,
}

impl<'s, S: ObjectStore + ?Sized> Delivery<'s, S> {
    /// The organization's checkpoint as stored, or a first one saved at once, so that a later pass
    /// starts from the same point whatever becomes of this one: rebuilt from the destination
    /// where it holds the organization's objects ([`crate::ledger`]), else starting where
    /// `start()` says.
    pub fn open(
        store: &'s S,
        settings: &'s Settings,
        org: &str,
        start: impl FnOnce() -> Result<Fresh, Failure>,
    ) -> Result<Self, Failure> {
        Self::open_as(store, settings, org, Role::Collect, start)
    }

    /// [`Delivery::open`] for a [`Role`].
    pub fn open_as(
        store: &'s S,
        settings: &'s Settings,
        org: &str,
        role: Role,
        start: impl FnOnce() -> Result<Fresh, Failure>,
    ) -> Result<Self, Failure> {
        let keys = |org: &str| match role {
            Role::Collect => (window::checkpoint_key(&settings.state_prefix, org), org.to_string()),
            Role::Repair => {
                (window::repair_checkpoint_key(&settings.state_prefix, org), format!("{org}{}", window::REPAIR_SUFFIX))
            }
        };
        let (mut checkpoint_key, mut name) = keys(org);
        let mut org = org.to_string();
        let read = |store: &S, key: &str| store.read(key).map_err(|e| storage_failure("reading checkpoint", key, &e));
        let mut stored = read(store, &checkpoint_key)?;
        if stored.is_none()
            && role == Role::Collect
            && let Some(other) = ledger::other_spelling(store, settings, &org)?
        {
            // The organization as the state spells it: its checkpoint, objects and status.
            (checkpoint_key, name) = keys(&other);
            stored = read(store, &checkpoint_key)?;
            org = other;
        }
        let org = org.as_str();
        let mut rebuilt = None;
        let mut began = None;
        let (checkpoint, generation) = match stored {
            Some(Stored { data: bytes, generation }) => {
                let checkpoint = Checkpoint::decode(&bytes, org, &checkpoint_key)
                    .map_err(|e| Failure::new(ErrorKind::Checkpoint, e.0))?;
                (checkpoint, generation)
            }
            None => {
                let fresh = start()?;
                let found = match role {
                    Role::Collect if !settings.start_anew => {
                        ledger::search(store, settings, org, fresh.now_ms, fresh.random)?
                    }
                    // A repair's objects are named apart; `verify` reads every object anyway.
                    _ => ledger::Found::Nothing,
                };
                match found {
                    ledger::Found::Nothing => {
                        let mut checkpoint =
                            Checkpoint::new(org, fresh.start_ms, Some(checkpoint::lineage(fresh.random)));
                        if role == Role::Collect && settings.start_anew {
                            checkpoint.superseded =
                                ledger::lineages(store, settings, org, fresh.start_ms, fresh.now_ms)?;
                            if !checkpoint.superseded.is_empty() {
                                rebuilt = Some(format!(
                                    "(started anew on purpose at {}, though the destination holds earlier objects of this organization: entries they hold from then on are delivered again)",
                                    window::rfc3339_ms(fresh.start_ms)
                                ));
                            }
                        }
                        // Collection begins at its cursor.
                        began = Some(fresh.start_ms);
                        (checkpoint, 0)
                    }
                    ledger::Found::Rebuilt { checkpoint, objects, unsure, began: rebuilt_began } => {
                        began = rebuilt_began;
                        let mut note = format!(
                            "(checkpoint rebuilt from {objects} delivered objects in the destination: collection goes on after {}, reading again from {}",
                            window::rfc3339_ms(checkpoint.cursor_ms),
                            window::rfc3339_ms(checkpoint.read_from_ms)
                        );
                        if began.is_none() {
                            note.push_str(" (where collection began is not on record)");
                        }
                        if let Some((from, to)) = unsure {
                            note.push_str(&format!(
                                "; the store cannot tell which objects the feed deleted, so entries timed {} to {} that only those held are delivered again",
                                window::rfc3339_ms(from),
                                window::rfc3339_ms(to)
                            ));
                        }
                        rebuilt = Some(format!("{note})"));
                        (*checkpoint, 0)
                    }
                }
            }
        };
        let mut delivery = Self {
            org: org.to_string(),
            store,
            settings,
            name,
            checkpoint_key,
            checkpoint,
            generation,
            builder: None,
            now_ms: 0,
            rebuilt,
            began,
            position_ms: None,
            leased_until: None,
        };
        // Made here (first, rebuilt or started anew): saved before anything is read, with what
        // this pass has to say of it, kept until a pass has read its window to the end (and so
        // is about to give its summary).
        if delivery.generation == 0 {
            delivery.checkpoint.unsaid.clone_from(&delivery.rebuilt);
            delivery.save()?;
        } else if let Some(note) = delivery.checkpoint.unsaid.clone() {
            // Made by a pass that may have stopped before it said so: this one says it too.
            delivery.rebuilt = Some(note);
        }
        Ok(delivery)
    }

    /// Compare-and-swap of the checkpoint as it is now.
    pub fn save(&mut self) -> Result<(), Failure> {
        let bytes = self.checkpoint.encode();
        self.generation = self
            .store
            .write_if_generation(&self.checkpoint_key, &bytes, CONTENT_TYPE_STATE, self.generation)
            .map_err(|e| storage_failure("writing checkpoint", &self.checkpoint_key, &e))?;
        Ok(())
    }

    /// Settles a `pending` object a stopped pass left (see the module docs) and saves. The read
    /// floor moves only when the object is recorded: entries of one that was not are read again
    /// from the floor, whatever overlap this pass has (a smaller one than the stopped pass's would
    /// not reach back to the late entries among them).
    pub fn recover(&mut self, summary: &mut OrgSummary) -> Result<(), Failure> {
        let Some(mut pending) = self.checkpoint.pending.clone() else {
            return Ok(());
        };
        // Since when it may exist: a store whose memory of deletions is shorter cannot prove
        // that it never did.
        let presence = self
            .store
            .presence(&pending.key, pending.named_ms)
            .map_err(|e| storage_failure("looking up pending object", &pending.key, &e))?;
        if let (false, Presence::Absent | Presence::Unknown, Some(until)) =
            (pending.claimed, presence, pending.lease_until_ms)
        {
            // Its owner may be alive and still creating it: the name stays its own until the
            // lease is over (and the feed may take a claim at once, after which a late create
            // would deliver its entries twice).
            let free_at = until.saturating_add(LEASE_MARGIN_MS);
            if self.now_ms < free_at {
                self.leased_until = Some(free_at);
                return Err(Failure::new(
                    ErrorKind::Conflict,
                    format!(
                        "object `{}` is not there yet, and the pass that named it may still create it until {} (its store's lease on the name, and a margin for clocks that differ); nothing was lost: a pass after then settles it",
                        pending.key,
                        window::rfc3339_ms(free_at)
                    ),
                ));
            }
        }
        if pending.claimed {
            // Marked by a pass that stopped: the owner may have created the object after the
            // mark, and the feed deleted it since; or it was that pass's claim. A deleted one
            // cannot be told apart: delivered again rather than lost, and said.
            pending.unprovable |= matches!(presence, Presence::Deleted | Presence::Unknown);
        } else if matches!(presence, Presence::Absent | Presence::Unknown) {
            // The mark goes first: once the name is taken, only the mark tells a claim object
            // from the owner's.
            pending.claimed = true;
            pending.unprovable = presence == Presence::Unknown;
            self.checkpoint.pending = Some(pending.clone());
            self.save()?;
        }
        let settled = match (pending.claimed, presence) {
            (true, _) => self.claim(&pending)?,
            // Only this checkpoint's passes give its names, but a checkpoint restored from a
            // backup gives them again: what is there must be the object it meant to write.
            (false, Presence::Present) if pending.object.is_some() => {
                match self
                    .store
                    .read(&pending.key)
                    .map_err(|e| storage_failure("reading pending object", &pending.key, &e))?
                {
                    Some(stored) => self.identify(&pending, &stored.data)?,
                    // There a moment ago: the feed took it.
                    None => Settled::Created,
                }
            }
            _ => Settled::Created,
        };
        // A version 1 pending object carries no effects: read it back to learn them.
        let effects = match (settled, pending.effects.clone()) {
            (Settled::Created, Some(effects)) => Some(effects),
            (Settled::Created, None) => self.read_back(&pending)?,
            _ => None,
        };
        // Something was under its name and is gone, or unreadable with nothing recorded of it.
        if settled == Settled::Gone || (settled == Settled::Created && effects.is_none()) {
            pending.unprovable = true;
        }
        match effects {
            Some(effects) => {
                self.checkpoint.record(&effects);
                self.checkpoint.prune(self.checkpoint.cursor_ms - self.settings.overlap_ms);
                summary.objects.push(format!("(recovered) {}", pending.key));
            }
            None if pending.unprovable => summary.objects.push(format!(
                "(missing, and the store cannot tell whether the feed deleted it: its entries are read again) {}",
                pending.key
            )),
            None => summary.objects.push(format!("(claimed) {}", pending.key)),
        }
        self.checkpoint.next_seq = self.checkpoint.next_seq.max(pending.seq + 1);
        self.checkpoint.pending = None;
        self.save()
    }

    /// Takes a pending object's name with an empty object, create-only. An object already there
    /// is read: the empty claim of another recovering pass, or the owner's real object, created
    /// after the store said it was missing.
    fn claim(&mut self, pending: &Pending) -> Result<Settled, Failure> {
        let key = &pending.key;
        let empty = GzipWriter::new(GZIP_LEVEL).finish().map_err(compress_failure)?;
        match self.store.create(key, &empty, CONTENT_TYPE_LOGS, None) {
            Ok(_) => Ok(Settled::Claimed),
            Err(StoreError::AlreadyExists) => {
                match self.store.read(key).map_err(|e| storage_failure("reading claimed object", key, &e))? {
                    Some(stored) => self.identify(pending, &stored.data),
                    // There a moment ago, gone now: the owner's, or a claim, taken by the feed.
                    None => Ok(Settled::Gone),
                }
            }
            Err(e) => Err(storage_failure("claiming pending object", key, &e)),
        }
    }

    /// Refuses a checkpoint older than the objects it numbers ([`ledger::ahead`]). Objects a
    /// concurrent pass of this checkpoint created since it was read are no such sign: it is read
    /// again, and a changed generation is that pass's conflict.
    pub fn refuse_if_behind(&mut self) -> Result<(), Failure> {
        let later = ledger::ahead(self.store, self.settings, &self.checkpoint, self.now_ms)?;
        let Some(first) = later.first() else {
            return Ok(());
        };
        if self.stored_generation()?.is_some_and(|generation| generation != self.generation) {
            return Err(storage_failure("reading checkpoint", &self.checkpoint_key, &StoreError::GenerationMismatch));
        }
        Err(Failure::new(
            ErrorKind::Checkpoint,
            format!(
                "checkpoint `{}` is older than the objects in the destination: {} objects it did not write are there from where it would go on (first: `{first}`), so it was restored from a backup or copied back over a newer one; nothing was collected. Put back the newest checkpoint, or see the README's \"Moved, lost or restored state\"",
                self.checkpoint_key,
                later.len()
            ),
        ))
    }

    /// What an object found under a pending name is: a claim (it holds no entry, and real
    /// objects hold at least one, whichever build compressed it), the object the pending one
    /// names, or, where its bytes are known and differ, another's: the checkpoint is older than
    /// the objects (restored, or copied), and recording it would mark entries done that are not.
    fn identify(&self, pending: &Pending, bytes: &[u8]) -> Result<Settled, Failure> {
        if gunzip(bytes).is_ok_and(|plain| plain.is_empty()) {
            return Ok(Settled::Claimed);
        }
        match pending.object {
            Some(identity) if identity != Identity::of(bytes) => Err(self.not_ours(&pending.key)),
            _ => Ok(Settled::Created),
        }
    }

    /// An object under a name this checkpoint gives that it did not write.
    fn not_ours(&self, key: &str) -> Failure {
        Failure::new(
            ErrorKind::Checkpoint,
            format!(
                "log object `{key}` exists but checkpoint `{}` did not write it: the checkpoint is older than the objects it numbers (restored from a backup, or copied from another state location); nothing was written or marked done. Put back the newest checkpoint, or see the README's \"Moved, lost or restored state\"",
                self.checkpoint_key
            ),
        )
    }

    /// Reads a version 1 pending object back to learn its effects; `None` when it is gone or
    /// cannot be read (its entries are then read again).
    fn read_back(&mut self, pending: &Pending) -> Result<Option<Effects>, Failure> {
        let stored =
            self.store.read(&pending.key).map_err(|e| storage_failure("reading pending object", &pending.key, &e))?;
        let Some(plain) = stored.and_then(|stored| gunzip(&stored.data).ok()) else {
            return Ok(None);
        };
        // Every key is kept: nothing was cut.
        let mut effects = Effects { last_ms: None, keys: Vec::new(), keys_from_ms: i64::MIN, entries: 0 };
        for line in plain.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(text) = std::str::from_utf8(line) else {
                return Ok(None);
            };
            let meta = entry::meta(text);
            let keep = meta.timestamp_ms.or(effects.last_ms).unwrap_or(self.checkpoint.cursor_ms);
            effects.last_ms = meta.timestamp_ms.or(effects.last_ms);
            effects.keys.push((keep, meta.key));
            effects.entries += 1;
        }
        Ok(Some(effects))
    }

    /// Whether an entry's key was delivered already, or is in the object being filled.
    pub fn knows(&self, key: &str) -> bool {
        self.checkpoint.seen.contains_key(key) || self.builder.as_ref().is_some_and(|b| b.keys.contains_key(key))
    }

    /// Adds an entry to the object being filled, closing that object first when the entry
    /// belongs to another day or would take it over the size cap.
    pub fn add(&mut self, entry: Entry<'_>, summary: &mut OrgSummary) -> Result<(), Failure> {
        // An entry without a time is filed under the day its key is kept to: an object then
        // holds only entries of its own day (or kept to it), so the newest days' objects hold
        // every key a checkpoint rebuilt from them needs ([`crate::ledger`]).
        let day = window::utc_day(entry.time_ms.unwrap_or(entry.keep_ms));
        let line_len = entry.line.len() as u64 + 1;
        if let Some(b) = &self.builder
            && (b.day != day || b.gzip.uncompressed_len() + line_len > self.settings.object_max_bytes)
            && b.entries > 0
        {
            self.flush(summary)?;
        }
        let builder = self.builder.get_or_insert_with(|| Builder {
            day,
            gzip: GzipWriter::new(GZIP_LEVEL),
            keys: HashMap::new(),
            last_ms: None,
            entries: 0,
            prune_at: KEYS_PRUNE_MIN,
        });
        builder.gzip.write(entry.line.as_bytes()).map_err(compress_failure)?;
        builder.gzip.write(b"\n").map_err(compress_failure)?;
        builder.keys.insert(entry.key, entry.keep_ms);
        builder.entries += 1;
        if let Some(t) = entry.time_ms {
            builder.last_ms = Some(builder.last_ms.map_or(t, |l| l.max(t)));
            self.position_ms = Some(self.position_ms.map_or(t, |p| p.max(t)));
        }
        // Entries are read oldest first: keys older than the overlap before this one cannot come
        // back, in this pass or (after the checkpoint's pruning) the next, so an object of a
        // busy day does not hold every key it has written.
        if let (true, Some(last)) = (builder.keys.len() >= builder.prune_at, builder.last_ms) {
            // From the newest entry *time*: an entry without one keeps its key to its window's
            // end, which is no measure of what earlier entries may come back.
            let floor = last - self.settings.overlap_ms;
            builder.keys.retain(|_, t| *t >= floor);
            builder.prune_at = (builder.keys.len() * 2).max(KEYS_PRUNE_MIN);
        }
        Ok(())
    }

    /// Writes the object being filled: the three steps of the module docs.
    pub fn flush(&mut self, summary: &mut OrgSummary) -> Result<(), Failure> {
        let Some(builder) = self.builder.take() else {
            return Ok(());
        };
        let seq = self.checkpoint.next_seq;
        let key =
            window::object_key(&self.settings.key_prefix, builder.day, &self.checkpoint.object_name(&self.name), seq);
        // What recording it will change: keys that a later window may read again.
        // Keys are kept from an overlap before the newest timed entry this pass has written, not
        // before the cursor: a window that starts further back than that (from a floor a larger
        // overlap set, or a rebuilt checkpoint's) reads the rest of it after this object, and
        // must still know what was delivered there.
        let floor = self.position_ms.map_or(self.checkpoint.read_from_ms, |p| p - self.settings.overlap_ms);
        let mut keys: Vec<(i64, String)> =
            builder.keys.into_iter().filter(|(_, t)| *t >= floor).map(|(k, t)| (t, k)).collect();
        keys.sort();
        let effects = Effects { last_ms: builder.last_ms, keys, keys_from_ms: floor, entries: builder.entries };
        let bytes = builder.gzip.finish().map_err(compress_failure)?;
        // The store's lease on the name, where it takes one: the create writes nothing after its
        // end, and no other pass claims the name before then.
        let lease = i64::try_from(self.store.lease_ms()).unwrap_or(i64::MAX);
        let deadline = (lease > 0).then(|| self.now_ms.saturating_add(lease));
        // 1.
        self.checkpoint.pending = Some(Pending {
            key: key.clone(),
            seq,
            named_ms: Some(self.now_ms),
            effects: Some(effects.clone()),
            claimed: false,
            unprovable: false,
            object: Some(Identity::of(&bytes)),
            lease_until_ms: deadline,
        });
        self.save()?;
        // 2.
        match self.store.create(&key, &bytes, CONTENT_TYPE_LOGS, deadline) {
            Ok(_) => {}
            Err(StoreError::AlreadyExists) => return Err(self.name_taken(&key)),
            Err(e) => return Err(storage_failure("creating log object", &key, &e)),
        }
        // 3.
        self.checkpoint.record(&effects);
        self.checkpoint.next_seq = seq + 1;
        self.checkpoint.pending = None;
        self.save()?;
        summary.objects.push(key);
        summary.bytes_out += bytes.len() as u64;
        summary.entries_written += effects.entries;
        Ok(())
    }

    /// The pending name was taken before this pass created it. A recovering pass claims a name
    /// only after marking it in the checkpoint, which changes its generation: that pass carries
    /// on from the checkpoint, and this one stops. A generation unchanged means no pass of this
    /// checkpoint took it: the name is another's, and the pending mark goes, since nothing was
    /// written under it.
    fn name_taken(&mut self, key: &str) -> Failure {
        let claimed = Failure::new(
            ErrorKind::Conflict,
            format!(
                "creating log object `{key}`: another pass claimed it while this one was writing; nothing was lost, the next pass continues"
            ),
        );
        match self.stored_generation() {
            Ok(Some(generation)) if generation == self.generation => {
                self.checkpoint.pending = None;
                match self.save() {
                    Ok(()) => self.not_ours(key),
                    Err(failure) => failure,
                }
            }
            Ok(_) => claimed,
            Err(failure) => failure,
        }
    }

    /// The stored checkpoint's generation now (`None` when it is gone): another pass's swap
    /// since this one read or wrote it shows as a different one.
    fn stored_generation(&mut self) -> Result<Option<u64>, Failure> {
        let stored = self
            .store
            .read(&self.checkpoint_key)
            .map_err(|e| storage_failure("reading checkpoint", &self.checkpoint_key, &e))?;
        Ok(stored.map(|stored| stored.generation))
    }

    /// Closes the window `[.., to_ms]`: its last object is written and the cursor moves past it.
    pub fn finish_window(&mut self, to_ms: i64, summary: &mut OrgSummary) -> Result<(), Failure> {
        self.flush(summary)?;
        // Said in this pass's summary, which follows.
        self.checkpoint.unsaid = None;
        self.checkpoint.cursor_ms = self.checkpoint.cursor_ms.max(to_ms + 1);
        self.checkpoint.prune(self.checkpoint.cursor_ms - self.settings.overlap_ms);
        self.save()
    }
}

/// How a pending object was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// It was created (and may since have been deleted by the feed): its entries are delivered.
    Created,
    /// Its name is taken by an empty object: no pass can create it any more, and none of its
    /// entries was delivered.
    Claimed,
    /// Something was under its name and is gone: whether it held entries cannot be told.
    Gone,
}
