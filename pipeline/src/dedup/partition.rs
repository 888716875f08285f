//! The files of a split run's dedup stages and the merge they replay, so that a run split
//! into any number of tasks finds the clusters the one-process run finds.
//!
//! Dedup keys live in partitions: a contiguous range of (band, key) order (the exact keys'
//! 4 key ranges, then 4 per MinHash band), so the partitions read in order are the
//! one-process merge order. Per input, `keys-NNNNN.bin` holds its kept documents' (key, doc)
//! pairs sorted within each partition (12 bytes: the band is the partition's, the document
//! number within the input a u32), with an index of where each partition starts,
//! and `sigs-NNNNN.bin` the MinHash signatures at a fixed width (for the similarity check).
//! Per partition, `pairs-PPPP.bin` holds the groups (documents sharing a band and key) in
//! which some document joins an earlier one: each document with the earlier member it would
//! join (the first similar one), so the components stage replays [`Clusters::build_checked`]
//! exactly (its "already joined" shortcut depends on the order of the unions).
//!
//! [`Clusters::build_checked`]: super::Clusters::build_checked

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, ensure};

use super::GROUP_CHECKS;

/// Key ranges per band: partitions hold keys whose top bits are the range's number.
pub const KEY_RANGES: usize = 4;
const RANGE_SHIFT: u32 = 62;
/// Bytes of one stored triple: the key (u64) and the document's number within its input
/// (u32); the band is implied by the partition.
pub const TRIPLE_BYTES: u64 = 8 + 4;
const TRIPLE: usize = TRIPLE_BYTES as usize;
/// Marks a document of a group that joins no earlier member.
const NO_TARGET: u64 = u64::MAX;

/// Which dedup a partition belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Exact,
    MinHash,
}

/// Number of partitions for `bands` MinHash bands (the exact ones included).
pub fn partitions(bands: usize) -> usize {
    KEY_RANGES * (1 + bands)
}

/// The kind of partition `p`.
pub fn kind_of(p: usize) -> KeyKind {
    if p < KEY_RANGES {
        KeyKind::Exact
    } else {
        KeyKind::MinHash
    }
}

fn partition_of(kind: KeyKind, band: u32, key: u64) -> usize {
    let range = (key >> RANGE_SHIFT) as usize;
    match kind {
        KeyKind::Exact => range,
        KeyKind::MinHash => KEY_RANGES * (1 + band as usize) + range,
    }
}

/// The band of partition `p`'s triples (0 for the exact ones).
fn band_of(p: usize) -> u32 {
    match kind_of(p) {
        KeyKind::Exact => 0,
        KeyKind::MinHash => (p / KEY_RANGES - 1) as u32,
    }
}

/// A (band, key, doc) triple; doc is the number within its input in a keys file.
pub type Triple = (u32, u64, u64);

/// Writes one input's partitioned keys file from its documents' exact keys and band keys
/// (`None` where that dedup is off), atomically.
pub fn write_keys_file(
    path: &Path,
    bands: usize,
    exact: Option<&[u64]>,
    minhash: Option<&[Vec<u64>]>,
) -> Result<()> {
    let count = partitions(bands);
    let docs = exact
        .map_or(0, <[u64]>::len)
        .max(minhash.map_or(0, <[Vec<u64>]>::len));
    check_doc_count(path, docs as u64)?;
    let mut parts: Vec<Vec<Triple>> = vec![Vec::new(); count];
    for (doc, &key) in exact.unwrap_or_default().iter().enumerate() {
        parts[partition_of(KeyKind::Exact, 0, key)].push((0, key, doc as u64));
    }
    for (doc, keys) in minhash.unwrap_or_default().iter().enumerate() {
        ensure!(
            keys.len() == bands,
            "document {doc} of {} has {} band keys, the config {bands}",
            path.display(),
            keys.len()
        );
        for (band, &key) in keys.iter().enumerate() {
            parts[partition_of(KeyKind::MinHash, band as u32, key)].push((
                band as u32,
                key,
                doc as u64,
            ));
        }
    }
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(count as u32).to_le_bytes());
    let mut start = 0u64;
    for part in &parts {
        bytes.extend_from_slice(&start.to_le_bytes());
        start += part.len() as u64;
    }
    bytes.extend_from_slice(&start.to_le_bytes());
    for part in &mut parts {
        part.sort_unstable();
        for &(_, key, doc) in part.iter() {
            bytes.extend_from_slice(&key.to_le_bytes());
            bytes.extend_from_slice(&(doc as u32).to_le_bytes());
        }
    }
    write_atomic(path, &bytes)
}

