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
    const BLOCK: usize = 512;
    // The most bytes one non-ASCII character lowers to (three characters of four bytes).
    const MAX_CHAR: usize = 12;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    // The streaming hash does not depend on how its input is chunked: bytes are gathered in
    // a block and handed over a block at a time.
    let mut block = [0u8; BLOCK];
    let mut len = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if BLOCK - len < MAX_CHAR {
            hasher.update(&block[..len]);
            len = 0;
        }
        // ASCII without a branch per byte: each byte is written lower-cased and kept unless
        // it is whitespace (tab, line feed, vertical tab, form feed, carriage return, space);
        // at most the block's free bytes are taken, so it cannot overflow.
        let end = bytes.len().min(i + (BLOCK - len));
        while i < end && bytes[i].is_ascii() {
            let b = bytes[i];
            block[len] = b.to_ascii_lowercase();
            len += usize::from(!(b == b' ' || (b'\t'..=b'\r').contains(&b)));
            i += 1;
        }
        if i == end {
            continue;
        }
        if BLOCK - len < MAX_CHAR {
            hasher.update(&block[..len]);
            len = 0;
        }
        let c = text[i..].chars().next().expect("a character starts here");
        i += c.len_utf8();
        if crate::filters::is_cjk_ideograph(c) {
            // Not whitespace and its own lower case: no Unicode table lookups.
            len += c.encode_utf8(&mut block[len..]).len();
        } else if !c.is_whitespace() {
            for l in c.to_lowercase() {
                len += l.encode_utf8(&mut block[len..]).len();
            }
        }
    }
    hasher.update(&block[..len]);
    hasher.digest()
}

/// [`exact_key`] as it was first written, a character at a time: the reference the tests
/// compare it with.
#[cfg(test)]
fn exact_key_reference(text: &str) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
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
            // Every document joins the first similar earlier member of each of its groups,
            // whatever joined before: the clusters are the components of those edges, in
            // any order (what lets a split run check similarity apart from the replay).
            if let Some(&m) = group.iter().find(|&&m| similar(m, doc)) {
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

#[cfg(test)]
mod tests {
    use super::{exact_key, exact_key_reference};

    /// The block loop gives the keys of the character-at-a-time reference: every character
    /// of the first three planes among ASCII words, and long texts whose block boundaries
    /// fall inside multi-byte and multi-character lowerings.
    #[test]
    fn exact_keys_equal_the_reference() {
        for c in (0u32..0x3_0000).filter_map(char::from_u32) {
            let text = format!("Ab {c}\t{c}{c}X\u{0B}y\r\n");
            assert_eq!(exact_key(&text), exact_key_reference(&text), "{c:?}");
        }
        let pieces = [
            "Hello ", "WORLD\n", "\t", "İ", "ǅ", "中文", "ß", "ﬃ", " \u{a0}", "\u{3000}", "Ω",
            "\u{0B}", "x", "ŉ", "😀",
        ];
        let mut text = String::new();
        for round in 0..4000usize {
            text.push_str(pieces[(round * 7 + round / 13) % pieces.len()]);
            if round % 97 == 0 {
                assert_eq!(exact_key(&text), exact_key_reference(&text), "{round}");
            }
        }
        assert_eq!(exact_key(&text), exact_key_reference(&text));
        for text in ["", " ", "\n\t ", "a", &"ab ".repeat(1000), &"İ".repeat(700)] {
            assert_eq!(exact_key(text), exact_key_reference(text), "{text:?}");
        }
    }
}
