//! `trainer pretrain`: next-token prediction on windows of a `pretrain` dataset (`data`), run
//! by the shared [`Engine`]. The loss of a step is its summed cross-entropy divided by its
//! true number of target tokens; validation, samples and checkpoints come at their intervals.
//! `trainer bench` (`bench`) times this same step on random tokens.

pub mod bench;
pub mod data;

use std::path::PathBuf;

use anyhow::Result;
use format::TokenizerInfo;
use tch::TchError;

use crate::engine::config::{DataOrder, RunConfig, SampleSettings};
use crate::engine::error::TrainError;
use crate::engine::parallel::DataParallel;
use crate::engine::seed::mix;
use crate::engine::{
    Engine, Evaluation, Faults, MicroBatch, MicroStats, Objective, Resume, Start, StepReport,
    Summary,
};
use crate::model::language_model::{LanguageModel, compute_kind};
use crate::model::sample::{SamplingParams, generate_text};
use crate::model::tokenizer::TextTokenizer;
use crate::pretrain::data::{Batch, TokenStream, WindowSampler};

/// The pretraining objective: windows in, mean next-token cross-entropy out.
#[derive(Debug)]
pub struct Pretrain {
    train: WindowSampler,
    valid: Option<WindowSampler>,
    eval_batches: u64,
    text: Option<TextTokenizer>,
    tokenizer_info: TokenizerInfo,
    sample: SampleSettings,
    seed: u64,
    /// Log-probabilities of the training tokens' unigram distribution, when there is
    /// validation data: each `eval` line carries the loss of that baseline on the same
    /// windows (`unigram_loss`), so a run shows whether the model learned more than token
    /// frequencies.
    unigram: Option<Vec<f64>>,
}

/// Tokens counted for the unigram baseline (evenly spaced over larger datasets).
const UNIGRAM_SAMPLE_TOKENS: u64 = 16 << 20;

impl Objective for Pretrain {
    type Batch = Batch;

    fn batch(&mut self, at: MicroBatch) -> Result<Batch> {
        self.train.train_batch(at)
    }

    fn units(&self, batch: &Batch) -> f64 {
        batch.target_tokens as f64
    }

    fn backward(
        &mut self,
        model: &LanguageModel,
        batch: &Batch,
        units: f64,
    ) -> Result<MicroStats, TchError> {
        let loss = model.lm_loss_backward(&batch.inputs, &batch.targets, 1.0 / units)?;
        Ok(MicroStats {
            loss_sum: loss,
            sums: Vec::new(),
            tokens: batch.target_tokens,
        })
    }

    /// Mean loss over the validation windows; None without a validation dataset.
    fn evaluate(&mut self, model: &LanguageModel) -> Result<Option<Evaluation>> {
        let Some(valid) = &self.valid else {
            return Ok(None);
        };
        let (mut sum, mut count, mut unigram_sum) = (0.0, 0i64, 0.0);
        for index in 0..self.eval_batches {
            let Some(batch) = valid.eval_batch(index)? else {
                break;
            };
            sum += f64::try_from(model.lm_loss_sum(&batch.inputs, &batch.targets)?)?;
            count += batch.target_tokens;
            if let Some(log_probs) = &self.unigram {
                let ids = Vec::<i64>::try_from(batch.targets.f_flatten(0, -1)?)?;
                unigram_sum -= ids
                    .iter()
                    .map(|&t| {
                        log_probs
                            .get(t as usize)
                            .copied()
                            .unwrap_or(f64::NEG_INFINITY)
                    })
                    .sum::<f64>();
            }
        }
        let Some(mut eval) = Evaluation::per_token(sum, count) else {
            return Ok(None);
        };
        if self.unigram.is_some() {
            eval.fields.insert(
                "unigram_loss".into(),
                serde_json::json!(unigram_sum / count as f64),
            );
        }
        Ok(Some(eval))
    }

    /// A sample from the configured prompt, seeded by (seed, step).
    fn sample(&self, model: &LanguageModel, step: u64) -> Result<Option<String>> {
        let s = &self.sample;
        let Some(text) = &self.text else {
            return Ok(None);
        };
        // As `generate` does: BOS first when the dataset has it; without one an empty
        // prompt starts after an EOS, where documents start in the stream.
        let mut prompt = text.encode_prompt(&s.prompt, self.tokenizer_info.bos())?;
        if prompt.is_empty() {
            prompt = vec![self.tokenizer_info.special("eos").unwrap_or(0)];
        }
        let params = SamplingParams {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            max_tokens: s.max_tokens,
            seed: mix(&[self.seed, step]),
            stop_token: self.tokenizer_info.special("eos"),
        };
        let out = generate_text(model, &prompt, &params, true, text.byte_vocab())?;
        Ok(Some(format!("{}{}", s.prompt, text.decode(&out.tokens)?)))
    }
}

