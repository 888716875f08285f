//! A [`Llama`] together with the variable store that owns its weights: building one from a
//! seed (optionally with LoRA adapters and a reward model's scalar head), listing its tensors
//! by name, copying named tensors into it, and the compute kind it runs in. Reading them
//! from a directory (checkpoint or export) is `crate::io::load`'s business.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use tch::nn::VarStore;
use tch::{Device, Kind, TchError, Tensor};

use crate::engine::config::{ModelConfig, Precision};
use crate::model::llama::{Input, KvCache, Linear, Llama, Packing};
use crate::model::lora::{self, AdapterMode, LoraConfig};
use crate::model::loss::{labelled_cells, rows_at};

/// Name of the reward model's scalar head, as `LlamaForSequenceClassification` calls it.
pub const SCORE_HEAD: &str = "score.weight";

/// A model ready to run: weights (fp32 masters) on `device`, computing in `kind`.
#[derive(Debug)]
pub struct LanguageModel {
    vs: VarStore,
    model: Llama,
    kind: Kind,
    lora: Option<LoraConfig>,
    score: Option<Linear>,
    /// How forwards treat the adapters (no effect without any).
    mode: Cell<AdapterMode>,
}

/// What a model carries beyond the decoder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Additions {
    pub lora: Option<LoraConfig>,
    /// A `[1, hidden]` head that scores the last token (reward models).
    pub score_head: bool,
}
/// bf16 on CUDA and fp32 on the CPU for `auto`.
pub fn compute_kind(precision: Precision, device: Device) -> Kind {
    match precision {
        Precision::Fp32 => Kind::Float,
        Precision::Bf16 => Kind::BFloat16,
        Precision::Auto if device.is_cuda() => Kind::BFloat16,
        Precision::Auto => Kind::Float,
    }
}

impl LanguageModel {
    /// A freshly initialised model; the same seed gives the same weights on a given device.
    pub fn new(config: &ModelConfig, device: Device, kind: Kind, seed: u64) -> Result<Self> {
        Self::build(config, device, kind, seed, &Additions::default())
    }

    /// A freshly initialised model with `additions` (adapter `B`s start at zero).
    pub fn build(
        config: &ModelConfig,
        device: Device,
        kind: Kind,
        seed: u64,
        additions: &Additions,
    ) -> Result<Self> {
        config.validate()?;
        tch::manual_seed(seed as i64);
        let vs = VarStore::new(device);
        let model = Llama::new(&vs.root(), config, additions.lora.as_ref())
            .with_context(|| format!("building the model on {device:?}"))?;
        let score = additions
            .score_head
            .then(|| Linear::new(vs.root() / "score", config.hidden_size, 1, 0.02));
        let lm = Self {
            vs,
            model,
            kind,
            lora: additions.lora.clone(),
            score,
            mode: Cell::new(AdapterMode::On),
        };
        if lm.lora.is_some() {
            // Only the adapters (and a new head) learn; the base stays bit for bit.
            for (name, t) in lm.named_tensors() {
                if !lora::is_adapter_tensor(&name) && name != SCORE_HEAD {
                    let _ = t.set_requires_grad(false);
                }
            }
        }
        Ok(lm)
    }

    /// Copies named tensors into the weights (names and shapes must match exactly).
    pub fn load_tensors(&self, tensors: &BTreeMap<String, Tensor>, source: &Path) -> Result<()> {
        copy_into(&self.named_tensors(), tensors, source)
    }

    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Every weight, sorted by its Hugging Face name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    pub fn num_params(&self) -> i64 {
        self.named_tensors()
            .iter()
            .map(|(_, t)| t.numel() as i64)
            .sum()
    }

    /// The weights of the decoder itself: no adapters, no score head.
    pub fn base_tensors(&self) -> Vec<(String, Tensor)> {
        self.named_tensors()
            .into_iter()
            .filter(|(n, _)| !lora::is_adapter_tensor(n) && n != SCORE_HEAD)
            .collect()
    }

    /// The tensors training updates: all of them, or with LoRA the adapters and a score head.
    pub fn trainable_tensors(&self) -> Vec<(String, Tensor)> {
        self.named_tensors()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect()
    }

    pub fn lora(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    pub fn has_score_head(&self) -> bool {
        self.score.is_some()
    }

    /// Copies `tensors` into the decoder's own weights (adapters and head untouched).
    pub fn load_base(&self, tensors: &BTreeMap<String, Tensor>, source: &Path) -> Result<()> {
        let wanted: BTreeMap<String, Tensor> = tensors
            .iter()
            .filter(|(n, _)| !lora::is_adapter_tensor(n) && *n != SCORE_HEAD)
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        copy_into(&self.base_tensors(), &wanted, source)
    }

    /// Copies `tensors` into the trainable weights (a LoRA checkpoint's adapters and head).
    pub fn load_trainable(&self, tensors: &BTreeMap<String, Tensor>, source: &Path) -> Result<()> {
        copy_into(&self.trainable_tensors(), tensors, source)
    }

    /// The plain decoder's weights (and score head) with any adapters folded in, in fp32 on
    /// the CPU: what a LoRA model computes, as a model without adapters.
    pub fn merged_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let cpu = |list: Vec<(String, Tensor)>| -> Result<BTreeMap<String, Tensor>, TchError> {
            list.into_iter()
                .map(|(n, t)| Ok((n, t.f_detach()?.f_to_device(Device::Cpu)?)))
                .collect()
        };
        let base = cpu(self.base_tensors())?;
        let others = cpu(self
            .named_tensors()
            .into_iter()
            .filter(|(n, _)| lora::is_adapter_tensor(n) || n == SCORE_HEAD)
            .collect())?;
        let scale = self.lora.as_ref().map_or(1.0, LoraConfig::scale);
        lora::merge(&base, &others, scale)
    }