/// Refuses an input of more kept documents than a keys file numbers (u32).
fn check_doc_count(path: &Path, docs: u64) -> Result<()> {
    ensure!(
        docs <= u64::from(u32::MAX) + 1,
        "{}: {docs} kept documents, more than a keys file numbers (u32::MAX + 1): split this input into smaller files",
        path.display()
    );
    Ok(())
}

/// Reads partition `p` of a keys file, adding `first_doc` to every document number.
pub fn read_partition(path: &Path, p: usize, first_doc: u64) -> Result<Vec<Triple>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let read_at = |at: u64, n: usize| -> Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, at)
            .with_context(|| format!("{} is truncated at byte {at}", path.display()))?;
        Ok(buf)
    };
    let count = u32::from_le_bytes(read_at(0, 4)?.try_into().unwrap_or_default()) as usize;
    ensure!(
        p < count,
        "{} has {count} partitions, the config more: rerun the clean stage",
        path.display()
    );
    let index = read_at(4 + 8 * p as u64, 16)?;
    let start = u64::from_le_bytes(index[..8].try_into()?);
    let end = u64::from_le_bytes(index[8..].try_into()?);
    let header = 4 + 8 * (count as u64 + 1);
    let bytes = read_at(
        header + start * TRIPLE as u64,
        (end - start) as usize * TRIPLE,
    )?;
    let band = band_of(p);
    Ok(bytes
        .chunks_exact(TRIPLE)
        .map(|t| {
            let key = u64::from_le_bytes(t[..8].try_into().unwrap_or_default());
            let doc = u32::from_le_bytes([t[8], t[9], t[10], t[11]]);
            (band, key, u64::from(doc) + first_doc)
        })
        .collect())
}

/// Bytes at the start of a keys file for `bands` bands: the partition count and index.
pub fn keys_header_len(bands: usize) -> u64 {
    4 + 8 * (partitions(bands) as u64 + 1)
}

/// Bytes of one hash of a check signature (u16).
pub const HASH_BYTES: u64 = 2;

/// The byte range of document `doc`'s signature in a signatures file.
pub fn signature_bytes(width: usize, doc: u64) -> std::ops::Range<u64> {
    let len = width as u64 * HASH_BYTES;
    4 + doc * len..4 + (doc + 1) * len
}

/// Writes one input's check signatures at `width` u16 hashes each (a document without
/// shingles as `u16::MAX`es, as the one-process run holds it), atomically.
pub fn write_signatures(path: &Path, width: usize, signatures: &[Vec<u16>]) -> Result<()> {
    let mut bytes = Vec::with_capacity(4 + signatures.len() * width * 2);
    bytes.extend_from_slice(&(width as u32).to_le_bytes());
    for (doc, s) in signatures.iter().enumerate() {
        match s.len() {
            0 => bytes.extend(std::iter::repeat_n(0xff, width * 2)),
            n if n == width => s.iter().for_each(|v| bytes.extend(v.to_le_bytes())),
            n => anyhow::bail!(
                "document {doc} of {} has a signature of {n} hashes, the config {width}",
                path.display()
            ),
        }
    }
    write_atomic(path, &bytes)
}

