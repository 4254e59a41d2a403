//! What a pass says when it ends, the same from every host: one JSON object on stdout (the last
//! line), one `error:` line per failure on stderr, and the exit code. Hosts print it; they never
//! build it.

use crate::collect::PassResult;
use crate::settings::{ErrorKind, Failure, OrgSummary, exit_code};
use serde::Serialize;

/// The outcome of a pass (or of a host's attempt to run one).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `ok` when every organization completed, `failed` otherwise.
    pub status: Status,
    /// The organizations that completed, and the work done before a failure.
    pub orgs: Vec<OrgReport>,
    pub failures: Vec<FailureReport>,
    /// 0 done, 1 failed (a later pass continues), 2 a setting, secret or grant to fix.
    #[serde(skip)]
    pub exit_code: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
}

impl Status {
    /// As the JSON summary, logs and metrics print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }
}

/// One organization's summary, with the count of objects this pass created.
#[derive(Debug, Clone, Serialize)]
pub struct OrgReport {
    #[serde(flatten)]
    pub summary: OrgSummary,
    /// Objects created by this pass: the `objects` list also names recovered and claimed ones,
    /// in parentheses.
    pub objects_written: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureReport {
    pub org_id: Option<String>,
    /// An [`ErrorKind`] name, or what stopped the host (`time-limit`, `memory-limit`, `trap`).
    pub kind: &'static str,
    pub message: String,
}

impl From<OrgSummary> for OrgReport {
    fn from(summary: OrgSummary) -> Self {
        let objects_written = summary.objects_written().count();
        Self { summary, objects_written }
    }
}

impl From<Failure> for FailureReport {
    fn from(f: Failure) -> Self {
        Self { org_id: f.org_id, kind: f.kind.name(), message: f.message }
    }
}

impl From<PassResult> for Report {
    fn from(result: PassResult) -> Self {
        Self {
            status: if result.failures.is_empty() { Status::Ok } else { Status::Failed },
            exit_code: exit_code(result.failures.iter().map(|f| f.kind)),
            orgs: result.completed.into_iter().map(OrgReport::from).collect(),
            failures: result.failures.into_iter().map(FailureReport::from).collect(),
        }
    }
}

impl Report {
    /// A configuration problem found before any pass began: exit 2.
    pub fn config(message: impl Into<String>) -> Self {
        PassResult { completed: Vec::new(), failures: vec![Failure::new(ErrorKind::Config, message)] }.into()
    }

    /// The host stopped the pass (`kind` says how): nothing the engine reported; exit 1, since
    /// the next pass resumes from the checkpoints.
    pub fn stopped(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            orgs: Vec::new(),
            failures: vec![FailureReport { org_id: None, kind, message: message.into() }],
            exit_code: 1,
        }
    }

    /// Entries written by every organization.
    pub fn entries_written(&self) -> u64 {
        self.orgs.iter().map(|o| o.summary.entries_written).sum()
    }

    /// One line a failure, for stderr: the last lines a person sees say what went wrong.
    pub fn error_lines(&self) -> impl Iterator<Item = String> + '_ {
        self.failures.iter().map(|f| error_line(f.org_id.as_deref(), &f.message))
    }

    /// The JSON line for stdout.
    pub fn json(&self) -> String {
        // Plain strings and numbers: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A failure as one line for stderr.
pub fn error_line(org_id: Option<&str>, message: &str) -> String {
    match org_id {
        Some(org) => format!("error: organization {org}: {message}"),
        None => format!("error: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_says_what_each_organization_did() {
        let summary = OrgSummary {
            org_id: "org-1".into(),
            entries_written: 3,
            objects: vec!["logs/a.ndjson.gz".into(), "(recovered) logs/b.ndjson.gz".into()],
            ..OrgSummary::default()
        };
        let ok = Report::from(PassResult { completed: vec![summary.clone()], failures: Vec::new() });
        assert_eq!(ok.exit_code, 0);
        let json: serde_json::Value = serde_json::from_str(&ok.json()).unwrap();
        assert_eq!(json["status"], "ok");
        assert_eq!(ok.status.name(), "ok");
        assert_eq!(json["orgs"][0]["org_id"], "org-1");
        assert_eq!(json["orgs"][0]["entries_written"], 3);
        assert_eq!(json["orgs"][0]["objects_written"], 1, "the recovered object was written before");
        assert_eq!(json["failures"], serde_json::json!([]));
        assert_eq!(ok.error_lines().count(), 0);

        let mut forbidden = Failure::new(ErrorKind::Forbidden, "403: grant Audit Log Viewer");
        forbidden.org_id = Some("org-2".into());
        let failed = Report::from(PassResult {
            completed: vec![summary],
            failures: vec![Failure::new(ErrorKind::Unavailable, "503"), forbidden],
        });
        assert_eq!(failed.exit_code, 2, "a grant to fix outranks a retryable failure");
        let json: serde_json::Value = serde_json::from_str(&failed.json()).unwrap();
        assert_eq!(json["status"], "failed");
        assert_eq!(
            json["failures"][1],
            serde_json::json!({"org_id": "org-2", "kind": "forbidden", "message": "403: grant Audit Log Viewer"})
        );
        let lines: Vec<_> = failed.error_lines().collect();
        assert_eq!(lines, ["error: 503", "error: organization org-2: 403: grant Audit Log Viewer"]);
    }

    #[test]
    fn configuration_and_host_stops() {
        let config = Report::config("MULE_REGION `mars` is not one of us, eu, gov, ca, jp");
        assert_eq!((config.status, config.exit_code, config.failures[0].kind), (Status::Failed, 2, "config"));
        let stopped = Report::stopped("time-limit", "the pass ran past 55m");
        assert_eq!((stopped.exit_code, stopped.failures[0].kind), (1, "time-limit"));
        assert_eq!(
            stopped.json(),
            r#"{"status":"failed","orgs":[],"failures":[{"org_id":null,"kind":"time-limit","message":"the pass ran past 55m"}]}"#
        );
    }
}
