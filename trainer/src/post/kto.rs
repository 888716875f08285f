//! `trainer kto`: Kahneman-Tversky Optimization (Ethayarajh et al. 2024) on thumbs up / down,
//! as TRL's `KTOTrainer` computes it (loss type `kto`). With `r = pi - ref` the summed
//! log-probability drift of an example's completion given its prompt and `z` the batch's
//! reference point, a desirable example costs `w_d (1 - sigmoid(beta (r - z)))` and an
//! undesirable one `w_u (1 - sigmoid(beta (z - r)))`; the step's loss is their mean.
//!
//! `z` estimates the KL divergence of the policy from the reference: the mean drift of
//! mismatched (prompt, completion) pairs of the micro-batch (over every rank's part of it, as
//! TRL gathers it across processes), clamped at 0 and not differentiated; it is computed
//! before the step's backward passes ([`Objective::prepare`]) by a forward pass without
//! gradients, as TRL does. Each example's mismatched completion is fixed by the dataset
//! ([`crate::post::data::mismatched`]), so the reference log-probabilities of both the matched
//! and the mismatched pairs are computed once and cached as DPO caches its own
//! ([`crate::post::dpo::reference`]).

use anyhow::{Context, Result};
use serde_json::json;
use tch::{Device, Kind, TchError, Tensor};

use crate::engine::parallel::DataParallel;
use crate::engine::{
    Engine, Evaluation, Faults, MicroBatch, MicroStats, NamedSums, Objective, Resume, Summary,
};
use crate::model::language_model::LanguageModel;
use crate::post::config::{KtoSettings, PostConfig, Task};
use crate::post::data::{self, DrawOrder, PackedBatch, Pair, Sequence, Thumbs};
use crate::post::dpo::{DpoSummary, run_references, sequence_logps};
use crate::post::preference::pair_evaluation;
use crate::post::step_logps::StepLogps;

/// A micro-batch of examples (each packed as matched and mismatched sequence) with their
/// reference log-probabilities and labels.
#[derive(Debug)]
pub struct ThumbBatch {
    /// Each example's prompt and completion.
    pub matched: PackedBatch,
    /// Each example's prompt and mismatched completion.
    pub mismatched: PackedBatch,
    /// `[examples, 2]` reference log-probs (matched, mismatched) on the model's device.
    pub reference: Tensor,
    pub examples: i64,
    /// `[examples]` fp32: 1 for thumbs up, 0 for thumbs down.
    pub desirable: Tensor,
    /// The reference point `z` (a scalar), set by [`Objective::prepare`].
    pub kl: Option<Tensor>,
}

/// What the KTO loss of a batch is made of: per-example drift `r`, the reference point `z`
/// and the per-example (weighted) losses.
#[derive(Debug)]
pub struct KtoTerms {
    pub drift: Tensor,
    pub kl: Tensor,
    pub losses: Tensor,
}

/// The KTO terms from the policy's and the reference's summed log-probabilities, both
/// `[examples, 2]` (matched completion, mismatched completion), and `desirable` (`[examples]`,
/// 1 or 0). The reference point is the mean drift of the mismatched pairs, clamped at 0 and
/// detached, as TRL's `kto` loss.
pub fn kto_losses(
    policy: &Tensor,
    reference: &Tensor,
    desirable: &Tensor,
    settings: &KtoSettings,
) -> Result<KtoTerms, TchError> {
    let drifts = policy.f_sub(reference)?;
    let kl = drifts
        .f_select(1, 1)?
        .f_detach()?
        .f_mean(Kind::Float)?
        .f_clamp_min(0.0)?;
    kto_with_kl(drifts.f_select(1, 0)?, kl, desirable, settings)
}

/// The KTO terms of examples with drift `drift` around the reference point `kl`.
fn kto_with_kl(
    drift: Tensor,
    kl: Tensor,
    desirable: &Tensor,
    settings: &KtoSettings,
) -> Result<KtoTerms, TchError> {
    let beta = settings.beta;
    let one_minus_sigmoid =
        |x: Tensor| -> Result<Tensor, TchError> { x.f_sigmoid()?.f_neg()?.f_add_scalar(1.0) };
    let up = one_minus_sigmoid(drift.f_sub(&kl)?.f_mul_scalar(beta)?)?;
    let down = one_minus_sigmoid(kl.f_sub(&drift)?.f_mul_scalar(beta)?)?;
    let losses = desirable
        .f_mul(&up)?
        .f_mul_scalar(settings.desirable_weight)?
        .f_add(
            &desirable
                .f_neg()?
                .f_add_scalar(1.0)?
                .f_mul(&down)?
                .f_mul_scalar(settings.undesirable_weight)?,
        )?;
    Ok(KtoTerms { drift, kl, losses })
}

