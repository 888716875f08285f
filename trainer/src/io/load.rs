//! Any model directory into a [`LanguageModel`]: a trainer checkpoint (full, LoRA on top of
//! the base it names, or a reward model) or a Hugging Face export. A LoRA checkpoint's base
//! may itself be either kind, so loading one goes back through [`load_dir`].

use std::path::Path;

use anyhow::{Context, Result, bail};
use tch::Device;

use crate::engine::config::Precision;
use crate::io::checkpoint::{self, Checkpoint};
use crate::io::hf;
use crate::model::language_model::{Additions, LanguageModel, compute_kind};
use crate::model::lora;
use crate::post::config::Task;

// Defined here rather than beside the model: reading a checkpoint knows about checkpoint
// files, LoRA bases and exports, none of which the model itself needs.
impl LanguageModel {
    /// The model stored in a checkpoint, on `device`: a full checkpoint, or a LoRA one on
    /// top of the base model it names.
    pub fn from_checkpoint(
        ckpt: &Checkpoint,
        device: Device,
        precision: Precision,
    ) -> Result<Self> {
        let post = ckpt.state.post.as_ref();
        let additions = Additions {
            lora: post.and_then(|p| p.lora.clone()),
            score_head: post.is_some_and(|p| p.task == Task::Reward),
        };
        let kind = compute_kind(precision, device);
        let lm = Self::build(&ckpt.state.config.model, device, kind, 0, &additions)?;
        match (&ckpt.adapter, post) {
            (Some(adapter), Some(post)) => {
                let base = load_dir(&post.init_from, Device::Cpu, Precision::Fp32)
                    .with_context(|| {
                        format!(
                            "loading the base model {} of LoRA checkpoint {}",
                            post.init_from.display(),
                            ckpt.dir.display()
                        )
                    })?
                    .0;
                lm.load_base(&base.merged_tensors()?, &post.init_from)?;
                lm.load_trainable(adapter, &ckpt.dir.join(lora::ADAPTER_FILE))?;
            }
            (Some(_), None) => bail!(
                "{} holds an adapter but no post-training settings",
                ckpt.dir.display()
            ),
            (None, _) => lm.load_tensors(&ckpt.model, &ckpt.dir.join(checkpoint::MODEL_FILE))?,
        }
        Ok(lm)
    }
}

/// The ids a model's documents start and end with, as its directory records them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocumentIds {
    /// Prepended to every prompt: the model saw it at every document start. `None` for a
    /// model trained on a dataset from before BOS (or an export without `add_bos_token`).
    pub bos: Option<u32>,
    pub eos: Option<u32>,
}

/// Loads a trainer checkpoint (`trainer_state.json`: full, LoRA or reward) or a Hugging Face
/// export (`config.json`) onto `device`, with the BOS and EOS ids it records.
pub fn load_dir(
    dir: &Path,
    device: Device,
    precision: Precision,
) -> Result<(LanguageModel, DocumentIds)> {
    let ids = document_ids(dir)?;
    let model = if dir.join(checkpoint::STATE_FILE).exists() {
        LanguageModel::from_checkpoint(&Checkpoint::load(dir)?, device, precision)?
    } else {
        hf::load_hf(dir, device, precision)?
    };
    Ok((model, ids))
}

/// The BOS and EOS ids the model in `dir` (a trainer checkpoint or a Hugging Face export)
/// records, read without its weights.
pub fn document_ids(dir: &Path) -> Result<DocumentIds> {
    if dir.join(checkpoint::STATE_FILE).exists() {
        let state = checkpoint::read_state(dir)?;
        Ok(DocumentIds {
            bos: state.tokenizer.bos(),
            eos: state.tokenizer.special("eos"),
        })
    } else if dir.join(hf::CONFIG_FILE).exists() {
        let path = dir.join(hf::CONFIG_FILE);
        let config: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        let id = |field: &str| config[field].as_u64().and_then(|e| u32::try_from(e).ok());
        // BOS only where the tokenizer adds it: older exports wrote bos_token_id = eos with
        // add_bos_token false.
        Ok(DocumentIds {
            bos: hf::adds_bos(dir)?.then(|| id("bos_token_id")).flatten(),
            eos: id("eos_token_id"),
        })
    } else {
        bail!(
            "{} is neither a checkpoint (no trainer_state.json) nor a Hugging Face export (no config.json)",
            dir.display()
        )
    }
}
