//! One pass, the single entry point every trigger (`run`, `serve`, the schedule, `demo`) calls.

use crate::runtime::Runtime;
use crate::settings::CollectArgs;
use crate::settings::Resolved;
use crate::store;
use crate::store::Store;
use mulesoft_audit::collect::PassResult;
use mulesoft_audit::report::Report;
use std::sync::Arc;

/// Everything needed to run passes: built once, used for every trigger.
pub struct Collector {
    pub runtime: Arc<Runtime>,
    pub store: Arc<dyn Store>,
    pub settings: Resolved,
    /// Progress bars when stderr is a terminal (`run`, `demo`; not `serve`).
    pub progress: bool,
    /// When the pass in flight began (Unix ms), for recording it as stopped.
    in_flight: std::sync::Mutex<Option<i64>>,
}

/// Removes the secret from text the host itself makes (the engine's messages come scrubbed).
pub use mulesoft_audit::settings::scrub;

impl Collector {
    /// Builds the collector for a set of arguments: settings, store, compiled component.
    pub fn open(
        args: &CollectArgs,
        cache_dir: Option<&std::path::Path>,
        handle: tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        let settings = args.resolve()?;
        let store = store::open_destination(&settings.destination, handle)?;
        let runtime = Arc::new(Runtime::new(cache_dir)?);
        Ok(Self { runtime, store, settings, progress: false, in_flight: std::sync::Mutex::new(None) })
    }

    /// Runs one pass to completion (blocking).
    pub fn pass(&self) -> Report {
        let s = &self.settings;
        let started = std::time::Instant::now();
        tracing::info!(orgs = s.config.org_ids.len(), dest = %self.store.describe(), "pass starting");
        let started_ms = chrono::Utc::now().timestamp_millis();
        *self.in_flight.lock().unwrap_or_else(|p| p.into_inner()) = Some(started_ms);
        let end_ms = started_ms - (s.config.lag_seconds as i64).saturating_mul(1000);
        let progress = if self.progress { crate::progress::Progress::for_terminal(end_ms) } else { None };
        let outcome = self.runtime.run(&s.limits, s.origin.clone(), self.store.clone(), &s.config, progress);
        let report = match outcome {
            Ok(outcome) => Report::from(outcome.map_or_else(PassResult::from, PassResult::from)),
            Err(trap) => {
                let message = scrub(&format!("{trap}"), &s.secret);
                self.record_stopped(started_ms, trap.kind(), &message);
                Report::stopped(trap.kind(), message)
            }
        };
        *self.in_flight.lock().unwrap_or_else(|p| p.into_inner()) = None;
        tracing::info!(
            status = report.status.name(),
            entries = report.entries_written(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "pass finished"
        );
        // Failures last, so that the last line a person sees says what went wrong.
        for f in &report.failures {
            tracing::error!(org = f.org_id.as_deref().unwrap_or("-"), kind = f.kind, "{}", f.message);
        }
        report
    }

    /// The pass in flight, stopped from outside ([`crate::stop`]): recorded with `kind` and
    /// `message` in the status of each organization it had not recorded; its report. `None` when
    /// no pass is in flight.
    pub fn stopped_by(&self, kind: &'static str, message: String) -> Option<Report> {
        let started_ms = (*self.in_flight.lock().unwrap_or_else(|p| p.into_inner()))?;
        self.record_stopped(started_ms, kind, &message);
        let report = Report::stopped(kind, message);
        report.error_lines().for_each(|line| tracing::error!("{line}"));
        Some(report)
    }

    /// A pass this host stopped, in the status of each organization it had not recorded: the
    /// engine's own bookkeeping ([`mulesoft_audit::status::record_stopped`]), run natively. The
    /// message's first line: a trap's backtrace belongs in the log, not in a status row.
    fn record_stopped(&self, started_ms: i64, kind: &str, message: &str) {
        let Ok(settings) = mulesoft_audit::settings::Settings::from_raw(self.settings.config.clone().into()) else {
            return;
        };
        let mut orgs = match orgs_with_state(self.store.as_ref(), &settings.state_prefix) {
            Ok(orgs) => orgs,
            Err(e) => {
                tracing::warn!(error = %e, "the stopped pass is not recorded in status: the state cannot be listed");
                return;
            }
        };
        mulesoft_audit::status::add_spellings(&mut orgs, settings.org_ids.iter().cloned());
        let now = chrono::Utc::now().timestamp_millis();
        let message = message.lines().next().unwrap_or_default();
        mulesoft_audit::status::record_stopped(self.store.as_ref(), &settings, &orgs, started_ms, now, kind, message);
    }
}

/// The organizations with state under `prefix` (a checkpoint or a status object), sorted, each
/// once in the spelling of its checkpoint where it has one.
pub fn orgs_with_state(store: &dyn Store, prefix: &str) -> Result<Vec<String>, store::StoreError> {
    let keys = store.list(prefix)?;
    let mut orgs: Vec<String> =
        keys.iter().filter_map(|key| mulesoft_audit::window::checkpoint_org(prefix, key)).map(str::to_string).collect();
    let with_status = keys.iter().filter_map(|key| mulesoft_audit::status::status_org(prefix, key)).map(str::to_string);
    mulesoft_audit::status::add_spellings(&mut orgs, with_status);
    orgs.sort();
    Ok(orgs)
}
