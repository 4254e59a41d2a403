//! The per-organization checkpoint: how far delivery got, and what was delivered recently.
//!
//! It lives outside the log prefix (the SecOps feed ingests, and may delete, everything under it)
//! and is only ever replaced with compare-and-swap on its generation.
//!
//! Meaning:
//! - every entry with a time in `[read_from_ms, cursor_ms)` that the API showed when it was read
//!   has been delivered;
//! - nothing before `read_from_ms` is ever read again: it is where collection started (`--since`,
//!   or the lookback) or, later, where [`Checkpoint::prune`] forgot the dedup keys, so a window
//!   never reaches back past it, whatever overlap a later pass is given;
//! - `seen` holds the dedup keys of delivered entries from `read_from_ms` on, so that re-reading
//!   the overlap delivers nothing twice;
//! - `pending` names the object a pass was about to create, with what recording it changes
//!   ([`Effects`]), so that a pass stopped after creating it is recovered without reading it back
//!   (the feed may have ingested and deleted it meanwhile);
//! - `lineage` is drawn when the checkpoint is made and is part of every object name it gives
//!   ([`crate::window::object_key`]): a checkpoint made anew (state moved, lost or recreated)
//!   numbers its objects from 1 again, and only the lineage keeps it from taking another
//!   checkpoint's objects for its own.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Identifies our checkpoints among whatever else sits in a bucket.
pub const FORMAT: &str = "mulesoft-audit/checkpoint";
/// The version this build writes. Versions 1 (no read floor, pendings without effects), 2 (no
/// lineage: objects named without one) and 3 (no lease on a pending name) are read too; an
/// earlier build refuses version 4, whose leases it would not keep to.
pub const VERSION: u32 = 4;

/// What recording an object changes: the cursor moves to its last entry's time, and the keys of
/// its entries that later windows may read again join `seen`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effects {
    /// Its last entry's time, when any of its entries had one.
    pub last_ms: Option<i64>,
    /// `[time_ms, key]` of its entries from `keys_from_ms` on, oldest first.
    pub keys: Vec<(i64, String)>,
    /// Where the keys were cut: the overlap before the cursor the object moves to. Recording
    /// raises the read floor to it, so that the seen set stays complete from the floor on
    /// whatever overlap the pass that records it is given.
    pub keys_from_ms: i64,
    /// How many entries it holds.
    pub entries: u64,
}

/// The object being created when the checkpoint was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub key: String,
    pub seq: u64,
    /// When it was named (the pass's clock): the earliest it can have been created. Absent in
    /// version 1 checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_ms: Option<i64>,
    /// Absent only in version 1 checkpoints: such an object is read back to learn them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effects: Option<Effects>,
    /// A recovering pass found it missing and is taking its name (see [`crate::delivery`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claimed: bool,
    /// It was found missing where the store cannot tell whether it was created and deleted: its
    /// entries may be delivered twice, which the pass that settles it says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unprovable: bool,
    /// The bytes it will hold, so that an object found under its name is known to be this one
    /// before its effects are recorded. Absent before version 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Identity>,
    /// The end of its store's lease on the name (the deadline its create was given): until then,
    /// and a margin for clocks that differ, no other pass claims the name, which the owner may
    /// still create. Absent where the store takes no lease, and before version 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until_ms: Option<i64>,
}

/// What identifies an object's bytes: their length and CRC32C (what Cloud Storage keeps of every
/// object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub bytes: u64,
    pub crc32c: u32,
}

impl Identity {
    pub fn of(data: &[u8]) -> Self {
        Self { bytes: data.len() as u64, crc32c: crc32c::crc32c(data) }
    }
}

/// A new lineage: 12 hex digits from 48 random bits.
pub fn lineage(random: u64) -> String {
    format!("{:012x}", random >> 16)
}

