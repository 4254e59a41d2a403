//! What `verify` found, per organization, and how it is shown: the JSON report, the lines for
//! people, and the exit code.

use crate::settings::{Failure, exit_code};
use serde::Serialize;

/// One organization's verdict.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrgVerdict {
    pub org_id: String,
    pub window_start: String,
    pub window_end: String,
    /// Entries the API shows in the window.
    pub expected: u64,
    /// Entries of the window found in delivered objects (each copy counted).
    pub delivered: u64,
    /// Expected entries in no delivered object.
    pub missing: u64,
    /// Extra copies of delivered entries.
    pub duplicates: u64,
    /// Delivered entries of the window that the API does not show (deleted at the source, or
    /// past its retention).
    pub unexpected: u64,
    /// Entries of the objects read that lie outside the window (verified by another window).
    pub outside_window: u64,
    /// Objects read.
    pub objects_read: u64,
    /// Objects the checkpoint says were written that are not in the store: the SecOps feed's
    /// source deletion removes what it ingested, so their entries show as missing here.
    pub objects_not_found: u64,
    /// Of those, the ones the store still keeps as deleted (Cloud Storage's soft delete: the
    /// feed took them; their names can be listed, their entries cannot be read). `None` where
    /// the store keeps no deleted objects or cannot list them.
    pub objects_soft_deleted: Option<u64>,
    /// Listed objects gone by the time they were read (the feed taking them meanwhile): not in
    /// `objects_not_found`, which counts from the listing.
    pub objects_vanished: u64,
    /// Objects under the log prefix not named the collector's way (a copy, a restore, another
    /// tool) that hold entries of this window: the feed ingests them too, so their entries count
    /// as delivered, and as duplicates where delivered elsewhere as well.
    pub foreign_objects: Vec<String>,
    /// The first missing entries (after a repair: those still missing).
    pub first_missing: Vec<MissingEntry>,
    /// Entries delivered by this repair.
    pub repaired: u64,
    /// API requests this verification sent.
    pub requests: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingEntry {
    /// The entry's dedup key: `i:<id>`, or a hash where it has no short id.
    pub key: String,
    pub timestamp: Option<String>,
}

/// Every organization's verdict, and what stopped some.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub orgs: Vec<OrgVerdict>,
    pub failures: Vec<Failure>,
}

impl VerifyReport {
    /// Complete: nothing missing, nothing twice, nothing failed.
    pub fn complete(&self) -> bool {
        self.failures.is_empty() && self.orgs.iter().all(|o| o.missing == 0 && o.duplicates == 0)
    }

    /// 0 complete, 1 incomplete (or a failure a later run can get past), 2 a setting to fix.
    pub fn exit_code(&self) -> u8 {
        exit_code(self.failures.iter().map(|f| f.kind)).max(u8::from(!self.complete()))
    }

    /// The JSON report: `status` (`complete`, `incomplete`), `orgs`, `failures`.
    pub fn json(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            status: &'static str,
            orgs: &'a [OrgVerdict],
            failures: Vec<crate::report::FailureReport>,
        }
        let out = Out {
            status: if self.complete() { "complete" } else { "incomplete" },
            orgs: &self.orgs,
            failures: self.failures.iter().cloned().map(Into::into).collect(),
        };
        serde_json::to_string(&out).unwrap_or_default()
    }

    /// Lines for a person, on stderr.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for o in &self.orgs {
            lines.push(format!(
                "organization {}: {} .. {}: expected {}, delivered {}, missing {}, duplicates {}{}",
                o.org_id,
                o.window_start,
                o.window_end,
                o.expected,
                o.delivered,
                o.missing,
                o.duplicates,
                if o.repaired > 0 { format!(", repaired {}", o.repaired) } else { String::new() }
            ));
            for m in &o.first_missing {
                lines.push(format!("  missing {} ({})", m.key, m.timestamp.as_deref().unwrap_or("no time")));
            }
            if o.objects_not_found > 0 {
                lines.push(format!(
                    "  {} objects the checkpoint records are not in the store (the SecOps feed's source deletion removes ingested objects): their entries cannot be checked here",
                    o.objects_not_found
                ));
                match o.objects_soft_deleted {
                    Some(soft) => lines.push(format!(
                        "  {soft} of them are soft-deleted (taken after they were written; the bucket keeps them until hard deletion), {} are gone without a trace",
                        o.objects_not_found - soft
                    )),
                    None => lines.push(
                        "  the store keeps no deleted objects (or may not list them), so whether the feed took them cannot be told".to_string(),
                    ),
                }
            }
            if o.objects_vanished > 0 {
                lines.push(format!(
                    "  {} listed objects were gone by the time they were read (taken while verifying): their entries show as missing",
                    o.objects_vanished
                ));
            }
            if !o.foreign_objects.is_empty() {
                lines.push(format!(
                    "  {} objects under the log prefix that the collector did not name hold entries of this window; the feed ingests them too, so they count (first: `{}`)",
                    o.foreign_objects.len(),
                    o.foreign_objects[0]
                ));
            }
            if o.unexpected > 0 {
                lines.push(format!(
                    "  {} delivered entries the API no longer shows (deleted at the source or past retention)",
                    o.unexpected
                ));
            }
        }
        lines.extend(self.failures.iter().map(|f| crate::report::error_line(f.org_id.as_deref(), &f.message)));
        lines
    }
}
