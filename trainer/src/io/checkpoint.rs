//! Checkpoint directories: `model.safetensors`, `optimizer.safetensors`,
//! `trainer_state.json` (step, RNG seed, data cursor, resolved config, tokenizer ids) and a
//! copy of `tokenizer.json`. A checkpoint is written into a hidden temporary directory, each
//! file fsynced, then renamed into place, so a crash never leaves a half-written
//! `step-NNNNNNNN`; only the newest `keep_last` are kept.
//!
//! Safetensors files are written here (tch's writer takes no metadata; Hugging Face expects
//! `{"format": "pt"}`) and read back through tch.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use format::TokenizerInfo;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::engine::config::RunConfig;
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

/// Writes `tensors` as a safetensors file with `metadata`. Tensors are converted to
/// contiguous CPU copies of their own kind.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata)?);
    }
    let mut offset = 0usize;
    let mut cpu = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.f_to_device(Device::Cpu)?.f_contiguous()?;
        let dtype = match t.kind() {
            Kind::Float => "F32",
            Kind::BFloat16 => "BF16",
            Kind::Half => "F16",
            Kind::Int64 => "I64",
            other => bail!("cannot save tensor {name} of kind {other:?}"),
        };
        let bytes = t.numel() * t.kind().elt_size_in_bytes();
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": dtype,
                "shape": t.size(),
                "data_offsets": [offset, offset + bytes],
            }),
        );
        offset += bytes;
        cpu.push((t, bytes));
    }
    let mut json = serde_json::to_vec(&header)?;
    // The data section starts 8-byte aligned, as the reference writer pads it.
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 22, file);
    let write = |out: &mut BufWriter<File>| -> Result<()> {
        out.write_all(&(json.len() as u64).to_le_bytes())?;
        out.write_all(&json)?;
        let mut buf = Vec::new();
        for (t, bytes) in &cpu {
            buf.resize(*bytes, 0);
            t.f_copy_data_u8(&mut buf, t.numel())?;
            out.write_all(&buf)?;
        }
        out.flush()?;
        out.get_ref().sync_all()?;
        Ok(())
    };
    write(&mut out).with_context(|| format!("writing {}", path.display()))
}

/// Reads a safetensors file into CPU tensors by name.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let tensors = Tensor::read_safetensors(path)
        .with_context(|| format!("reading {} (missing or corrupt)", path.display()))?;
    Ok(tensors.into_iter().collect())
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
    pub optimizer: Vec<(String, Tensor)>,
    pub state: &'a TrainerState,
    /// The dataset's tokenizer file, copied in so the checkpoint stands on its own.
    pub tokenizer_file: &'a Path,
}

/// Writes a checkpoint for `data.state.step` under `root` atomically and prunes old ones.
pub fn save(
    root: &Path,
    data: &CheckpointData<'_>,
    keep_last: usize,
    fault: WriteFault,
) -> Result<PathBuf> {
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let name = step_dir_name(data.state.step);
    let tmp = root.join(format!(".tmp-{name}"));
    let dest = root.join(&name);
    // Temporary directories left by a crash mid-write are never complete: remove them all.
    for entry in fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing stale {}", entry.path().display()))?;
        }
    }
    fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&tmp.join(data.weights_file), &data.model, &meta)?;
    for (name, bytes) in &data.extra_files {
        write_synced(&tmp.join(name), bytes)?;
    }
    if fault == WriteFault::AbortMidway {
        std::process::abort();
    }
    write_safetensors(&tmp.join(OPTIMIZER_FILE), &data.optimizer, &meta)?;
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

impl Checkpoint {
    /// Reads `trainer_state.json` and `model.safetensors` (or `adapter.safetensors`) of `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let state_path = dir.join(STATE_FILE);
        let text = fs::read_to_string(&state_path).with_context(|| {
            format!(
                "{} is not a checkpoint directory (no readable {STATE_FILE})",
                dir.display()
            )
        })?;
        let state: TrainerState = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", state_path.display()))?;
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

    pub fn optimizer_state(&self) -> Result<BTreeMap<String, Tensor>> {
        read_safetensors(&self.dir.join(OPTIMIZER_FILE))
    }
}
