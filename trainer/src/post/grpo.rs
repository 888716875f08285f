//! `trainer grpo`: online reinforcement learning with group-relative advantages (GRPO,
//! Shao et al. 2024, as TRL's `GRPOTrainer`), RLOO as an option. Each step samples `group_size` answers per prompt from the policy (KV cache),
//! scores them with the configured rules, and raises the probability of answers better than
//! their group: advantage `(r - mean) / (std + 1e-4)` over the group (RLOO: `r` minus the
//! mean of the others). Per answer token the loss is
//! `-(min(ρ A, clip(ρ, 1 ± ε) A) - β KL)` with `ρ` the policy ratio to the sampling policy
//! and `KL = exp(ref - π) - (ref - π) - 1` (k3) to the reference model, every log-prob taken
//! under the distribution the answer was sampled from: at the sampling temperature (logits /
//! temperature, as TRL) and, with a byte-level tokenizer, with the tokens the sampler masked
//! to keep the text valid UTF-8 masked ([`SamplingMask`]); tokens are averaged
//! per answer and answers over the step. With `updates_per_generation = k` (TRL's
//! `num_iterations`) a generation's answers serve k consecutive optimizer steps: `ρ` moves
//! away from 1 after the first and the clip starts to bite.
//!
//! Sampling happens in [`Objective::prepare`], seeded by (seed, the prompt's draw index since
//! the start of training, which step and rank fix, answer), so
//! a resumed run and a run on another number of ranks sample the same answers. (A run
//! resumed in the middle of a generation samples it again from the resumed policy.)

use std::collections::BTreeMap;
use std::rc::Rc;

use anyhow::{Context, Result};
use tch::{Device, Kind, TchError, Tensor};

use crate::engine::parallel::DataParallel;
use crate::engine::seed::mix;
use crate::engine::{
    Engine, Evaluation, Faults, MicroBatch, MicroStats, Objective, Resume, Summary,
};
use crate::model::language_model::{Additions, LanguageModel};
use crate::model::lora::AdapterMode;
use crate::model::sample::{SamplingParams, generate_text};
use crate::model::tokenizer::TextTokenizer;
use crate::post::config::{GrpoSettings, PostConfig, Task};
use crate::post::data::{self, DrawOrder, PackedBatch, Sequence};
use crate::post::prompts::{self, GrpoPrompt};
use crate::post::rewards::{self, Answer, Rewards};
use crate::post::sampled::SamplingMask;
use crate::post::step_logps::StepLogps;

/// Advantages of one group's rewards: GRPO's normalised ones or RLOO's leave-one-out.
pub fn advantages(rewards: &[f64], rloo: bool) -> Vec<f64> {
    let n = rewards.len() as f64;
    let mean = rewards.iter().sum::<f64>() / n;
    if rloo {
        return rewards
            .iter()
            .map(|r| r - (mean * n - r) / (n - 1.0))
            .collect();
    }
    // torch.std: the unbiased estimate, as TRL.
    let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
    rewards
        .iter()
        .map(|r| (r - mean) / (var.sqrt() + 1e-4))
        .collect()
}

/// A micro-batch: its prompts, then (after `prepare`) the sampled answers packed with
/// what the loss needs.
#[derive(Debug)]
pub struct RolloutBatch {
    prompts: Vec<usize>,
    /// Index since the start of training of the first prompt row (seeds the sampling).
    first_row: u64,
    /// Which generation (0-based) and micro-batch of it: keys the rollouts reused by the
    /// generation's later updates.
    generation: (u64, u64),
    rollout: Option<Rc<Rollout>>,
}

#[derive(Debug)]
struct Rollout {
    packed: PackedBatch,
    /// `[rows, len]`: the sampling policy's and the reference's token log-probs.
    old: Tensor,
    /// The UTF-8 mask the answers were sampled under (byte-level tokenizers).
    mask: Option<SamplingMask>,
    reference: Tensor,
    /// `[answers]`.
    advantages: Tensor,
    rewards: Vec<f64>,
    spread: f64,
    lengths: Vec<usize>,
    answers: Vec<Answer>,
}

