//! What a resumed run checks and keeps: a checkpoint of the same architecture and adapter
//! shape (and a warning when the settings that decide the batches or updates changed), and
//! metrics.jsonl without the lines the interrupted run wrote after its last checkpoint.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::engine::config::RunConfig;
use crate::engine::error::TrainError;
use crate::io::checkpoint::Checkpoint;
use crate::post::config::PostSettings;

/// Refuses a checkpoint of another architecture or adapter shape; warns when settings that
/// decide the batches or the updates differ (the resumed run would not match). The job's
/// micro-batch is compared, not its split: 2 ranks x 4 rows resume as 1 rank x 8.
pub fn check_resumable(
    ckpt: &Checkpoint,
    config: &RunConfig,
    post: Option<&PostSettings>,
    ranks: u64,
) -> Result<()> {
    let mut diffs = ckpt.state.config.model.differences(&config.model);
    let saved_post = ckpt.state.post.as_ref();
    if saved_post.map(|p| (p.task, &p.lora)) != post.map(|p| (p.task, &p.lora)) {
        diffs.push("post-training task or [lora]".into());
    }
    if !diffs.is_empty() {
        return Err(TrainError::ConfigMismatch {
            checkpoint: ckpt.dir.clone(),
            fields: diffs.join(", "),
        }
        .into());
    }
    let (saved, now) = (&ckpt.state.config, config);
    if saved.data.seq_len != now.data.seq_len
        || saved.data.order != now.data.order
        || saved.train.seed != now.train.seed
        || global_batch(saved, ckpt.state.world_size) != global_batch(now, ranks)
        || saved.optim != now.optim
        || saved_post != post
    {
        tracing::warn!(
            checkpoint = %ckpt.dir.display(),
            "data, batch or optimizer settings differ from the checkpoint's: the resumed run will not match an uninterrupted one"
        );
    }
    Ok(())
}

/// The job's rows per micro-batch and micro-batches per step: what decides the batches,
/// however the rows split into ranks.
fn global_batch(config: &RunConfig, ranks: u64) -> (u64, i64) {
    (
        config.train.micro_batch_size as u64 * ranks,
        config.train.grad_accum,
    )
}

/// Opens metrics.jsonl for appending; on resume, first drops lines past the resumed step
/// (written by the interrupted run after its last checkpoint).
pub fn open_metrics(path: &Path, resumed_at: Option<u64>) -> Result<File> {
    let kept = match (resumed_at, File::open(path)) {
        (Some(step), Ok(file)) => {
            let mut kept = String::new();
            for line in BufReader::new(file).lines() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                let line_step = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v["step"].as_u64());
                if line_step.is_some_and(|s| s <= step) {
                    kept.push_str(&line);
                    kept.push('\n');
                }
            }
            kept
        }
        _ => String::new(),
    };
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(kept.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(file)
}
