//! A live progress line per organization for a person at a terminal: where in its window the
//! pass is, entries a second, and the time left. Read from what the component writes (each
//! checkpoint's cursor, each created object's entry count), so the engine needs no hook for it.
//! Off a terminal, the structured `object written` log lines are the progress.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mulesoft_audit::checkpoint::Glance;
use std::collections::HashMap;

pub struct Progress {
    bars: MultiProgress,
    /// Where this pass's windows end (Unix ms): now minus the lag.
    end_ms: i64,
    orgs: HashMap<String, OrgProgress>,
}

struct OrgProgress {
    bar: ProgressBar,
    /// The cursor when the pass found the checkpoint: the bar's zero.
    start_ms: i64,
    entries: u64,
    /// The object named in the checkpoint, and its entries, until it is created.
    pending: Option<(String, u64)>,
}

impl Progress {
    /// Bars on stderr where indicatif can draw them: a terminal that is not `TERM=dumb` (or
    /// unset). `None` otherwise, so that the per-object log lines stay: a person at a dumb
    /// terminal sees those rather than nothing.
    pub fn for_terminal(end_ms: i64) -> Option<Self> {
        let target = ProgressDrawTarget::stderr();
        (!target.is_hidden()).then(|| Self::new(end_ms, target))
    }

    pub fn new(end_ms: i64, target: ProgressDrawTarget) -> Self {
        Self { bars: MultiProgress::with_draw_target(target), end_ms, orgs: HashMap::new() }
    }

    /// A checkpoint as written: the cursor moves the bar, a pending object's entries count once
    /// it is created.
    pub fn checkpoint(&mut self, checkpoint: &Glance) {
        let end = self.end_ms;
        let org = self.orgs.entry(checkpoint.org_id.clone()).or_insert_with(|| {
            let length = u64::try_from((end - checkpoint.cursor_ms) / 1000).unwrap_or(0).max(1);
            let style = ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {percent:>3}% {msg} (ETA {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let bar = self.bars.add(ProgressBar::new(length).with_style(style).with_prefix(checkpoint.org_id.clone()));
            OrgProgress { bar, start_ms: checkpoint.cursor_ms, entries: 0, pending: None }
        });
        let done = u64::try_from((checkpoint.cursor_ms - org.start_ms) / 1000).unwrap_or(0);
        org.bar.set_position(done.min(org.bar.length().unwrap_or(done)));
        org.pending = checkpoint.pending.clone();
        org.describe(checkpoint.cursor_ms);
    }

    /// An object was created under `key`.
    pub fn created(&mut self, key: &str) {
        for org in self.orgs.values_mut() {
            if let Some((_, entries)) = org.pending.take_if(|(pending, _)| pending == key) {
                org.entries += entries;
            }
        }
    }

    /// What a bar shows of an organization: `(position, length, entries)`.
    #[cfg(test)]
    fn state(&self, org: &str) -> Option<(u64, u64, u64)> {
        self.orgs.get(org).map(|o| (o.bar.position(), o.bar.length().unwrap_or(0), o.entries))
    }

    pub fn finish(&self) {
        for org in self.orgs.values() {
            org.bar.finish();
        }
    }
}

impl OrgProgress {
    fn describe(&self, cursor_ms: i64) {
        let elapsed = self.bar.elapsed().as_secs_f64().max(0.001);
        self.bar.set_message(format!(
            "at {} · {} entries · {:.0}/s",
            mulesoft_audit::window::rfc3339_ms(cursor_ms),
            self.entries,
            self.entries as f64 / elapsed
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mulesoft_audit::checkpoint::{Checkpoint, Effects, Pending};

    fn glance(checkpoint: &Checkpoint) -> Glance {
        Glance::read(&checkpoint.encode()).unwrap()
    }

    #[test]
    fn the_bar_follows_the_cursor_and_counts_created_objects() {
        let hour = 3_600_000;
        let mut progress = Progress::new(10 * hour, ProgressDrawTarget::hidden());
        let mut checkpoint = Checkpoint::new("org-1", 6 * hour, None);
        progress.checkpoint(&glance(&checkpoint));
        assert_eq!(progress.state("org-1"), Some((0, 4 * 3600, 0)));
        let effects = Effects { last_ms: Some(7 * hour), keys: Vec::new(), keys_from_ms: 0, entries: 250 };
        checkpoint.pending = Some(Pending {
            key: "logs/a".into(),
            seq: 1,
            named_ms: None,
            effects: Some(effects),
            claimed: false,
            unprovable: false,
            object: None,
            lease_until_ms: None,
        });
        progress.checkpoint(&glance(&checkpoint));
        progress.created("logs/other");
        assert_eq!(progress.state("org-1").map(|s| s.2), Some(0), "another object's creation counts nothing");
        progress.created("logs/a");
        checkpoint.pending = None;
        checkpoint.cursor_ms = 7 * hour;
        progress.checkpoint(&glance(&checkpoint));
        assert_eq!(progress.state("org-1"), Some((3600, 4 * 3600, 250)));
        progress.created("logs/a");
        assert_eq!(progress.state("org-1").map(|s| s.2), Some(250), "counted once");
    }
}
