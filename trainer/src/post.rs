//! What every post-training command does before its first step: load the starting model
//! (`init_from`: a checkpoint, a LoRA checkpoint with its base, or an export-hf directory),
//! fold any adapters into it, add this run's adapters or score head, check the dataset's
//! tokenizer against it, and resolve the configuration the checkpoints will record.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use format::TokenizerInfo;
use sha2::{Digest, Sha256};
use tch::Device;

use crate::checkpoint::{self, Checkpoint};
use crate::config::Precision;
use crate::engine::Start;
use crate::error::TrainError;
use crate::lm::{self, Additions, LanguageModel, compute_kind};
use crate::lora;
use crate::post_config::{PostConfig, PostSettings, Task};

/// The starting model as plain weights (adapters folded in), fp32 on the CPU.
pub fn base_weights(
    init_from: &Path,
) -> Result<(
    crate::config::ModelConfig,
    std::collections::BTreeMap<String, tch::Tensor>,
)> {
    let (base, _) = lm::load_dir(init_from, Device::Cpu, Precision::Fp32)
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

/// Builds what the [`crate::engine::Engine`] starts from for `task`, with the training
/// dataset's tokenizer.
pub fn start(
    config: &PostConfig,
    task: Task,
    tokenizer: &TokenizerInfo,
    tokenizer_path: PathBuf,
) -> Result<Start> {
    if let Some(threads) = config.train.threads {
        tch::set_num_threads(threads);
    }
    let device = config.train.device.resolve()?;
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
        tokenizer_path,
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
