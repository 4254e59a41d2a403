//! One pass, the single entry point every trigger (`run`, `serve`, the schedule, `demo`) calls.

use crate::runtime::{Runtime, Trap, wit};
use crate::settings::Resolved;
use crate::settings::{CollectArgs, ConfigError};
use crate::store;
use crate::store::ObjectStore;
use mulesoft_audit::settings::{ErrorKind, exit_code};
use serde::Serialize;
use std::sync::Arc;

/// Everything needed to run passes: built once, used for every trigger.
pub struct Collector {
    pub runtime: Arc<Runtime>,
    pub store: Arc<dyn ObjectStore>,
    pub settings: Resolved,
}

/// A pass's outcome as printed: one JSON object.
#[derive(Debug, Serialize)]
pub struct Report {
    pub status: &'static str,
    pub orgs: Vec<OrgReport>,
    pub failures: Vec<FailureReport>,
    #[serde(skip)]
    pub exit_code: u8,
}

#[derive(Debug, Serialize)]
pub struct OrgReport {
    pub org_id: String,
    pub window_start: String,
    pub window_end: String,
    pub entries_written: u64,
    pub duplicates_skipped: u64,
    pub objects_written: usize,
    pub objects: Vec<String>,
    pub requests: u32,
    pub retries: u32,
    pub throttled_waits: u32,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, Serialize)]
pub struct FailureReport {
    pub org_id: Option<String>,
    pub kind: &'static str,
    pub message: String,
}

fn org_report(s: wit::OrgSummary) -> OrgReport {
    OrgReport {
        org_id: s.org_id,
        window_start: s.window_start,
        window_end: s.window_end,
        entries_written: s.entries_written,
        duplicates_skipped: s.duplicates_skipped,
        objects_written: s.objects.iter().filter(|o| !o.starts_with('(')).count(),
        objects: s.objects,
        requests: s.requests,
        retries: s.retries,
        throttled_waits: s.throttled_waits,
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
    }
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
        // A store that cannot be opened is a configuration problem, unless it was only unavailable
        // (a metadata server slow to answer): then the next run may well succeed.
        let open = |dest: &str, what: &'static str| {
            store::open(dest, &settings.gcs, handle.clone()).map_err(|e| {
                if matches!(e.downcast_ref::<store::StoreError>(), Some(store::StoreError::Unavailable(_))) {
                    e.context(what)
                } else {
                    anyhow::Error::from(ConfigError(format!("{what}: {e:#}")))
                }
            })
        };
        let logs = open(&settings.dest, "destination")?;
        let store = match &settings.state_dest {
            Some(state_dest) => {
                let state = open(state_dest, "state destination")?;
                Arc::new(store::Split {
                    logs,
                    state,
                    key_prefix: settings.config.key_prefix.clone(),
                    state_prefix: settings.config.state_prefix.clone(),
                })
            }
            None => logs,
        };
        let runtime = Arc::new(Runtime::new(cache_dir)?);
        Ok(Self { runtime, store, settings })
    }

    /// Runs one pass to completion (blocking).
    pub fn pass(&self) -> Report {
        let s = &self.settings;
        let started = std::time::Instant::now();
        tracing::info!(orgs = s.config.org_ids.len(), dest = %self.store.describe(), "pass starting");
        let outcome = self.runtime.run(&s.limits, s.origin.clone(), self.store.clone(), &s.config);
        let report = match outcome {
            Ok(Ok(summary)) => Report {
                status: "ok",
                orgs: summary.orgs.into_iter().map(org_report).collect(),
                failures: Vec::new(),
                exit_code: 0,
            },
            Ok(Err(error)) => {
                let exit_code = exit_code(error.failures.iter().map(|f| ErrorKind::from(f.kind)));
                Report {
                    status: "failed",
                    orgs: error.completed.into_iter().map(org_report).collect(),
                    failures: error
                        .failures
                        .into_iter()
                        .map(|f| FailureReport {
                            org_id: f.org_id,
                            kind: ErrorKind::from(f.kind).name(),
                            message: f.message,
                        })
                        .collect(),
                    exit_code,
                }
            }
            Err(trap) => {
                let kind = match trap {
                    Trap::TimeLimit(_) => "time-limit",
                    Trap::MemoryLimit(_) => "memory-limit",
                    Trap::Other(_) => "trap",
                };
                Report {
                    status: "failed",
                    orgs: Vec::new(),
                    failures: vec![FailureReport { org_id: None, kind, message: scrub(&format!("{trap}"), &s.secret) }],
                    exit_code: 1,
                }
            }
        };
        let entries: u64 = report.orgs.iter().map(|o| o.entries_written).sum();
        tracing::info!(
            status = report.status,
            entries,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "pass finished"
        );
        // Failures last, so that the last line a person sees says what went wrong.
        for f in &report.failures {
            tracing::error!(org = f.org_id.as_deref().unwrap_or("-"), kind = f.kind, "{}", f.message);
        }
        report
    }
}