/// The summed drift of a batch's mismatched pairs (no gradient), on the model's device.
fn mismatched_drift_sum(model: &LanguageModel, batch: &ThumbBatch) -> Result<Tensor, TchError> {
    tch::no_grad(|| {
        sequence_logps(model, &batch.mismatched)?
            .f_sub(&batch.reference.f_select(1, 1)?)?
            .f_sum(Kind::Float)
    })
}

/// The KTO terms of a batch whose matched answers have the policy's sequence log-probs
/// `matched` (`[examples]`).
fn kto_terms(
    model: &LanguageModel,
    batch: &ThumbBatch,
    settings: &KtoSettings,
    matched: &Tensor,
) -> Result<KtoTerms, TchError> {
    let kl = match &batch.kl {
        Some(kl) => kl.shallow_clone(),
        None => mismatched_drift_sum(model, batch)?
            .f_div_scalar(batch.examples as f64)?
            .f_clamp_min(0.0)?,
    };
    let drift = matched.f_sub(&batch.reference.f_select(1, 0)?)?;
    kto_with_kl(drift, kl, &batch.desirable, settings)
}

/// The summed loss and the per-step figures of the train lines: `kl` (the reference point),
/// `accuracy` (share of examples on their label's side of it), `desirable` (share of thumbs
/// up) and `signed_drift` (mean drift, negated for thumbs down: > 0 is the right direction).
/// Also hands back the detached per-example drift.
fn train_terms(
    model: &LanguageModel,
    batch: &ThumbBatch,
    settings: &KtoSettings,
    matched: &Tensor,
) -> Result<(Tensor, NamedSums, Tensor), TchError> {
    let t = kto_terms(model, batch, settings, matched)?;
    let d = &batch.desirable;
    let sign = d.f_mul_scalar(2.0)?.f_sub_scalar(1.0)?;
    let signed = t.drift.f_detach()?.f_mul(&sign)?;
    let right = t
        .drift
        .f_detach()?
        .f_sub(&t.kl)?
        .f_mul(&sign)?
        .f_gt(0.0)?
        .f_to_kind(Kind::Float)?;
    let n = batch.examples as f64;
    let sums = vec![
        ("kl", t.kl.f_mul_scalar(n)?),
        ("accuracy", right.f_sum(Kind::Float)?),
        ("desirable", d.f_sum(Kind::Float)?),
        ("signed_drift", signed.f_sum(Kind::Float)?),
    ];
    Ok((t.losses.f_sum(Kind::Float)?, sums, t.drift.f_detach()?))
}

/// The KTO objective.
#[derive(Debug)]
pub struct Kto {
    train: Thumbs,
    train_reference: Tensor,
    valid: Option<(Thumbs, Tensor)>,
    order: DrawOrder,
    row_len: usize,
    per_micro: i64,
    settings: KtoSettings,
    device: Device,
}

impl Kto {
    fn thumb_batch(&self, set: &Thumbs, reference: &Tensor, rows: &[usize]) -> Result<ThumbBatch> {
        let index: Vec<i64> = rows.iter().map(|&i| i as i64).collect();
        let desirable: Vec<f32> = rows
            .iter()
            .map(|&i| if set.labels[i] { 1.0 } else { 0.0 })
            .collect();
        let pairs = &set.rows.rows;
        let pack = |answer: fn(&Pair) -> &[u32]| {
            let seqs: Vec<Sequence> = rows
                .iter()
                .map(|&i| Sequence::prompt_answer(&pairs[i].prompt, answer(&pairs[i])))
                .collect();
            data::pack(&seqs.iter().collect::<Vec<_>>(), self.row_len, self.device)
        };
        Ok(ThumbBatch {
            matched: pack(|p| &p.chosen)?,
            mismatched: pack(|p| &p.rejected)?,
            reference: reference
                .f_index_select(0, &Tensor::f_from_slice(&index)?)?
                .f_to_device(self.device)?,
            examples: rows.len() as i64,
            desirable: Tensor::f_from_slice(&desirable)?.f_to_device(self.device)?,
            kl: None,
        })
    }
}

impl Objective for Kto {
    type Batch = ThumbBatch;

    fn batch(&mut self, at: MicroBatch) -> Result<ThumbBatch> {
        let rows = self.order.micro_batch(at, self.per_micro);
        self.thumb_batch(&self.train, &self.train_reference, &rows)
    }

    fn units(&self, batch: &ThumbBatch) -> f64 {
        batch.examples as f64
    }

