//! `serve`'s `GET /metrics`: what its passes did, in the Prometheus (OpenMetrics) text format,
//! taken from each pass's [`Report`] so that the numbers are the summary's own.

use mulesoft_audit::report::{Report, Status};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// One label, e.g. `org="…"`.
type Labels = Vec<(&'static str, String)>;

/// The media type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Metrics {
    registry: Registry,
    entries: Family<Labels, Counter>,
    objects: Family<Labels, Counter>,
    duplicates: Family<Labels, Counter>,
    requests: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    throttled: Family<Labels, Counter>,
    replies: Family<Labels, Counter>,
    passes: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    duration: Histogram,
    failed_in_a_row: Gauge,
    lag: Family<Labels, Gauge>,
    /// Each organization's last covered instant (Unix ms): its lag is measured at each scrape.
    covered_until: Mutex<BTreeMap<String, i64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mulesoft_audit");
        let mut family = |name: &str, help: &str| {
            let family = Family::<Labels, Counter>::default();
            registry.register(name, help, family.clone());
            family
        };
        let entries = family("entries_written", "Audit entries written to new objects");
        let objects = family("objects_written", "Objects created");
        let duplicates = family("duplicates_skipped", "Entries read again and recognised as delivered");
        let requests = family("requests", "HTTP requests sent to the Anypoint API");
        let retries = family("retries", "API requests repeated after a transient fault");
        let throttled = family("throttled_waits", "Waits caused by API throttling (429/503)");
        let replies = family("replies", "API replies by status class (2xx, 4xx, 5xx; none: no reply)");
        let passes = family("passes", "Passes ended, by status (ok, failed)");
        let failures = family("failures", "Failures, by kind (the report's kind names)");
        let duration = Histogram::new(exponential_buckets(0.5, 2.0, 14));
        registry.register("pass_duration_seconds", "How long passes took", duration.clone());
        let failed_in_a_row = Gauge::default();
        registry.register(
            "failed_passes_in_a_row",
            "Passes failed since the last that succeeded",
            failed_in_a_row.clone(),
        );
        let lag = Family::<Labels, Gauge>::default();
        registry.register("lag_seconds", "How far each organization's delivered entries are behind now", lag.clone());
        Self {
            registry,
            entries,
            objects,
            duplicates,
            requests,
            retries,
            throttled,
            replies,
            passes,
            failures,
            duration,
            failed_in_a_row,
            lag,
            covered_until: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts what a pass reported.
    pub fn record(&self, report: &Report, took: Duration) {
        // An organization that failed after writing has not caught up to its window's end.
        let failed: Vec<&str> = report.failures.iter().filter_map(|f| f.org_id.as_deref()).collect();
        for org in &report.orgs {
            let labels = vec![("org", org.summary.org_id.clone())];
            let s = &org.summary;
            self.entries.get_or_create(&labels).inc_by(s.entries_written);
            self.objects.get_or_create(&labels).inc_by(org.objects_written as u64);
            self.duplicates.get_or_create(&labels).inc_by(s.duplicates_skipped);
            self.requests.get_or_create(&labels).inc_by(u64::from(s.requests));
            self.retries.get_or_create(&labels).inc_by(u64::from(s.retries));
            self.throttled.get_or_create(&labels).inc_by(u64::from(s.throttled_waits));
            for (class, count) in
                [("2xx", s.replies_2xx), ("4xx", s.replies_4xx), ("5xx", s.replies_5xx), ("none", s.no_reply)]
            {
                let labels = vec![("org", s.org_id.clone()), ("class", class.to_string())];
                self.replies.get_or_create(&labels).inc_by(u64::from(count));
            }
            if let (false, Ok(end)) =
                (failed.contains(&s.org_id.as_str()), chrono::DateTime::parse_from_rfc3339(&s.window_end))
            {
                let mut covered = self.covered_until.lock().unwrap_or_else(|p| p.into_inner());
                let until = covered.entry(s.org_id.clone()).or_insert(i64::MIN);
                *until = (*until).max(end.timestamp_millis());
            }
        }
        for failure in &report.failures {
            self.failures.get_or_create(&vec![("kind", failure.kind.to_string())]).inc();
        }
        self.passes.get_or_create(&vec![("status", report.status.name().to_string())]).inc();
        match report.status {
            Status::Ok => self.failed_in_a_row.set(0),
            Status::Failed => self.failed_in_a_row.inc(),
        };
        self.duration.observe(took.as_secs_f64());
    }

    /// The text for a scrape at `now_ms`.
    pub fn render(&self, now_ms: i64) -> String {
        for (org, until) in self.covered_until.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            self.lag.get_or_create(&vec![("org", org.clone())]).set(now_ms.saturating_sub(*until) / 1000);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mulesoft_audit::collect::PassResult;
    use mulesoft_audit::settings::{ErrorKind, Failure, OrgSummary};

    #[test]
    fn counters_are_the_reports_numbers() {
        let metrics = Metrics::new();
        let summary = OrgSummary {
            org_id: "org-1".into(),
            window_end: "2026-11-29T10:00:00.000Z".into(),
            entries_written: 120,
            duplicates_skipped: 7,
            objects: vec!["logs/a".into(), "logs/b".into(), "(recovered) logs/c".into()],
            requests: 9,
            retries: 2,
            throttled_waits: 1,
            replies_2xx: 7,
            replies_5xx: 2,
            ..OrgSummary::default()
        };
        let ok = Report::from(PassResult { completed: vec![summary.clone()], failures: Vec::new() });
        metrics.record(&ok, Duration::from_secs(3));
        metrics.record(&ok, Duration::from_secs(3));
        let failed = Report::from(PassResult {
            completed: Vec::new(),
            failures: vec![Failure::new(ErrorKind::Unavailable, "503")],
        });
        metrics.record(&failed, Duration::from_secs(1));
        let ten_past = chrono::DateTime::parse_from_rfc3339("2026-11-29T10:10:00Z").unwrap().timestamp_millis();
        let text = metrics.render(ten_past);
        for line in [
            r#"mulesoft_audit_entries_written_total{org="org-1"} 240"#,
            r#"mulesoft_audit_objects_written_total{org="org-1"} 4"#,
            r#"mulesoft_audit_duplicates_skipped_total{org="org-1"} 14"#,
            r#"mulesoft_audit_requests_total{org="org-1"} 18"#,
            r#"mulesoft_audit_retries_total{org="org-1"} 4"#,
            r#"mulesoft_audit_throttled_waits_total{org="org-1"} 2"#,
            r#"mulesoft_audit_replies_total{org="org-1",class="2xx"} 14"#,
            r#"mulesoft_audit_replies_total{org="org-1",class="5xx"} 4"#,
            r#"mulesoft_audit_passes_total{status="ok"} 2"#,
            r#"mulesoft_audit_passes_total{status="failed"} 1"#,
            r#"mulesoft_audit_failures_total{kind="unavailable"} 1"#,
            "mulesoft_audit_failed_passes_in_a_row 1",
            "mulesoft_audit_pass_duration_seconds_count 3",
            r#"mulesoft_audit_lag_seconds{org="org-1"} 600"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
        metrics.record(&ok, Duration::from_secs(3));
        assert!(metrics.render(ten_past).lines().any(|l| l == "mulesoft_audit_failed_passes_in_a_row 0"));
    }
}
