//! Dedup across a split run, as stages that each run as tasks (`pipeline clean --stage`):
//!
//! 1. `clean` (per input, task i of N): read, filter, dedup keys; then each input's keys
//!    partitioned by band and key range (`work/dedup/keys-NNNNN.bin`, `sigs-NNNNN.bin`).
//! 2. `pairs` (per partition, task i of N takes the i-th of N contiguous shares of the
//!    partitions, one byte range of every keys file): the sorted merge of every input's
//!    keys in that partition into groups; for the exact partitions the member each document
//!    joins (`work/dedup/pairs-PPPP.bin`), for the MinHash ones checked by similarity the
//!    groups, sent on to the owners of their documents (`super::dedup_checks`).
//!
//!    With similarity checks, `ship` and `check` (per task) come next: each task's
//!    documents checked against the earlier members of their groups, the signatures of
//!    other tasks' members shipped by their owners; the join edges (`edges-task-*.bin`).
//! 3. `components` (one task): the join edges through a union-find that holds only
//!    documents with a duplicate, giving per input its clustered documents
//!    (`work/dedup/clusters-NNNNN.bin`).
//! 4. `survivors` (per input, task i of N): the kept documents and the docs tables, as the
//!    one-process run writes them.
//!
//! Documents are numbered as in the one-process run (kept documents in input order), and
//! each stage replays the one-process merge, so every output is that run's, whatever N.
//! Every stage writes its files, then its done marker; a finished file or task is skipped.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use rayon::prelude::*;

use super::dedup_checks::{
    GroupsWriter, checked_partition, checks_similarity, groups_file, read_edges,
};
use super::dedup_keys::{Numbering, dedup_dir, task_partitions};
use super::outputs::{DedupResult, write_outputs};
use super::summary::RunSummary;
use super::work::{InputDone, WorkFiles};
use crate::config::PipelineConfig;
use crate::dedup::Clusters;
use crate::dedup::components::BoundedComponents;
use crate::dedup::partition::{
    self, KeyKind, kind_of, partitions, read_pairs, read_partition, resolve_group, write_pairs,
};
use crate::shard::TaskSlice;

/// The done records of `inputs` inputs, from the work directory (a local output).
pub(super) fn done_records(config: &PipelineConfig, inputs: usize) -> Result<Vec<InputDone>> {
    let work = config.output.dir.join("work");
    (0..inputs)
        .map(|index| {
            let path = WorkFiles::new(&work, index).done;
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("reading {} (did the clean stage finish?)", path.display())
            })?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        })
        .collect()
}

/// The numbering of a local output's `inputs` inputs, from their done records.
pub(super) fn numbering(config: &PipelineConfig, inputs: usize) -> Result<Numbering> {
    let done = done_records(config, inputs)?;
    Ok(Numbering::from_kept(done.iter().map(|d| d.kept).collect()))
}

/// The sorted triples of partition `p` over every input, in the one-process merge order.
fn merged_partition(dir: &Path, numbering: &Numbering, p: usize) -> Result<Vec<partition::Triple>> {
    let mut triples = Vec::new();
    for (index, &first) in numbering.first_doc.iter().enumerate() {
        triples.extend(read_partition(
            &dir.join(format!("keys-{index:05}.bin")),
            p,
            first,
        )?);
    }
    // Inputs are numbered in order, so this is the one-process merge order.
    triples.par_sort_unstable();
    Ok(triples)
}

/// Stage 2: for each partition of this task, the documents that join an earlier member of
/// their group; for the partitions checked by similarity, the groups file of the `ship` and
/// `check` stages instead (`super::dedup_checks`).
pub(super) fn pairs(
    config: &PipelineConfig,
    task: TaskSlice,
    numbering: &Numbering,
) -> Result<RunSummary> {
    let dir = dedup_dir(config);
    let mut checked = Vec::new();
    for p in task_partitions(config, task) {
        if checked_partition(config, p) {
            checked.push(p);
            continue;
        }
        let path = dir.join(format!("pairs-{p:04}.bin"));
        if path.exists() {
            continue;
        }
        let triples = merged_partition(&dir, numbering, p)?;
        let groups: Vec<partition::Group> = partition::groups(&triples)
            .map(|g| resolve_group(g, |_, _| true))
            .collect();
        write_pairs(&path, &groups)?;
    }
    if !checked.is_empty() && !config.output.dir.join(groups_file(task)).exists() {
        let mut writer = GroupsWriter::new(numbering, task.count());
        for &p in &checked {
            partition::groups(&merged_partition(&dir, numbering, p)?).for_each(|g| writer.add(g));
        }
        writer.finish(config, task)?;
    }
    Ok(RunSummary::default())
}

