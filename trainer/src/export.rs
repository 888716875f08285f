//! `trainer export-hf`: a checkpoint as a Hugging Face directory that `transformers` loads
//! with no custom code: `config.json` (LlamaForCausalLM), `model.safetensors` (fp32, Hugging
//! Face names, metadata `{"format": "pt"}`), `tokenizer.json`, `tokenizer_config.json` with
//! the chat template, `generation_config.json`. [`load_hf`] reads such a directory back.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tch::Device;

use crate::checkpoint::{self, Checkpoint};
use crate::config::{ModelConfig, Precision};
use crate::lm::{LanguageModel, compute_kind};

pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// `config.json` for a model whose EOS id is `eos`.
pub fn hf_config(model: &ModelConfig, eos: Option<u32>) -> Value {
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
        "bos_token_id": eos,
        "eos_token_id": eos,
        "pad_token_id": eos,
        "use_cache": true,
        "dtype": "float32",
    })
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

/// Writes the Hugging Face directory for checkpoint `ckpt_dir` into `out`.
pub fn export_hf(ckpt_dir: &Path, out: &Path) -> Result<()> {
    let ckpt = Checkpoint::load(ckpt_dir)?;
    let model = &ckpt.state.config.model;
    // Loading into a model checks names and shapes against the config before writing; a
    // LoRA checkpoint is exported with its adapters folded into the weights.
    let lm = LanguageModel::from_checkpoint(&ckpt, Device::Cpu, Precision::Fp32)?;
    let eos = ckpt.state.tokenizer.special("eos");
    let mut config_json = hf_config(model, eos);
    if lm.has_score_head() {
        // A reward model: one score from the last token, as transformers' class computes.
        config_json["architectures"] = json!(["LlamaForSequenceClassification"]);
        config_json["num_labels"] = json!(1);
    }
    let tokenizer_src = ckpt_dir.join(checkpoint::TOKENIZER_FILE);
    let tokenizer_json: Value = serde_json::from_slice(
        &fs::read(&tokenizer_src)
            .with_context(|| format!("reading {}", tokenizer_src.display()))?,
    )
    .with_context(|| format!("parsing {}", tokenizer_src.display()))?;
    let token_text = |id: Option<u32>| -> Value {
        let Some(id) = id else { return Value::Null };
        tokenizer_json["added_tokens"]
            .as_array()
            .and_then(|tokens| {
                tokens
                    .iter()
                    .find(|t| t["id"].as_u64() == Some(u64::from(id)))
            })
            .map_or(Value::Null, |t| t["content"].clone())
    };

    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write_json = |name: &str, value: &Value| -> Result<()> {
        let path = out.join(name);
        fs::write(&path, serde_json::to_vec_pretty(value)?)
            .with_context(|| format!("writing {}", path.display()))
    };
    write_json(CONFIG_FILE, &config_json)?;
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let weights: Vec<(String, tch::Tensor)> = lm.merged_tensors()?.into_iter().collect();
    checkpoint::write_safetensors(&out.join(checkpoint::MODEL_FILE), &weights, &meta)?;
    fs::copy(&tokenizer_src, out.join(checkpoint::TOKENIZER_FILE))
        .with_context(|| format!("copying {}", tokenizer_src.display()))?;
    let eos_text = token_text(eos);
    write_json(
        TOKENIZER_CONFIG_FILE,
        &json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": eos_text,
            "eos_token": eos_text,
            "pad_token": eos_text,
            "unk_token": null,
            "add_bos_token": false,
            "add_eos_token": false,
            "clean_up_tokenization_spaces": false,
            "model_max_length": model.max_position_embeddings,
            "chat_template": format::CHAT_TEMPLATE_JINJA,
        }),
    )?;
    let sample = &ckpt.state.config.sample;
    // A chat model ends its turn with <|end|>: `generate` in transformers stops there too.
    let stop: Vec<u32> = eos
        .into_iter()
        .chain(ckpt.state.tokenizer.special("end_of_turn"))
        .collect();
    write_json(
        GENERATION_CONFIG_FILE,
        &json!({
            "bos_token_id": eos,
            "eos_token_id": stop,
            "pad_token_id": eos,
            "do_sample": true,
            "temperature": sample.temperature,
            "top_p": sample.top_p,
            "top_k": sample.top_k,
        }),
    )?;
    Ok(())
}

/// Loads a Hugging Face Llama directory (ours or another's fp32/bf16 export) onto `device`.
pub fn load_hf(dir: &Path, device: Device, precision: Precision) -> Result<LanguageModel> {
    let path = dir.join(CONFIG_FILE);
    let config: Value = serde_json::from_slice(
        &fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let model = model_config_from_hf(&config).with_context(|| format!("{}", path.display()))?;
    let additions = crate::lm::Additions {
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
