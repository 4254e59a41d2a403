//! Audit entries as the API returns them: kept as their exact bytes, with just enough read out of
//! them (identity and time) to deduplicate, partition and checkpoint.
//!
//! No public schema exists for an entry, so nothing here requires a field: an entry without `id`
//! is identified by a hash of its line, and one without a `timestamp` we can read has no time
//! (it moves no cursor; see [`crate::collect`]).

use serde::Deserialize;
use serde_json::value::RawValue;

/// The most entries a page may hold: far above any page a query asks for (at most 200), and a
/// bound on what a page's index of entries takes, however small each entry is (a 20 MiB reply of
/// `0,` would otherwise index ten million).
pub const MAX_PAGE_ENTRIES: usize = 10_000;

/// One page of a query reply, entries still raw.
#[derive(Debug, Deserialize)]
pub struct Page<'a> {
    #[serde(borrow, deserialize_with = "at_most_max_entries")]
    pub data: Vec<&'a RawValue>,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub total: Option<u64>,
}

/// `data`, refused past [`MAX_PAGE_ENTRIES`] entries before they are all indexed.
fn at_most_max_entries<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<&'a RawValue>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<&'de RawValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "an array of at most {MAX_PAGE_ENTRIES} entries")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::new();
            while let Some(entry) = seq.next_element::<&'de RawValue>()? {
                if entries.len() == MAX_PAGE_ENTRIES {
                    return Err(serde::de::Error::custom(format!("a page of more than {MAX_PAGE_ENTRIES} entries")));
                }
                entries.push(entry);
            }
            Ok(entries)
        }
    }
    deserializer.deserialize_seq(Bounded)
}

/// How a reply cut short is named: a transport's fault (retried as such), not the API's.
pub const TRUNCATED: &str = "reply is truncated JSON";

/// Parses a query reply. Errors name what is wrong with the shape, never echo the body.
pub fn parse_page(body: &[u8]) -> Result<Page<'_>, String> {
    parse_page_text(std::str::from_utf8(body).map_err(|_| "reply is not UTF-8".to_string())?)
}

/// [`parse_page`] of a reply already read as text.
pub fn parse_page_text(text: &str) -> Result<Page<'_>, String> {
    serde_json::from_str::<Page<'_>>(text).map_err(|e| {
        if e.is_eof() {
            format!("{TRUNCATED} ({} bytes)", text.len())
        } else if e.is_syntax() {
            format!("reply is not JSON ({e})")
        } else {
            format!("reply has the wrong shape: expected {{\"data\": [...]}} ({e})")
        }
    })
}

/// Whether a raw entry is a JSON object: anything else (`1`, `null`, `[…]`) is no audit entry.
pub fn is_object(raw: &str) -> bool {
    raw.trim_start().starts_with('{')
}

/// What we read out of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// The dedup key: `i:<id>` (ids up to 64 bytes), `h:<hash of id>` (longer ids) or
    /// `b:<hash of the entry's bytes>` (no id).
    pub key: String,
    /// `timestamp` in Unix ms, when the entry has a usable one: the start of the span it gives.
    pub timestamp_ms: Option<i64>,
    /// How many ms that span covers: 1, or 1000 for a time given in whole seconds.
    pub precision_ms: i64,
}

#[derive(Deserialize)]
struct MetaWire<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    timestamp: Option<&'a RawValue>,
}

/// Reads identity and time out of one raw entry.
pub fn meta(raw: &str) -> EntryMeta {
    // Only an object has fields (serde would read an array's items as fields too).
    let wire: Option<MetaWire<'_>> =
        if raw.trim_start().starts_with('{') { serde_json::from_str(raw).ok() } else { None };
    let id = wire.as_ref().and_then(|w| w.id).and_then(|v| scalar_text(v.get()));
    let time = wire.as_ref().and_then(|w| w.timestamp).and_then(|v| timestamp(v.get()));
    let key = match id {
        Some(id) if id.len() <= 64 => format!("i:{id}"),
        Some(id) => format!("h:{:032x}", fnv1a_128(id.as_bytes())),
        None => format!("b:{:032x}", fnv1a_128(raw.as_bytes())),
    };
    EntryMeta { key, timestamp_ms: time.map(|(ms, _)| ms), precision_ms: time.map_or(1, |(_, p)| p) }
}