/// Per-token log-probs of the packed batch's labels, `[rows, len]` fp32 (0 off target),
/// under the model's next-token distribution at `temperature` (its logits divided by it)
/// and, with `mask`, without the tokens the sampler masked: GRPO's ratio and KL must refer to
/// the distribution the answers were sampled from, as TRL's do. 1.0 and no mask give the
/// model's own log-probs. Without a graph (the old and reference log-probs, scoring; a
/// training step takes [`StepLogps::new`]).
pub fn token_logps(
    model: &LanguageModel,
    batch: &PackedBatch,
    temperature: f64,
    mask: Option<&SamplingMask>,
) -> Result<Tensor, TchError> {
    StepLogps::without_graph(model, batch, temperature, mask)?.per_token(batch)
}

/// The GRPO objective.
#[derive(Debug)]
pub struct Grpo {
    prompts: Vec<GrpoPrompt>,
    /// Held-out prompts (`data.valid`): mean reward of sampled answers at each evaluation.
    valid: Option<Vec<GrpoPrompt>>,
    /// The current generation's rollouts by micro-batch, for its later updates.
    rollouts: BTreeMap<(u64, u64), Rc<Rollout>>,
    order: DrawOrder,
    per_micro: i64,
    row_len: usize,
    settings: GrpoSettings,
    rewards: Rewards,
    tokenizer: TextTokenizer,
    /// The last step's first group: prompt, answers and rewards, for `sample` lines.
    last_group: Option<String>,
    stop: Option<u32>,
    seed: u64,
    /// The frozen reference for full fine-tuning; with LoRA the policy with adapters off.
    reference: Option<LanguageModel>,
    device: Device,
}

impl Grpo {
    /// One sampled answer to `prompt` (at least the stop token) and its text.
    fn answer(
        &self,
        model: &LanguageModel,
        prompt: &GrpoPrompt,
        seed: u64,
    ) -> Result<(Vec<u32>, Answer)> {
        let params = SamplingParams {
            temperature: self.settings.temperature,
            top_k: 0,
            top_p: 1.0,
            max_tokens: self.settings.max_new_tokens,
            seed,
            stop_token: self.stop,
        };
        let mut answer = generate_text(
            model,
            &prompt.ids,
            &params,
            true,
            self.tokenizer.byte_vocab(),
        )?
        .tokens;
        if answer.is_empty() {
            answer.extend(self.stop);
        }
        let scored = Answer {
            prompt: self.tokenizer.decode(&prompt.ids)?,
            text: self.tokenizer.decode(&answer)?,
            tokens: answer.len(),
            reference: prompt.reference.clone(),
        };
        Ok((answer, scored))
    }

