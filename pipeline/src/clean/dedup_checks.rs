//! The similarity check of a split run, keyed by document: the `ship` and `check` stages
//! between `pairs` and `components` (when `[dedup.minhash] min_similarity` > 0).
//!
//! A document joins the first earlier member of each of its (band, key) groups whose
//! signature is similar enough (up to [`GROUP_CHECKS`] earlier members). Checking that where
//! the groups are found would need, in every `pairs` task, the signatures of every document
//! in its groups: on a corpus with near-duplicates everywhere, every signature, read again
//! by each of up to 60 pairs tasks. Instead the check goes to the documents' owners (the
//! clean task of the document's input), and each signature is read about three times per
//! run whatever N:
//!
//! 1. `pairs` (task t) writes `work/dedup/groups-task-t-of-N.bin`, one section per task k
//!    (a task's section is one byte range): k's inputs and numbering; the *ship list*, the
//!    documents of k that are earlier members of a group in which a document of another
//!    task j is checked, with that j; and the groups in which k owns a checked document,
//!    each as its earlier members and k's documents with how many earlier members each
//!    looks at. Identical groups (a near-duplicate pair collides in most bands) go once.
//! 2. `ship` (task k) reads its section of every groups file and its own signatures of the
//!    ship list, and writes `shipped-task-k-of-N.bin`: per task j the signatures j needs,
//!    and in its own section k's groups from every pairs task (each once).
//! 3. `check` (task j) reads its section of every shipped file and its own signatures; each
//!    of its documents joins the first similar earlier member of each group:
//!    `edges-task-j-of-N.bin`, the (document, member) pairs, which `components` reads.
//!
//! The edges are those the one-process run joins, and the clusters do not depend on the
//! order of the edges (`Clusters::build_checked`), so the outputs are that run's.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result, bail, ensure};

use super::dedup_keys::{Numbering, dedup_dir, task_partitions};
use super::dedup_packs::SIGNATURE_GAP;
use super::dedup_sections::{Fields, read_section, write_sections};
use crate::config::PipelineConfig;
use crate::dedup::partition::{self, KeyKind, Triple, kind_of, signature_bytes};
use crate::dedup::{GROUP_CHECKS, estimated_similarity};
use crate::shard::TaskSlice;

/// Whether `config`'s MinHash groups are checked by signature similarity (then a split run
/// has the `ship` and `check` stages).
pub fn checks_similarity(config: &PipelineConfig) -> bool {
    config.dedup.minhash.enabled && config.dedup.minhash.min_similarity > 0.0
}

/// Whether partition `p`'s groups are checked by signature similarity.
pub(super) fn checked_partition(config: &PipelineConfig, p: usize) -> bool {
    kind_of(p) == KeyKind::MinHash && checks_similarity(config)
}

fn task_file(kind: &str, task: TaskSlice) -> String {
    format!(
        "work/dedup/{kind}-task-{:05}-of-{:05}.bin",
        task.index(),
        task.count()
    )
}

/// What pairs task `task` writes for the checks (relative to the output).
pub(super) fn groups_file(task: TaskSlice) -> String {
    task_file("groups", task)
}

/// What ship task `task` writes: per task, the signatures it needs from this one.
pub(super) fn shipped_file(task: TaskSlice) -> String {
    task_file("shipped", task)
}

/// What check task `task` writes: its documents' (document, member joined) pairs.
pub(super) fn edges_file(task: TaskSlice) -> String {
    task_file("edges", task)
}

/// The pairs tasks of an N-task run that write a groups file (those with a checked
/// partition).
pub(super) fn groups_writers(config: &PipelineConfig, n: usize) -> Result<Vec<TaskSlice>> {
    let mut out = Vec::new();
    for t in 0..n {
        let slice = TaskSlice::new(t, n)?;
        let partitions = task_partitions(config, slice);
        if partitions.iter().any(|&p| checked_partition(config, p)) {
            out.push(slice);
        }
    }
    Ok(out)
}

/// The task owning each document (the clean task of its input).
struct Owners<'a> {
    numbering: &'a Numbering,
    tasks: usize,
}