/// A JSON string or number as text; anything else (null, object) is no usable id.
fn scalar_text(raw: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(raw).ok()? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A timestamp in any form an API might use, as Unix ms and the precision it was given with:
/// epoch seconds, milliseconds, microseconds or nanoseconds (as a number or numeric text; the
/// magnitude tells them apart for any date after 1973), RFC 3339, or ISO 8601 with a `+0000`
/// offset, with a space for the `T`, or with no offset at all (read as UTC). Finer units are cut
/// down to the millisecond they fall in, as the API files them; a whole second stands for the
/// thousand milliseconds it spans.
fn timestamp(raw: &str) -> Option<(i64, i64)> {
    match serde_json::from_str::<serde_json::Value>(raw).ok()? {
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(whole) => epoch_ms(whole),
            None => seconds_with_fraction(raw.trim()),
        },
        serde_json::Value::String(s) => {
            let s = s.trim();
            if let Ok(whole) = s.parse::<i64>() {
                return epoch_ms(whole);
            }
            if let Some(time) = seconds_with_fraction(s) {
                return Some(time);
            }
            let iso = s.replacen(' ', "T", 1);
            let ms = chrono::DateTime::parse_from_rfc3339(&iso)
                .or_else(|_| chrono::DateTime::parse_from_str(&iso, "%Y-%m-%dT%H:%M:%S%.f%z"))
                .map(|t| t.timestamp_millis())
                .ok()
                .or_else(|| {
                    let naive = iso.trim_end_matches(['Z', 'z']);
                    chrono::NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S%.f")
                        .ok()
                        .map(|t| t.and_utc().timestamp_millis())
                })?;
            // The digits after the seconds' point, if any, say how precise it is.
            let fraction =
                iso.split_once('.').map_or(0, |(_, rest)| rest.bytes().take_while(u8::is_ascii_digit).count());
            Some((ms, precision(fraction)))
        }
        _ => None,
    }
}

/// How many ms a time given with `digits` digits of fractional seconds spans.
fn precision(digits: usize) -> i64 {
    10_i64.pow(3_u32.saturating_sub(u32::try_from(digits).unwrap_or(3)))
}

/// A whole epoch number: under 10^11 it is seconds (10^11 ms is 1973, 10^11 s the year 5138),
/// then ms, µs from 10^14 and ns from 10^17.
fn epoch_ms(n: i64) -> Option<(i64, i64)> {
    match n {
        ..0 => None,
        0..100_000_000_000 => Some((n.checked_mul(1000)?, 1000)),
        100_000_000_000..100_000_000_000_000 => Some((n, 1)),
        100_000_000_000_000..100_000_000_000_000_000 => Some((n / 1000, 1)),
        _ => Some((n / 1_000_000, 1)),
    }
}

/// Epoch seconds with a fraction (the only unit written with one), read from its digits: no
/// floating point to round a millisecond away.
fn seconds_with_fraction(text: &str) -> Option<(i64, i64)> {
    let (whole, fraction) = text.split_once('.')?;
    let seconds: i64 = whole.parse().ok().filter(|s| (0..100_000_000_000).contains(s))?;
    if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: i64 = format!("{:0<3}", &fraction[..fraction.len().min(3)]).parse().ok()?;
    Some((seconds.checked_mul(1000)? + ms, precision(fraction.len())))
}

/// The line written for an entry: its bytes exactly as received. JSON strings cannot hold a raw
/// line break, so only an API that pretty-printed its reply could break NDJSON; such an entry is
/// re-serialised compactly (same values; whitespace and key order may differ).
pub fn ndjson_line(raw: &str) -> std::borrow::Cow<'_, str> {
    if memchr::memchr2(b'\n', b'\r', raw.as_bytes()).is_some() {
        match serde_json::from_str::<Box<RawValue>>(raw)
            .ok()
            .and_then(|v| serde_json::from_str::<serde_json::Value>(v.get()).ok())
            .and_then(|v| serde_json::to_string(&v).ok())
        {
            Some(compact) => std::borrow::Cow::Owned(compact),
            None => std::borrow::Cow::Owned(raw.replace(['\n', '\r'], " ")),
        }
    } else {
        std::borrow::Cow::Borrowed(raw)
    }
}