/// Stage 3: the clusters of every partition's pairs and every check task's edges, in any
/// order (in memory up to `[dedup] components_memory_mb`, then spilled to disk); per
/// input, the documents in a cluster of two or more with their cluster and its size.
pub(super) fn components(
    config: &PipelineConfig,
    tasks: usize,
    numbering: &Numbering,
) -> Result<RunSummary> {
    let dir = dedup_dir(config);
    let options = &config.dedup;
    let bound = options.components_memory_mb.saturating_mul(1 << 20);
    let mut per_kind = Vec::new();
    let mut spill_dirs = Vec::new();
    for (kind, enabled) in [
        (KeyKind::Exact, options.exact),
        (KeyKind::MinHash, options.minhash.enabled),
    ] {
        let spill = dir.join(format!("components-{kind:?}").to_lowercase());
        let mut clusters = BoundedComponents::new(bound, &spill);
        if enabled {
            for p in (0..partitions(options.minhash.bands)).filter(|&p| kind_of(p) == kind) {
                if !checked_partition(config, p) {
                    read_pairs(&dir.join(format!("pairs-{p:04}.bin")), |g| {
                        clusters.replay(g)
                    })?;
                }
            }
            if kind == KeyKind::MinHash && checks_similarity(config) {
                for t in 0..tasks {
                    read_edges(config, TaskSlice::new(t, tasks)?, |g| clusters.replay(g))?;
                }
            }
        }
        let (members, stats) = clusters.finish()?;
        tracing::info!(
            "{kind:?} dedup: {} duplicate pairs, {} documents in clusters, {} spills to disk",
            stats.pairs,
            stats.documents,
            stats.spills
        );
        per_kind.push(members);
        spill_dirs.push(spill);
    }
    for index in 0..numbering.first_doc.len() {
        let end = numbering.first_doc[index] + numbering.kept[index];
        let mut bytes = Vec::new();
        for members in &mut per_kind {
            let count_at = bytes.len();
            bytes.extend_from_slice(&0u64.to_le_bytes());
            let mut count = 0u64;
            while let Some((doc, root, size)) = members.next_below(end)? {
                for v in [doc, root, size] {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                count += 1;
            }
            bytes[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
        }
        partition::write_atomic(&dir.join(format!("clusters-{index:05}.bin")), &bytes)?;
    }
    drop(per_kind);
    for spill in spill_dirs.iter().filter(|d| d.exists()) {
        std::fs::remove_dir_all(spill).with_context(|| format!("removing {}", spill.display()))?;
    }
    Ok(RunSummary::default())
}

/// Reads one input's clusters file: (exact, minhash) members.
fn read_clusters(path: &Path) -> Result<[HashMap<u64, (u64, u64)>; 2]> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut at = 0usize;
    let mut next = || -> Result<u64> {
        let v = bytes
            .get(at..at + 8)
            .with_context(|| format!("{} is truncated", path.display()))?;
        at += 8;
        Ok(u64::from_le_bytes(v.try_into()?))
    };
    let mut out = [HashMap::new(), HashMap::new()];
    for map in &mut out {
        for _ in 0..next()? {
            let (doc, root, size) = (next()?, next()?, next()?);
            map.insert(doc, (root, size));
        }
    }
    Ok(out)
}

/// Stage 4: the kept documents and docs tables of `inputs`: (input number, its done record,
/// its first document number), this task's.
pub(super) fn survivors(
    config: &PipelineConfig,
    inputs: &[(usize, InputDone, u64)],
) -> Result<RunSummary> {
    let dir = dedup_dir(config);
    let work = config.output.dir.join("work");
    let mut summary = RunSummary::default();
    for (index, done, first_doc) in inputs {
        let [exact, near] = read_clusters(&dir.join(format!("clusters-{index:05}.bin")))?;
        let dedup = DedupResult {
            exact: config.dedup.exact.then(|| Clusters::from_members(exact)),
            minhash: config
                .dedup
                .minhash
                .enabled
                .then(|| Clusters::from_members(near)),
        };
        write_outputs(
            config,
            &work,
            &[*index],
            std::slice::from_ref(done),
            &[*first_doc],
            dedup,
            &mut summary,
        )?;
    }
    Ok(summary)
}

/// The survivors stage on a local output: task `task`'s inputs.
pub(super) fn survivors_local(
    config: &PipelineConfig,
    task: TaskSlice,
    inputs: usize,
) -> Result<RunSummary> {
    let done = done_records(config, inputs)?;
    let numbering = Numbering::from_kept(done.iter().map(|d| d.kept).collect());
    let mine: Vec<(usize, InputDone, u64)> = done
        .into_iter()
        .enumerate()
        .filter(|(i, _)| task.owns(*i))
        .map(|(i, d)| (i, d, numbering.first_doc[i]))
        .collect();
    survivors(config, &mine)
}
