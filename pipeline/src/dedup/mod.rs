//! Deduplication: exact (hash of normalized text) and near-duplicate MinHash-LSH. Both go
//! through the same disk-backed machinery: every (band, key, doc) triple is written to sorted
//! runs on disk and merged, so memory holds one run buffer and one union-find array, not a
//! table of every key. Documents are numbered in input order and each cluster keeps its
//! lowest-numbered member, so survivors do not depend on the thread count.

pub mod components;
pub mod minhash;
pub mod partition;
mod runs;
mod union_find;

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub use minhash::{MinHashOptions, MinHasher, Sketch, estimated_similarity};
pub use runs::RunWriter;
pub use union_find::UnionFind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupOptions {
    pub exact: bool,
    pub minhash: MinHashOptions,
    /// Triples held in memory before a sorted run is written to disk.
    pub run_entries: usize,
    /// Memory of the components stage of a split run, about: past it, the clusters spill to
    /// disk (`dedup::components`); 0 spills at once and replays one group at a time.
    pub components_memory_mb: u64,
}

impl Default for DedupOptions {
    fn default() -> Self {
        Self {
            exact: true,
            minhash: MinHashOptions::default(),
            run_entries: 4 << 20,
            components_memory_mb: 2048,
        }
    }
}

/// The key of the exact stage: a 64-bit hash of the lower-cased text with whitespace removed.
pub fn exact_key(text: &str) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    // The streaming hash does not depend on how its input is chunked: bytes are gathered in
    // a buffer and handed over a block at a time.
    let mut block = [0u8; 256];
    let mut len = 0;
    let mut push = |bytes: &[u8], hasher: &mut xxhash_rust::xxh3::Xxh3| {
        if len + bytes.len() > block.len() {
            hasher.update(&block[..len]);
            len = 0;
        }
        block[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if c.is_ascii() {
            if !c.is_ascii_whitespace() && c != '\u{0B}' {
                push(&[c.to_ascii_lowercase() as u8], &mut hasher);
            }
        } else if crate::filters::is_cjk_ideograph(c) {
            // Not whitespace and its own lower case: no Unicode table lookups.
            push(c.encode_utf8(&mut buf).as_bytes(), &mut hasher);
        } else if !c.is_whitespace() {
            for l in c.to_lowercase() {
                push(l.encode_utf8(&mut buf).as_bytes(), &mut hasher);
            }
        }
    }
    hasher.update(&block[..len]);
    hasher.digest()
}

/// Which cluster each document falls in, after merging all runs.
#[derive(Debug)]
pub struct Clusters {
    members: Members,
}

#[derive(Debug)]
enum Members {
    /// Every document of the run (one process).
    Dense(UnionFind),
    /// Only the documents in a cluster of two or more (a split run's components stage):
    /// doc -> (cluster id, cluster size); every other document is alone.
    Sparse(std::collections::HashMap<u64, (u64, u64)>),
}

/// Earlier members of a (band, key) group a new member is checked against, at most: groups
/// of thousands (boilerplate pages) would otherwise cost a quadratic number of checks. Most
/// checks end at the first member (members of a group are mostly alike); 32 lost planted
/// pairs in groups of templated manual pages.
pub const GROUP_CHECKS: usize = 256;

impl Clusters {
    /// Merges the writer's runs and joins documents that share a (band, key).
    pub fn build(writer: RunWriter, docs: usize) -> Result<Self> {
        Self::build_checked(writer, docs, |_, _| true)
    }

    /// Like [`Clusters::build`], but a document sharing a (band, key) with earlier ones is
    /// joined to the first of them (up to [`GROUP_CHECKS`]) for which `similar` holds.
    pub fn build_checked(
        writer: RunWriter,
        docs: usize,
        mut similar: impl FnMut(u64, u64) -> bool,
    ) -> Result<Self> {
        let mut union_find = UnionFind::new(docs);
        let mut group: Vec<u64> = Vec::new();
        let mut current = None;
        writer.merge(|number, first, doc| {
            if current != Some(number) {
                current = Some(number);
                group.clear();
                group.push(first);
            }
            // Already joined through another band: nothing to check.
            let root = union_find.find(doc);
            let joined = group.iter().any(|&m| union_find.find(m) == root);
            if !joined && let Some(&m) = group.iter().find(|&&m| similar(m, doc)) {
                union_find.union(m, doc);
            }
            if group.len() < GROUP_CHECKS {
                group.push(doc);
            }
        })?;
        Ok(Self {
            members: Members::Dense(union_find),
        })
    }

    /// The clusters of a split run, from its components stage: `members` maps every document
    /// in a cluster of two or more to (cluster id, size).
    pub fn from_members(members: std::collections::HashMap<u64, (u64, u64)>) -> Self {
        Self {
            members: Members::Sparse(members),
        }
    }

    /// (cluster id = lowest member, whether `doc` is a duplicate, cluster size).
    pub fn of(&mut self, doc: u64) -> (u64, bool, u64) {
        match &mut self.members {
            Members::Dense(union_find) => {
                let root = union_find.find(doc);
                (root, root != doc, union_find.size(root))
            }
            Members::Sparse(map) => match map.get(&doc) {
                Some(&(root, size)) => (root, root != doc, size),
                None => (doc, false, 1),
            },
        }
    }
}