/// One organization's delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub org_id: String,
    pub cursor_ms: i64,
    pub read_from_ms: i64,
    pub next_seq: u64,
    pub pending: Option<Pending>,
    /// Dedup key → entry time (ms).
    pub seen: HashMap<String, i64>,
    /// Drawn when the checkpoint was made ([`lineage`]); `None` for one made before version 3,
    /// whose objects keep the names they had.
    pub lineage: Option<String>,
    /// The lineages of the objects it was rebuilt from ([`crate::ledger`]; `""` for names
    /// without one), each with the highest number seen then: their objects up to it are behind
    /// it. Another lineage's objects beside its own, or past those numbers, show another
    /// checkpoint of the organization writing: this one restored over it, or an old deployment.
    pub superseded: Vec<(String, u64)>,
    /// What the pass that made it (rebuilt, or started anew) had to say of it, kept until a pass
    /// has read a window to its end: a pass that stops before then never gives its summary, and
    /// the entries the note warns of would come twice unsaid. Every pass until then says it.
    pub unsaid: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: String,
    version: u32,
    org_id: String,
    cursor_ms: i64,
    cursor: String,
    /// Version 2 on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_from_ms: Option<i64>,
    /// Version 3 on, for checkpoints made by version 3 on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lineage: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    superseded: Vec<(String, u64)>,
    /// Version 4 on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unsaid: Option<String>,
    next_seq: u64,
    pending: Option<Pending>,
    /// `[time_ms, key]` pairs, oldest first (sorted, so equal states encode to equal bytes).
    seen: Vec<(i64, String)>,
}

/// What a stored checkpoint says of progress, read without building its seen set: for a host's
/// progress line, which looks at every checkpoint a pass writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glance {
    pub org_id: String,
    pub cursor_ms: i64,
    /// The object being created, and how many entries it holds.
    pub pending: Option<(String, u64)>,
}

impl Glance {
    pub fn read(bytes: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct GlanceWire {
            format: String,
            org_id: String,
            cursor_ms: i64,
            pending: Option<Pending>,
        }
        let wire: GlanceWire = serde_json::from_slice(bytes).ok()?;
        (wire.format == FORMAT).then(|| Self {
            org_id: wire.org_id,
            cursor_ms: wire.cursor_ms,
            pending: wire.pending.and_then(|p| p.effects.map(|e| (p.key, e.entries))),
        })
    }
}

/// Why a stored checkpoint cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointError(pub String);

impl Checkpoint {
    /// A first checkpoint: collection starts at `start_ms`, and nothing before it is ever read.
    pub fn new(org_id: &str, start_ms: i64, lineage: Option<String>) -> Self {
        Self {
            org_id: org_id.to_string(),
            cursor_ms: start_ms,
            read_from_ms: start_ms,
            next_seq: 1,
            pending: None,
            seen: HashMap::new(),
            lineage,
            superseded: Vec::new(),
            unsaid: None,
        }
    }

    /// What its object names carry after `mulesoft-audit-`: `name` (the organization, or its
    /// repair's name), then the lineage where it has one.
    pub fn object_name(&self, name: &str) -> String {
        match &self.lineage {
            Some(lineage) => format!("{name}.{lineage}"),
            None => name.to_string(),
        }
    }

    /// Forgets dedup keys older than `floor_ms` and never reads before it again: entries that old
    /// are not read by this pass or the next, and reading them later would deliver them twice.
    pub fn prune(&mut self, floor_ms: i64) {
        if floor_ms <= self.read_from_ms {
            return;
        }
        self.read_from_ms = floor_ms;
        self.seen.retain(|_, t| *t >= floor_ms);
        if self.seen.capacity() > 4 * self.seen.len() + 1024 {
            self.seen.shrink_to_fit();
        }
    }