/// Reads the signature of document `doc` (its number within the input).
pub fn read_signature(file: &File, path: &Path, width: usize, doc: u64) -> Result<Vec<u16>> {
    let mut buf = vec![0u8; width * 2];
    file.read_exact_at(&mut buf, signature_bytes(width, doc).start)
        .with_context(|| format!("{} has no signature for document {doc}", path.display()))?;
    Ok(buf
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// One group of a partition in which some document joins an earlier member: every member
/// the merge looks at, in order, with the member it joins (`None`: none, or the leader).
pub type Group = Vec<(u64, Option<u64>)>;

/// The groups of sorted `triples` (global document numbers) with at least two members:
/// slices of `triples`.
pub fn groups(triples: &[Triple]) -> impl Iterator<Item = &[Triple]> {
    triples
        .chunk_by(|a, b| a.0 == b.0 && a.1 == b.1)
        .filter(|g| g.len() > 1)
}

/// What [`Clusters::build_checked`](super::Clusters::build_checked) joins in one group: each
/// document after the leader with the first of the earlier members (up to
/// [`GROUP_CHECKS`]) that `similar` accepts; only the documents that join one.
pub fn resolve_group(group: &[Triple], mut similar: impl FnMut(u64, u64) -> bool) -> Group {
    let window = &group[..group.len().min(GROUP_CHECKS)];
    group
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(i, &(_, _, doc))| {
            window[..i.min(GROUP_CHECKS)]
                .iter()
                .map(|t| t.2)
                .find(|&m| similar(m, doc))
                .map(|m| (doc, Some(m)))
        })
        .collect()
}

/// Writes a partition's groups (only those where some document joins), atomically.
pub fn write_pairs(path: &Path, groups: &[Group]) -> Result<()> {
    let mut bytes = Vec::new();
    for g in groups {
        bytes.extend_from_slice(&(g.len() as u32).to_le_bytes());
        for &(doc, target) in g {
            bytes.extend_from_slice(&doc.to_le_bytes());
            bytes.extend_from_slice(&target.unwrap_or(NO_TARGET).to_le_bytes());
        }
    }
    write_atomic(path, &bytes)
}

/// Reads a pairs file and calls `each` on every group in order, a buffer at a time (a
/// partition's pairs need not fit in memory).
pub fn read_pairs(path: &Path, mut each: impl FnMut(&Group) -> Result<()>) -> Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let truncated = || format!("{} is truncated", path.display());
    let mut group = Vec::new();
    let mut len = [0u8; 4];
    let mut entry = [0u8; 16];
    loop {
        match reader.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        group.clear();
        for _ in 0..u32::from_le_bytes(len) {
            reader.read_exact(&mut entry).with_context(truncated)?;
            let doc = u64::from_le_bytes(entry[..8].try_into()?);
            let target = u64::from_le_bytes(entry[8..].try_into()?);
            group.push((doc, (target != NO_TARGET).then_some(target)));
        }
        each(&group)?;
    }
    Ok(())
}

/// Union-find over the documents that join a cluster only (document numbers are sparse);
/// a cluster's root is its lowest document, as in the one-process run.
#[derive(Debug, Default)]
pub struct SparseUnionFind {
    slot: HashMap<u64, u32>,
    parent: Vec<u32>,
    size: Vec<u32>,
    doc: Vec<u64>,
}

impl SparseUnionFind {
    fn slot(&mut self, doc: u64) -> u32 {
        let next = self.doc.len() as u32;
        let slot = *self.slot.entry(doc).or_insert(next);
        if slot == next {
            self.parent.push(next);
            self.size.push(1);
            self.doc.push(doc);
        }
        slot
    }

    fn find_slot(&mut self, mut x: u32) -> u32 {
        let mut root = x;
        while self.parent[root as usize] != root {
            root = self.parent[root as usize];
        }
        while self.parent[x as usize] != root {
            let next = self.parent[x as usize];
            self.parent[x as usize] = root;
            x = next;
        }
        root
    }

    /// The root document of `doc`'s cluster (`doc` itself when it is in none).
    pub fn find(&mut self, doc: u64) -> u64 {
        match self.slot.get(&doc) {
            Some(&s) => {
                let root = self.find_slot(s);
                self.doc[root as usize]
            }
            None => doc,
        }
    }

