//! The policy's log-probabilities in a DPO or GRPO training step, whose loss is not a plain
//! sum of them: where the output layer allows ([`LanguageModel::chunkable_output_weight`])
//! they are computed a chunk of target cells at a time without a graph, the loss's backward
//! stops at them, and [`StepLogps::backward`] then hands their gradient to the model a chunk
//! at a time, so the `[targets, vocab]` logits are never held whole (nor kept for the backward);
//! otherwise through the logits at the target cells and autograd.

use tch::{Kind, Reduction, TchError, Tensor};

use crate::engine::{MicroStats, NamedSums};
use crate::model::language_model::LanguageModel;
use crate::model::loss::{chunked_label_logps, chunked_label_logps_surrogate, rows_at};
use crate::post::data::PackedBatch;
use crate::post::sampled::SamplingMask;

/// A training step's log-probabilities of a packed batch's target labels.
#[derive(Debug)]
pub struct StepLogps<'a> {
    /// `[targets]` fp32: through the logits' graph, or (chunked) a leaf whose gradient
    /// [`StepLogps::finish`] hands on.
    values: Tensor,
    cells: Tensor,
    chunked: Option<Chunked<'a>>,
}

/// What the chunked gradient needs again after the loss's backward.
#[derive(Debug)]
struct Chunked<'a> {
    weight: &'a Tensor,
    rows: Tensor,
    targets: Tensor,
    temperature: f64,
    mask: Option<&'a SamplingMask>,
}

/// The logits' adjustment for the cells `cells` (`[targets]`): the sampler's masked ids at
/// -inf, chunk by chunk.
fn masking<'m>(
    mask: Option<&'m SamplingMask>,
    cells: &'m Tensor,
) -> impl Fn(Tensor, i64, i64) -> Result<Tensor, TchError> + 'm {
    move |logits, start, len| match mask {
        Some(mask) => mask.apply_at(&logits, &cells.f_narrow(0, start, len)?),
        None => Ok(logits),
    }
}

/// How [`StepLogps`] computes its log-probs.
#[derive(Clone, Copy, PartialEq)]
enum Route {
    /// In chunks where the output layer allows, the gradient handed on by `finish`.
    Step,
    /// In chunks where the output layer allows, no gradient.
    NoGraph,
    /// Through the target cells' logits and autograd, whatever the output layer.
    Logits,
}

impl<'a> StepLogps<'a> {
    /// The log-probs of `batch`'s target labels under the model's next-token distribution
    /// at `temperature` and, with `mask`, without the tokens the sampler masked (as
    /// [`crate::post::grpo::token_logps`]).
    pub fn new(
        model: &'a LanguageModel,
        batch: &PackedBatch,
        temperature: f64,
        mask: Option<&'a SamplingMask>,
    ) -> Result<Self, TchError> {
        Self::build(model, batch, temperature, mask, Route::Step)
    }

    /// The same log-probs without a graph (the reference and old log-probs, evaluation,
    /// scoring): in chunks too where the output layer allows, so no pass holds the
    /// `[targets, vocab]` logits whole.
    pub fn without_graph(
        model: &'a LanguageModel,
        batch: &PackedBatch,
        temperature: f64,
        mask: Option<&'a SamplingMask>,
    ) -> Result<Self, TchError> {
        tch::no_grad(|| Self::build(model, batch, temperature, mask, Route::NoGraph))
    }

    /// The same log-probs through the logits at the target cells and autograd, whatever the
    /// output layer (a LoRA output layer's training step takes them so).
    pub fn through_logits(
        model: &'a LanguageModel,
        batch: &PackedBatch,
        temperature: f64,
        mask: Option<&'a SamplingMask>,
    ) -> Result<Self, TchError> {
        Self::build(model, batch, temperature, mask, Route::Logits)
    }