impl Owners<'_> {
    fn input(&self, doc: u64) -> usize {
        self.numbering.first_doc.partition_point(|&f| f <= doc) - 1
    }

    fn task(&self, doc: u64) -> usize {
        self.input(doc) % self.tasks
    }
}

/// Appends one group of a section: its earlier members, then the section's task's checked
/// documents, each with how many earlier members it looks at.
fn encode_group(
    window: &[u64],
    checks: impl ExactSizeIterator<Item = (u64, u32)>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&(window.len() as u32).to_le_bytes());
    for &d in window {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&(checks.len() as u32).to_le_bytes());
    for (d, limit) in checks {
        out.extend_from_slice(&d.to_le_bytes());
        out.extend_from_slice(&limit.to_le_bytes());
    }
}

/// One task's section of a groups file: its inputs (input, first document, kept), its
/// ship list, then `group_count` groups already encoded.
fn encode_section(
    inputs: &[(usize, u64, u64)],
    ship: &[(u64, u32)],
    group_count: u64,
    groups: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 * inputs.len() + 12 * ship.len() + groups.len() + 24);
    out.extend_from_slice(&(inputs.len() as u64).to_le_bytes());
    for &(i, first, kept) in inputs {
        for v in [i as u64, first, kept] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.extend_from_slice(&(ship.len() as u64).to_le_bytes());
    for &(a, j) in ship {
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&j.to_le_bytes());
    }
    out.extend_from_slice(&group_count.to_le_bytes());
    out.extend_from_slice(groups);
    out
}

/// What one task's section of a groups file holds, being written.
#[derive(Default)]
struct Section {
    ship: Vec<(u64, u32)>,
    groups: Vec<u8>,
    group_count: u64,
}

/// Pairs task `task`'s groups file, being written from its checked partitions' groups.
pub(super) struct GroupsWriter<'a> {
    numbering: &'a Numbering,
    tasks: usize,
    sections: Vec<Section>,
    seen: HashSet<Vec<u64>>,
}

impl<'a> GroupsWriter<'a> {
    pub fn new(numbering: &'a Numbering, tasks: usize) -> Self {
        Self {
            numbering,
            tasks,
            sections: (0..tasks).map(|_| Section::default()).collect(),
            seen: HashSet::new(),
        }
    }

    /// Adds one group (a sorted run of triples sharing a band key); a group with the same
    /// documents as one added before (another band) adds nothing.
    pub fn add(&mut self, group: &[Triple]) {
        let docs: Vec<u64> = group.iter().map(|t| t.2).collect();
        if self.seen.contains(&docs) {
            return;
        }
        let owners = Owners {
            numbering: self.numbering,
            tasks: self.tasks,
        };
        let owner: Vec<usize> = docs.iter().map(|&d| owners.task(d)).collect();
        // Per task with a checked document (every member after the first): its documents,
        // in group order, each with how far it looks back.
        let mut checked: Vec<(usize, usize)> = owner.iter().copied().zip(0..).skip(1).collect();
        checked.sort_unstable();
        for mine in checked.chunk_by(|x, y| x.0 == y.0) {
            let j = mine[0].0;
            let limit = |i: usize| i.min(GROUP_CHECKS) as u32;
            let window = limit(mine[mine.len() - 1].1) as usize;
            let s = &mut self.sections[j];
            s.group_count += 1;
            let checks = mine.iter().map(|&(_, i)| (docs[i], limit(i)));
            encode_group(&docs[..window], checks, &mut s.groups);
            for (&a, &k) in docs[..window].iter().zip(&owner) {
                if k != j {
                    self.sections[k].ship.push((a, j as u32));
                }
            }
        }
        self.seen.insert(docs);
    }

