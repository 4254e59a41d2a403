//! The data set: entries shaped like the real API's, generated from the seed so that every run of
//! a test sees the same ones.

use crate::config::{OrgSpec, SimConfig};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// One stored entry: its exact bytes and what the query filters on.
#[derive(Debug, Clone)]
pub struct Entry {
    pub ts: i64,
    /// The id, or a synthetic sort key for entries without one.
    pub sort_id: String,
    pub has_id: bool,
    pub raw: String,
    pub late: bool,
}

pub(crate) struct Org {
    pub(crate) spec: OrgSpec,
    /// Sorted by (ts, sort_id).
    pub(crate) entries: Vec<Entry>,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn hex_id(rng: &mut fastrand::Rng) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        rng.u32(..),
        rng.u16(..),
        rng.u16(..0x1000),
        rng.u16(..) | 0x8000,
        rng.u64(..1 << 48)
    )
}

const ACTIONS: &[(&str, &str)] = &[
    ("Create", "Application"),
    ("Update", "API"),
    ("Delete", "Environment"),
    ("Login", "User"),
    ("Modify", "Policy"),
    ("Deploy", "Application"),
];

pub(crate) fn make_entry(rng: &mut fastrand::Rng, org: &str, ts: i64, odd_permille: u32) -> Entry {
    let id = hex_id(rng);
    let (action, object_type) = ACTIONS[rng.usize(..ACTIONS.len())];
    let user = format!("user{}", rng.u32(..50));
    let odd = rng.u32(..1000) < odd_permille;
    let kind = if odd { rng.u32(..5) } else { 99 };
    let payload = match kind {
        0 => format!(r#"{{"note":"{}"}}"#, "x".repeat(40 * 1024 + rng.usize(..2048))),
        1 => r#"{"name":"Zoë 日本語 😀 \u00e9","tabs":"a\tb","quote":"say \"hi\"","slash":"a\/b","nl":"line1\nline2"}"#
            .to_string(),
        _ => format!(r#"{{"changes":[{{"field":"replicas","from":{},"to":{}}}]}}"#, rng.u8(..5), rng.u8(..5)),
    };
    let no_id = kind == 2;
    let no_ts = kind == 3;
    let mut fields = Vec::new();
    if !no_id {
        fields.push(format!(r#""id":"{id}""#));
    }
    if !no_ts {
        fields.push(format!(r#""timestamp":{ts}"#));
    }
    fields.push(format!(r#""action":"{action}","objectType":"{object_type}","objectId":"{}","objectName":"obj-{}","platform":"ANYPOINT","organizationId":"{org}","environmentId":"env-{}","userId":"{}","userName":"{user}","payload":{payload}"#, hex_id(rng), rng.u16(..), rng.u8(..3), hex_id(rng)));
    if kind == 4 {
        // Staff-written entry with nested detail.
        fields.push(r#""userName":"Anypoint Staff","detail":{"ip":"10.0.0.1","agent":"internal"}"#.to_string());
    }
    Entry { ts, sort_id: id, has_id: !no_id, raw: format!("{{{}}}", fields.join(",")), late: false }
}

/// Every org's entries, drawn from `rng` (the simulator keeps drawing from it afterwards, so the
/// whole run follows from the seed).
pub(crate) fn generate(config: &SimConfig, rng: &mut fastrand::Rng) -> HashMap<String, Org> {
    let now = now_ms();
    let span = config.span.as_millis() as i64;
    let mut orgs = HashMap::new();
    for spec in &config.orgs {
        let mut entries = Vec::with_capacity(spec.entries);
        let mut i = 0;
        while i < spec.entries {
            let ts = now - span + rng.i64(0..span.max(1));
            let cluster = if config.same_ms_cluster > 0 && rng.u32(..100) == 0 {
                config.same_ms_cluster.min(spec.entries - i)
            } else {
                1
            };
            for _ in 0..cluster {
                let mut e = make_entry(rng, &spec.id, ts, config.odd_permille);
                e.late = rng.u32(..1000) < config.late_permille;
                entries.push(e);
                i += 1;
            }
        }
        entries.sort_by(|a, b| (a.ts, &a.sort_id).cmp(&(b.ts, &b.sort_id)));
        orgs.insert(spec.id.clone(), Org { spec: spec.clone(), entries });
    }
    orgs
}
