//! The components stage's clusters under a memory bound (`[dedup] components_memory_mb`):
//! groups are replayed through the in-memory [`SparseUnionFind`] until it would outgrow the
//! bound; then its clusters are spilled to a labels file on disk and the rest is replayed in
//! chunks that fit the bound.
//!
//! The spilled path is the batched contraction of Abello, Buchsbaum and Westbrook ("A
//! Functional Approach to External Graph Algorithms", Algorithmica 32, 2002: connected
//! components by computing the components of a memory-sized batch of edges and relabelling
//! the rest by a sort and a scan). The vertices' labels live in one file, `(document, root,
//! size)` sorted by document; per chunk, one scan looks up the labels of the chunk's
//! documents, a union-find over those labels (each an old cluster, with its size) replays the
//! chunk, and a second scan rewrites the file with the merged clusters' new roots and sizes.
//! The clusters are the components of the replayed edges, in any order, so the spilled path
//! writes the in-memory path's members, byte for byte. Each chunk costs two sequential
//! passes over the labels file (24 bytes per clustered document).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::partition::{Group, SparseUnionFind};

/// Bytes per clustered document in the in-memory path: the union-find (~72, measured by
/// `scripts/bench-components`) and the document's sorted member row at the end (24).
pub const BYTES_PER_DOCUMENT: u64 = 96;
/// Bytes per buffered group member of a spilled chunk: the member (24), its documents in the
/// sorted lookup list (16), their labels (~40) and union-find slots (~72).
pub const BYTES_PER_ENTRY: u64 = 152;
const ROW: usize = 24;

/// A member row: (document, its cluster's root = lowest document, the cluster's size).
pub type Member = (u64, u64, u64);

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComponentsStats {
    /// Documents that join an earlier member of a group (duplicate pairs).
    pub pairs: u64,
    /// Documents in a cluster of two or more.
    pub documents: u64,
    /// Times the clusters went to disk: the first spill and every chunk after it.
    pub spills: u64,
}

/// The clusters of replayed groups, in memory up to `bound` bytes, then on disk.
#[derive(Debug)]
pub struct BoundedComponents {
    bound: u64,
    spill_dir: PathBuf,
    memory: SparseUnionFind,
    /// The spilled labels file, once the bound was passed.
    labels: Option<PathBuf>,
    /// Buffered members of the current chunk's groups and where each group ends.
    entries: Vec<(u64, Option<u64>)>,
    ends: Vec<usize>,
    stats: ComponentsStats,
}

impl BoundedComponents {
    /// Clusters held in at most about `bound` bytes, spilling under `spill_dir` (made when
    /// needed; the caller removes it).
    pub fn new(bound: u64, spill_dir: &Path) -> Self {
        Self {
            bound,
            spill_dir: spill_dir.to_path_buf(),
            memory: SparseUnionFind::default(),
            labels: None,
            entries: Vec::new(),
            ends: Vec::new(),
            stats: ComponentsStats::default(),
        }
    }

    /// Replays one group as [`SparseUnionFind::replay`] does, spilling when the bound is
    /// passed.
    pub fn replay(&mut self, group: &Group) -> Result<()> {
        self.stats.pairs += group.iter().filter(|(_, t)| t.is_some()).count() as u64;
        if self.labels.is_none() {
            self.memory.replay(group);
            if self.memory.len() as u64 * BYTES_PER_DOCUMENT > self.bound {
                self.spill_memory()?;
            }
            return Ok(());
        }
        self.entries.extend_from_slice(group);
        self.ends.push(self.entries.len());
        if self.entries.len() as u64 * BYTES_PER_ENTRY > self.bound {
            self.replay_chunk()?;
        }
        Ok(())
    }

    /// Every clustered document with its root and cluster size, sorted by document.
    pub fn finish(mut self) -> Result<(Members, ComponentsStats)> {
        let source = match self.labels.clone() {
            None => {
                self.stats.documents = self.memory.len() as u64;
                Source::Memory(std::mem::take(&mut self.memory).members().into_iter())
            }
            Some(path) => {
                self.replay_chunk()?;
                let reader = LabelsReader::open(&path)?;
                self.stats.documents = reader.rows;
                Source::File(reader)
            }
        };
        let members = Members {
            source,
            peeked: None,
        };
        Ok((members, self.stats))
    }

