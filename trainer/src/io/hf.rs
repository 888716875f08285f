//! The Hugging Face directory format (what `trainer export-hf` writes and `transformers` loads
//! with no custom code): its file names, `config.json` to and from a [`ModelConfig`] (both
//! directions here, so they cannot drift apart), and [`load_hf`], which reads such a
//! directory, ours or another's, back into a model. Writing one is `crate::io::export`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tch::Device;

use crate::engine::config::{ModelConfig, Precision};
use crate::io::checkpoint;
use crate::model::language_model::{Additions, LanguageModel, compute_kind};

pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// `config.json` for a model whose BOS and EOS ids are `bos` and `eos` (a model without BOS
/// records eos there, as Hugging Face configs always name one).
pub fn hf_config(model: &ModelConfig, bos: Option<u32>, eos: Option<u32>) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": model.vocab_size,
        "hidden_size": model.hidden_size,
        "intermediate_size": model.intermediate_size,
        "num_hidden_layers": model.num_hidden_layers,
        "num_attention_heads": model.num_attention_heads,
        "num_key_value_heads": model.num_key_value_heads,
        "head_dim": model.head_dim(),
        "max_position_embeddings": model.max_position_embeddings,
        "rms_norm_eps": model.rms_norm_eps,
        "rope_theta": model.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": model.rope_theta},
        "tie_word_embeddings": model.tie_word_embeddings,
        "hidden_act": "silu",
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "initializer_range": 0.02,
        "bos_token_id": bos.or(eos),
        "eos_token_id": eos,
        "pad_token_id": eos,
        "use_cache": true,
        "dtype": "float32",
    })
}

/// Whether the directory's `tokenizer_config.json` says `add_bos_token: true` (a missing
/// file or field: no).
pub fn adds_bos(dir: &Path) -> Result<bool> {
    let path = dir.join(TOKENIZER_CONFIG_FILE);
    if !path.exists() {
        return Ok(false);
    }
    let config: Value = serde_json::from_slice(
        &fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    Ok(config["add_bos_token"].as_bool() == Some(true))
}

/// Reads the model fields back from a Hugging Face `config.json`.
pub fn model_config_from_hf(config: &Value) -> Result<ModelConfig> {
    if config["model_type"] != "llama" {
        bail!(
            "config.json has model_type {}, expected \"llama\"",
            config["model_type"]
        );
    }
    let int = |name: &str| -> Result<i64> {
        config[name]
            .as_i64()
            .with_context(|| format!("config.json lacks integer field {name}"))
    };
    let rope_theta = config["rope_parameters"]["rope_theta"]
        .as_f64()
        .or_else(|| config["rope_theta"].as_f64())
        .unwrap_or(10_000.0);
    let model = ModelConfig {
        vocab_size: int("vocab_size")?,
        hidden_size: int("hidden_size")?,
        intermediate_size: int("intermediate_size")?,
        num_hidden_layers: int("num_hidden_layers")?,
        num_attention_heads: int("num_attention_heads")?,
        num_key_value_heads: int("num_key_value_heads").or_else(|_| int("num_attention_heads"))?,
        max_position_embeddings: int("max_position_embeddings")?,
        rms_norm_eps: config["rms_norm_eps"].as_f64().unwrap_or(1e-6),
        rope_theta,
        tie_word_embeddings: config["tie_word_embeddings"].as_bool().unwrap_or(false),
    };
    model.validate()?;
    if config["head_dim"]
        .as_i64()
        .is_some_and(|d| d != model.head_dim())
    {
        bail!("config.json head_dim differs from hidden_size / num_attention_heads");
    }
    Ok(model)
}

/// Loads a Hugging Face Llama directory (ours or another's fp32/bf16 export) onto `device`.
pub fn load_hf(dir: &Path, device: Device, precision: Precision) -> Result<LanguageModel> {
    let path = dir.join(CONFIG_FILE);
    let config: Value = serde_json::from_slice(
        &fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let model = model_config_from_hf(&config).with_context(|| format!("{}", path.display()))?;
    let additions = Additions {
        lora: None,
        score_head: config["architectures"][0] == "LlamaForSequenceClassification",
    };
    let kind = compute_kind(precision, device);
    let lm = LanguageModel::build(&model, device, kind, 0, &additions)?;
    let weights_path = dir.join(checkpoint::MODEL_FILE);
    let mut weights = checkpoint::read_safetensors(&weights_path)?;
    if model.tie_word_embeddings {
        weights.remove("lm_head.weight");
    }
    let weights = weights
        .into_iter()
        .map(|(k, v)| Ok((k, v.f_to_kind(tch::Kind::Float)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    lm.load_tensors(&weights, &weights_path)?;
    Ok(lm)
}
