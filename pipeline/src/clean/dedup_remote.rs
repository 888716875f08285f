//! The dedup stages of a split run whose output is `s3://`: a stage fetches the files it
//! reads into a scratch copy of the output (same relative paths), runs there as on a local
//! output, and uploads what it wrote; the caller writes its done marker after that.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::dedup_tasks::{components, pairs, survivors};
use super::stages::Stage;
use super::summary::RunSummary;
use crate::config::{KeptFormat, PipelineConfig};
use crate::dedup::partition::{KeyKind, kind_of, partitions};
use crate::readers::expand_inputs;
use crate::shard::TaskSlice;
use crate::storage::{self, RemoteObject};

/// A local copy of part of a remote output.
struct Scratch {
    url: String,
    local: PathBuf,
}

impl Scratch {
    fn fetch(&self, rel: &str) -> Result<()> {
        let local = self.local.join(rel);
        if local.exists() {
            return Ok(());
        }
        if let Some(dir) = local.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        RemoteObject::parse(&format!("{}/{rel}", self.url))?.download(&local)?;
        Ok(())
    }

    fn upload(&self, rel: &str) -> Result<()> {
        RemoteObject::parse(&format!("{}/{rel}", self.url))?.upload(&self.local.join(rel))
    }
}

/// Runs task `task` of `stage` (not `clean`) for a remote output.
pub(super) fn run_remote(
    config: &PipelineConfig,
    stage: Stage,
    task: TaskSlice,
) -> Result<RunSummary> {
    let url = config
        .output
        .dir
        .to_string_lossy()
        .trim_end_matches('/')
        .to_string();
    let label = task.marker(stage.name());
    let scratch = Scratch {
        local: storage::scratch_dir(&format!("{url}#{label}")),
        url,
    };
    let mut local = config.clone();
    local.output.dir = scratch.local.clone();
    let inputs = expand_inputs(&config.input.paths, config.input.reader.format)?.len();
    for i in 0..inputs {
        scratch.fetch(&format!("work/input-{i:05}.done.json"))?;
    }
    let options = &config.dedup;
    let enabled = |p: usize| match kind_of(p) {
        KeyKind::Exact => options.exact,
        KeyKind::MinHash => options.minhash.enabled,
    };
    let all_partitions: Vec<usize> = (0..partitions(options.minhash.bands))
        .filter(|&p| enabled(p))
        .collect();
    let mut written = Vec::new();
    let summary = match stage {
        Stage::Clean | Stage::Tokenize => anyhow::bail!("not a dedup stage"),
        Stage::Pairs => {
            for i in 0..inputs {
                scratch.fetch(&format!("work/dedup/keys-{i:05}.bin"))?;
                scratch.fetch(&format!("work/dedup/sigs-{i:05}.bin"))?;
            }
            let summary = pairs(&local, task)?;
            for p in all_partitions.iter().filter(|&&p| task.owns(p)) {
                written.push(format!("work/dedup/pairs-{p:04}.bin"));
            }
            summary
        }
        Stage::Components => {
            for p in &all_partitions {
                scratch.fetch(&format!("work/dedup/pairs-{p:04}.bin"))?;
            }
            let summary = components(&local)?;
            written.extend((0..inputs).map(|i| format!("work/dedup/clusters-{i:05}.bin")));
            summary
        }
        Stage::Survivors => {
            let ext = match config.output.kept_format {
                KeptFormat::Jsonl => "jsonl.zst",
                KeptFormat::Parquet => "parquet",
            };
            for i in (0..inputs).filter(|&i| task.owns(i)) {
                for rel in [
                    format!("work/input-{i:05}.rows.jsonl.zst"),
                    format!("work/input-{i:05}.kept.jsonl"),
                    format!("work/dedup/clusters-{i:05}.bin"),
                ] {
                    scratch.fetch(&rel)?;
                }
                written.push(format!("kept/part-{i:05}.{ext}"));
                written.push(format!("docs-{i:05}.parquet"));
            }
            survivors(&local, task)?
        }
    };
    for rel in &written {
        scratch.upload(rel)?;
    }
    std::fs::remove_dir_all(&scratch.local).ok();
    Ok(summary)
}