    /// Writes the in-memory clusters as the first labels file.
    fn spill_memory(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.spill_dir)
            .with_context(|| format!("creating {}", self.spill_dir.display()))?;
        let path = self.spill_dir.join("labels.bin");
        let mut writer = LabelsWriter::create(&path)?;
        for row in std::mem::take(&mut self.memory).members() {
            writer.write(row)?;
        }
        writer.finish()?;
        tracing::info!(
            "components: the clusters of {} documents passed {} bytes: spilled to {}",
            writer.rows,
            self.bound,
            path.display()
        );
        self.labels = Some(path);
        self.stats.spills += 1;
        Ok(())
    }

    /// Replays the buffered groups over the labels file's clusters and rewrites it.
    fn replay_chunk(&mut self) -> Result<()> {
        let Some(path) = self.labels.clone() else {
            bail!("a chunk was replayed before the clusters were spilled");
        };
        if self.ends.is_empty() {
            return Ok(());
        }
        let mut docs: Vec<u64> = self
            .entries
            .iter()
            .flat_map(|&(doc, target)| std::iter::once(doc).chain(target))
            .collect();
        docs.sort_unstable();
        docs.dedup();
        // Pass 1: each document's old cluster, as a union-find node of the old size.
        let mut union_find = SparseUnionFind::default();
        let mut label: HashMap<u64, u64> = HashMap::new();
        let mut reader = LabelsReader::open(&path)?;
        let mut next = 0;
        while next < docs.len()
            && let Some((doc, root, size)) = reader.next()?
        {
            next += docs[next..].partition_point(|&d| d < doc);
            if docs.get(next) == Some(&doc) {
                label.insert(doc, root);
                union_find.insert(root, size);
            }
        }
        let of = |doc: u64| label.get(&doc).copied().unwrap_or(doc);
        let mut group: Group = Vec::new();
        let mut start = 0;
        for &end in &self.ends {
            group.clear();
            group.extend(
                self.entries[start..end]
                    .iter()
                    .map(|&(doc, target)| (of(doc), target.map(of))),
            );
            union_find.replay(&group);
            start = end;
        }
        // Pass 2: old rows under their cluster's new root, merged with the documents that
        // joined a cluster for the first time.
        let fresh: Vec<u64> = docs
            .into_iter()
            .filter(|d| !label.contains_key(d) && union_find.contains(*d))
            .collect();
        let mut fresh = fresh.into_iter().peekable();
        let next_path = self.spill_dir.join("labels.next.bin");
        let mut writer = LabelsWriter::create(&next_path)?;
        let mut reader = LabelsReader::open(&path)?;
        while let Some((doc, root, size)) = reader.next()? {
            while let Some(d) = fresh.next_if(|&d| d < doc) {
                write_joined(&mut writer, &mut union_find, d)?;
            }
            match union_find.root_and_size(root) {
                Some((new_root, new_size)) => writer.write((doc, new_root, new_size))?,
                None => writer.write((doc, root, size))?,
            }
        }
        for d in fresh {
            write_joined(&mut writer, &mut union_find, d)?;
        }
        writer.finish()?;
        std::fs::rename(&next_path, &path)
            .with_context(|| format!("renaming {} over {}", next_path.display(), path.display()))?;
        self.entries.clear();
        self.ends.clear();
        self.stats.spills += 1;
        Ok(())
    }
}

fn write_joined(
    writer: &mut LabelsWriter,
    union_find: &mut SparseUnionFind,
    doc: u64,
) -> Result<()> {
    match union_find.root_and_size(doc) {
        Some((root, size)) => writer.write((doc, root, size)),
        None => bail!("document {doc} joined no cluster"),
    }
}

/// The member rows of [`BoundedComponents::finish`], read in document order.
#[derive(Debug)]
pub struct Members {
    source: Source,
    peeked: Option<Member>,
}

#[derive(Debug)]
enum Source {
    Memory(std::vec::IntoIter<Member>),
    File(LabelsReader),
}

impl Members {
    /// The next row if its document is below `end`.
    pub fn next_below(&mut self, end: u64) -> Result<Option<Member>> {
        if self.peeked.is_none() {
            self.peeked = match &mut self.source {
                Source::Memory(rows) => rows.next(),
                Source::File(reader) => reader.next()?,
            };
        }
        Ok(self.peeked.take_if(|m| m.0 < end))
    }
}

/// Writes a labels file: 24-byte rows (document, root, size), little-endian.
struct LabelsWriter {
    out: BufWriter<File>,
    path: PathBuf,
    rows: u64,
}

