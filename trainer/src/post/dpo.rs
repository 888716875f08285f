//! `trainer dpo`: Direct Preference Optimization (Rafailov et al. 2023) with the sigmoid
//! loss `-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))`, where `pi_*` and `ref_*`
//! are the policy's and the reference model's summed log-probabilities of the chosen and
//! rejected answers (answer tokens only, given the prompt).
//!
//! The reference is the starting model (with LoRA: the policy with its adapters off). Its
//! log-probabilities never change, so they are computed once per (reference weights,
//! dataset, compute kind) and cached as `<cache_dir>/refcache-<hash>.safetensors`; later
//! epochs, resumed runs and new runs on the same data read them back without a forward pass.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde_json::json;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, TchError, Tensor};

use crate::engine::config::Precision;
use crate::engine::parallel::DataParallel;
use crate::engine::{
    Engine, Evaluation, Faults, MicroBatch, MicroStats, NamedSums, Objective, Resume, Summary,
};
use crate::io::checkpoint;
use crate::model::language_model::{Additions, LanguageModel};
use crate::model::lora::AdapterMode;
use crate::post::config::{PostConfig, PostSettings, Task};
use crate::post::data::{self, DrawOrder, PackedBatch, Pair, Rows};
use crate::post::preference::{pack_pairs, pair_evaluation};
use crate::post::step_logps::StepLogps;

/// Summed log-probability of each packed sequence's target tokens, `[sequences]` fp32, from
/// the target cells only (prompts and padding add nothing), without a graph (the reference,
/// evaluation; a training step takes [`StepLogps::new`]).
pub fn sequence_logps(model: &LanguageModel, batch: &PackedBatch) -> Result<Tensor, TchError> {
    StepLogps::without_graph(model, batch, 1.0, None)?.per_sequence(batch)
}

/// Reference log-probabilities `[pairs, 2]` (chosen, rejected) on the CPU, and how many
/// batched forward passes computing them took.
fn reference_logps(
    model: &LanguageModel,
    pairs: &[Pair],
    row_len: usize,
    per_batch: usize,
) -> Result<(Tensor, u64)> {
    let mut parts = Vec::new();
    let mut passes = 0;
    tch::no_grad(|| -> Result<()> {
        let indices: Vec<usize> = (0..pairs.len()).collect();
        for chunk in indices.chunks(per_batch.max(1)) {
            let batch = pack_pairs(pairs, chunk, row_len, model.device())?;
            let logps = sequence_logps(model, &batch)?;
            passes += 1;
            parts.push(logps.f_view([-1, 2])?.f_to_device(Device::Cpu)?);
        }
        Ok(())
    })?;
    Ok((Tensor::f_cat(&parts, 0)?, passes))
}

/// Reference log-probabilities of a dataset: read from the cache, or computed and cached.
#[derive(Debug)]
pub struct Reference {
    pub logps: Tensor,
    pub cache: PathBuf,
    /// Forward passes run to fill the cache (0 when it was read).
    pub forward_passes: u64,
}

/// The cache file for a reference model's log-probabilities on a dataset.
pub fn cache_path(
    cache_dir: &Path,
    post: &PostSettings,
    rows: &Rows<Pair>,
    kind: Kind,
) -> Result<PathBuf> {
    let mut hasher = Sha256::new();
    hasher.update("jielong-dpo-reference-v1");
    hasher.update(crate::post::weights_hash(&post.init_from)?);
    hasher.update(&rows.hash);
    hasher.update(format!("{kind:?}"));
    let key = hex::encode(hasher.finalize());
    Ok(cache_dir.join(format!("refcache-{}.safetensors", &key[..24])))
}

/// Reads the cached reference log-probabilities of `rows`, or computes them with the
/// reference model (the policy with adapters off under LoRA, else a fresh copy of
/// `init_from`) and writes the cache atomically.
pub fn reference(
    policy: &LanguageModel,
    post: &PostSettings,
    cache_dir: &Path,
    rows: &Rows<Pair>,
    row_len: usize,
    per_batch: usize,
) -> Result<Reference> {
    let cache = cache_path(cache_dir, post, rows, policy.kind())?;
    if cache.exists() {
        let mut tensors = checkpoint::read_safetensors(&cache)?;
        let logps = tensors
            .remove("logps")
            .with_context(|| format!("{} lacks the logps tensor", cache.display()))?;
        ensure!(
            logps.size() == [rows.rows.len() as i64, 2],
            "{} holds {:?} reference log-probs for {} pairs: delete it to recompute",
            cache.display(),
            logps.size(),
            rows.rows.len()
        );
        tracing::info!(cache = %cache.display(), "reference log-probs read from the cache");
        return Ok(Reference {
            logps,
            cache,
            forward_passes: 0,
        });
    }
    let (logps, forward_passes) = if policy.lora().is_some() {
        policy.with_adapters(AdapterMode::Off, || {
            reference_logps(policy, &rows.rows, row_len, per_batch)
        })?
    } else {
        let precision = match policy.kind() {
            Kind::BFloat16 => Precision::Bf16,
            _ => Precision::Fp32,
        };
        let model = crate::post::init_model(
            &post.init_from,
            policy.device(),
            precision,
            0,
            &Additions::default(),
        )?;
        reference_logps(&model, &rows.rows, row_len, per_batch)?
    };
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    let tmp = cache.with_extension("tmp");
    let meta = std::collections::BTreeMap::from([
        (
            "reference".to_string(),
            post.init_from.display().to_string(),
        ),
        ("dataset".to_string(), rows.dir.display().to_string()),
    ]);
    checkpoint::write_safetensors(&tmp, &[("logps".to_string(), logps.shallow_clone())], &meta)?;
    std::fs::rename(&tmp, &cache).with_context(|| format!("writing {}", cache.display()))?;
    Ok(Reference {
        logps,
        cache,
        forward_passes,
    })
}

