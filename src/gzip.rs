//! A streaming gzip writer (RFC 1952) on miniz_oxide's raw deflate, and the reader used to
//! recover an object after a crash.
//!
//! miniz_oxide only speaks raw deflate and zlib, so the 10-byte gzip header and the size trailer
//! are ours; the CRC-32 is `crc32fast`'s (slice-by-16: a table per byte cost several times more).
//!
//! Lines are gathered into blocks of [`BLOCK`] bytes before deflate sees them: miniz_oxide's
//! per-call work (its state machine, flushing the output) was paid once per entry before.

use miniz_oxide::deflate::core::{
    CompressorOxide, TDEFLFlush, TDEFLStatus, compress_to_output, create_comp_flags_from_zip_params,
};

/// The gzip header: magic, deflate, no flags, no mtime (so equal input gives equal bytes),
/// no extra flags, OS "unknown".
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Bytes gathered before they are compressed.
pub const BLOCK: usize = 64 * 1024;

/// Compresses what is written into one gzip member held in memory.
pub struct GzipWriter {
    compressor: Box<CompressorOxide>,
    out: Vec<u8>,
    /// Written, not yet compressed (less than [`BLOCK`]).
    block: Vec<u8>,
    crc: crc32fast::Hasher,
    uncompressed_len: u64,
}

/// Why compressing failed (miniz_oxide reported an internal error; not expected in practice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GzipError(pub String);

impl GzipWriter {
    /// A writer at the given deflate level (0..=10; 6 is zlib's default).
    pub fn new(level: u8) -> Self {
        // Negative window bits select raw deflate; 15 is the largest window.
        let flags = create_comp_flags_from_zip_params(i32::from(level), -15, 0);
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(&HEADER);
        Self {
            compressor: Box::new(CompressorOxide::new(flags)),
            out,
            block: Vec::with_capacity(BLOCK),
            crc: crc32fast::Hasher::new(),
            uncompressed_len: 0,
        }
    }

    /// Appends `data` to the member (compressed a block at a time).
    pub fn write(&mut self, data: &[u8]) -> Result<(), GzipError> {
        self.uncompressed_len += data.len() as u64;
        self.block.extend_from_slice(data);
        if self.block.len() >= BLOCK { self.compress_block(TDEFLFlush::None) } else { Ok(()) }
    }

    fn compress_block(&mut self, flush: TDEFLFlush) -> Result<(), GzipError> {
        let block = std::mem::take(&mut self.block);
        self.crc.update(&block);
        let result = self.deflate(&block, flush);
        self.block = block;
        self.block.clear();
        result
    }

    /// Bytes written so far, before compression.
    pub fn uncompressed_len(&self) -> u64 {
        self.uncompressed_len
    }

    /// Ends the member and returns its bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, GzipError> {
        self.compress_block(TDEFLFlush::Finish)?;
        let crc = self.crc.finalize();
        append(&mut self.out, &crc.to_le_bytes());
        // ISIZE is the length modulo 2^32, as RFC 1952 says.
        append(&mut self.out, &((self.uncompressed_len & 0xffff_ffff) as u32).to_le_bytes());
        Ok(self.out)
    }

    fn deflate(&mut self, data: &[u8], flush: TDEFLFlush) -> Result<(), GzipError> {
        let out = &mut self.out;
        let (status, consumed) = compress_to_output(&mut self.compressor, data, flush, |chunk| {
            append(out, chunk);
            true
        });
        match status {
            TDEFLStatus::Okay | TDEFLStatus::Done if consumed == data.len() => Ok(()),
            other => Err(GzipError(format!("deflate stopped with {other:?} after {consumed} of {} bytes", data.len()))),
        }
    }
}

/// Appends to an object's compressed bytes, growing them by an eighth (at least [`GROWTH_MIN`])
/// rather than doubling: an object's bytes reach megabytes (8.6 MiB for the default 32 MiB at
/// level 1), and doubling held up to twice that, three times while copying: the guest's peak at
/// a 1M-entry backfill went from 34 to 48 MiB when level 1 pushed objects past 8 MiB.
fn append(out: &mut Vec<u8>, bytes: &[u8]) {
    if out.capacity() - out.len() < bytes.len() {
        out.reserve_exact((out.len() / 8).max(GROWTH_MIN).max(bytes.len()));
    }
    out.extend_from_slice(bytes);
}

