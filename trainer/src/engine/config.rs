//! Run configuration: the model (field names of Hugging Face `LlamaConfig`, so `config.json`
//! is a direct projection of it) and the training settings, read from TOML with unknown
//! fields refused. The resolved configuration is stored in every checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

use crate::engine::device::DeviceChoice;

/// Architecture of a Llama-style decoder. Field names are those of `LlamaConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// 0 in a run config means "the training dataset's vocabulary size".
    #[serde(default)]
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub max_position_embeddings: i64,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
}

fn default_rms_norm_eps() -> f64 {
    1e-5
}
fn default_rope_theta() -> f64 {
    10_000.0
}

impl ModelConfig {
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks the shape constraints; the error names the field to change.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, value) in positive {
            ensure!(value > 0, "model.{name} must be > 0, got {value}");
        }
        ensure!(
            self.hidden_size % self.num_attention_heads == 0,
            "model.hidden_size ({}) must be a multiple of num_attention_heads ({})",
            self.hidden_size,
            self.num_attention_heads
        );
        ensure!(
            self.num_attention_heads % self.num_key_value_heads == 0,
            "model.num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
            self.num_attention_heads,
            self.num_key_value_heads
        );
        ensure!(
            self.head_dim() % 2 == 0,
            "model head dimension hidden_size / num_attention_heads = {} must be even for rotary embeddings",
            self.head_dim()
        );
        ensure!(
            self.rms_norm_eps > 0.0 && self.rope_theta > 0.0,
            "model.rms_norm_eps and model.rope_theta must be > 0"
        );
        Ok(())
    }

    /// Parameters in the model (embeddings included, a tied head counted once).
    pub fn num_params(&self) -> i64 {
        let (h, kv) = (self.hidden_size, self.num_key_value_heads * self.head_dim());
        let attention = 2 * h * h + 2 * h * kv;
        let mlp = 3 * h * self.intermediate_size;
        let layer = attention + mlp + 2 * h;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * h
        };
        self.vocab_size * h + self.num_hidden_layers * layer + h + head
    }

    /// Training FLOPs per token: 6 x (parameters that do matmuls) plus attention
    /// (12 x layers x hidden x seq_len, the PaLM appendix formula).
    pub fn flops_per_token(&self, seq_len: i64) -> f64 {
        let matmul_params = self.num_params() - self.vocab_size * self.hidden_size
            + if self.tie_word_embeddings {
                self.vocab_size * self.hidden_size
            } else {
                0
            };
        6.0 * matmul_params as f64
            + 12.0 * (self.num_hidden_layers * self.hidden_size * seq_len) as f64
    }

    /// Names of fields that differ from `other`, for "checkpoint from another config" errors.
    pub fn differences(&self, other: &ModelConfig) -> Vec<String> {
        let a = serde_json::to_value(self).unwrap_or_default();
        let b = serde_json::to_value(other).unwrap_or_default();
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return vec!["(unserialisable)".into()];
        };
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}: {v} vs {}", b.get(k).cloned().unwrap_or_default()))
            .collect()
    }
}

/// How training windows are drawn from the token stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataOrder {
    /// Uniformly random windows, drawn from (seed, step).
    #[default]
    Random,
    /// Consecutive windows, wrapping around at the end of the dataset.
    Sequential,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A `pretrain` dataset directory.
    pub train: PathBuf,
    /// A held-out `pretrain` dataset for validation loss; none: no validation.
    #[serde(default)]
    pub valid: Option<PathBuf>,
    pub seq_len: i64,
    #[serde(default)]
    pub order: DataOrder,
    /// With `order = "random"`: the fraction of windows that start at a document's first
    /// token (its BOS), so the model learns to begin a text from nothing before it, as
    /// `generate` asks it to; the others start anywhere. Drawn from (seed, step) like the
    /// windows themselves. Pretraining only: post-training rows are whole examples, which
    /// start with BOS already.
    #[serde(default = "default_doc_start_fraction")]
    pub doc_start_fraction: f64,
}

fn default_doc_start_fraction() -> f64 {
    0.5
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Linear warmup, then cosine decay to `min_lr` at the last step.
    #[default]
    Cosine,
    /// Warmup-stable-decay: linear warmup, constant, then linear decay to `min_lr` over the
    /// last `decay_fraction` of the steps.
    Wsd,
    /// Linear warmup, then constant.
    Constant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub lr: f64,
    #[serde(default)]
    pub min_lr: f64,
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(default)]
    pub schedule: Schedule,
    /// WSD only: fraction of the steps spent decaying.
    #[serde(default = "default_decay_fraction")]
    pub decay_fraction: f64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Global gradient-norm clip; 0 disables clipping (the norm is still logged).
    #[serde(default = "default_grad_clip")]
    pub grad_clip: f64,
}

fn default_decay_fraction() -> f64 {
    0.2
}
fn default_weight_decay() -> f64 {
    0.1
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.95
}
fn default_eps() -> f64 {
    1e-8
}
fn default_grad_clip() -> f64 {
    1.0
}

/// What to do when the loss or the gradient norm is NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NonFinitePolicy {
    /// Stop with an error naming the step and the last good checkpoint.
    #[default]
    Stop,
    /// Drop the update, log it, and go on.
    Skip,
}