/// A pretraining run in progress.
#[derive(Debug)]
pub struct Trainer {
    engine: Engine,
    objective: Pretrain,
}

impl Trainer {
    /// Opens the datasets, builds (or restores) the model and optimizer, and prepares the
    /// output directory.
    pub fn new(mut config: RunConfig, resume: Resume, faults: Faults) -> Result<Self> {
        config.validate_settings()?;
        if let Some(threads) = config.train.threads {
            tch::set_num_threads(threads);
        }
        let device = config.train.device.resolve()?;
        let parallel = DataParallel::from_env(config.train.collective_timeout_s, device)?;
        let device = DataParallel::device(parallel.as_ref(), device);
        let stream = TokenStream::open(&config.data.train)?;
        let info = stream.tokenizer().clone();
        let dataset_vocab = i64::from(info.vocab_size);
        if config.model.vocab_size == 0 {
            config.model.vocab_size = dataset_vocab;
        }
        if config.model.vocab_size != dataset_vocab {
            return Err(TrainError::VocabMismatch {
                dataset: config.data.train.clone(),
                dataset_vocab,
                model_vocab: config.model.vocab_size,
            }
            .into());
        }
        config.model.validate()?;
        let tokenizer_path: PathBuf = config.data.train.join(&info.file);
        let valid = match &config.data.valid {
            Some(dir) => {
                let stream = TokenStream::open(dir)?;
                let vocab = i64::from(stream.tokenizer().vocab_size);
                if vocab != dataset_vocab {
                    return Err(TrainError::VocabMismatch {
                        dataset: dir.clone(),
                        dataset_vocab: vocab,
                        model_vocab: config.model.vocab_size,
                    }
                    .into());
                }
                Some(WindowSampler::new(
                    stream,
                    config.data.seq_len,
                    config.train.micro_batch_size,
                    DataOrder::Sequential,
                    0,
                )?)
            }
            None => None,
        };
        let unigram = match valid {
            Some(_) => {
                Some(stream.unigram_log_probs(info.vocab_size as usize, UNIGRAM_SAMPLE_TOKENS)?)
            }
            None => None,
        };
        let train = WindowSampler::new(
            stream,
            config.data.seq_len,
            config.train.micro_batch_size,
            config.data.order,
            config.train.seed,
        )?
        .with_doc_starts(config.data.doc_start_fraction);
        let kind = compute_kind(config.train.precision, device);
        let model = LanguageModel::new(&config.model, device, kind, config.train.seed)?;
        let objective = Pretrain {
            train,
            valid,
            eval_batches: config.eval.batches.unwrap_or(8) as u64,
            text: TextTokenizer::from_file(&tokenizer_path).ok(),
            tokenizer_info: info.clone(),
            sample: config.sample.clone(),
            seed: config.train.seed,
            unigram,
        };
        let start = Start {
            config,
            post: None,
            model,
            tokenizer_info: info,
            tokenizer_path,
            parallel,
        };
        Ok(Self {
            engine: Engine::new(start, resume, faults)?,
            objective,
        })
    }

    pub fn config(&self) -> &RunConfig {
        self.engine.config()
    }

    pub fn model(&self) -> &LanguageModel {
        self.engine.model()
    }

    pub fn step(&self) -> u64 {
        self.engine.step()
    }

    /// One optimizer step over `grad_accum` micro-batches.
    pub fn train_step(&mut self) -> Result<StepReport> {
        self.engine.train_step(&mut self.objective)
    }

    /// Mean loss over the validation windows; None without a validation dataset.
    pub fn evaluate(&mut self) -> Result<Option<f64>> {
        Ok(tch::no_grad(|| self.objective.evaluate(self.engine.model()))?.map(|e| e.loss))
    }

    /// A sample from the configured prompt, seeded by (seed, step).
    pub fn sample_text(&self) -> Result<Option<String>> {
        self.objective
            .sample(self.engine.model(), self.engine.step())
    }

    /// Writes a checkpoint of the current step.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        self.engine.save_checkpoint()
    }

    /// Trains until `train.steps`, with validation, samples and checkpoints on schedule.
    pub fn run(&mut self) -> Result<Summary> {
        self.engine.run(&mut self.objective)
    }
}