    /// Writes the groups file of pairs task `task` under `config`'s output.
    pub fn finish(self, config: &PipelineConfig, task: TaskSlice) -> Result<()> {
        let (numbering, n) = (self.numbering, self.tasks);
        let bytes: Vec<Vec<u8>> = self
            .sections
            .into_iter()
            .enumerate()
            .map(|(k, mut s)| {
                let inputs: Vec<(usize, u64, u64)> = (0..numbering.kept.len())
                    .filter(|i| i % n == k)
                    .map(|i| (i, numbering.first_doc[i], numbering.kept[i]))
                    .collect();
                s.ship.sort_unstable();
                s.ship.dedup();
                encode_section(&inputs, &s.ship, s.group_count, &s.groups)
            })
            .collect();
        write_sections(&config.output.dir.join(groups_file(task)), &bytes)
    }
}

/// One check: `doc` joins the first similar of `window[..limit]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Check {
    doc: u64,
    limit: usize,
}

/// Task k's section of one groups file, read.
pub(super) struct GroupsSection {
    /// k's inputs: (input, first document, kept documents).
    inputs: Vec<(usize, u64, u64)>,
    ship: Vec<(u64, u32)>,
    groups: Vec<(Vec<u64>, Vec<Check>)>,
}

fn parse_groups(bytes: &[u8], name: &str) -> Result<GroupsSection> {
    let mut f = Fields::new(bytes, name);
    let mut inputs = Vec::new();
    for _ in 0..f.u64()? {
        inputs.push((f.u64()? as usize, f.u64()?, f.u64()?));
    }
    let mut ship = Vec::new();
    for _ in 0..f.u64()? {
        ship.push((f.u64()?, f.u32()?));
    }
    let mut groups = Vec::new();
    for _ in 0..f.u64()? {
        let window = (0..f.u32()?).map(|_| f.u64()).collect::<Result<Vec<_>>>()?;
        let mut checks = Vec::new();
        for _ in 0..f.u32()? {
            let (doc, limit) = (f.u64()?, f.u32()? as usize);
            ensure!(
                limit <= window.len(),
                "{name}: a check past its group's window"
            );
            checks.push(Check { doc, limit });
        }
        groups.push((window, checks));
    }
    Ok(GroupsSection {
        inputs,
        ship,
        groups,
    })
}

/// Task `task`'s sections of every groups file (local paths under `out`): what its ship
/// task reads.
pub(super) fn read_groups(config: &PipelineConfig, task: TaskSlice) -> Result<Vec<GroupsSection>> {
    let n = task.count();
    let mut out = Vec::new();
    for writer in groups_writers(config, n)? {
        let path = config.output.dir.join(groups_file(writer));
        let bytes = read_section(&path, task.index(), n)?;
        out.push(parse_groups(&bytes, &path.display().to_string())?);
    }
    ensure!(
        !out.is_empty(),
        "no pairs task writes a groups file in a run of {n} tasks"
    );
    Ok(out)
}

/// Signatures by document in one buffer (a check task holds those of every document of
/// its groups: a hash map entry and `width` hashes each, no allocation per document).
struct Signatures {
    width: usize,
    at: HashMap<u64, usize>,
    hashes: Vec<u16>,
}

impl Signatures {
    fn new(width: usize) -> Self {
        Self {
            width,
            at: HashMap::new(),
            hashes: Vec::new(),
        }
    }

    /// Adds `doc`'s signature from its little-endian bytes (a later one for the same
    /// document is the same signature and is left out).
    fn insert_bytes(&mut self, doc: u64, bytes: &[u8]) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.at.entry(doc) {
            e.insert(self.hashes.len());
            self.hashes.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]])),
            );
        }
    }

    fn get(&self, doc: u64) -> Option<&[u16]> {
        let at = *self.at.get(&doc)?;
        Some(&self.hashes[at..at + self.width])
    }
}