    fn roll_out(&self, model: &LanguageModel, batch: &RolloutBatch) -> Result<Rollout> {
        let g = self.settings.group_size;
        let (mut seqs, mut answers) = (Vec::new(), Vec::new());
        for (k, &p) in batch.prompts.iter().enumerate() {
            let prompt = &self.prompts[p];
            for a in 0..g {
                let seed = mix(&[self.seed, batch.first_row + k as u64, a as u64]);
                let (tokens, answer) = self.answer(model, prompt, seed)?;
                seqs.push(Sequence::prompt_answer(&prompt.ids, &tokens));
                answers.push(answer);
            }
        }
        let packed = data::pack(&seqs.iter().collect::<Vec<_>>(), self.row_len, self.device)?;
        let rewards = self.rewards.score(&answers, &packed)?;
        let (mut advs, mut spread) = (Vec::new(), 0.0);
        for group in rewards.chunks(g) {
            let mean = group.iter().sum::<f64>() / g as f64;
            spread += (group.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / g as f64).sqrt();
            advs.extend(advantages(group, self.settings.rloo));
        }
        let t = self.settings.temperature;
        let mask = match self.tokenizer.byte_vocab() {
            Some(vocab) => Some(SamplingMask::new(
                &packed,
                vocab,
                model.config().vocab_size,
            )?),
            None => None,
        };
        let m = mask.as_ref();
        let (old, reference) = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
            let old = token_logps(model, &packed, t, m)?;
            let reference = match &self.reference {
                Some(r) => token_logps(r, &packed, t, m)?,
                None => {
                    model.with_adapters(AdapterMode::Off, || token_logps(model, &packed, t, m))?
                }
            };
            Ok((old, reference))
        })?;
        let advs: Vec<f32> = advs.iter().map(|&a| a as f32).collect();
        Ok(Rollout {
            packed,
            old,
            mask,
            reference,
            advantages: Tensor::f_from_slice(&advs)?.f_to_device(self.device)?,
            spread: spread / batch.prompts.len() as f64,
            lengths: answers.iter().map(|a| a.tokens).collect(),
            answers,
            rewards,
        })
    }
}

impl Objective for Grpo {
    type Batch = RolloutBatch;

    /// The prompts of the step's generation: steps `k g + 1 ..= k g + k` share generation
    /// `g`'s prompts (and answers) when `updates_per_generation` is k.
    fn batch(&mut self, at: MicroBatch) -> Result<RolloutBatch> {
        let generation = (at.step - 1) / self.settings.updates_per_generation;
        let gen_at = MicroBatch {
            step: generation + 1,
            ..at
        };
        Ok(RolloutBatch {
            prompts: self.order.micro_batch(gen_at, self.per_micro),
            first_row: gen_at.first_row_overall(self.per_micro as u64),
            generation: (generation, at.micro),
            rollout: None,
        })
    }

    fn units(&self, batch: &RolloutBatch) -> f64 {
        (batch.prompts.len() * self.settings.group_size) as f64
    }

    /// Samples and scores every micro-batch's answers with the current policy, or takes
    /// them from the generation's first step.
    fn prepare(
        &mut self,
        model: &LanguageModel,
        batches: &mut [RolloutBatch],
        _parallel: Option<&DataParallel>,
    ) -> Result<()> {
        let generation = batches.first().map(|b| b.generation.0);
        self.rollouts.retain(|k, _| Some(k.0) == generation);
        for batch in batches.iter_mut() {
            let rollout = match self.rollouts.get(&batch.generation) {
                Some(r) => Rc::clone(r),
                None => {
                    let r = Rc::new(self.roll_out(model, batch)?);
                    self.rollouts.insert(batch.generation, Rc::clone(&r));
                    r
                }
            };
            batch.rollout = Some(rollout);
        }
        if let Some(r) = batches.first().and_then(|b| b.rollout.as_ref()) {
            let g = self.settings.group_size.min(r.answers.len());
            let mut text = format!("{}\n", r.answers[0].prompt);
            for (a, reward) in r.answers[..g].iter().zip(&r.rewards) {
                text.push_str(&format!("[{}] {}\n", rewards::shown(*reward), a.text));
            }
            self.last_group = Some(text);
        }
        Ok(())
    }

