//! Logs on stderr: human text, or one JSON object per line in Cloud Logging's shape (`severity`,
//! `message`, `time`, then the event's fields).

use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Logs on stderr from now on, filtered by `MULESOFT_AUDIT_LOG`: with `json`, one Cloud Logging
/// object per line (it reads `severity` and `message` from them), else text.
pub fn init(json: bool) {
    use mulesoft_audit::settings::names::LOG;
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG).unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(mulesoft_audit::variables::default_of(LOG).unwrap_or("info"))
    });
    // Colours only for a person at a terminal, never into a log file or collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json { builder.event_format(CloudLogging).init() } else { builder.with_target(false).init() }
}

/// Formats events as Cloud Logging structured JSON.
pub struct CloudLogging;

#[derive(Default)]
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_string(), serde_json::Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), serde_json::Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

pub fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl<S, N> FormatEvent<S, N> for CloudLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = serde_json::Map::new();
        line.insert("severity".into(), severity(event.metadata().level()).into());
        line.insert("message".into(), fields.0.remove("message").unwrap_or_default());
        line.insert("time".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true).into());
        line.extend(fields.0);
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}
