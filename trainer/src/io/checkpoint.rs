//! Checkpoint directories: `model.safetensors`, `optimizer.safetensors` (or, from a ZeRO-1
//! run, one optimizer shard per rank and `optimizer.shards.json`, see [`optim_shards`]),
//! `trainer_state.json` (step, RNG seed, data cursor, resolved config, tokenizer ids) and a
//! copy of `tokenizer.json`. A checkpoint is written into a hidden temporary directory, each
//! file fsynced, then renamed into place, so a crash never leaves a half-written
//! `step-NNNNNNNN`; only the newest `keep_last` are kept.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use format::TokenizerInfo;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::engine::config::RunConfig;
use crate::io::optim_shards;
pub use crate::io::safetensors::{read_safetensors, write_safetensors};
use crate::model::lora;
use crate::post::config::PostSettings;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Under a run's output directory (`train.out`), where its checkpoints go.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
const STEP_PREFIX: &str = "step-";

/// Where the data stream stood: with (seed, step) it fixes every later batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataCursor {
    pub samples_seen: u64,
    pub tokens_seen: u64,
}

/// `trainer_state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: u64,
    /// AdamW updates applied (less than `step` when non-finite steps were skipped).
    pub optimizer_updates: u64,
    /// Seed of the data order and the periodic samples; no other randomness is used after
    /// initialisation, so (seed, step) is the whole RNG state.
    pub seed: u64,
    pub data: DataCursor,
    /// Ranks of the job that wrote it (each step's global batch is `micro_batch_size x
    /// grad_accum x world_size` rows); a resume may use another number.
    #[serde(default = "one_rank")]
    pub world_size: u64,
    pub last_loss: Option<f64>,
    pub last_val_loss: Option<f64>,
    pub tokenizer: TokenizerInfo,
    pub config: RunConfig,
    /// Post-training runs only: the task, starting model and adapter settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<PostSettings>,
    pub created_at: String,
    pub trainer_version: String,
}

fn one_rank() -> u64 {
    1
}

/// What a fault-injection test may ask the writer to die at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    None,
    /// Abort after writing the model file into the temporary directory.
    AbortMidway,
}

/// Name of the checkpoint directory for `step`.
pub fn step_dir_name(step: u64) -> String {
    format!("{STEP_PREFIX}{step:08}")
}

/// A run directory (holding `checkpoints/step-N/`) stands for its newest checkpoint; any
/// other path is returned as it is.
pub fn resolve_run_dir(path: &Path) -> Result<PathBuf> {
    if path.join(STATE_FILE).exists() || !path.join(CHECKPOINTS_DIR).is_dir() {
        return Ok(path.to_path_buf());
    }
    list(&path.join(CHECKPOINTS_DIR))?
        .pop()
        .map(|(_, dir)| dir)
        .with_context(|| format!("{} is a run directory without checkpoints", path.display()))
}

