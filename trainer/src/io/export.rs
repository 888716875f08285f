//! `trainer export-hf`: a checkpoint as a Hugging Face directory that `transformers` loads
//! with no custom code: `config.json` (LlamaForCausalLM), `model.safetensors` (fp32, Hugging
//! Face names, metadata `{"format": "pt"}`), `tokenizer.json`, `tokenizer_config.json` with
//! the chat template, `generation_config.json`. [`crate::io::hf::load_hf`] reads it back.
//!
//! A model trained with BOS (see `format::BOS_TOKEN`) is exported Llama-style: `bos_token`,
//! `add_bos_token: true`, a chat template that starts with `{{ bos_token }}`, and a
//! `tokenizer.json` whose post-processor prepends BOS when special tokens are added, so
//! `tokenizer(text)` and `apply_chat_template` in `transformers` give the ids our own
//! tokenization gives.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tch::Device;

use crate::engine::config::Precision;
use crate::io::checkpoint::{self, Checkpoint};
use crate::io::hf::{CONFIG_FILE, GENERATION_CONFIG_FILE, TOKENIZER_CONFIG_FILE, hf_config};
use crate::model::language_model::LanguageModel;

/// Writes the Hugging Face directory for checkpoint `ckpt_dir` into `out`.
pub fn export_hf(ckpt_dir: &Path, out: &Path) -> Result<()> {
    let ckpt = Checkpoint::load(ckpt_dir)?;
    let model = &ckpt.state.config.model;
    // Loading into a model checks names and shapes against the config before writing; a
    // LoRA checkpoint is exported with its adapters folded into the weights.
    let lm = LanguageModel::from_checkpoint(&ckpt, Device::Cpu, Precision::Fp32)?;
    let eos = ckpt.state.tokenizer.special("eos");
    let bos = ckpt.state.tokenizer.bos();
    let mut config_json = hf_config(model, bos, eos);
    if lm.has_score_head() {
        // A reward model: one score from the last token, as transformers' class computes.
        config_json["architectures"] = json!(["LlamaForSequenceClassification"]);
        config_json["num_labels"] = json!(1);
    }
    let tokenizer_src = ckpt_dir.join(checkpoint::TOKENIZER_FILE);
    let mut tokenizer_json: Value = serde_json::from_slice(
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
    let eos_text = token_text(eos);
    let bos_text = match bos {
        Some(_) => token_text(bos),
        None => eos_text.clone(),
    };
    if let (Some(id), Value::String(text)) = (bos, &bos_text) {
        let processor = prepend_bos(tokenizer_json["post_processor"].take(), id, text);
        tokenizer_json["post_processor"] = processor;
        write_json(checkpoint::TOKENIZER_FILE, &tokenizer_json)?;
    } else {
        fs::copy(&tokenizer_src, out.join(checkpoint::TOKENIZER_FILE))
            .with_context(|| format!("copying {}", tokenizer_src.display()))?;
    }
    write_json(
        TOKENIZER_CONFIG_FILE,
        &json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": bos_text,
            "eos_token": eos_text,
            "pad_token": eos_text,
            "unk_token": null,
            "add_bos_token": bos.is_some(),
            "add_eos_token": false,
            "clean_up_tokenization_spaces": false,
            "model_max_length": model.max_position_embeddings,
            "chat_template": format::chat_template_jinja(bos.is_some()),
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
            "bos_token_id": bos.or(eos),
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

/// `post_processor` of a `tokenizer.json` that also prepends BOS (id `id`, text `text`) to
/// every sequence when special tokens are added, as Llama's does; `encode(text, false)`
/// (what jielong itself calls) is unchanged.
fn prepend_bos(existing: Value, id: u32, text: &str) -> Value {
    let sequence = |name: &str| json!({"Sequence": {"id": name, "type_id": 0}});
    let bos = json!({"SpecialToken": {"id": text, "type_id": 0}});
    let template = json!({
        "type": "TemplateProcessing",
        "single": [bos, sequence("A")],
        "pair": [bos, sequence("A"), bos, sequence("B")],
        "special_tokens": {text: {"id": text, "ids": [id], "tokens": [text]}},
    });
    match existing {
        Value::Null => template,
        other => json!({"type": "Sequence", "processors": [other, template]}),
    }
}
