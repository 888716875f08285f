//! A [`Llama`] together with the variable store that owns its weights: building one from a
//! seed, listing its tensors by name, loading a checkpoint into it, and the compute kind it
//! runs in on its device.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{self, Checkpoint};
use crate::config::{ModelConfig, Precision};
use crate::model::{KvCache, Llama};

/// A model ready to run: weights (fp32 masters) on `device`, computing in `kind`.
#[derive(Debug)]
pub struct LanguageModel {
    vs: VarStore,
    model: Llama,
    kind: Kind,
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
        config.validate()?;
        tch::manual_seed(seed as i64);
        let vs = VarStore::new(device);
        let model = Llama::new(&vs.root(), config)
            .with_context(|| format!("building the model on {device:?}"))?;
        Ok(Self { vs, model, kind })
    }

    /// The model stored in a checkpoint, on `device`.
    pub fn from_checkpoint(
        ckpt: &Checkpoint,
        device: Device,
        precision: Precision,
    ) -> Result<Self> {
        let config = &ckpt.state.config.model;
        let lm = Self::new(config, device, compute_kind(precision, device), 0)?;
        lm.load_tensors(&ckpt.model, &ckpt.dir.join(checkpoint::MODEL_FILE))?;
        Ok(lm)
    }

    /// Copies named tensors into the weights (names and shapes must match exactly).
    pub fn load_tensors(
        &self,
        tensors: &std::collections::BTreeMap<String, Tensor>,
        source: &Path,
    ) -> Result<()> {
        checkpoint::copy_into(&self.named_tensors(), tensors, source)
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

    /// Logits `[batch, seq, vocab]` (in the compute kind) for int64 `ids` on any device.
    pub fn forward(&self, ids: &Tensor, start: i64, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let ids = ids.f_to_device(self.device())?;
        Ok(self.model.forward(&ids, start, cache, self.kind)?)
    }

    /// Training/eval forward over a whole batch from position 0, keeping libtorch's error
    /// type so callers can recognise out-of-memory.
    pub fn model_forward(&self, ids: &Tensor) -> Result<Tensor, tch::TchError> {
        let ids = ids.f_to_device(self.device())?;
        self.model.forward(&ids, 0, None, self.kind)
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