    /// Records a created object: the cursor moves past its entries and their keys join `seen`.
    pub fn record(&mut self, effects: &Effects) {
        if let Some(last) = effects.last_ms {
            self.cursor_ms = self.cursor_ms.max(last);
        }
        self.prune(effects.keys_from_ms);
        self.seen.extend(effects.keys.iter().filter(|(t, _)| *t >= self.read_from_ms).map(|(t, k)| (k.clone(), *t)));
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut seen: Vec<(i64, String)> = self.seen.iter().map(|(k, t)| (*t, k.clone())).collect();
        seen.sort();
        let wire = Wire {
            format: FORMAT.to_string(),
            version: VERSION,
            org_id: self.org_id.clone(),
            cursor_ms: self.cursor_ms,
            cursor: crate::window::rfc3339_ms(self.cursor_ms),
            read_from_ms: Some(self.read_from_ms),
            lineage: self.lineage.clone(),
            superseded: self.superseded.clone(),
            unsaid: self.unsaid.clone(),
            next_seq: self.next_seq,
            pending: self.pending.clone(),
            seen,
        };
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Reads a stored checkpoint, refusing anything that is not ours for this org: guessing (or
    /// silently starting over from the lookback) would lose or duplicate data.
    pub fn decode(bytes: &[u8], org_id: &str, key: &str) -> Result<Self, CheckpointError> {
        let advice = format!(
            "inspect it; if it is damaged, put back the newest backup, or delete `{key}`: the next \
             pass rebuilds it from the delivered objects, or says what it needs (README, \"Moved, \
             lost or restored state\")"
        );
        let wire: Wire = serde_json::from_slice(bytes)
            .map_err(|e| CheckpointError(format!("checkpoint `{key}` is not a valid checkpoint ({e}); {advice}")))?;
        if wire.format != FORMAT {
            return Err(CheckpointError(format!(
                "`{key}` is not a mulesoft-audit checkpoint (format `{}`); {advice}",
                wire.format
            )));
        }
        let read_from_ms = match (wire.version, wire.read_from_ms) {
            (2 | 3 | VERSION, Some(from)) => from,
            // Version 1 kept no floor: its seen set reaches back as far as it was pruned.
            (1, None) => wire.seen.first().map_or(wire.cursor_ms, |(t, _)| (*t).min(wire.cursor_ms)),
            (version, _) => {
                return Err(CheckpointError(format!(
                    "checkpoint `{key}` has version {version}, this build reads versions 1 to {VERSION}; run a \
                     matching release"
                )));
            }
        };
        if let Some(lineage) = wire
            .lineage
            .iter()
            .chain(wire.superseded.iter().map(|(l, _)| l).filter(|l| !l.is_empty()))
            .find(|l| !valid_lineage(l))
        {
            return Err(CheckpointError(format!(
                "checkpoint `{key}` has a malformed lineage `{lineage}` (12 lower-case hex digits); {advice}"
            )));
        }
        if wire.org_id != org_id {
            return Err(CheckpointError(format!(
                "checkpoint `{key}` belongs to organization `{}`, not `{org_id}`; {advice}",
                wire.org_id
            )));
        }
        Ok(Self {
            org_id: wire.org_id,
            cursor_ms: wire.cursor_ms,
            read_from_ms,
            next_seq: wire.next_seq,
            pending: wire.pending,
            seen: wire.seen.into_iter().map(|(t, k)| (k, t)).collect(),
            lineage: wire.lineage,
            superseded: wire.superseded,
            unsaid: wire.unsaid,
        })
    }
}

/// A lineage as [`lineage`] draws it: it goes into object names, so nothing else is taken.
fn valid_lineage(lineage: &str) -> bool {
    lineage.len() == 12 && lineage.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let mut c = Checkpoint::new("org-1", 1_700_000_000_000, Some(lineage(0xabcd_ef01_2345_6789)));
        c.next_seq = 7;
        c.pending = Some(Pending {
            key: "2023/11/14/x.json.gz".into(),
            seq: 7,
            named_ms: Some(1_700_000_000_600),
            effects: Some(Effects {
                last_ms: Some(1_700_000_000_500),
                keys: vec![(1_700_000_000_400, "i:z".into())],
                keys_from_ms: 1_699_999_999_900,
                entries: 3,
            }),
            claimed: true,
            unprovable: true,
            object: Some(Identity::of(b"bytes")),
            lease_until_ms: Some(1_700_000_600_600),
        });
        c.seen.insert("i:a".into(), 1_700_000_000_000);
        c.seen.insert("b:ff".into(), 1_699_999_999_000);
        c
    }

    #[test]
    fn a_glance_reads_what_progress_needs() {
        let mut c = Checkpoint::new("org-1", 5_000, None);
        c.seen.insert("i:a".into(), 4_000);
        let effects = Effects { last_ms: Some(6_000), keys: Vec::new(), keys_from_ms: 0, entries: 42 };
        c.pending = Some(Pending {
            key: "logs/x".into(),
            seq: 1,
            named_ms: None,
            effects: Some(effects),
            claimed: false,
            unprovable: false,
            object: None,
            lease_until_ms: None,
        });
        let glance = Glance::read(&c.encode()).unwrap();
        assert_eq!(glance, Glance { org_id: "org-1".into(), cursor_ms: 5_000, pending: Some(("logs/x".into(), 42)) });
        assert_eq!(Glance::read(b"{}"), None);
    }

    #[test]
    fn a_lineage_is_in_the_object_names_and_version_2_has_none() {
        let c = sample();
        assert_eq!(c.lineage.as_deref(), Some("abcdef012345"));
        assert_eq!(c.object_name("org-1"), "org-1.abcdef012345");
        let v2 = r#"{"format":"mulesoft-audit/checkpoint","version":2,"org_id":"org-1","cursor_ms":5000,"cursor":"x","read_from_ms":4000,"next_seq":4,"pending":null,"seen":[]}"#;
        let c = Checkpoint::decode(v2.as_bytes(), "org-1", "k").unwrap();
        assert_eq!((c.lineage, c.read_from_ms), (None, 4000));
        assert_eq!(Checkpoint::new("o", 0, None).object_name("o"), "o");
    }

    #[test]
    fn round_trips() {
        let c = sample();
        let bytes = c.encode();
        assert_eq!(Checkpoint::decode(&bytes, "org-1", "k").unwrap(), c);
        // Deterministic bytes.
        assert_eq!(bytes, Checkpoint::decode(&bytes, "org-1", "k").unwrap().encode());
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\"cursor\":\"2023-11-14T22:13:20.000Z\""), "{text}");
    }

    #[test]
    fn refuses_foreign_or_corrupt_objects() {
        let bytes = sample().encode();
        assert!(Checkpoint::decode(&bytes, "org-2", "k").unwrap_err().0.contains("belongs to"));
        assert!(Checkpoint::decode(b"{}", "org-1", "k").is_err());
        assert!(Checkpoint::decode(b"garbage", "org-1", "k").unwrap_err().0.contains("not a valid"));
        let other = String::from_utf8(bytes).unwrap().replace(FORMAT, "something-else");
        assert!(Checkpoint::decode(other.as_bytes(), "org-1", "k").unwrap_err().0.contains("not a mulesoft-audit"));
        let v5 = String::from_utf8(sample().encode()).unwrap().replace("\"version\":4", "\"version\":5");
        assert!(Checkpoint::decode(v5.as_bytes(), "org-1", "k").unwrap_err().0.contains("version 5"));
        // Version 3, before leases, is read: its pending names have none.
        let v3 = String::from_utf8(sample().encode()).unwrap().replace("\"version\":4", "\"version\":3");
        assert!(Checkpoint::decode(v3.as_bytes(), "org-1", "k").is_ok());
        let odd = String::from_utf8(sample().encode()).unwrap().replace(&lineage(0xabcd_ef01_2345_6789), "../x");
        assert!(Checkpoint::decode(odd.as_bytes(), "org-1", "k").unwrap_err().0.contains("malformed lineage"));
    }

    #[test]
    fn version_1_is_read_with_its_seen_set_as_the_floor() {
        let v1 = r#"{"format":"mulesoft-audit/checkpoint","version":1,"org_id":"org-1","cursor_ms":5000,"cursor":"x","next_seq":4,"pending":{"key":"logs/a","seq":4},"seen":[[4400,"i:a"],[4900,"i:b"]]}"#;
        let c = Checkpoint::decode(v1.as_bytes(), "org-1", "k").unwrap();
        assert_eq!((c.cursor_ms, c.read_from_ms, c.next_seq), (5000, 4400, 4));
        assert_eq!(
            c.pending,
            Some(Pending {
                key: "logs/a".into(),
                seq: 4,
                named_ms: None,
                effects: None,
                claimed: false,
                unprovable: false,
                object: None,
                lease_until_ms: None,
            })
        );
        let empty = v1.replace(r#"[[4400,"i:a"],[4900,"i:b"]]"#, "[]");
        assert_eq!(Checkpoint::decode(empty.as_bytes(), "org-1", "k").unwrap().read_from_ms, 5000);
    }

    #[test]
    fn prune_bounds_the_seen_set_and_raises_the_floor() {
        let mut c = sample();
        c.read_from_ms = 0;
        c.prune(1_700_000_000_000);
        assert_eq!(c.seen.len(), 1);
        assert!(c.seen.contains_key("i:a"));
        assert_eq!(c.read_from_ms, 1_700_000_000_000);
        // A lower floor (a larger overlap) never lowers it again.
        c.prune(1_600_000_000_000);
        assert_eq!(c.read_from_ms, 1_700_000_000_000);
    }

    #[test]
    fn recording_moves_the_cursor_and_keeps_keys_from_the_floor_on() {
        let mut c = Checkpoint::new("org-1", 1_000, None);
        c.seen.insert("i:early".into(), 2_000);
        let keys = vec![(900, "i:old".into()), (4_000, "i:new".into())];
        c.record(&Effects { last_ms: Some(5_000), keys, keys_from_ms: 3_000, entries: 2 });
        assert_eq!(c.cursor_ms, 5_000);
        assert!(c.seen.contains_key("i:new") && !c.seen.contains_key("i:old"));
        // The keys were cut at 3 000: the floor follows, and older keys go.
        assert_eq!(c.read_from_ms, 3_000);
        assert!(!c.seen.contains_key("i:early"));
        c.record(&Effects { last_ms: None, keys: vec![], keys_from_ms: 0, entries: 1 });
        assert_eq!((c.cursor_ms, c.read_from_ms), (5_000, 3_000));
    }
}
