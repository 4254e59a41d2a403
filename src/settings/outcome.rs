//! What a pass ends with: each organization's summary, failures and their kinds, and the exit
//! code the kinds make.

/// Failure kinds, as in the WIT `error-kind` (and serialised by its names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    Config,
    Unauthorized,
    Forbidden,
    Api,
    Unavailable,
    Denied,
    Storage,
    Conflict,
    Checkpoint,
    PageCap,
}

impl ErrorKind {
    /// Failures that every other organization would hit too: stop the pass.
    pub fn stops_the_pass(self) -> bool {
        matches!(self, Self::Config | Self::Unauthorized | Self::Denied)
    }

    /// Failures a person must fix in the configuration (a setting, a secret, a grant); the others
    /// a later pass gets past by itself.
    pub fn needs_a_person(self) -> bool {
        matches!(self, Self::Config | Self::Unauthorized | Self::Forbidden | Self::Denied | Self::Checkpoint)
    }

    /// The WIT name, as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Api => "api",
            Self::Unavailable => "unavailable",
            Self::Denied => "denied",
            Self::Storage => "storage",
            Self::Conflict => "conflict",
            Self::Checkpoint => "checkpoint",
            Self::PageCap => "page-cap",
        }
    }
}

/// A pass's exit code from the kinds of its failures: 0 none, 2 when any needs a person (a
/// setting, a secret, a grant), else 1 (the next pass continues).
pub fn exit_code(kinds: impl IntoIterator<Item = ErrorKind>) -> u8 {
    kinds.into_iter().fold(0, |code, kind| code.max(if kind.needs_a_person() { 2 } else { 1 }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub org_id: Option<String>,
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { org_id: None, kind, message: message.into() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OrgSummary {
    pub org_id: String,
    pub window_start: String,
    pub window_end: String,
    pub entries_written: u64,
    pub duplicates_skipped: u64,
    pub objects: Vec<String>,
    pub requests: u32,
    pub retries: u32,
    pub throttled_waits: u32,
    /// Replies by status class, and requests that got none.
    pub replies_2xx: u32,
    pub replies_4xx: u32,
    pub replies_5xx: u32,
    pub no_reply: u32,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl OrgSummary {
    /// Objects this pass created: `objects` also names the ones it recovered, claimed or found
    /// missing, in parentheses.
    pub fn objects_written(&self) -> impl Iterator<Item = &str> {
        self.objects.iter().map(String::as_str).filter(|o| !o.starts_with('('))
    }
}
