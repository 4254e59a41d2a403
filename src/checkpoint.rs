//! The per-organization checkpoint: how far delivery got, and what was delivered recently.
//!
//! It lives outside the log prefix (the SecOps feed ingests, and may delete, everything under it)
//! and is only ever replaced with compare-and-swap on its generation.
//!
//! Meaning: every entry with `timestamp < cursor_ms` that the API showed when it was read has been
//! delivered; `seen` holds the dedup keys of delivered entries from `cursor_ms - overlap` on, so
//! that re-reading the overlap delivers nothing twice; `pending` names the object a pass was about
//! to create, so that a pass killed after creating it (and before recording it) is recovered by
//! reading that object back.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Identifies our checkpoints among whatever else sits in a bucket.
pub const FORMAT: &str = "mulesoft-audit/checkpoint";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// The object being created when the checkpoint was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub key: String,
    pub seq: u64,
}

/// One organization's delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub org_id: String,
    pub cursor_ms: i64,
    pub next_seq: u64,
    pub pending: Option<Pending>,
    /// Dedup key → entry time (ms).
    pub seen: HashMap<String, i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: String,
    version: u32,
    org_id: String,
    cursor_ms: i64,
    cursor: String,
    next_seq: u64,
    pending: Option<Pending>,
    /// `[time_ms, key]` pairs, oldest first (sorted, so equal states encode to equal bytes).
    seen: Vec<(i64, String)>,
}

/// Why a stored checkpoint cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointError(pub String);

impl Checkpoint {
    /// A first checkpoint: nothing delivered before `cursor_ms`.
    pub fn new(org_id: &str, cursor_ms: i64) -> Self {
        Self { org_id: org_id.to_string(), cursor_ms, next_seq: 1, pending: None, seen: HashMap::new() }
    }

    /// Forgets dedup keys older than `keep_from_ms`: entries that old are never read again.
    pub fn prune(&mut self, keep_from_ms: i64) {
        self.seen.retain(|_, t| *t >= keep_from_ms);
        if self.seen.capacity() > 4 * self.seen.len() + 1024 {
            self.seen.shrink_to_fit();
        }
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
            "inspect it; if it is damaged, restore it from a backup or delete `{key}` and set \
             --since to the time after the last delivered object"
        );
        let wire: Wire = serde_json::from_slice(bytes)
            .map_err(|e| CheckpointError(format!("checkpoint `{key}` is not a valid checkpoint ({e}); {advice}")))?;
        if wire.format != FORMAT {
            return Err(CheckpointError(format!(
                "`{key}` is not a mulesoft-audit checkpoint (format `{}`); {advice}",
                wire.format
            )));
        }
        if wire.version != VERSION {
            return Err(CheckpointError(format!(
                "checkpoint `{key}` has version {}, this build reads version {VERSION}; run a \
                 matching release",
                wire.version
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
            next_seq: wire.next_seq,
            pending: wire.pending,
            seen: wire.seen.into_iter().map(|(t, k)| (k, t)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let mut c = Checkpoint::new("org-1", 1_700_000_000_000);
        c.next_seq = 7;
        c.pending = Some(Pending { key: "2023/11/14/x.json.gz".into(), seq: 7 });
        c.seen.insert("i:a".into(), 1_700_000_000_000);
        c.seen.insert("b:ff".into(), 1_699_999_999_000);
        c
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
        let v2 = String::from_utf8(sample().encode()).unwrap().replace("\"version\":1", "\"version\":2");
        assert!(Checkpoint::decode(v2.as_bytes(), "org-1", "k").unwrap_err().0.contains("version 2"));
    }

    #[test]
    fn prune_bounds_the_seen_set() {
        let mut c = sample();
        c.prune(1_700_000_000_000);
        assert_eq!(c.seen.len(), 1);
        assert!(c.seen.contains_key("i:a"));
    }
}