/// Checkpoints under `root` as (step, path), oldest first; temporary directories ignored.
pub fn list(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e).with_context(|| format!("listing {}", root.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name
            .strip_prefix(STEP_PREFIX)
            .and_then(|s| s.parse::<u64>().ok())
        {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The newest checkpoint under `root`, if any.
pub fn latest(root: &Path) -> Result<Option<PathBuf>> {
    Ok(list(root)?.pop().map(|(_, p)| p))
}

/// Everything a checkpoint holds, ready to write.
#[derive(Debug)]
pub struct CheckpointData<'a> {
    /// Weights written to `weights_file`: the whole model, or a LoRA run's trainable tensors.
    pub model: Vec<(String, Tensor)>,
    /// [`MODEL_FILE`] or [`lora::ADAPTER_FILE`].
    pub weights_file: &'a str,
    /// Further small files (`adapter_config.json`).
    pub extra_files: Vec<(&'a str, Vec<u8>)>,
    pub optimizer: OptimizerState,
    pub state: &'a TrainerState,
    /// The dataset's tokenizer file, copied in so the checkpoint stands on its own.
    pub tokenizer_file: &'a Path,
}

/// The AdamW moments a checkpoint holds.
#[derive(Debug)]
pub enum OptimizerState {
    /// All of them, written by rank 0 as [`OPTIMIZER_FILE`].
    Whole(Vec<(String, Tensor)>),
    /// ZeRO-1: every rank of `world_size` has already written its shard into the temporary
    /// directory ([`begin`], [`optim_shards::write_shard`]); rank 0 adds the manifest.
    Sharded { world_size: u64 },
}

/// The hidden directory the checkpoint of `step` is written into before it is renamed.
pub fn tmp_dir(root: &Path, step: u64) -> PathBuf {
    root.join(format!(".tmp-{}", step_dir_name(step)))
}

/// Creates the empty temporary directory of `step`'s checkpoint under `root`, after removing
/// any left by a crash mid-write (never complete). Rank 0 only: in a ZeRO-1 job the other
/// ranks write their shards into it once it exists.
pub fn begin(root: &Path, step: u64) -> Result<PathBuf> {
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    // Temporary directories left by a crash mid-write are never complete: remove them all.
    for entry in fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing stale {}", entry.path().display()))?;
        }
    }
    let tmp = tmp_dir(root, step);
    fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    Ok(tmp)
}

/// Writes a checkpoint for `data.state.step` under `root` atomically and prunes old ones.
pub fn save(
    root: &Path,
    data: &CheckpointData<'_>,
    keep_last: usize,
    fault: WriteFault,
) -> Result<PathBuf> {
    let step = data.state.step;
    let tmp = match data.optimizer {
        OptimizerState::Whole(_) => begin(root, step)?,
        OptimizerState::Sharded { .. } => tmp_dir(root, step),
    };
    let dest = root.join(step_dir_name(step));
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&tmp.join(data.weights_file), &data.model, &meta)?;
    for (name, bytes) in &data.extra_files {
        write_synced(&tmp.join(name), bytes)?;
    }
    if fault == WriteFault::AbortMidway {
        std::process::abort();
    }
    match &data.optimizer {
        OptimizerState::Whole(tensors) => {
            write_safetensors(&tmp.join(OPTIMIZER_FILE), tensors, &meta)?;
        }
        OptimizerState::Sharded { world_size } => optim_shards::write_manifest(&tmp, *world_size)?,
    }
    let state = serde_json::to_vec_pretty(data.state)?;
    write_synced(&tmp.join(STATE_FILE), &state)?;
    let tokenizer = fs::read(data.tokenizer_file)
        .with_context(|| format!("reading {}", data.tokenizer_file.display()))?;
    write_synced(&tmp.join(TOKENIZER_FILE), &tokenizer)?;
    sync_dir(&tmp)?;
    if dest.exists() {
        // Only when a run re-saves a step it already saved (e.g. resumed at its last step).
        fs::remove_dir_all(&dest).with_context(|| format!("replacing {}", dest.display()))?;
    }
    fs::rename(&tmp, &dest).with_context(|| format!("renaming into {}", dest.display()))?;
    sync_dir(root)?;
    let all = list(root)?;
    for (_, old) in all.iter().take(all.len().saturating_sub(keep_last)) {
        fs::remove_dir_all(old).with_context(|| format!("pruning {}", old.display()))?;
    }
    Ok(dest)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// A checkpoint read back from disk (tensors on the CPU).
#[derive(Debug)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: TrainerState,
    /// `model.safetensors`; empty in a LoRA checkpoint.
    pub model: BTreeMap<String, Tensor>,
    /// `adapter.safetensors` under the model's tensor names (LoRA checkpoints only).
    pub adapter: Option<BTreeMap<String, Tensor>>,
}

/// Reads `trainer_state.json` of the checkpoint `dir` (not its tensors).
pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let state_path = dir.join(STATE_FILE);
    let text = fs::read_to_string(&state_path).with_context(|| {
        format!(
            "{} is not a checkpoint directory (no readable {STATE_FILE})",
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", state_path.display()))
}

impl Checkpoint {
    /// Reads `trainer_state.json` and `model.safetensors` (or `adapter.safetensors`) of `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let state = read_state(dir)?;
        let adapter_path = dir.join(lora::ADAPTER_FILE);
        let adapter = if adapter_path.exists() {
            let tensors = read_safetensors(&adapter_path)?;
            Some(
                tensors
                    .into_iter()
                    .map(|(k, v)| (lora::from_peft_name(&k), v))
                    .collect(),
            )
        } else {
            None
        };
        let model = if adapter.is_some() {
            BTreeMap::new()
        } else {
            read_safetensors(&dir.join(MODEL_FILE))?
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            state,
            model,
            adapter,
        })
    }

    /// True for a checkpoint that holds only LoRA adapters (its base is `post.init_from`).
    pub fn is_adapter(&self) -> bool {
        self.adapter.is_some()
    }

    /// The AdamW moments by name: `optimizer.safetensors`, or a ZeRO-1 run's shards merged.
    pub fn optimizer_state(&self) -> Result<BTreeMap<String, Tensor>> {
        if self.dir.join(optim_shards::MANIFEST_FILE).exists() {
            return optim_shards::read(&self.dir);
        }
        read_safetensors(&self.dir.join(OPTIMIZER_FILE))
    }
}