/// A micro-batch of pairs with their reference log-probabilities.
#[derive(Debug)]
pub struct PairBatch {
    pub packed: PackedBatch,
    /// `[pairs, 2]` on the model's device.
    pub reference: Tensor,
    pub pairs: i64,
}

/// The DPO loss of a batch from the policy's sequence log-probs (`[sequences]`, chosen and
/// rejected in turn) and its detached per-pair statistics.
fn dpo_terms(
    policy: &Tensor,
    batch: &PairBatch,
    beta: f64,
) -> Result<(Tensor, NamedSums), TchError> {
    let policy = policy.f_view([-1, 2])?;
    let drift = policy.f_sub(&batch.reference)?;
    let (chosen, rejected) = (drift.f_select(1, 0)?, drift.f_select(1, 1)?);
    let logits = chosen.f_sub(&rejected)?.f_mul_scalar(beta)?;
    let loss = logits.f_log_sigmoid()?.f_neg()?.f_sum(Kind::Float)?;
    let sum = |t: &Tensor| -> Result<Tensor, TchError> { t.f_detach()?.f_sum(Kind::Float) };
    let sums = vec![
        ("accuracy", sum(&logits.f_gt(0.0)?.f_to_kind(Kind::Float)?)?),
        ("margin", sum(&logits)?),
        ("chosen_reward", sum(&chosen.f_mul_scalar(beta)?)?),
        ("rejected_reward", sum(&rejected.f_mul_scalar(beta)?)?),
        ("chosen_logp_drift", sum(&chosen)?),
        ("rejected_logp_drift", sum(&rejected)?),
    ];
    Ok((loss, sums))
}

/// The DPO objective.
#[derive(Debug)]
pub struct Dpo {
    train: Rows<Pair>,
    train_reference: Tensor,
    valid: Option<(Rows<Pair>, Tensor)>,
    order: DrawOrder,
    row_len: usize,
    per_micro: i64,
    beta: f64,
    device: Device,
}

impl Dpo {
    fn pair_batch(&self, pairs: &[Pair], reference: &Tensor, rows: &[usize]) -> Result<PairBatch> {
        let index: Vec<i64> = rows.iter().map(|&i| i as i64).collect();
        Ok(PairBatch {
            packed: pack_pairs(pairs, rows, self.row_len, self.device)?,
            reference: reference
                .f_index_select(0, &Tensor::f_from_slice(&index)?)?
                .f_to_device(self.device)?,
            pairs: rows.len() as i64,
        })
    }
}

impl Objective for Dpo {
    type Batch = PairBatch;

    fn batch(&mut self, at: MicroBatch) -> Result<PairBatch> {
        let rows = self.order.micro_batch(at, self.per_micro);
        self.pair_batch(&self.train.rows, &self.train_reference, &rows)
    }

    fn units(&self, batch: &PairBatch) -> f64 {
        batch.pairs as f64
    }

    fn backward(
        &mut self,
        model: &LanguageModel,
        batch: &PairBatch,
        units: f64,
    ) -> Result<MicroStats, TchError> {
        // The policy's log-probs a chunk of answer tokens at a time where the output layer
        // allows, their gradient handed to the model after the loss's backward.
        let step = StepLogps::new(model, &batch.packed, 1.0, None)?;
        let (loss, sums) = dpo_terms(&step.per_sequence(&batch.packed)?, batch, self.beta)?;
        step.backward(loss, units, sums, batch.packed.tokens)
    }

    /// Loss, accuracy, margin, rewards and drifts averaged over the validation pairs.
    fn evaluate(&mut self, model: &LanguageModel) -> Result<Option<Evaluation>> {
        let Some((valid, reference)) = &self.valid else {
            return Ok(None);
        };
        pair_evaluation(valid.rows.len(), self.per_micro as usize, |chunk| {
            let batch = self.pair_batch(&valid.rows, reference, chunk)?;
            Ok(dpo_terms(
                &sequence_logps(model, &batch.packed)?,
                &batch,
                self.beta,
            )?)
        })
    }
}