/// The least an object's buffer grows by.
const GROWTH_MIN: usize = 256 * 1024;

/// Decompresses one gzip member written by [`GzipWriter`] (or any single-member gzip without
/// optional header fields), checking its CRC and length.
pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, GzipError> {
    if data.len() < HEADER.len() + 8 || data[0] != 0x1f || data[1] != 0x8b || data[2] != 8 {
        return Err(GzipError("not a gzip member".into()));
    }
    if data[3] != 0 {
        return Err(GzipError("gzip header flags are not supported here".into()));
    }
    let body = &data[HEADER.len()..data.len() - 8];
    let plain =
        miniz_oxide::inflate::decompress_to_vec(body).map_err(|e| GzipError(format!("corrupt deflate data: {e:?}")))?;
    let trailer = &data[data.len() - 8..];
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    if crc32fast::hash(&plain) != crc || (plain.len() as u64 & 0xffff_ffff) as u32 != size {
        return Err(GzipError("gzip CRC or length mismatch".into()));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    #[test]
    fn a_large_object_holds_little_more_memory_than_its_bytes() {
        // Incompressible lines: the compressed bytes grow as fast as the input.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut w = GzipWriter::new(1);
        for _ in 0..(12 << 20) / 512 {
            let line: Vec<u8> = (0..512)
                .map(|_| {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (state >> 56) as u8
                })
                .collect();
            w.write(&line).unwrap();
        }
        let out = w.finish().unwrap();
        assert!(out.len() > 12 << 20, "{}", out.len());
        let slack = out.capacity() - out.len();
        assert!(slack <= out.len() / 8 + GROWTH_MIN, "{slack} spare bytes for {}", out.len());
    }

    #[test]
    fn the_trailer_carries_the_standard_crc() {
        let gz = {
            let mut w = GzipWriter::new(6);
            w.write(b"123456789").unwrap();
            w.finish().unwrap()
        };
        assert_eq!(&gz[gz.len() - 8..gz.len() - 4], &0xCBF4_3926u32.to_le_bytes());
    }

    #[test]
    fn blocks_of_any_size_round_trip() {
        let data: Vec<u8> = (0..3 * BLOCK + 17).map(|i| (i * 7919 % 251) as u8).collect();
        for piece in [1, 100, BLOCK - 1, BLOCK, BLOCK + 1, data.len()] {
            let mut w = GzipWriter::new(6);
            for chunk in data.chunks(piece) {
                w.write(chunk).unwrap();
            }
            assert_eq!(gunzip(&w.finish().unwrap()).unwrap(), data, "pieces of {piece}");
        }
    }

    fn sample() -> Vec<u8> {
        let mut lines = Vec::new();
        for i in 0..5000 {
            lines.extend_from_slice(
                format!("{{\"id\":\"{i}\",\"note\":\"caf\u{e9} \\\"q\\\" {}\"}}\n", i * 7919 % 1013).as_bytes(),
            );
        }
        lines
    }

    #[test]
    fn round_trips_through_our_reader() {
        let data = sample();
        let mut w = GzipWriter::new(6);
        for chunk in data.chunks(777) {
            w.write(chunk).unwrap();
        }
        assert_eq!(w.uncompressed_len(), data.len() as u64);
        let gz = w.finish().unwrap();
        assert!(gz.len() < data.len() / 3, "compressed {} of {}", gz.len(), data.len());
        assert_eq!(gunzip(&gz).unwrap(), data);
    }

    #[test]
    fn real_gunzip_reads_it() {
        let data = sample();
        let mut w = GzipWriter::new(6);
        w.write(&data).unwrap();
        let gz = w.finish().unwrap();
        let mut child =
            Command::new("gzip").args(["-d", "-c"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(&gz).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }

    #[test]
    fn empty_member_is_valid() {
        let gz = GzipWriter::new(6).finish().unwrap();
        assert_eq!(gunzip(&gz).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn corruption_is_detected() {
        let mut w = GzipWriter::new(6);
        w.write(&sample()).unwrap();
        let mut gz = w.finish().unwrap();
        let n = gz.len();
        gz[n - 6] ^= 1;
        assert!(gunzip(&gz).is_err());
        assert!(gunzip(b"plain text, not gzip").is_err());
    }
}
