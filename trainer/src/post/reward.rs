//! `trainer reward`: a reward model is the decoder with a scalar head
//! (`score.weight`, as `LlamaForSequenceClassification`) read at each sequence's last token.
//! It trains on preference pairs with the Bradley-Terry loss `-log sigmoid(r_c - r_r)` and
//! reports accuracy (how often `r_c > r_r`) on held-out pairs: `data.valid`, or else the
//! pairs whose `pair_id` hashes into `reward.valid_fraction`. `trainer score` (the `score`
//! module) scores rows with it.

use anyhow::{Result, bail};
use tch::{Device, Kind, TchError, Tensor};

use crate::engine::seed::splitmix64;
use crate::engine::{
    Engine, Evaluation, Faults, MicroBatch, MicroStats, NamedSums, Objective, Resume, Summary,
};
use crate::model::language_model::LanguageModel;
use crate::post::config::{PostConfig, Task};
use crate::post::data::{self, DrawOrder, PackedBatch, Pair};
use crate::post::preference::{pack_pairs, pair_evaluation};

/// The score of each packed sequence at its last token, `[sequences]` fp32.
pub fn sequence_scores(model: &LanguageModel, batch: &PackedBatch) -> Result<Tensor, TchError> {
    let hidden = model.packed_hidden(&batch.ids, batch.packing())?;
    let width = hidden.size().last().copied().unwrap_or(0);
    let last = hidden
        .f_reshape([-1, width])?
        .f_index_select(0, &batch.last)?;
    model.score(&last)
}

/// Bradley-Terry loss of a batch of (chosen, rejected) sequences and detached statistics.
fn bradley_terry(
    model: &LanguageModel,
    batch: &PackedBatch,
) -> Result<(Tensor, NamedSums), TchError> {
    let scores = sequence_scores(model, batch)?.f_view([-1, 2])?;
    let (chosen, rejected) = (scores.f_select(1, 0)?, scores.f_select(1, 1)?);
    let diff = chosen.f_sub(&rejected)?;
    let loss = diff.f_log_sigmoid()?.f_neg()?.f_sum(Kind::Float)?;
    let sum = |t: &Tensor| -> Result<Tensor, TchError> { t.f_detach()?.f_sum(Kind::Float) };
    let sums = vec![
        ("accuracy", sum(&diff.f_gt(0.0)?.f_to_kind(Kind::Float)?)?),
        ("margin", sum(&diff)?),
        ("chosen_score", sum(&chosen)?),
        ("rejected_score", sum(&rejected)?),
    ];
    Ok((loss, sums))
}

/// True when `pair_id` falls in the held-out fraction (a stable hash, not the order).
pub fn held_out(pair_id: &str, fraction: f64) -> bool {
    let h = pair_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (splitmix64(h) % 1_000_000) as f64 / 1e6 < fraction
}

/// The reward-model objective.
#[derive(Debug)]
pub struct RewardModel {
    train: Vec<Pair>,
    valid: Vec<Pair>,
    order: DrawOrder,
    row_len: usize,
    per_micro: i64,
    device: Device,
}

/// A micro-batch of pairs.
#[derive(Debug)]
pub struct RewardBatch {
    pub packed: PackedBatch,
    pub pairs: i64,
}

impl Objective for RewardModel {
    type Batch = RewardBatch;

    fn batch(&mut self, at: MicroBatch) -> Result<RewardBatch> {
        let rows = self.order.micro_batch(at, self.per_micro);
        Ok(RewardBatch {
            packed: pack_pairs(&self.train, &rows, self.row_len, self.device)?,
            pairs: rows.len() as i64,
        })
    }

    fn units(&self, batch: &RewardBatch) -> f64 {
        batch.pairs as f64
    }

    fn backward(
        &mut self,
        model: &LanguageModel,
        batch: &RewardBatch,
        units: f64,
    ) -> Result<MicroStats, TchError> {
        let (loss, sums) = bradley_terry(model, &batch.packed)?;
        MicroStats::backward(loss, units, sums, batch.packed.tokens)
    }

    /// Loss, accuracy, margin and scores averaged over the held-out pairs.
    fn evaluate(&mut self, model: &LanguageModel) -> Result<Option<Evaluation>> {
        pair_evaluation(self.valid.len(), self.per_micro as usize, |chunk| {
            let packed = pack_pairs(&self.valid, chunk, self.row_len, self.device)?;
            Ok(bradley_terry(model, &packed)?)
        })
    }
}

/// `trainer reward`: trains a reward model from `config.init_from` on preference pairs.
pub fn run(config: &PostConfig, resume: Resume, faults: Faults) -> Result<Summary> {
    let rows = data::read_preferences(&config.data.train)?;
    let fraction = config.reward.as_ref().map_or(0.1, |r| r.valid_fraction);
    let (train, valid): (Vec<Pair>, Vec<Pair>) = match &config.data.valid {
        Some(dir) => (rows.rows.clone(), data::read_preferences(dir)?.rows),
        None => rows
            .rows
            .iter()
            .cloned()
            .partition(|p| !held_out(&p.pair_id, fraction)),
    };
    if train.is_empty() {
        bail!(
            "every pair of {} is held out: lower reward.valid_fraction",
            rows.dir.display()
        );
    }
    let start = crate::post::start(config, Task::Reward, &rows)?;
    let max = start.model.config().max_position_embeddings;
    data::check_lengths(train.iter().chain(&valid), max, &rows.dir)?;
    tracing::info!(
        train = train.len(),
        held_out = valid.len(),
        "reward model pairs"
    );
    let mut objective = RewardModel {
        order: DrawOrder::new(train.len(), config.data.order, config.train.seed),
        train,
        valid,
        row_len: config.data.seq_len as usize,
        per_micro: config.train.micro_batch_size,
        device: start.model.device(),
    };
    let mut engine = Engine::new(start, resume, faults)?;
    engine.run(&mut objective)
}
