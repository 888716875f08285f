//! Sectioned work files of the split dedup run's check stages: one file per writing task,
//! one zstd-compressed section per reading task, so that a reader reads its part of a file
//! in at most two ranged reads (the offsets, then the section) however many tasks there are,
//! and in one when its section ends within [`SECTION_PREFETCH`] bytes past its offsets.
//!
//! Layout: the section count N (u64), N + 1 offsets (u64, from the file's start), then the
//! sections.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, ensure};

use super::dedup_packs::SIGNATURE_GAP;
use crate::dedup::partition::write_atomic;

/// zstd level of the sections (document numbers, sorted or grouped, and signatures).
const SECTION_LEVEL: i32 = 3;

/// Bytes a reader of a remote sectioned file asks for past the offsets it needs, in the
/// same request: a section ending within them (the small sections of small runs) comes in
/// one GET instead of two. The trade of [`SIGNATURE_GAP`]: 64 KiB read costs less than a
/// request; at most N x 64 KiB more per reading task, a fraction of a percent of what a
/// task of a crawl reads.
pub(super) const SECTION_PREFETCH: u64 = SIGNATURE_GAP;

/// Bytes of a sectioned file before section `k`'s end offset: the count and the offsets up
/// to `k + 1` (what a reader of section `k` reads first).
pub(super) fn section_header_len(k: usize) -> u64 {
    8 + 8 * (k as u64 + 2)
}

/// Writes `sections` (each zstd-compressed) as one file, atomically: the section count,
/// then N + 1 offsets, then the sections.
pub(super) fn write_sections(path: &Path, sections: &[Vec<u8>]) -> Result<()> {
    let mut packed = Vec::with_capacity(sections.len());
    for s in sections {
        packed.push(zstd::bulk::compress(s, SECTION_LEVEL)?);
    }
    let mut bytes = (sections.len() as u64).to_le_bytes().to_vec();
    let mut at = 8 + 8 * (sections.len() as u64 + 1);
    bytes.extend_from_slice(&at.to_le_bytes());
    for s in &packed {
        at += s.len() as u64;
        bytes.extend_from_slice(&at.to_le_bytes());
    }
    for s in &packed {
        bytes.extend_from_slice(s);
    }
    write_atomic(path, &bytes)
}

/// The byte range of section `k` of a sectioned file of `count` sections, from the first
/// [`section_header_len`] bytes.
pub(super) fn section_range(
    header: &[u8],
    k: usize,
    count: usize,
    name: &str,
) -> Result<std::ops::Range<u64>> {
    let word = |i: usize| -> Result<u64> {
        let b = header
            .get(8 * i..8 * i + 8)
            .with_context(|| format!("{name}: the header is truncated"))?;
        Ok(u64::from_le_bytes(b.try_into()?))
    };
    let sections = word(0)?;
    ensure!(
        sections == count as u64,
        "{name} has {sections} sections, {count} expected (was it written for another --tasks?)"
    );
    let (start, end) = (word(1 + k)?, word(2 + k)?);
    ensure!(start <= end, "{name}: section {k} has a bad range");
    Ok(start..end)
}

/// Section `k` of the sectioned file at `path` (of `count` sections), decompressed.
pub(super) fn read_section(path: &Path, k: usize, count: usize) -> Result<Vec<u8>> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("opening {name}"))?;
    let mut header = vec![0u8; section_header_len(k) as usize];
    file.read_exact_at(&mut header, 0)
        .with_context(|| format!("{name}: the header is truncated"))?;
    let range = section_range(&header, k, count, &name)?;
    let mut packed = vec![0u8; (range.end - range.start) as usize];
    file.read_exact_at(&mut packed, range.start)
        .with_context(|| format!("{name}: section {k} is truncated"))?;
    zstd::stream::decode_all(&packed[..])
        .with_context(|| format!("{name}: section {k} does not decompress"))
}

/// Little-endian fields out of a section, naming the file when it ends early.
pub(super) struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
    name: &'a str,
}

impl<'a> Fields<'a> {
    pub(super) fn new(bytes: &'a [u8], name: &'a str) -> Self {
        Self { bytes, at: 0, name }
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let b = self
            .bytes
            .get(self.at..self.at + n)
            .with_context(|| format!("{} is truncated", self.name))?;
        self.at += n;
        Ok(b)
    }

    pub(super) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
}