    pub fn union(&mut self, a: u64, b: u64) {
        let (sa, sb) = (self.slot(a), self.slot(b));
        let (ra, rb) = (self.find_slot(sa), self.find_slot(sb));
        if ra == rb {
            return;
        }
        let (low, high) = if self.doc[ra as usize] < self.doc[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[high as usize] = low;
        self.size[low as usize] += self.size[high as usize];
    }

    /// Replays one group as `Clusters::build_checked` merges it: every document with a
    /// target joins it (the order of groups and edges does not matter).
    pub fn replay(&mut self, group: &Group) {
        for &(doc, target) in group {
            if let Some(m) = target {
                self.union(m, doc);
            }
        }
    }

    /// Adds `doc` as the root of a cluster of `size` documents (a cluster spilled to disk,
    /// see [`super::components`]), unless it is already in the structure.
    pub fn insert(&mut self, doc: u64, size: u64) {
        if !self.slot.contains_key(&doc) {
            let slot = self.slot(doc);
            self.size[slot as usize] = size as u32;
        }
    }

    /// Whether `doc` is in the structure (it joined a cluster, or was inserted).
    pub fn contains(&self, doc: u64) -> bool {
        self.slot.contains_key(&doc)
    }

    /// The root document of `doc`'s cluster and the cluster's size (`doc` is in it).
    pub fn root_and_size(&mut self, doc: u64) -> Option<(u64, u64)> {
        let slot = *self.slot.get(&doc)?;
        let root = self.find_slot(slot) as usize;
        Some((self.doc[root], u64::from(self.size[root])))
    }

    /// Documents in the structure (each in a cluster of two or more).
    pub fn len(&self) -> usize {
        self.doc.len()
    }

    pub fn is_empty(&self) -> bool {
        self.doc.is_empty()
    }

    /// Every document with (root, cluster size), sorted by document.
    pub fn members(mut self) -> Vec<(u64, u64, u64)> {
        let mut out = Vec::with_capacity(self.doc.len());
        for s in 0..self.doc.len() as u32 {
            let root = self.find_slot(s);
            out.push((
                self.doc[s as usize],
                self.doc[root as usize],
                u64::from(self.size[root as usize]),
            ));
        }
        out.sort_unstable();
        out
    }
}

/// Writes `bytes` to `path` by a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file =
        BufWriter::new(File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
    file.write_all(bytes)
        .and_then(|()| file.flush())
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.get_ref().sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keys file stores 12 bytes a triple and gives back each partition's (band, key,
    /// doc) triples sorted, the band from the partition.
    #[test]
    fn a_keys_file_gives_back_every_triple_with_its_band() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys-00000.bin");
        let bands = 3;
        let key = |d: u64, b: u64| {
            d.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(b as u32 * 11 + 1)
        };
        let exact: Vec<u64> = (0..50).map(|d| key(d, 7)).collect();
        let near: Vec<Vec<u64>> = (0..50)
            .map(|d| (0..3).map(|b| key(d, b)).collect())
            .collect();
        write_keys_file(&path, bands, Some(&exact), Some(&near)).expect("write");
        let len = std::fs::metadata(&path).expect("meta").len();
        assert_eq!(len, keys_header_len(bands) + 50 * 4 * TRIPLE_BYTES);
        let mut got: Vec<(KeyKind, Triple)> = Vec::new();
        for p in 0..partitions(bands) {
            let part = read_partition(&path, p, 1000).expect("read");
            assert!(part.is_sorted(), "partition {p}");
            got.extend(part.into_iter().map(|t| (kind_of(p), t)));
        }
        let mut want: Vec<(KeyKind, Triple)> = (0..50u64)
            .map(|d| (KeyKind::Exact, (0, exact[d as usize], d + 1000)))
            .chain((0..50u64).flat_map(|d| {
                (0..3u32).map(move |b| (KeyKind::MinHash, (b, key(d, u64::from(b)), d + 1000)))
            }))
            .collect();
        let order =
            |x: &(KeyKind, Triple)| (x.0 == KeyKind::MinHash, x.1.0, x.1.1 >> RANGE_SHIFT, x.1);
        want.sort_by_key(order);
        assert_eq!(got, want);
    }

    #[test]
    fn an_input_past_u32_documents_is_refused_by_name() {
        let path = Path::new("work/dedup/keys-00007.bin");
        assert!(check_doc_count(path, u64::from(u32::MAX) + 1).is_ok());
        let err = check_doc_count(path, u64::from(u32::MAX) + 2).expect_err("too many");
        assert!(format!("{err:#}").contains("keys-00007.bin"), "{err:#}");
    }
}