    fn backward(
        &mut self,
        model: &LanguageModel,
        batch: &RolloutBatch,
        units: f64,
    ) -> Result<MicroStats, TchError> {
        let r = batch
            .rollout
            .as_ref()
            .ok_or_else(|| TchError::Kind("a GRPO batch was not rolled out".into()))?;
        let p = &r.packed;
        let step = StepLogps::new(model, p, self.settings.temperature, r.mask.as_ref())?;
        let logp = step.per_token(p)?;
        let mask = p.label_target.f_to_kind(Kind::Float)?;
        let seq = p.sequence_of.f_clamp_max(p.sequences - 1)?;
        let adv = r
            .advantages
            .f_index_select(0, &seq.f_reshape([-1])?)?
            .f_view_as(&logp)?;
        let ratio = logp.f_sub(&r.old)?.f_exp()?;
        let eps = self.settings.epsilon;
        let clipped = ratio.f_clamp(1.0 - eps, 1.0 + eps)?;
        let objective = ratio.f_mul(&adv)?.f_minimum(&clipped.f_mul(&adv)?)?;
        let diff = r.reference.f_sub(&logp)?;
        let kl = diff.f_exp()?.f_sub(&diff)?.f_sub_scalar(1.0)?;
        let per_token = objective
            .f_sub(&kl.f_mul_scalar(self.settings.beta)?)?
            .f_neg()?
            .f_mul(&mask)?;
        // Mean over each answer's tokens, summed over answers.
        let index = p.sequence_of.f_reshape([-1])?;
        let per_seq = |t: &Tensor| -> Result<Tensor, TchError> {
            Tensor::f_zeros([p.sequences + 1], (Kind::Float, t.device()))?
                .f_scatter_add(0, &index, &t.f_reshape([-1])?)?
                .f_narrow(0, 0, p.sequences)
        };
        let counts = per_seq(&mask)?.f_clamp_min(1.0)?;
        let loss = per_seq(&per_token)?.f_div(&counts)?.f_sum(Kind::Float)?;
        let detached_mean = |t: &Tensor| -> Result<Tensor, TchError> {
            per_seq(&t.f_detach()?.f_mul(&mask)?)?
                .f_div(&counts)?
                .f_sum(Kind::Float)
        };
        let clip = ratio
            .f_detach()?
            .f_sub_scalar(1.0)?
            .f_abs()?
            .f_gt(eps)?
            .f_to_kind(Kind::Float)?;
        let n = r.rewards.len() as f64;
        let scalar = |x: f64| Tensor::f_from_slice(&[x as f32])?.f_view([]);
        let sums = vec![
            ("reward", scalar(r.rewards.iter().sum())?),
            ("reward_spread", scalar(r.spread * n)?),
            ("kl", detached_mean(&kl)?),
            ("clip_fraction", detached_mean(&clip)?),
            (
                "answer_length",
                scalar(r.lengths.iter().sum::<usize>() as f64)?,
            ),
        ];
        step.backward(loss, units, sums, p.tokens)
    }

    /// The first prompt of the step with its answers, each after its reward.
    fn sample(&self, _model: &LanguageModel, _step: u64) -> Result<Option<String>> {
        Ok(self.last_group.clone())
    }

    /// `val_reward`: the mean reward of `group_size` answers sampled for each held-out
    /// prompt with fixed seeds (the same answers for the same model); `val_loss` is its
    /// negative, so lower is better as for the other commands.
    fn evaluate(&mut self, model: &LanguageModel) -> Result<Option<Evaluation>> {
        let Some(valid) = &self.valid else {
            return Ok(None);
        };
        let (mut total, mut count, mut length) = (0.0, 0usize, 0usize);
        for (i, prompt) in valid.iter().enumerate() {
            let (mut seqs, mut answers) = (Vec::new(), Vec::new());
            for a in 0..self.settings.group_size {
                let seed = mix(&[self.seed, u64::MAX, i as u64, a as u64]);
                let (tokens, answer) = self.answer(model, prompt, seed)?;
                seqs.push(Sequence::prompt_answer(&prompt.ids, &tokens));
                length += tokens.len();
                answers.push(answer);
            }
            let packed = data::pack(&seqs.iter().collect::<Vec<_>>(), self.row_len, self.device)?;
            total += self.rewards.score(&answers, &packed)?.iter().sum::<f64>();
            count += answers.len();
        }
        let mut eval = Evaluation {
            loss: -total / count as f64,
            ..Evaluation::default()
        };
        eval.fields
            .insert("val_reward".into(), serde_json::json!(total / count as f64));
        eval.fields.insert(
            "val_answer_length".into(),
            serde_json::json!(length as f64 / count as f64),
        );
        eval.fields
            .insert("val_prompts".into(), serde_json::json!(valid.len()));
        Ok(Some(eval))
    }
}