    fn build(
        model: &'a LanguageModel,
        batch: &PackedBatch,
        temperature: f64,
        mask: Option<&'a SamplingMask>,
        route: Route,
    ) -> Result<Self, TchError> {
        let hidden = model.packed_hidden(&batch.ids, batch.packing())?;
        let (cells, targets) = batch.target_cells()?;
        let weight = match route {
            Route::Logits => None,
            Route::Step | Route::NoGraph => model.chunkable_output_weight(),
        };
        let Some(weight) = weight else {
            let mut picked = model.logits_at(&hidden, &cells)?.f_to_kind(Kind::Float)?;
            if let Some(mask) = mask {
                picked = mask.apply_at(&picked, &cells)?;
            }
            return Ok(Self {
                values: label_logps(&picked, &targets, temperature)?,
                cells,
                chunked: None,
            });
        };
        let rows = rows_at(&hidden, &cells)?;
        let values = {
            let adjust = masking(mask, &cells);
            chunked_label_logps(&rows, weight, &targets, temperature, &adjust)?
        };
        if route == Route::NoGraph {
            return Ok(Self {
                values,
                cells,
                chunked: None,
            });
        }
        Ok(Self {
            values: values.f_set_requires_grad(true)?,
            cells,
            chunked: Some(Chunked {
                weight,
                rows,
                targets,
                temperature,
                mask,
            }),
        })
    }

    /// Per token, `[rows, len]` (0 off target).
    pub fn per_token(&self, batch: &PackedBatch) -> Result<Tensor, TchError> {
        Tensor::f_zeros(
            [batch.labels.numel() as i64],
            (Kind::Float, self.values.device()),
        )?
        .f_index_copy(0, &self.cells, &self.values)?
        .f_view_as(&batch.labels)
    }

    /// Summed per sequence, `[sequences]`.
    pub fn per_sequence(&self, batch: &PackedBatch) -> Result<Tensor, TchError> {
        let sequence_of = batch
            .sequence_of
            .f_reshape([-1])?
            .f_index_select(0, &self.cells)?;
        Tensor::f_zeros([batch.sequences + 1], (Kind::Float, self.values.device()))?
            .f_scatter_add(0, &sequence_of, &self.values)?
            .f_narrow(0, 0, batch.sequences)
    }

    /// The step's backward: the loss's ([`MicroStats::backward`]), then [`StepLogps::finish`].
    /// How a training step on these log-probs ends, so that none can leave the second half
    /// out (the model would then get no gradient through them).
    pub fn backward(
        self,
        loss: Tensor,
        units: f64,
        sums: NamedSums,
        tokens: i64,
    ) -> Result<MicroStats, TchError> {
        let stats = MicroStats::backward(loss, units, sums, tokens)?;
        self.finish()?;
        Ok(stats)
    }

    /// After the loss's backward: hands the gradient it left on the chunked log-probs to the
    /// model, a chunk at a time (on the graph route that backward already reached it). A
    /// training step calls [`StepLogps::backward`], which does both.
    pub fn finish(self) -> Result<(), TchError> {
        let Some(c) = self.chunked else {
            return Ok(());
        };
        let upstream = self.values.grad();
        if !upstream.defined() {
            return Ok(()); // the loss did not depend on them
        }
        let adjust = masking(c.mask, &self.cells);
        chunked_label_logps_surrogate(
            &c.rows,
            c.weight,
            &c.targets,
            c.temperature,
            &adjust,
            &upstream,
        )?
        .f_backward()
    }
}

/// `log_softmax(logits / temperature)` at each label (`logits: [.., vocab]`, labels of the
/// leading shape, -100 where there is none: 0 there), flattened.
pub(crate) fn label_logps(
    logits: &Tensor,
    labels: &Tensor,
    temperature: f64,
) -> Result<Tensor, TchError> {
    let vocab = logits.size().last().copied().unwrap_or(0);
    let scaled = if temperature == 1.0 {
        logits.shallow_clone()
    } else {
        logits.f_div_scalar(temperature)?
    };
    scaled
        .f_reshape([-1, vocab])?
        .f_cross_entropy_loss::<Tensor>(&labels.f_reshape([-1])?, None, Reduction::None, -100, 0.0)?
        .f_neg()
}