    pub fn adapter_mode(&self) -> AdapterMode {
        self.mode.get()
    }

    /// Sets how the following forwards treat the adapters.
    pub fn set_adapter_mode(&self, mode: AdapterMode) {
        self.mode.set(mode);
    }

    /// Runs `f` with the adapters in `mode`, then restores the previous mode.
    pub fn with_adapters<T>(&self, mode: AdapterMode, f: impl FnOnce() -> T) -> T {
        let before = self.mode.replace(mode);
        let out = f();
        self.mode.set(before);
        out
    }

    /// Logits `[batch, seq, vocab]` (in the compute kind) for int64 `ids` on any device.
    pub fn forward(&self, ids: &Tensor, start: i64, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let ids = ids.f_to_device(self.device())?;
        Ok(self
            .model
            .forward(&ids, start, cache, self.kind, self.mode.get())?)
    }

    /// Logits `[batch, 1, vocab]` (in the compute kind) of the last position only, as
    /// [`LanguageModel::forward`] gives them otherwise: sampling needs no more, so a
    /// prompt's prefill holds no `[prompt, vocab]` logits.
    pub fn forward_last(
        &self,
        ids: &Tensor,
        start: i64,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let hidden = self.causal_hidden(ids, start, cache)?;
        let t = hidden.size()[1];
        Ok(self.model.logits(&hidden.f_narrow(1, t - 1, 1)?)?)
    }

    /// The last layer's normed output `[batch, seq, hidden]` for int64 `ids` on any device at
    /// positions `start..` (the cache, when given, holds `start` positions).
    fn causal_hidden(
        &self,
        ids: &Tensor,
        start: i64,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor, TchError> {
        let ids = ids.f_to_device(self.device())?;
        let input = Input::Causal { start, cache };
        self.model.hidden(&ids, input, self.kind, self.mode.get())
    }

    /// Training/eval forward over a whole batch from position 0, keeping libtorch's error
    /// type so callers can recognise out-of-memory.
    pub fn model_forward(&self, ids: &Tensor) -> Result<Tensor, TchError> {
        let ids = ids.f_to_device(self.device())?;
        self.model
            .forward(&ids, 0, None, self.kind, self.mode.get())
    }

    /// A pretraining micro-batch's loss and its backward (gradients scaled by `scale`): the
    /// summed cross-entropy, without a graph ([`LanguageModel::rows_loss_backward`]).
    pub fn lm_loss_backward(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        scale: f64,
    ) -> Result<Tensor, TchError> {
        let hidden = self.causal_hidden(ids, 0, None)?;
        self.rows_loss_backward(&hidden, &targets.f_to_device(self.device())?, scale)
    }

    /// The output projection's weight when the chunked losses of [`crate::model::loss`] can
    /// take it: a plain (not LoRA) layer whose weight is fp32 (fp32 runs, and bf16 runs'
    /// master weights).
    pub fn chunkable_output_weight(&self) -> Option<&Tensor> {
        self.model
            .output_weight()
            .filter(|w| w.kind() == Kind::Float)
    }

    /// A held-out batch's summed cross-entropy of `targets` (`-100` ignored), without a graph:
    /// [`LanguageModel::rows_loss_sum`] of the causal forward's last-layer outputs.
    pub fn lm_loss_sum(&self, ids: &Tensor, targets: &Tensor) -> Result<Tensor, TchError> {
        tch::no_grad(|| {
            let hidden = self.causal_hidden(ids, 0, None)?;
            self.rows_loss_sum(&hidden, &targets.f_to_device(self.device())?)
        })
    }

    /// The summed cross-entropy (fp32) of the logits of the last-layer outputs `rows`
    /// (`[.., hidden]`) against `targets` (their leading shape, `-100` ignored), without a
    /// graph (evaluation): over the labelled rows only, in chunks where the output layer
    /// allows, so an evaluation pass holds no `[tokens, vocab]` logits either.
    pub fn rows_loss_sum(&self, rows: &Tensor, targets: &Tensor) -> Result<Tensor, TchError> {
        tch::no_grad(|| {
            let (cells, targets) = labelled_cells(targets)?;
            let rows = rows_at(rows, &cells)?;
            match self.chunkable_output_weight() {
                Some(weight) => {
                    let keep: crate::model::loss::AdjustLogits<'_> = &|logits, _, _| Ok(logits);
                    crate::model::loss::chunked_label_logps(&rows, weight, &targets, 1.0, keep)?
                        .f_sum(Kind::Float)?
                        .f_neg()
                }
                None => crate::model::loss::cross_entropy_sum(&self.model.logits(&rows)?, &targets),
            }
        })
    }

    /// The summed cross-entropy of `targets` (`-100` ignored) at the rows `cells` (flat
    /// `row * len + col`) of [`LanguageModel::packed_hidden`]'s output, and its backward
    /// (gradients scaled by `scale`), without a graph: a post-training micro-batch's loss
    /// over its target cells ([`LanguageModel::rows_loss_backward`]).
    pub fn loss_backward_at(
        &self,
        hidden: &Tensor,
        cells: &Tensor,
        targets: &Tensor,
        scale: f64,
    ) -> Result<Tensor, TchError> {
        self.rows_loss_backward(&rows_at(hidden, cells)?, targets, scale)
    }

    /// The summed cross-entropy of the logits of the last-layer outputs `rows` (`[.., hidden]`)
    /// against `targets` (their leading shape), and its backward scaled by `scale`. With a
    /// plain output projection whose weight is fp32 (fp32 runs, and bf16 runs' master
    /// weights) it is computed in chunks with its gradient
    /// ([`crate::model::loss::chunked_cross_entropy`]), so the `[rows, vocab]` logits never
    /// exist whole; otherwise (a LoRA output layer, weights kept in bf16) through the full
    /// logits.
    fn rows_loss_backward(
        &self,
        rows: &Tensor,
        targets: &Tensor,
        scale: f64,
    ) -> Result<Tensor, TchError> {
        match self.chunkable_output_weight() {
            Some(weight) => {
                let (loss, surrogate) =
                    crate::model::loss::chunked_cross_entropy(rows, weight, targets, scale)?;
                surrogate.f_backward()?;
                Ok(loss)
            }
            _ => {
                let logits = self.model.logits(rows)?;
                let loss = crate::model::loss::cross_entropy_sum(&logits, targets)?;
                loss.f_mul_scalar(scale)?.f_backward()?;
                loss.f_detach()
            }
        }
    }

    /// The last layer's normed output `[batch, seq, hidden]` for packed rows (all tensors
    /// already on the model's device).
    pub fn packed_hidden(&self, ids: &Tensor, packing: Packing<'_>) -> Result<Tensor, TchError> {
        self.model
            .hidden(ids, Input::Packed(packing), self.kind, self.mode.get())
    }

    /// Logits from [`LanguageModel::packed_hidden`]'s output.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor, TchError> {
        self.model.logits(hidden)
    }

