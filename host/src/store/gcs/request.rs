//! Pure pieces of the GCS JSON API. Those the edge store speaks too live in the engine
//! ([`mulesoft_audit::gcs`]), so that both stores speak one dialect; what only the host's
//! resumable uploads need is here. No I/O here.

pub use mulesoft_audit::gcs::{
    Class, Metadata, ObjectResource, Upload, classify, crc32c_b64, encode_segment, metadata_reply, multipart_body,
    upload_reply, written_before,
};

/// How many bytes a resumable session holds, from a 308 reply's `Range: bytes=0-N` (none: 0).
pub fn persisted(range: Option<&str>) -> Option<usize> {
    let Some(range) = range else {
        return Some(0);
    };
    let last = range.strip_prefix("bytes=0-")?.trim().parse::<usize>().ok()?;
    last.checked_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_range_says_how_much_it_holds() {
        assert_eq!(persisted(None), Some(0));
        assert_eq!(persisted(Some("bytes=0-262143")), Some(262_144));
        assert_eq!(persisted(Some("bytes=5-9")), None);
        assert_eq!(persisted(Some("rubbish")), None);
        assert_eq!(persisted(Some(&format!("bytes=0-{}", usize::MAX))), None);
    }
}