/// 128-bit FNV-1a: stable across versions and platforms, tiny, and wide enough that a collision
/// between the few hundred thousand keys of an overlap window is not a practical concern.
pub fn fnv1a_128(data: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013B;
    let mut hash = OFFSET;
    for &b in data {
        hash ^= u128::from(b);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_keeps_entries_byte_for_byte() {
        let body = br#"{"data":[{"id":"a","timestamp":5,"x":"caf\u00e9 \"q\""} , {"b" : 1}],"cursor":"c1"}"#;
        let page = parse_page(body).unwrap();
        assert_eq!(page.data.len(), 2);
        assert_eq!(page.data[0].get(), r#"{"id":"a","timestamp":5,"x":"caf\u00e9 \"q\""}"#);
        assert_eq!(page.data[1].get(), r#"{"b" : 1}"#);
        assert_eq!(page.cursor.as_deref(), Some("c1"));
    }

    #[test]
    fn bad_pages_are_named() {
        assert!(parse_page(b"<html>oops</html>").unwrap_err().contains("not JSON"));
        assert!(parse_page(br#"{"data":[{"id":1}"#).unwrap_err().contains("truncated"));
        assert!(parse_page(br#"{"data":{"id":1}}"#).unwrap_err().contains("wrong shape"));
        assert!(parse_page(br#"{"items":[]}"#).unwrap_err().contains("wrong shape"));
    }

    #[test]
    fn meta_reads_ids_and_times() {
        let m = meta(r#"{"id":"abc","timestamp":1700000000123}"#);
        assert_eq!(m.key, "i:abc");
        assert_eq!(m.timestamp_ms, Some(1_700_000_000_123));
        assert_eq!(meta(r#"{"id":42,"timestamp":"1700000000123"}"#).key, "i:42");
        assert_eq!(meta(r#"{"timestamp":"2023-11-14T22:13:20.123Z"}"#).timestamp_ms, Some(1_700_000_000_123));
        let long = "x".repeat(100);
        assert!(meta(&format!(r#"{{"id":"{long}"}}"#)).key.starts_with("h:"));
    }

    #[test]
    fn timestamps_in_the_forms_an_api_might_use() {
        let at = |t: &str| meta(&format!(r#"{{"timestamp":{t}}}"#)).timestamp_ms;
        let ms = Some(1_700_000_000_123);
        assert_eq!(at("1700000000123"), ms);
        assert_eq!(at("1700000000.123"), ms, "epoch seconds with a fraction");
        assert_eq!(at("1700000000"), Some(1_700_000_000_000), "epoch seconds");
        let precision = |t: &str| meta(&format!(r#"{{"timestamp":{t}}}"#)).precision_ms;
        assert_eq!(precision("1700000000"), 1000, "a whole second spans a thousand ms");
        assert_eq!(precision(r#""2023-11-14T22:13:20Z""#), 1000);
        assert_eq!(precision("1700000000.5"), 100);
        assert_eq!(precision("1700000000123"), 1);
        assert_eq!(precision(r#""2023-11-14T22:13:20.123456Z""#), 1);
        assert_eq!(at("1700000000.9999"), Some(1_700_000_000_999), "cut, not rounded past the ms");
        assert_eq!(at("1700000000123000"), ms, "microseconds");
        assert_eq!(at("1700000000123000000"), ms, "nanoseconds");
        assert_eq!(at(r#""1700000000123""#), ms);
        assert_eq!(at(r#""2023-11-14T22:13:20.123Z""#), ms);
        assert_eq!(at(r#""2023-11-14T22:13:20.123+00:00""#), ms);
        assert_eq!(at(r#""2023-11-14T23:13:20.123+0100""#), ms, "offset without a colon");
        assert_eq!(at(r#""2023-11-14T22:13:20.123""#), ms, "no offset: UTC");
        assert_eq!(at(r#""2023-11-14 22:13:20.123""#), ms, "a space for the T");
        assert_eq!(at(r#""yesterday""#), None);
        assert_eq!(at("-5"), None);
        assert_eq!(at("null"), None);
    }

    #[test]
    fn entries_without_id_are_keyed_by_their_bytes() {
        let a = meta(r#"{"action":"Login","timestamp":1}"#);
        let b = meta(r#"{"action":"Login","timestamp":2}"#);
        assert!(a.key.starts_with("b:"));
        assert_ne!(a.key, b.key);
        assert_eq!(a, meta(r#"{"action":"Login","timestamp":1}"#));
        assert_eq!(meta(r#"{"id":null}"#).timestamp_ms, None);
        assert!(meta(r#"{"id":null}"#).key.starts_with("b:"));
        assert!(meta("[1,2]").key.starts_with("b:"));
    }

    #[test]
    fn lines_are_unchanged_unless_they_hold_a_line_break() {
        let raw = r#"{"a": "\n is escaped",  "b":[1, 2]}"#;
        assert_eq!(ndjson_line(raw), raw);
        assert_eq!(ndjson_line("{\n\"a\": 1\n}"), r#"{"a":1}"#);
    }

    #[test]
    fn fnv_known_value() {
        // FNV-1a 128 of the empty input is the offset basis.
        assert_eq!(fnv1a_128(b""), 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d);
        assert_ne!(fnv1a_128(b"a"), fnv1a_128(b"b"));
    }
}