/// Adds the own signatures `needed` to `out`, from the per-input signatures files, nearby
/// ones read together ([`SIGNATURE_GAP`]: a read per signature is a system call, or a
/// network round trip on a shared file system, per document).
fn own_signatures(config: &PipelineConfig, needed: &Needed, out: &mut Signatures) -> Result<()> {
    let width = config.dedup.minhash.bands * config.dedup.minhash.rows;
    let dir = dedup_dir(config);
    for &((input, first, _), ref mine) in needed {
        if mine.is_empty() {
            continue;
        }
        let path = dir.join(format!("sigs-{input:05}.bin"));
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let ranges: Vec<_> = mine.iter().map(|&d| signature_bytes(width, d)).collect();
        let mut next = 0;
        for block in crate::storage::coalesce(&ranges, SIGNATURE_GAP) {
            let mut bytes = vec![0u8; (block.end - block.start) as usize];
            file.read_exact_at(&mut bytes, block.start)
                .with_context(|| format!("{} has no signatures at {block:?}", path.display()))?;
            while let Some(r) = ranges.get(next).filter(|r| r.end <= block.end) {
                let from = (r.start - block.start) as usize;
                out.insert_bytes(first + mine[next], &bytes[from..from + width * 2]);
                next += 1;
            }
        }
    }
    Ok(())
}

/// The input among `inputs` (ascending) holding `doc`, with its first document.
fn own_input(inputs: &[(usize, u64, u64)], doc: u64) -> Option<(usize, u64)> {
    let at = inputs.partition_point(|x| x.1 <= doc).checked_sub(1)?;
    let (input, first, kept) = inputs[at];
    (doc < first + kept).then_some((input, first))
}

/// What a ship or check task reads of its own signatures: per own input (input, first
/// document, kept), the documents (numbers within the input, sorted).
pub(super) type Needed = Vec<((usize, u64, u64), Vec<u64>)>;

fn per_input(inputs: &[(usize, u64, u64)], mut docs: Vec<u64>) -> Result<Needed> {
    docs.sort_unstable();
    docs.dedup();
    if let Some(&doc) = docs.iter().find(|&&d| own_input(inputs, d).is_none()) {
        bail!("document {doc} is in none of this task's inputs");
    }
    Ok(inputs
        .iter()
        .map(|&(i, first, kept)| {
            let from = docs.partition_point(|&d| d < first);
            let to = docs.partition_point(|&d| d < first + kept);
            (
                (i, first, kept),
                docs[from..to].iter().map(|d| d - first).collect(),
            )
        })
        .collect())
}

/// The own signatures a ship task reads: its documents on the ship lists of its groups
/// sections (`read_groups`).
pub(super) fn ship_needs(sections: &[GroupsSection]) -> Result<Needed> {
    let docs = sections
        .iter()
        .flat_map(|s| s.ship.iter().map(|x| x.0))
        .collect();
    per_input(&sections[0].inputs, docs)
}

/// The `ship` stage, task `task`, over its groups sections (`read_groups`): the signatures
/// other tasks' checks need from its documents.
pub(super) fn ship(
    config: &PipelineConfig,
    task: TaskSlice,
    sections: &[GroupsSection],
) -> Result<()> {
    let mut ship: Vec<(u32, u64)> = sections
        .iter()
        .flat_map(|s| s.ship.iter().map(|&(a, j)| (j, a)))
        .collect();
    ship.sort_unstable();
    ship.dedup();
    let mut signatures = Signatures::new(config.dedup.minhash.bands * config.dedup.minhash.rows);
    own_signatures(config, &ship_needs(sections)?, &mut signatures)?;
    let mut out = vec![Vec::new(); task.count()];
    for run in ship.chunk_by(|x, y| x.0 == y.0) {
        let bytes = &mut out[run[0].0 as usize];
        bytes.extend_from_slice(&(run.len() as u64).to_le_bytes());
        for &(_, a) in run {
            bytes.extend_from_slice(&a.to_le_bytes());
            let signature = signatures
                .get(a)
                .context("a shipped signature was not read")?;
            for h in signature {
                bytes.extend_from_slice(&h.to_le_bytes());
            }
        }
    }
    for bytes in out.iter_mut().filter(|b| b.is_empty()) {
        bytes.extend_from_slice(&0u64.to_le_bytes());
    }
    // Its own section (a task ships nothing to itself): this task's groups from every
    // pairs task, each once, for its check task, which then reads no groups file.
    let mut seen = HashSet::new();
    let (mut groups, mut count) = (Vec::new(), 0u64);
    for (window, checks) in sections.iter().flat_map(|s| &s.groups) {
        if seen.insert((window, checks)) {
            let checks = checks.iter().map(|c| (c.doc, c.limit as u32));
            encode_group(window, checks, &mut groups);
            count += 1;
        }
    }
    out[task.index()] = encode_section(&sections[0].inputs, &[], count, &groups);
    write_sections(&config.output.dir.join(shipped_file(task)), &out)
}