/// Compute precision. `auto`: bf16 compute with fp32 master weights on CUDA, fp32 on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Auto,
    Fp32,
    Bf16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// Output directory: checkpoints/, metrics.jsonl.
    pub out: PathBuf,
    #[serde(default)]
    pub seed: u64,
    pub steps: u64,
    pub micro_batch_size: i64,
    #[serde(default = "one")]
    pub grad_accum: i64,
    #[serde(default)]
    pub device: DeviceChoice,
    #[serde(default)]
    pub precision: Precision,
    /// CPU threads for libtorch; none: libtorch's default.
    #[serde(default)]
    pub threads: Option<i32>,
    #[serde(default)]
    pub on_nonfinite: NonFinitePolicy,
    /// Peak dense bf16 TFLOP/s of the GPU, for MFU (H100/H200 SXM: 989).
    #[serde(default = "default_peak_tflops")]
    pub gpu_peak_tflops: f64,
    /// Several processes: how long a collective waits for the other ranks before the run
    /// stops with an error naming the ranks that died or hang.
    #[serde(default = "default_collective_timeout_s")]
    pub collective_timeout_s: u64,
    /// Several processes: 1 shards the AdamW moments across the ranks (ZeRO stage 1), each
    /// rank updating its share of the parameters and sending them to the others; 0 keeps
    /// every moment on every rank.
    #[serde(default)]
    pub zero: u8,
}

fn one() -> i64 {
    1
}
fn default_collective_timeout_s() -> u64 {
    600
}
fn default_peak_tflops() -> f64 {
    989.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Save every N steps (and always at the end); 0: only at the end.
    #[serde(default)]
    pub every: u64,
    #[serde(default = "default_keep_last")]
    pub keep_last: usize,
}

fn default_keep_last() -> usize {
    3
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            every: 0,
            keep_last: default_keep_last(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Validation every N steps (and at the end); 0: only at the end.
    #[serde(default)]
    pub every: u64,
    /// Micro-batches of validation windows per evaluation (default 8).
    #[serde(default)]
    pub batches: Option<usize>,
    /// Also evaluate before the first step of a fresh run (an `eval` line at step 0: the
    /// starting model's level), as TRL's `eval_on_start`.
    #[serde(default)]
    pub at_start: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleSettings {
    /// A sample every N steps into metrics.jsonl; 0: never.
    #[serde(default)]
    pub every: u64,
    #[serde(default)]
    pub prompt: String,
    #[serde(default = "default_sample_tokens")]
    pub max_tokens: usize,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default)]
    pub top_k: usize,
    #[serde(default = "default_top_p")]
    pub top_p: f64,
}

fn default_sample_tokens() -> usize {
    32
}
fn default_temperature() -> f64 {
    0.8
}
fn default_top_p() -> f64 {
    0.95
}

impl Default for SampleSettings {
    fn default() -> Self {
        Self {
            every: 0,
            prompt: String::new(),
            max_tokens: default_sample_tokens(),
            temperature: default_temperature(),
            top_k: 0,
            top_p: default_top_p(),
        }
    }
}

/// A whole `trainer pretrain` configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub optim: OptimConfig,
    pub train: TrainSettings,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub sample: SampleSettings,
}

impl RunConfig {
    /// Reads a TOML file; relative dataset and output paths stay relative to the working
    /// directory, as the user typed them.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let config: RunConfig = toml::from_str(text)?;
        config.validate_settings()?;
        Ok(config)
    }

    /// Checks everything that does not need the dataset (the model is checked once its
    /// vocabulary size is known).
    pub fn validate_settings(&self) -> Result<()> {
        ensure!(self.data.seq_len > 0, "data.seq_len must be > 0");
        ensure!(
            self.data.seq_len <= self.model.max_position_embeddings,
            "data.seq_len ({}) exceeds model.max_position_embeddings ({})",
            self.data.seq_len,
            self.model.max_position_embeddings
        );
        ensure!(
            (0.0..=1.0).contains(&self.data.doc_start_fraction),
            "data.doc_start_fraction must be in 0..=1, got {}",
            self.data.doc_start_fraction
        );
        ensure!(self.train.steps > 0, "train.steps must be > 0");
        ensure!(
            self.train.zero <= 1,
            "train.zero must be 0 or 1 (ZeRO stage 1)"
        );
        ensure!(
            self.train.micro_batch_size > 0 && self.train.grad_accum > 0,
            "train.micro_batch_size and train.grad_accum must be > 0"
        );
        ensure!(self.optim.lr > 0.0, "optim.lr must be > 0");
        ensure!(
            (0.0..=self.optim.lr).contains(&self.optim.min_lr),
            "optim.min_lr must be in 0..=lr"
        );
        ensure!(
            (0.0..=1.0).contains(&self.optim.decay_fraction),
            "optim.decay_fraction must be in 0..=1"
        );
        ensure!(
            (0.0..1.0).contains(&self.optim.beta1) && (0.0..1.0).contains(&self.optim.beta2),
            "optim.beta1 and optim.beta2 must be in [0, 1)"
        );
        ensure!(
            self.checkpoint.keep_last > 0,
            "checkpoint.keep_last must be > 0"
        );
        ensure!(
            self.sample.top_p > 0.0 && self.sample.top_p <= 1.0,
            "sample.top_p must be in (0, 1]"
        );
        Ok(())
    }

    /// Tokens in one optimizer step.
    pub fn tokens_per_step(&self) -> i64 {
        self.train.micro_batch_size * self.train.grad_accum * self.data.seq_len
    }
}
