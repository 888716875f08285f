//! Low-rank adapters (LoRA, Hu et al. 2021): a frozen projection `W` plus a trainable
//! `(alpha / r) * B A`, with `A: [r, in]` and `B: [out, r]`. `B` starts at zero, so an adapted
//! model starts exactly where its base is. Adapters can be switched off per forward (the DPO
//! reference is the base model), and folded into `W` in fp32 by `trainer merge-lora`.
//!
//! Names follow PEFT: inside the model an adapter's tensors are
//! `model.layers.N.self_attn.q_proj.lora_A.weight`; `adapter.safetensors` prefixes them with
//! `base_model.model.`, and `adapter_config.json` carries PEFT's fields, so `peft` can load
//! an exported adapter.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tch::nn::{self, Init};
use tch::{Kind, TchError, Tensor};

pub const ADAPTER_FILE: &str = "adapter.safetensors";
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// Prefix PEFT puts before the model's own tensor names.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// Projections an adapter may wrap: attention and MLP.
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The `[lora]` section of a post-training config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: i64,
    pub alpha: f64,
    /// Dropout on the adapter's input while training.
    #[serde(default)]
    pub dropout: f64,
    /// Which projections get an adapter (default: all of [`TARGETS`]).
    #[serde(default = "all_targets")]
    pub targets: Vec<String>,
}

fn all_targets() -> Vec<String> {
    TARGETS.iter().map(|t| t.to_string()).collect()
}

impl LoraConfig {
    /// Checks the settings; the error names the bad field.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.rank > 0, "lora.rank must be > 0, got {}", self.rank);
        ensure!(
            self.alpha > 0.0,
            "lora.alpha must be > 0, got {}",
            self.alpha
        );
        ensure!(
            (0.0..1.0).contains(&self.dropout),
            "lora.dropout must be in [0, 1), got {}",
            self.dropout
        );
        ensure!(
            !self.targets.is_empty(),
            "lora.targets is empty: name at least one of {TARGETS:?}"
        );
        for target in &self.targets {
            ensure!(
                TARGETS.contains(&target.as_str()),
                "lora.targets: unknown projection {target:?}; use some of {TARGETS:?}"
            );
        }
        Ok(())
    }

    /// The factor `alpha / r` that multiplies `B A`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    pub fn wraps(&self, projection: &str) -> bool {
        self.targets.iter().any(|t| t == projection)
    }

    /// `adapter_config.json` in PEFT's shape.
    pub fn peft_config(&self, base: &str) -> Value {
        json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base,
            "r": self.rank,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": self.targets,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
        })
    }
}

/// How a forward treats the adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterMode {
    /// The base model alone (the DPO reference).
    Off,
    /// Base plus adapters, no dropout.
    #[default]
    On,
    /// Base plus adapters with dropout on their input (training steps).
    Train,
}

/// One projection's adapter.
#[derive(Debug)]
pub struct LoraAdapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: f64,
}

impl LoraAdapter {
    /// `A` as PEFT initialises it (kaiming-uniform, bound `1 / sqrt(in)`), `B` zero.
    pub fn new(path: &nn::Path, in_dim: i64, out_dim: i64, config: &LoraConfig) -> Self {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a = (path / "lora_A").var(
            "weight",
            &[config.rank, in_dim],
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        );
        let b = (path / "lora_B").var("weight", &[out_dim, config.rank], Init::Const(0.0));
        Self {
            a,
            b,
            scale: config.scale(),
            dropout: config.dropout,
        }
    }

    /// `scale * dropout(x) A^T B^T` in the kind of `x`.
    pub fn delta(&self, x: &Tensor, mode: AdapterMode) -> Result<Tensor, TchError> {
        let x = if mode == AdapterMode::Train && self.dropout > 0.0 {
            x.f_dropout(self.dropout, true)?
        } else {
            x.shallow_clone()
        };
        let a = self.a.f_to_kind(x.kind())?;
        let b = self.b.f_to_kind(x.kind())?;
        x.f_linear::<Tensor>(&a, None)?
            .f_linear::<Tensor>(&b, None)?
            .f_mul_scalar(self.scale)
    }
}

/// True for an adapter tensor's name (inside the model or in PEFT's file).
pub fn is_adapter_tensor(name: &str) -> bool {
    name.contains(".lora_A.") || name.contains(".lora_B.")
}

/// The PEFT name of a model tensor, as written to `adapter.safetensors`.
pub fn to_peft_name(name: &str) -> String {
    format!("{PEFT_PREFIX}{name}")
}

/// The model's name of a tensor read from `adapter.safetensors`.
pub fn from_peft_name(name: &str) -> String {
    name.strip_prefix(PEFT_PREFIX).unwrap_or(name).to_string()
}

/// Folds adapters into base weights in fp32: for every `P.lora_A.weight` / `P.lora_B.weight`
/// in `adapter`, `P.weight += scale * B A`. Other tensors in `adapter` (a reward model's
/// score head) replace or join the base's. Returns the merged tensors, on the CPU in fp32.
pub fn merge(
    base: &BTreeMap<String, Tensor>,
    adapter: &BTreeMap<String, Tensor>,
    scale: f64,
) -> Result<BTreeMap<String, Tensor>> {
    let mut merged = base
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.f_to_kind(Kind::Float)?.f_detach_copy()?)))
        .collect::<Result<BTreeMap<_, _>, TchError>>()?;
    for (name, tensor) in adapter {
        if let Some(prefix) = name.strip_suffix(".lora_A.weight") {
            let b = adapter
                .get(&format!("{prefix}.lora_B.weight"))
                .with_context(|| format!("adapter has {name} but no {prefix}.lora_B.weight"))?;
            let target = format!("{prefix}.weight");
            let w = merged
                .get_mut(&target)
                .with_context(|| format!("adapter wraps {target}, which the base lacks"))?;
            let delta = b
                .f_to_kind(Kind::Float)?
                .f_matmul(&tensor.f_to_kind(Kind::Float)?)?
                .f_mul_scalar(scale)?;
            ensure!(
                delta.size() == w.size(),
                "adapter for {target} has shape {:?}, the weight {:?}",
                delta.size(),
                w.size()
            );
            *w = w.f_add(&delta)?;
        } else if !is_adapter_tensor(name) {
            merged.insert(name.clone(), tensor.f_to_kind(Kind::Float)?);
        }
    }
    Ok(merged)
}
