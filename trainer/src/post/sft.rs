//! `trainer sft`: supervised fine-tuning on an `sft` dataset, full or LoRA. Each micro-batch
//! is `micro_batch_size` examples packed into rows; the loss is the cross-entropy of the
//! tokens whose `loss_mask` is 1 (the assistant's answers and their end-of-turn), summed over
//! the step's micro-batches and divided by the step's number of such tokens, so every
//! supervised token weighs the same however the examples fall into micro-batches.

use anyhow::Result;
use tch::{Device, TchError, Tensor};

use crate::engine::{
    Engine, Evaluation, Faults, MicroBatch, MicroStats, Objective, Resume, Summary,
};
use crate::model::language_model::LanguageModel;
use crate::model::loss::cross_entropy_sum;
use crate::post::config::{PostConfig, Task};
use crate::post::data::{self, DrawOrder, PackedBatch, Rows, Sequence};

/// Summed cross-entropy over the batch's target labels, from logits at the target cells
/// only (prompts and padding get none). Labels that are not targets are left out before the
/// loss, so their values cannot matter.
pub fn sft_loss_sum(model: &LanguageModel, batch: &PackedBatch) -> Result<Tensor, TchError> {
    let hidden = model.packed_hidden(&batch.ids, batch.packing())?;
    let (cells, targets) = batch.target_cells()?;
    cross_entropy_sum(&model.logits_at(&hidden, &cells)?, &targets)
}

/// The SFT objective.
#[derive(Debug)]
pub struct Sft {
    train: Rows<Sequence>,
    valid: Option<Rows<Sequence>>,
    order: DrawOrder,
    row_len: usize,
    per_micro: i64,
    eval_batches: Option<usize>,
    device: Device,
}

impl Sft {
    pub fn new(
        train: Rows<Sequence>,
        valid: Option<Rows<Sequence>>,
        config: &crate::engine::config::RunConfig,
        device: Device,
    ) -> Self {
        Self {
            order: DrawOrder::new(train.rows.len(), config.data.order, config.train.seed),
            train,
            valid,
            row_len: config.data.seq_len as usize,
            per_micro: config.train.micro_batch_size,
            eval_batches: config.eval.batches,
            device,
        }
    }
}

impl Objective for Sft {
    type Batch = PackedBatch;

    fn batch(&mut self, at: MicroBatch) -> Result<PackedBatch> {
        let rows = self.order.micro_batch(at, self.per_micro);
        let seqs: Vec<&Sequence> = rows.iter().map(|&i| &self.train.rows[i]).collect();
        data::pack(&seqs, self.row_len, self.device)
    }

    fn units(&self, batch: &PackedBatch) -> f64 {
        batch.targets as f64
    }

    fn backward(
        &mut self,
        model: &LanguageModel,
        batch: &PackedBatch,
        units: f64,
    ) -> Result<MicroStats, TchError> {
        // The loss and its gradient a chunk of target cells at a time (the same sum as
        // `sft_loss_sum`, tested), so not even the targets' [targets, vocab] logits are
        // held whole.
        let hidden = model.packed_hidden(&batch.ids, batch.packing())?;
        let (cells, targets) = batch.target_cells()?;
        Ok(MicroStats {
            loss_sum: model.loss_backward_at(&hidden, &cells, &targets, 1.0 / units)?,
            sums: Vec::new(),
            tokens: batch.tokens,
        })
    }

    /// Mean loss per supervised token over the validation examples (all of them, or the
    /// first `eval.batches` micro-batches).
    fn evaluate(&mut self, model: &LanguageModel) -> Result<Option<Evaluation>> {
        let Some(valid) = &self.valid else {
            return Ok(None);
        };
        let (mut sum, mut count) = (0.0, 0i64);
        let chunks = valid.rows.chunks(self.per_micro as usize);
        for chunk in chunks.take(self.eval_batches.unwrap_or(usize::MAX)) {
            let seqs: Vec<&Sequence> = chunk.iter().collect();
            let batch = data::pack(&seqs, self.row_len, self.device)?;
            let hidden = model.packed_hidden(&batch.ids, batch.packing())?;
            sum += f64::try_from(model.rows_loss_sum(&hidden, &batch.target_labels()?)?)?;
            count += batch.targets;
        }
        Ok(Evaluation::per_token(sum, count))
    }
}

/// `trainer sft`: fine-tunes `config.init_from` on `config.data.train`.
pub fn run(config: &PostConfig, resume: Resume, faults: Faults) -> Result<Summary> {
    let (train, valid) = data::read_datasets(&config.data, data::read_sft)?;
    let start = crate::post::start(config, Task::Sft, &train)?;
    let max = start.model.config().max_position_embeddings;
    for set in std::iter::once(&train).chain(valid.as_ref()) {
        set.check_lengths(max)?;
    }
    let mut objective = Sft::new(train, valid, &start.config, start.model.device());
    let mut engine = Engine::new(start, resume, faults)?;
    engine.run(&mut objective)
}