/// `trainer grpo`: online RL from `config.init_from` on the prompts of `config.data.train`
/// (an `sft` dataset, a JSONL file or a labeler project: see [`prompts`]), evaluated on
/// those of `data.valid`.
pub fn run(config: &PostConfig, resume: Resume, faults: Faults) -> Result<Summary> {
    let rows = prompts::read(&config.data.train, &config.init_from)?;
    let start = crate::post::start(config, Task::Grpo, &rows)?;
    let post = start.post.clone().context("grpo runs have post settings")?;
    let settings = post.grpo.clone().context("grpo runs have [grpo]")?;
    let tokenizer = TextTokenizer::from_file(&rows.tokenizer_path)?;
    let stop = rows.tokenizer.special("end_of_turn");
    let reference = match config.lora {
        Some(_) => None,
        None => Some(crate::post::init_model(
            &post.init_from,
            start.model.device(),
            config.train.precision,
            0,
            &Additions::default(),
        )?),
    };
    let valid = match &config.data.valid {
        Some(source) => Some(prompts::read(source, &config.init_from)?.rows),
        None => None,
    };
    let prompts = rows.rows;
    let mut engine = Engine::new(start, resume, faults)?;
    let mut objective = Grpo {
        order: DrawOrder::new(prompts.len(), config.data.order, config.train.seed),
        prompts,
        valid,
        rollouts: BTreeMap::new(),
        per_micro: config.train.micro_batch_size,
        row_len: config.data.seq_len as usize,
        rewards: Rewards::new(
            &settings,
            engine.model().device(),
            engine.model().config().vocab_size,
        )?,
        last_group: None,
        settings,
        tokenizer,
        stop,
        seed: config.train.seed,
        reference,
        device: engine.model().device(),
    };
    engine.run(&mut objective)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sample::pick_token;
    use crate::post::step_logps::label_logps;

    /// The log-probs GRPO's ratio and KL use are those of the distribution the answers are
    /// sampled from: at temperature 0.5, the share of an even grid of draws that
    /// `pick_token` maps to each token is the exp of its log-prob. (The temperature-1
    /// log-probs are far off: 0.64 for the likeliest token against 0.87.)
    #[test]
    fn log_probs_follow_the_sampling_temperature() -> Result<()> {
        let row = [2.0f32, 0.0, -1.0, 1.0];
        let temperature = 0.5;
        let params = SamplingParams {
            temperature,
            top_k: 0,
            top_p: 1.0,
            max_tokens: 1,
            seed: 0,
            stop_token: None,
        };
        let draws = 100_000;
        let mut share = [0.0f64; 4];
        for i in 0..draws {
            let token = pick_token(&row, &params, (i as f64 + 0.5) / draws as f64)?;
            share[token as usize] += 1.0 / draws as f64;
        }
        // Four positions with the same logits, each labelled with another token, and one
        // with no label.
        let logits = Tensor::f_from_slice(&row)?
            .f_view([1, 4])?
            .f_repeat([5, 1])?;
        let labels = Tensor::f_from_slice(&[0i64, 1, 2, 3, -100])?;
        let logps = Vec::<f64>::try_from(
            label_logps(&logits, &labels, temperature)?.f_to_kind(Kind::Double)?,
        )?;
        for (k, &s) in share.iter().enumerate() {
            let p = logps[k].exp();
            assert!(
                (p - s).abs() < 1e-4,
                "token {k}: exp(log-prob) {p} vs sampled share {s}"
            );
        }
        assert_eq!(logps[4], 0.0, "no label, no log-prob");
        Ok(())
    }
}