/// The documents whose own signatures a check task reads, from its forwarded groups
/// (`forwarded_groups`): its checked documents and its documents among their earlier
/// members.
pub(super) fn check_needs(groups: &GroupsSection) -> Result<Needed> {
    let inputs = &groups.inputs;
    let docs = groups
        .groups
        .iter()
        .flat_map(|(window, checks)| {
            let window = window
                .iter()
                .copied()
                .filter(|&d| own_input(inputs, d).is_some());
            window.chain(checks.iter().map(|c| c.doc))
        })
        .collect();
    per_input(inputs, docs)
}

/// Check task `task`'s groups, as its ship task forwarded them (its own section of its
/// shipped file).
pub(super) fn forwarded_groups(config: &PipelineConfig, task: TaskSlice) -> Result<GroupsSection> {
    let path = config.output.dir.join(shipped_file(task));
    let bytes = read_section(&path, task.index(), task.count())?;
    parse_groups(&bytes, &path.display().to_string())
}

/// The `check` stage, task `task`, over its forwarded groups (`forwarded_groups`): each of
/// its checked documents joins the first similar earlier member of each group (`edges`
/// file).
pub(super) fn check(
    config: &PipelineConfig,
    task: TaskSlice,
    groups: &GroupsSection,
) -> Result<()> {
    let (k, n) = (task.index(), task.count());
    let width = config.dedup.minhash.bands * config.dedup.minhash.rows;
    let threshold = config.dedup.minhash.min_similarity;
    let mut signatures = Signatures::new(width);
    for t in (0..n).filter(|&t| t != k) {
        let path = config.output.dir.join(shipped_file(TaskSlice::new(t, n)?));
        let name = path.display().to_string();
        let bytes = read_section(&path, k, n)?;
        let mut f = Fields::new(&bytes, &name);
        for _ in 0..f.u64()? {
            let doc = f.u64()?;
            signatures.insert_bytes(doc, f.take(width * 2)?);
        }
    }
    own_signatures(config, &check_needs(groups)?, &mut signatures)?;
    let signature = |d: u64| {
        signatures
            .get(d)
            .with_context(|| format!("check task {k} of {n}: no signature of document {d}"))
    };
    let mut edges: Vec<(u64, u64)> = Vec::new();
    for (window, checks) in &groups.groups {
        for c in checks {
            let own = signature(c.doc)?;
            for &m in &window[..c.limit] {
                if estimated_similarity(signature(m)?, own) >= threshold {
                    edges.push((c.doc, m));
                    break;
                }
            }
        }
    }
    edges.sort_unstable();
    edges.dedup();
    let mut bytes = Vec::with_capacity(edges.len() * 16);
    for (doc, m) in edges {
        bytes.extend_from_slice(&doc.to_le_bytes());
        bytes.extend_from_slice(&m.to_le_bytes());
    }
    write_sections(&config.output.dir.join(edges_file(task)), &[bytes])
}

/// Calls `each` on the edges check task `task` wrote, a group of them at a time.
pub(super) fn read_edges(
    config: &PipelineConfig,
    task: TaskSlice,
    mut each: impl FnMut(&partition::Group) -> Result<()>,
) -> Result<()> {
    let path = config.output.dir.join(edges_file(task));
    let bytes = read_section(&path, 0, 1)?;
    let name = path.display().to_string();
    ensure!(bytes.len() % 16 == 0, "{name} is truncated");
    for chunk in bytes.chunks(16 << 16) {
        let mut f = Fields::new(chunk, &name);
        let group = (0..chunk.len() / 16)
            .map(|_| Ok((f.u64()?, Some(f.u64()?))))
            .collect::<Result<partition::Group>>()?;
        each(&group)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "dedup_checks_tests.rs"]
mod tests;