    /// The reference point of each micro-batch: the mean mismatched drift over its rows on
    /// every rank (one collective for the step), clamped at 0.
    fn prepare(
        &mut self,
        model: &LanguageModel,
        batches: &mut [ThumbBatch],
        parallel: Option<&DataParallel>,
    ) -> Result<()> {
        let mut totals = Vec::with_capacity(batches.len() * 2);
        for batch in batches.iter() {
            totals.push(f64::try_from(mismatched_drift_sum(model, batch)?)?);
            totals.push(batch.examples as f64);
        }
        if let Some(dp) = parallel {
            totals = dp
                .sum(&totals)
                .context("summing the KL estimate over the ranks")?;
        }
        for (batch, total) in batches.iter_mut().zip(totals.chunks(2)) {
            let kl = (total[0] / total[1]).max(0.0);
            batch.kl = Some(
                Tensor::f_from_slice(&[kl as f32])?
                    .f_view([])?
                    .f_to_device(self.device)?,
            );
        }
        Ok(())
    }

    fn backward(
        &mut self,
        model: &LanguageModel,
        batch: &ThumbBatch,
        units: f64,
    ) -> Result<MicroStats, TchError> {
        // The matched answers' log-probs in chunks where the output layer allows (as DPO's),
        // their gradient handed to the model after the loss's backward.
        let step = StepLogps::new(model, &batch.matched, 1.0, None)?;
        let matched = step.per_sequence(&batch.matched)?;
        let (loss, sums, _) = train_terms(model, batch, &self.settings, &matched)?;
        let tokens = batch.matched.tokens + batch.mismatched.tokens;
        step.backward(loss, units, sums, tokens)
    }

    /// Loss, KL, accuracy and the mean drift of thumbs-up and thumbs-down examples
    /// (`val_desirable_drift`, `val_undesirable_drift`) over the validation set.
    fn evaluate(&mut self, model: &LanguageModel) -> Result<Option<Evaluation>> {
        let Some((valid, reference)) = &self.valid else {
            return Ok(None);
        };
        let eval = pair_evaluation(valid.labels.len(), self.per_micro as usize, |chunk| {
            let batch = self.thumb_batch(valid, reference, chunk)?;
            let matched = sequence_logps(model, &batch.matched)?;
            let (loss, mut sums, drift) = train_terms(model, &batch, &self.settings, &matched)?;
            let d = &batch.desirable;
            let up = drift.f_mul(d)?.f_sum(Kind::Float)?;
            let down = drift.f_sub(&drift.f_mul(d)?)?.f_sum(Kind::Float)?;
            sums.push(("desirable_drift", up));
            sums.push(("undesirable_drift", down));
            Ok((loss, sums))
        })?;
        Ok(eval.map(|mut eval| {
            // The class sums were divided by all examples; make them class means.
            let share = eval.fields.get("val_desirable").and_then(|v| v.as_f64());
            for (field, part) in [
                ("val_desirable_drift", share),
                ("val_undesirable_drift", share.map(|s| 1.0 - s)),
            ] {
                let mean = match (eval.fields.get(field).and_then(|v| v.as_f64()), part) {
                    (Some(sum), Some(p)) if p > 0.0 => json!(sum / p),
                    _ => serde_json::Value::Null,
                };
                eval.fields.insert(field.into(), mean);
            }
            eval
        }))
    }
}

/// `trainer kto`: aligns `config.init_from` to the thumbs in `config.data.train` (an
/// `unpaired` dataset).
pub fn run(config: &PostConfig, resume: Resume, faults: Faults) -> Result<DpoSummary> {
    let (train, valid) = data::read_datasets(&config.data, data::read_unpaired)?;
    let start = crate::post::start(config, Task::Kto, &train.rows)?;
    let max = start.model.config().max_position_embeddings;
    for set in std::iter::once(&train).chain(valid.as_ref()) {
        set.rows.check_lengths(max)?;
    }
    let post = start.post.clone().context("kto runs have post settings")?;
    let settings = post.kto.clone().unwrap_or_default();
    let mut engine = Engine::new(start, resume, faults)?;
    let refs = run_references(
        &mut engine,
        config,
        &post,
        settings.cache_dir.as_deref(),
        &train.rows,
        valid.as_ref().map(|set| &set.rows),
    )?;
    let mut objective = Kto {
        order: DrawOrder::new(train.labels.len(), config.data.order, config.train.seed),
        train,
        train_reference: refs.train,
        valid: valid.zip(refs.valid),
        row_len: config.data.seq_len as usize,
        per_micro: config.train.micro_batch_size,
        settings,
        device: engine.model().device(),
    };
    let summary: Summary = engine.run(&mut objective)?;
    Ok(DpoSummary {
        summary,
        reference_forward_passes: refs.forward_passes,
        cache: refs.cache,
    })
}
