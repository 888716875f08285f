//! Post-training on the annotators' data, all through the shared [`crate::engine::Engine`]:
//! supervised fine-tuning (`sft`), Direct Preference Optimization (`dpo`), KTO on thumbs
//! up / down (`kto`), online RL (`grpo`, scored by `rewards`, its log-probs taken under the
//! sampler's UTF-8 mask: `sampled`) and reward models (`reward`; `score` scores rows with
//! them or with any checkpoint's log-probs), with their
//! configuration (`config`), their datasets read and packed (`data`), what the two
//! preference objectives share (`preference`) and where GRPO's prompts come from
//! (`prompts`).
//!
//! This module holds what every post-training command does before its first step: load the
//! starting model (`init_from`: a checkpoint, a LoRA checkpoint with its base, or an
//! export-hf directory), fold any adapters into it, add this run's adapters or score head,
//! check the dataset's tokenizer against it, and resolve the configuration the checkpoints
//! will record; and `trainer merge-lora`, which folds a LoRA run back into a full checkpoint.

pub mod config;
pub mod data;
pub mod dpo;
pub mod grpo;
pub mod kto;
pub mod preference;
pub mod prompts;
pub mod reward;
pub mod rewards;
pub mod sampled;
pub mod score;
pub mod sft;
pub mod step_logps;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tch::{Device, Tensor};

use crate::engine::Start;
use crate::engine::config::{ModelConfig, Precision};
use crate::engine::error::TrainError;
use crate::engine::parallel::DataParallel;
use crate::io::checkpoint::{self, Checkpoint};
use crate::io::load::load_dir;
use crate::model::language_model::{Additions, LanguageModel, compute_kind};
use crate::model::lora;
use crate::post::config::{PostConfig, PostSettings, Task};
use crate::post::data::Rows;

/// The starting model as plain weights (adapters folded in), fp32 on the CPU.
pub fn base_weights(init_from: &Path) -> Result<(ModelConfig, BTreeMap<String, Tensor>)> {
    let (base, _) = load_dir(init_from, Device::Cpu, Precision::Fp32)
        .with_context(|| format!("loading init_from {}", init_from.display()))?;
    Ok((base.config().clone(), base.merged_tensors()?))
}

/// The starting model on `device` with this run's `additions`: base weights from
/// `init_from`, adapters at their initialisation (`B = 0`), a fresh score head.
pub fn init_model(
    init_from: &Path,
    device: Device,
    precision: Precision,
    seed: u64,
    additions: &Additions,
) -> Result<LanguageModel> {
    let (config, weights) = base_weights(init_from)?;
    let model = LanguageModel::build(
        &config,
        device,
        compute_kind(precision, device),
        seed,
        additions,
    )?;
    model.load_base(&weights, init_from)?;
    Ok(model)
}

/// Builds what the [`crate::engine::Engine`] starts from for `task`, with the tokenizer of
/// the training dataset `train`.
pub fn start<T>(config: &PostConfig, task: Task, train: &Rows<T>) -> Result<Start> {
    let tokenizer = &train.tokenizer;
    if let Some(threads) = config.train.threads {
        tch::set_num_threads(threads);
    }
    let device = config.train.device.resolve()?;
    let parallel = DataParallel::from_env(config.train.collective_timeout_s, device)?;
    let device = DataParallel::device(parallel.as_ref(), device);
    let additions = Additions {
        lora: config.lora.clone(),
        score_head: task == Task::Reward,
    };
    let model = init_model(
        &config.init_from,
        device,
        config.train.precision,
        config.train.seed,
        &additions,
    )?;
    let vocab = i64::from(tokenizer.vocab_size);
    if vocab != model.config().vocab_size {
        return Err(TrainError::VocabMismatch {
            dataset: config.data.train.clone(),
            dataset_vocab: vocab,
            model_vocab: model.config().vocab_size,
        }
        .into());
    }
    let base_tokenizer = config.init_from.join(checkpoint::TOKENIZER_FILE);
    if let Ok(hash) = format::sha256_file(&base_tokenizer)
        && hash != tokenizer.sha256
    {
        tracing::warn!(
            base = %base_tokenizer.display(),
            dataset = %config.data.train.display(),
            "the dataset was tokenized with another tokenizer.json than the starting model's"
        );
    }
    let (run, post) = config.resolve(task, model.config().clone())?;
    Ok(Start {
        config: run,
        post: Some(post),
        model,
        tokenizer_info: tokenizer.clone(),
        tokenizer_path: train.tokenizer_path.clone(),
        parallel,
    })
}

/// A hash of a model directory's weights: its `model.safetensors` and `adapter.safetensors`,
/// and for a LoRA checkpoint its base's hash too. Keys the DPO reference cache.
pub fn weights_hash(dir: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    for file in [checkpoint::MODEL_FILE, lora::ADAPTER_FILE] {
        let path = dir.join(file);
        if path.exists() {
            hasher.update(file);
            hasher.update(format::sha256_file(&path)?);
        }
    }
    if dir.join(lora::ADAPTER_FILE).exists() {
        let ckpt = Checkpoint::load(dir)?;
        if let Some(PostSettings { init_from, .. }) = &ckpt.state.post {
            hasher.update(weights_hash(init_from)?);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `trainer merge-lora`: folds the adapters of LoRA checkpoint `adapter` into `base` (a
/// checkpoint or export-hf directory) in fp32, and writes a full checkpoint directory to
/// `out` that `export-hf`, `generate` and further training accept.
pub fn merge_lora(base: &Path, adapter: &Path, out: &Path) -> Result<()> {
    let ckpt = Checkpoint::load(adapter)?;
    let (Some(tensors), Some(post)) = (&ckpt.adapter, &ckpt.state.post) else {
        anyhow::bail!(
            "{} is not a LoRA checkpoint (no {})",
            adapter.display(),
            lora::ADAPTER_FILE
        );
    };
    let lora_config = post
        .lora
        .as_ref()
        .with_context(|| format!("{} records no [lora] settings", adapter.display()))?;
    let (config, weights) = base_weights(base)?;
    let diffs = config.differences(&ckpt.state.config.model);
    if !diffs.is_empty() {
        return Err(TrainError::ConfigMismatch {
            checkpoint: adapter.to_path_buf(),
            fields: format!("base {}: {}", base.display(), diffs.join(", ")),
        }
        .into());
    }
    if std::path::absolute(base).ok().as_deref() != Some(post.init_from.as_path()) {
        tracing::warn!(
            base = %base.display(),
            trained_on = %post.init_from.display(),
            "merging onto another base than the adapter was trained on"
        );
    }
    let merged: Vec<(String, Tensor)> = lora::merge(&weights, tensors, lora_config.scale())?
        .into_iter()
        .collect();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    checkpoint::write_safetensors(&out.join(checkpoint::MODEL_FILE), &merged, &meta)?;
    let mut state = ckpt.state.clone();
    if let Some(post) = state.post.as_mut() {
        post.lora = None;
    }
    let state_path = out.join(checkpoint::STATE_FILE);
    std::fs::write(&state_path, serde_json::to_vec_pretty(&state)?)
        .with_context(|| format!("writing {}", state_path.display()))?;
    let tokenizer = adapter.join(checkpoint::TOKENIZER_FILE);
    std::fs::copy(&tokenizer, out.join(checkpoint::TOKENIZER_FILE))
        .with_context(|| format!("copying {}", tokenizer.display()))?;
    Ok(())
}