    /// Logits `[cells, vocab]` (in the compute kind) at the flat positions `cells` (`row *
    /// len + col`) of [`LanguageModel::packed_hidden`]'s output: the output layer runs on
    /// those rows only, so a batch's prompts and padding cost no `[.., vocab]` logits, in
    /// the forward or kept for the backward.
    pub fn logits_at(&self, hidden: &Tensor, cells: &Tensor) -> Result<Tensor, TchError> {
        self.model.logits(&rows_at(hidden, cells)?)
    }

    /// The score head applied to `hidden: [n, hidden]`, as `[n]` fp32.
    pub fn score(&self, hidden: &Tensor) -> Result<Tensor, TchError> {
        let Some(head) = &self.score else {
            return Err(TchError::Kind("this model has no score head".into()));
        };
        head.forward(hidden)?
            .f_squeeze_dim(-1)?
            .f_to_kind(Kind::Float)
    }

    /// An empty cache for `batch` sequences of up to `capacity` positions.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> Result<KvCache> {
        ensure!(
            capacity <= self.config().max_position_embeddings,
            "a cache of {capacity} positions exceeds max_position_embeddings {}",
            self.config().max_position_embeddings
        );
        Ok(KvCache::new(
            self.config(),
            batch,
            capacity,
            self.kind,
            self.device(),
        )?)
    }
}

/// Copies `tensors` into the variables `vars` (same names, same shapes, nothing missing or
/// extra); `source` names the file in errors.
fn copy_into(
    vars: &[(String, Tensor)],
    tensors: &BTreeMap<String, Tensor>,
    source: &Path,
) -> Result<()> {
    let missing: Vec<&str> = vars
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !tensors.contains_key(*n))
        .collect();
    let names: std::collections::BTreeSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let extra: Vec<&str> = tensors
        .keys()
        .map(String::as_str)
        .filter(|n| !names.contains(n))
        .collect();
    ensure!(
        missing.is_empty() && extra.is_empty(),
        "{} does not fit the model: missing tensors {missing:?}, unexpected tensors {extra:?} (a checkpoint from another config?)",
        source.display()
    );
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vars {
            let src = &tensors[name];
            ensure!(
                src.size() == var.size(),
                "{}: tensor {name} has shape {:?}, the model expects {:?} (a checkpoint from another config?)",
                source.display(),
                src.size(),
                var.size()
            );
            var.shallow_clone().f_copy_(src)?;
        }
        Ok(())
    })
}
