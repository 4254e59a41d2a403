//! Pure pieces of the GCS JSON API: names in URLs, checksums, multipart bodies, the retry
//! verdict of a status, and what a resumable session's `Range` says. No I/O here.

use super::super::StoreError;
use base64::Engine as _;
use serde::Deserialize;

/// What a status means for a GCS request.
#[derive(Debug, PartialEq, Eq)]
pub enum Class {
    Done,
    Retry,
    Final,
}

/// The one place that decides retry or not (Google's retry strategy: 408, 429, 5xx).
pub fn classify(status: u16) -> Class {
    match status {
        200..=299 | 308 => Class::Done,
        408 | 429 | 500..=599 => Class::Retry,
        _ => Class::Final,
    }
}

/// Percent-encodes an object name for a URL path segment (`/` becomes `%2F`).
pub fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The base64 of the big-endian CRC32C, as GCS reports and checks it.
pub fn crc32c_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(data).to_be_bytes())
}

/// A `multipart/related` body: the JSON resource, then the bytes. Returns (boundary, body).
pub fn multipart_body(metadata: &serde_json::Value, content_type: &str, data: &[u8]) -> (String, Vec<u8>) {
    let mut seed = crc32c::crc32c(data) as u64 ^ (data.len() as u64) << 32;
    let boundary = loop {
        let candidate = format!("mulesoft_audit_{seed:016x}");
        if !data.windows(candidate.len()).any(|w| w == candidate.as_bytes()) {
            break candidate;
        }
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    };
    let mut body = Vec::with_capacity(data.len() + 512);
    body.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (boundary, body)
}

/// How many bytes a resumable session holds, from a 308 reply's `Range: bytes=0-N` (none: 0).
pub fn persisted(range: Option<&str>) -> Option<usize> {
    let Some(range) = range else {
        return Some(0);
    };
    let last = range.strip_prefix("bytes=0-")?.trim().parse::<usize>().ok()?;
    last.checked_add(1)
}

/// The part of an object resource the store reads.
#[derive(Deserialize)]
pub struct ObjectResource {
    #[serde(default)]
    generation: Option<String>,
    #[serde(default)]
    crc32c: Option<String>,
    #[serde(default)]
    size: Option<String>,
}

impl ObjectResource {
    pub fn generation(&self) -> Result<u64, StoreError> {
        self.generation
            .as_deref()
            .and_then(|g| g.parse().ok())
            .ok_or_else(|| StoreError::Other("GCS reply has no generation".into()))
    }

    pub fn same_bytes(&self, data: &[u8]) -> bool {
        self.crc32c.as_deref() == Some(crc32c_b64(data).as_str())
            && self.size.as_deref() == Some(data.len().to_string().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_one_segment() {
        assert_eq!(encode_segment("logs/2024/01/01/a b.json.gz"), "logs%2F2024%2F01%2F01%2Fa%20b.json.gz");
    }

    #[test]
    fn crc32c_is_base64_big_endian() {
        // CRC32C("123456789") = 0xE3069283.
        assert_eq!(
            crc32c_b64(b"123456789"),
            base64::engine::general_purpose::STANDARD.encode([0xE3, 0x06, 0x92, 0x83])
        );
    }

    #[test]
    fn multipart_body_has_both_parts_and_a_boundary_not_in_the_data() {
        let meta = serde_json::json!({"name": "a"});
        let (boundary, body) = multipart_body(&meta, "application/gzip", b"\x1f\x8bdata");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\nContent-Type: application/json")));
        assert!(text.contains("{\"name\":\"a\"}"));
        assert!(text.contains("Content-Type: application/gzip\r\n\r\n\u{1f}"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        // Data that contains the first candidate boundary forces another.
        let (first, _) = multipart_body(&meta, "x", b"");
        let tricky = first.as_bytes().to_vec();
        let (other, _) = multipart_body(&meta, "x", &tricky);
        assert!(!tricky.windows(other.len()).any(|w| w == other.as_bytes()));
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(200), Class::Done);
        assert_eq!(classify(308), Class::Done);
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify(s), Class::Retry);
        }
        for s in [400, 401, 403, 404, 410, 412] {
            assert_eq!(classify(s), Class::Final);
        }
    }

    #[test]
    fn a_sessions_range_says_how_much_it_holds() {
        assert_eq!(persisted(None), Some(0));
        assert_eq!(persisted(Some("bytes=0-262143")), Some(262_144));
        assert_eq!(persisted(Some("bytes=5-9")), None);
        assert_eq!(persisted(Some("rubbish")), None);
        assert_eq!(persisted(Some(&format!("bytes=0-{}", usize::MAX))), None);
    }
}