impl LabelsWriter {
    fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            rows: 0,
        })
    }

    fn write(&mut self, (doc, root, size): Member) -> Result<()> {
        let mut row = [0u8; ROW];
        row[..8].copy_from_slice(&doc.to_le_bytes());
        row[8..16].copy_from_slice(&root.to_le_bytes());
        row[16..].copy_from_slice(&size.to_le_bytes());
        self.rows += 1;
        self.out
            .write_all(&row)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn finish(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Reads a labels file's rows in order.
#[derive(Debug)]
struct LabelsReader {
    input: BufReader<File>,
    path: PathBuf,
    rows: u64,
}

impl LabelsReader {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata()?.len();
        if len % ROW as u64 != 0 {
            bail!("{} is truncated ({len} bytes)", path.display());
        }
        Ok(Self {
            input: BufReader::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            rows: len / ROW as u64,
        })
    }

    fn next(&mut self) -> Result<Option<Member>> {
        let mut row = [0u8; ROW];
        match self.input.read_exact(&mut row) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
        let word = |i: usize| u64::from_le_bytes(row[i..i + 8].try_into().unwrap_or_default());
        Ok(Some((word(0), word(8), word(16))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups like the pairs stage's: members drawn from few documents so clusters chain
    /// across groups, some members joining no one, some joining a later-window member.
    fn groups(count: usize, docs: u64, seed: u64) -> Vec<Group> {
        let mut rng = crate::test_rng::TestRng::new(seed);
        let mut next = move || rng.next_u64();
        (0..count)
            .map(|_| {
                let size = 2 + (next() % 5) as usize;
                let mut members: Vec<u64> = (0..size).map(|_| next() % docs).collect();
                members.sort_unstable();
                members.dedup();
                let mut group: Group = vec![(members[0], None)];
                for (i, &d) in members.iter().enumerate().skip(1) {
                    let target = match next() % 4 {
                        0 => None,
                        _ => Some(members[(next() as usize) % i]),
                    };
                    group.push((d, target));
                }
                group
            })
            .collect()
    }

    fn members_of(bound: u64, groups: &[Group], dir: &Path) -> (Vec<Member>, ComponentsStats) {
        let mut components = BoundedComponents::new(bound, dir);
        for g in groups {
            components.replay(g).expect("replay");
        }
        let (mut members, stats) = components.finish().expect("finish");
        let mut rows = Vec::new();
        while let Some(m) = members.next_below(u64::MAX).expect("row") {
            rows.push(m);
        }
        (rows, stats)
    }

    #[test]
    fn spilled_clusters_are_the_in_memory_ones_at_any_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let groups = groups(1_500, 2_000, 0x9E37_79B9_7F4A_7C15);
        let mut reference = SparseUnionFind::default();
        groups.iter().for_each(|g| reference.replay(g));
        let expected = reference.members();
        let (in_memory, stats) = members_of(u64::MAX, &groups, &dir.path().join("big"));
        assert_eq!(in_memory, expected);
        assert_eq!(stats.spills, 0);
        assert!(expected.len() > 500, "{} clustered", expected.len());
        // The clusters are the components of the edges, whatever order they come in (what
        // lets a split run find the edges of its similarity checks apart from the replay).
        let mut reversed = SparseUnionFind::default();
        for g in groups.iter().rev() {
            reversed.replay(&g.iter().rev().copied().collect());
        }
        assert_eq!(reversed.members(), expected);
        for bound in [0, 2_000, 30_000, 100_000] {
            let spill = dir.path().join(format!("spill-{bound}"));
            let (rows, stats) = members_of(bound, &groups, &spill);
            assert_eq!(rows, expected, "bound {bound}");
            assert!(stats.spills > 1, "bound {bound}: {stats:?}");
            assert_eq!(stats.documents, expected.len() as u64);
            assert_eq!(stats.pairs, in_memory_pairs(&groups));
        }
    }

    fn in_memory_pairs(groups: &[Group]) -> u64 {
        groups.iter().flatten().filter(|(_, t)| t.is_some()).count() as u64
    }

    #[test]
    fn a_truncated_labels_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("labels.bin");
        std::fs::write(&path, [0u8; 30]).expect("write");
        let err = LabelsReader::open(&path).expect_err("truncated");
        assert!(
            format!("{err:#}").contains("labels.bin is truncated"),
            "{err:#}"
        );
    }
}