/// With several ranks, rank 0 reads or computes the reference log-probabilities (once for
/// the job, into the one cache file) and every rank receives them; alone, `compute`.
pub(crate) fn for_job(
    parallel: Option<&DataParallel>,
    compute: impl FnOnce() -> Result<Reference>,
) -> Result<Reference> {
    let Some(dp) = parallel else {
        return compute();
    };
    let main = if dp.world().is_main() {
        Some(compute()?)
    } else {
        None
    };
    let logps = dp.share_from_main(main.as_ref().map(|r| &r.logps))?;
    Ok(match main {
        Some(r) => Reference { logps, ..r },
        None => Reference {
            logps,
            cache: PathBuf::new(),
            forward_passes: 0,
        },
    })
}

/// What `trainer dpo` reports.
#[derive(Debug)]
pub struct DpoSummary {
    pub summary: Summary,
    /// Reference forward passes this run made (0 when every reference came from the cache).
    pub reference_forward_passes: u64,
    pub cache: PathBuf,
}

impl DpoSummary {
    /// The run's summary and where its reference log-probabilities came from.
    pub fn render(&self) -> String {
        format!(
            "{}reference forward passes: {} (cache {})\n",
            self.summary.render(),
            self.reference_forward_passes,
            self.cache.display()
        )
    }
}

/// Where reference log-probs are cached: the configured directory, else `refcache/` beside
/// the run's output, so runs of one family share it.
pub fn reference_cache_dir(configured: Option<&Path>, config: &PostConfig) -> PathBuf {
    configured.map(Path::to_path_buf).unwrap_or_else(|| {
        let out = &config.train.out;
        out.parent().unwrap_or(out).join("refcache")
    })
}

/// The reference log-probabilities of a run's training set and of its validation set.
#[derive(Debug)]
pub(crate) struct RunReferences {
    pub train: Tensor,
    pub valid: Option<Tensor>,
    /// Forward passes this run made to fill the caches (0 when every one was read).
    pub forward_passes: u64,
    /// The training set's cache file.
    pub cache: PathBuf,
}

/// The reference log-probabilities of `train` and `valid` for a `trainer dpo` or `kto` run,
/// cached in `cache_dir` (the configured one, else [`reference_cache_dir`]) and read or
/// computed once for the job ([`for_job`]), in batches of the job's global batch so they are
/// the same to the last bit whatever the number of ranks; logged as a `reference` line.
pub(crate) fn run_references(
    engine: &mut Engine,
    config: &PostConfig,
    post: &PostSettings,
    cache_dir: Option<&Path>,
    train: &Rows<Pair>,
    valid: Option<&Rows<Pair>>,
) -> Result<RunReferences> {
    let cache_dir = reference_cache_dir(cache_dir, config);
    let row_len = config.data.seq_len as usize;
    let per_batch = config.train.micro_batch_size as usize
        * config.train.grad_accum as usize
        * engine.world_size() as usize;
    let (model, parallel) = (engine.model(), engine.parallel());
    let of = |rows: &Rows<Pair>| {
        for_job(parallel, || {
            reference(model, post, &cache_dir, rows, row_len, per_batch)
        })
    };
    let train_ref = of(train)?;
    let mut passes = train_ref.forward_passes;
    let valid = match valid {
        Some(rows) => {
            let r = of(rows)?;
            passes += r.forward_passes;
            Some(r.logps)
        }
        None => None,
    };
    engine.log(json!({
        "kind": "reference",
        "step": engine.step(),
        "reference_forward_passes": passes,
        "cached": passes == 0,
        "cache": train_ref.cache.display().to_string(),
    }))?;
    Ok(RunReferences {
        train: train_ref.logps,
        valid,
        forward_passes: passes,
        cache: train_ref.cache,
    })
}

/// `trainer dpo`: aligns `config.init_from` to the preferences in `config.data.train`.
pub fn run(config: &PostConfig, resume: Resume, faults: Faults) -> Result<DpoSummary> {
    let (train, valid) = data::read_datasets(&config.data, data::read_preferences)?;
    let start = crate::post::start(config, Task::Dpo, &train)?;
    let max = start.model.config().max_position_embeddings;
    for set in std::iter::once(&train).chain(valid.as_ref()) {
        set.check_lengths(max)?;
    }
    let post = start.post.clone().context("dpo runs have post settings")?;
    let settings = post.dpo.clone().unwrap_or_default();
    let mut engine = Engine::new(start, resume, faults)?;
    let refs = run_references(
        &mut engine,
        config,
        &post,
        settings.cache_dir.as_deref(),
        &train,
        valid.as_ref(),
    )?;
    let mut objective = Dpo {
        order: DrawOrder::new(train.rows.len(), config.data.order, config.train.seed),
        train,
        train_reference: refs.train,
        valid: valid.zip(refs.valid),
        row_len: config.data.seq_len as usize,
        per_micro: config.train.micro_batch_size,
        beta: settings.beta,
        device: engine.model().device(),
    };
    let summary = engine.run(&mut objective)?;
    Ok(DpoSummary {
        summary,
        reference_forward_passes: refs.forward_passes,
        cache: refs.cache,
    })
}
