//! Parsers and checks of single values that settings and commands share: durations, dates,
//! organization ids, prefixes and where logs and checkpoints lie.

/// `90s`, `10m`, `24h`, `7d`, `250ms`, or plain seconds. `setting` names it in the error.
pub fn parse_duration(setting: &str, text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 =
        number.parse().map_err(|_| format!("{setting} `{text}` is not a duration: use e.g. 90s, 10m, 24h, 7d"))?;
    let seconds_per = match unit {
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{setting} `{text}` has unknown unit `{unit}`: use s, m, h or d")),
    };
    n.checked_mul(seconds_per)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{setting} `{text}` is too long"))
}

/// RFC 3339, `YYYY-MM-DD` (UTC midnight) or epoch milliseconds. `setting` names it in the error.
pub fn parse_since(setting: &str, text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or_default());
    }
    Err(format!("{setting} `{text}` is not a date: use RFC 3339 (2024-05-01T00:00:00Z), YYYY-MM-DD or epoch ms"))
}

/// Org ids are UUIDs in practice; accept any id of letters, digits, `-` and `_`, since it becomes
/// part of URLs and object names.
pub fn valid_org_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Refuses checkpoints under the logs, or logs under the checkpoints. Each location is where the
/// objects lie, root and prefix together, ending in `/` (`logs/`, or for a host with a state
/// destination of its own `gs://bucket/logs/` and `/srv/data/logs/` with paths made canonical),
/// so that the rule holds for prefixes and destinations alike.
pub fn separate_locations(logs: &str, state: &str) -> Result<(), String> {
    if state.starts_with(logs) {
        return Err(format!(
            "checkpoints in `{state}` lie under the log objects in `{logs}`: the SecOps feed would ingest (and may delete) them; keep the state outside the log prefix (prefixes such as `logs/` and `state/`, or a --state-dest beside the logs, not inside them)"
        ));
    }
    if logs.starts_with(state) {
        return Err(format!(
            "log objects in `{logs}` lie under the checkpoints in `{state}`: log objects would be taken for state; keep the logs outside the state prefix (prefixes such as `logs/` and `state/`)"
        ));
    }
    Ok(())
}

pub(super) fn valid_prefix(p: &str) -> bool {
    !p.starts_with('/') && !p.contains("//") && !p.split('/').any(|s| s == "." || s == "..")
}
