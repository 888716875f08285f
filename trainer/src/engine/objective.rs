//! What a kind of training computes: the [`Objective`] trait the [`crate::engine::Engine`]
//! drives, and what one micro-batch or one evaluation hands back to it. New objectives (KTO,
//! GRPO) are new implementations of the trait, not new loops.

use anyhow::Result;
use serde_json::{Map, Value, json};
use tch::{TchError, Tensor};

use crate::engine::parallel::DataParallel;
use crate::model::language_model::LanguageModel;

/// Named sums over a batch's pairs or tokens (accuracy, margin, ...).
pub type NamedSums = Vec<(&'static str, Tensor)>;

/// What one micro-batch's forward and backward produced (all detached).
#[derive(Debug)]
pub struct MicroStats {
    /// The micro-batch's summed loss, before division by the step's units.
    pub loss_sum: Tensor,
    /// Further sums reported per step divided by the step's units (DPO's accuracy, ...).
    pub sums: NamedSums,
    /// Tokens the micro-batch ran through the model.
    pub tokens: i64,
}

impl MicroStats {
    /// Runs backward on a micro-batch's summed `loss` divided by the step's `units`, and
    /// keeps the undivided sum (detached) with the other `sums` and the `tokens` it ran.
    pub fn backward(
        loss: Tensor,
        units: f64,
        sums: NamedSums,
        tokens: i64,
    ) -> Result<Self, TchError> {
        loss.f_div_scalar(units)?.f_backward()?;
        Ok(Self {
            loss_sum: loss.f_detach()?,
            sums,
            tokens,
        })
    }
}

/// A held-out evaluation: its loss and further fields for the `eval` metrics line.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub loss: f64,
    pub fields: Map<String, Value>,
}

impl Evaluation {
    /// The mean loss per target token, `sum` over `count` tokens, with its perplexity as
    /// `val_ppl`; None when no token was evaluated.
    pub fn per_token(sum: f64, count: i64) -> Option<Self> {
        if count == 0 {
            return None;
        }
        let loss = sum / count as f64;
        let mut fields = Map::new();
        fields.insert("val_ppl".into(), json!(loss.exp()));
        Some(Self { loss, fields })
    }
}

/// Which part of a step's global batch a micro-batch is. A step is `accum` micro-batches of
/// the job, each `per_micro * world` rows that depend on (seed, step, micro, row) only;
/// rank `rank` holds the `per_micro` rows from `rank * per_micro` of each. So two ranks of
/// 4 rows train on what one rank of 8 does, and a run resumes with another number of ranks
/// when `micro_batch_size x ranks` and `grad_accum` stay the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicroBatch {
    /// Optimizer step, 1-based.
    pub step: u64,
    /// Micro-batch within the step on this rank, 0-based.
    pub micro: u64,
    pub accum: u64,
    pub rank: u64,
    pub world: u64,
}

impl MicroBatch {
    /// A single process's micro-batch.
    pub fn single(step: u64, micro: u64, accum: u64) -> Self {
        Self {
            step,
            micro,
            accum,
            rank: 0,
            world: 1,
        }
    }

    /// Rows in the step's global batch when a rank's micro-batch holds `per_micro` rows.
    pub fn rows_per_step(&self, per_micro: u64) -> u64 {
        per_micro * self.accum * self.world
    }

    /// Index in the step's global batch of this rank's first row of the micro-batch.
    pub fn first_row(&self, per_micro: u64) -> u64 {
        (self.micro * self.world + self.rank) * per_micro
    }

    /// Index since the start of training of this micro-batch's first row.
    pub fn first_row_overall(&self, per_micro: u64) -> u64 {
        (self.step - 1) * self.rows_per_step(per_micro) + self.first_row(per_micro)
    }
}

/// What a kind of training computes on each step.
pub trait Objective {
    type Batch;

    /// The rows of micro-batch `at`. They must depend on (seed, step, row index) only, so a
    /// resumed run sees the batches an uninterrupted one would, whatever the world size.
    fn batch(&mut self, at: MicroBatch) -> Result<Self::Batch>;

    /// What the step's loss averages over in this micro-batch (tokens, pairs).
    fn units(&self, batch: &Self::Batch) -> f64;

    /// Forward and backward of one micro-batch with its loss divided by `units` (the whole
    /// step's) before backward.
    fn backward(
        &mut self,
        model: &LanguageModel,
        batch: &Self::Batch,
        units: f64,
    ) -> Result<MicroStats, TchError>;

    /// Runs once per step on the step's micro-batches before any backward, with the job's
    /// process group: for what a loss needs from the whole step's rows on every rank (KTO's
    /// KL reference point). Every rank must make the same collective calls.
    fn prepare(
        &mut self,
        _model: &LanguageModel,
        _batches: &mut [Self::Batch],
        _parallel: Option<&DataParallel>,
    ) -> Result<()> {
        Ok(())
    }

    /// Held-out metrics; None when there is no held-out data.
    fn evaluate(&mut self, model: &LanguageModel) -> Result<Option<Evaluation>>;

    /// Text for a `sample` metrics line at `step`, if the objective makes samples.
    fn sample(&self, _model: &LanguageModel, _step: u64) -> Result<Option<String>> {
        Ok(None)
    }
}
