//! The clean stage's part of a split dedup run: each input's dedup keys, partitioned by band
//! and key range (`work/dedup/keys-NNNNN.bin`), and its signatures (`sigs-NNNNN.bin`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;

use super::work::{WorkFiles, read_keys};
use crate::config::PipelineConfig;
use crate::dedup::partition::{KeyKind, kind_of, partitions, write_keys_file, write_signatures};
use crate::shard::TaskSlice;

/// Where a split run's dedup files live.
pub(crate) fn dedup_dir(config: &PipelineConfig) -> PathBuf {
    config.output.dir.join("work/dedup")
}

/// After the clean stage of a split run: the partitioned keys of each input in `indices`
/// (skipped when already written).
pub(crate) fn write_partitions(
    config: &PipelineConfig,
    work: &Path,
    indices: &[usize],
) -> Result<()> {
    let dir = dedup_dir(config);
    let options = &config.dedup;
    let bands = options.minhash.bands;
    let width = bands * options.minhash.rows;
    indices.par_iter().try_for_each(|&index| {
        let keys_path = dir.join(format!("keys-{index:05}.bin"));
        let sigs_path = dir.join(format!("sigs-{index:05}.bin"));
        if keys_path.exists() && sigs_path.exists() {
            return Ok(());
        }
        let keys = read_keys(&WorkFiles::new(work, index).keys)?;
        let exact: Vec<u64> = keys.iter().map(|k| k.exact).collect();
        let near: Vec<Vec<u64>> = keys.iter().map(|k| k.bands.clone()).collect();
        let signatures: Vec<Vec<u16>> = if options.minhash.min_similarity > 0.0 {
            keys.into_iter().map(|k| k.signature).collect()
        } else {
            Vec::new()
        };
        write_signatures(&sigs_path, width, &signatures)?;
        write_keys_file(
            &keys_path,
            bands,
            options.exact.then_some(&exact[..]),
            options.minhash.enabled.then_some(&near[..]),
        )
        .with_context(|| format!("dedup keys of input {index}"))
    })
}

/// Each input's kept documents and first document number (kept documents are numbered in
/// input order).
pub(super) struct Numbering {
    pub kept: Vec<u64>,
    pub first_doc: Vec<u64>,
}

impl Numbering {
    pub fn from_kept(kept: Vec<u64>) -> Self {
        let first_doc = kept
            .iter()
            .scan(0u64, |next, &k| {
                let first = *next;
                *next += k;
                Some(first)
            })
            .collect();
        Self { kept, first_doc }
    }
}

/// The partitions task `task` of the pairs stage merges: a contiguous share of the enabled
/// ones, so that in every keys file (sorted by partition) they are one byte range.
pub(super) fn task_partitions(config: &PipelineConfig, task: TaskSlice) -> Vec<usize> {
    let options = &config.dedup;
    let enabled: Vec<usize> = (0..partitions(options.minhash.bands))
        .filter(|&p| match kind_of(p) {
            KeyKind::Exact => options.exact,
            KeyKind::MinHash => options.minhash.enabled,
        })
        .collect();
    let (i, n) = (task.index(), task.count());
    enabled[i * enabled.len() / n..(i + 1) * enabled.len() / n].to_vec()
}
