//! `trainer pretrain`: the training loop. Each optimizer step accumulates `grad_accum`
//! micro-batches whose summed losses are divided by the step's true number of target
//! tokens, clips the global gradient norm, applies AdamW at the scheduled rate, and writes a
//! JSON line of metrics; validation, samples and checkpoints come at their intervals.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use format::TokenizerInfo;
use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{self, Checkpoint, CheckpointData, DataCursor, TrainerState, WriteFault};
use crate::config::{NonFinitePolicy, RunConfig};
use crate::data::{TokenStream, WindowSampler, mix};
use crate::error::{TrainError, explain_torch_error};
use crate::lm::{LanguageModel, compute_kind};
use crate::optim::{AdamW, learning_rate};
use crate::sample::{SamplingParams, TextTokenizer, generate};

pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CHECKPOINTS_DIR: &str = "checkpoints";

/// Where to start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// A fresh run; refused when the output directory already holds checkpoints.
    No,
    /// The newest checkpoint under `out/checkpoints` (a fresh run when there is none).
    Latest,
    /// A given checkpoint directory.
    From(PathBuf),
}

/// Failures injected on purpose by the crash tests (hidden command-line flag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Abort the process right after this step completes (no final checkpoint).
    pub abort_after_step: Option<u64>,
    /// Abort while writing the checkpoint of this step.
    pub abort_in_checkpoint: Option<u64>,
}

/// One optimizer step's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub skipped: bool,
    pub seconds: f64,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    pub steps: u64,
    pub final_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub tokens: u64,
    pub seconds: f64,
    pub last_checkpoint: Option<PathBuf>,
}

/// A pretraining run in progress.
#[derive(Debug)]
pub struct Trainer {
    config: RunConfig,
    model: LanguageModel,
    optim: AdamW,
    train: WindowSampler,
    valid: Option<WindowSampler>,
    tokenizer_info: TokenizerInfo,
    tokenizer_path: PathBuf,
    text: Option<TextTokenizer>,
    step: u64,
    tokens_seen: u64,
    last_loss: Option<f64>,
    last_val_loss: Option<f64>,
    last_checkpoint: Option<PathBuf>,
    metrics: File,
    faults: Faults,
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
        let tokenizer_path = config.data.train.join(&info.file);
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
                    crate::config::DataOrder::Sequential,
                    0,
                )?)
            }
            None => None,
        };
        let train = WindowSampler::new(
            stream,
            config.data.seq_len,
            config.train.micro_batch_size,
            config.data.order,
            config.train.seed,
        )?;

        let ckpt_root = config.train.out.join(CHECKPOINTS_DIR);
        let resume_from = match resume {
            Resume::No => {
                if let Some(existing) = checkpoint::latest(&ckpt_root)? {
                    bail!(
                        "{} already holds checkpoints (newest {}): pass --resume to continue that run, or choose another train.out",
                        config.train.out.display(),
                        existing.display()
                    );
                }
                None
            }
            Resume::Latest => {
                let latest = checkpoint::latest(&ckpt_root)?;
                if latest.is_none() {
                    tracing::warn!(dir = %ckpt_root.display(), "no checkpoint to resume from; starting a fresh run");
                }
                latest
            }
            Resume::From(dir) => Some(dir),
        };

        let kind = compute_kind(config.train.precision, device);
        let model = LanguageModel::new(&config.model, device, kind, config.train.seed)?;
        let mut optim = AdamW::new(model.named_tensors(), &config.optim)?;
        let text = TextTokenizer::from_file(&tokenizer_path).ok();
        fs::create_dir_all(&config.train.out)
            .with_context(|| format!("creating {}", config.train.out.display()))?;
        let metrics_path = config.train.out.join(METRICS_FILE);

        let mut trainer_state = None;
        if let Some(dir) = &resume_from {
            let ckpt = Checkpoint::load(dir)?;
            let diffs = ckpt.state.config.model.differences(&config.model);
            if !diffs.is_empty() {
                return Err(TrainError::ConfigMismatch {
                    checkpoint: dir.clone(),
                    fields: diffs.join(", "),
                }
                .into());
            }
            let (saved, now) = (&ckpt.state.config, &config);
            if saved.data.seq_len != now.data.seq_len
                || saved.data.order != now.data.order
                || saved.train.seed != now.train.seed
                || saved.train.micro_batch_size != now.train.micro_batch_size
                || saved.train.grad_accum != now.train.grad_accum
                || saved.optim != now.optim
            {
                tracing::warn!(
                    checkpoint = %dir.display(),
                    "data, batch or optimizer settings differ from the checkpoint's: the resumed run will not match an uninterrupted one"
                );
            }
            model.load_tensors(&ckpt.model, &dir.join(checkpoint::MODEL_FILE))?;
            optim
                .load_state(&ckpt.optimizer_state()?, ckpt.state.optimizer_updates)
                .with_context(|| format!("restoring the optimizer from {}", dir.display()))?;
            tracing::info!(checkpoint = %dir.display(), step = ckpt.state.step, "resuming");
            trainer_state = Some(ckpt.state);
        }
        let metrics = open_metrics(&metrics_path, trainer_state.as_ref().map(|s| s.step))?;
        let mut trainer = Self {
            model,
            optim,
            train,
            valid,
            tokenizer_info: info,
            tokenizer_path,
            text,
            step: 0,
            tokens_seen: 0,
            last_loss: None,
            last_val_loss: None,
            last_checkpoint: resume_from,
            metrics,
            faults,
            config,
        };
        if let Some(state) = trainer_state {
            trainer.step = state.step;
            trainer.tokens_seen = state.data.tokens_seen;
            trainer.last_loss = state.last_loss;
            trainer.last_val_loss = state.last_val_loss;
        }
        Ok(trainer)
    }

    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    pub fn model(&self) -> &LanguageModel {
        &self.model
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    /// One optimizer step over `grad_accum` micro-batches.
    pub fn train_step(&mut self) -> Result<StepReport> {
        let started = Instant::now();
        let step = self.step + 1;
        let accum = self.config.train.grad_accum as u64;
        let batches = (0..accum)
            .map(|micro| self.train.train_batch(step, micro, accum))
            .collect::<Result<Vec<_>>>()?;
        let targets: i64 = batches.iter().map(|b| b.target_tokens).sum();
        ensure!(targets > 0, "step {step} has no target tokens");
        self.optim.zero_grad();
        let device = self.model.device();
        let loss_sum = (|| -> Result<Tensor, tch::TchError> {
            let mut total = Tensor::f_zeros([], (Kind::Float, device))?;
            for batch in &batches {
                let logits = self.model.model_forward(&batch.inputs)?;
                let loss =
                    crate::model::cross_entropy_sum(&logits, &batch.targets.f_to_device(device)?)?;
                loss.f_div_scalar(targets as f64)?.f_backward()?;
                total = total.f_add(&loss.f_detach()?)?;
            }
            Ok(total)
        })()
        .map_err(|e| explain_torch_error(e, &self.config, step))?;
        let loss = f64::try_from(loss_sum)? / targets as f64;
        let grad_norm = self.optim.grad_norm()?;
        let lr = learning_rate(&self.config.optim, step, self.config.train.steps);
        let finite = loss.is_finite() && grad_norm.is_finite();
        if !finite && self.config.train.on_nonfinite == NonFinitePolicy::Stop {
            return Err(TrainError::NonFinite {
                step,
                loss,
                grad_norm,
                last_checkpoint: self.last_checkpoint.clone(),
            }
            .into());
        }
        if finite {
            self.optim
                .clip_grads(grad_norm, self.config.optim.grad_clip)?;
            self.optim.step(lr)?;
            self.last_loss = Some(loss);
        } else {
            tracing::warn!(step, loss, grad_norm, "non-finite step skipped");
        }
        self.optim.zero_grad();
        self.step = step;
        self.tokens_seen += targets as u64;
        if device.is_cuda() {
            tch::Cuda::synchronize(device_index(device));
        }
        Ok(StepReport {
            step,
            loss,
            lr,
            grad_norm,
            skipped: !finite,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Mean loss over the validation windows; None without a validation dataset.
    pub fn evaluate(&self) -> Result<Option<f64>> {
        let Some(valid) = &self.valid else {
            return Ok(None);
        };
        let batches = self.config.eval.batches.unwrap_or(8) as u64;
        let (mut sum, mut count) = (0.0, 0i64);
        tch::no_grad(|| -> Result<()> {
            for index in 0..batches {
                let Some(batch) = valid.eval_batch(index)? else {
                    break;
                };
                let logits = self.model.model_forward(&batch.inputs)?;
                let targets = batch.targets.f_to_device(self.model.device())?;
                sum += f64::try_from(crate::model::cross_entropy_sum(&logits, &targets)?)?;
                count += batch.target_tokens;
            }
            Ok(())
        })?;
        Ok((count > 0).then(|| sum / count as f64))
    }

    /// A sample from the configured prompt, seeded by (seed, step).
    pub fn sample_text(&self) -> Result<Option<String>> {
        let s = &self.config.sample;
        let Some(text) = &self.text else {
            return Ok(None);
        };
        let mut prompt = text.encode(&s.prompt)?;
        if prompt.is_empty() {
            prompt = vec![self.tokenizer_info.special("eos").unwrap_or(0)];
        }
        let params = SamplingParams {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            max_tokens: s.max_tokens,
            seed: mix(&[self.config.train.seed, self.step]),
            stop_token: self.tokenizer_info.special("eos"),
        };
        let out = generate(&self.model, &prompt, &params, true)?;
        Ok(Some(format!("{}{}", s.prompt, text.decode(&out.tokens)?)))
    }

    /// Writes a checkpoint of the current step.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        let state = TrainerState {
            step: self.step,
            optimizer_updates: self.optim.steps(),
            seed: self.config.train.seed,
            data: DataCursor {
                samples_seen: self.step
                    * (self.config.train.grad_accum * self.config.train.micro_batch_size) as u64,
                tokens_seen: self.tokens_seen,
            },
            last_loss: self.last_loss,
            last_val_loss: self.last_val_loss,
            tokenizer: self.tokenizer_info.clone(),
            config: self.config.clone(),
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            trainer_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let fault = if self.faults.abort_in_checkpoint == Some(self.step) {
            WriteFault::AbortMidway
        } else {
            WriteFault::None
        };
        let data = CheckpointData {
            model: self.model.named_tensors(),
            optimizer: self.optim.state_tensors(),
            state: &state,
            tokenizer_file: &self.tokenizer_path,
        };
        let root = self.config.train.out.join(CHECKPOINTS_DIR);
        let dir = checkpoint::save(&root, &data, self.config.checkpoint.keep_last, fault)?;
        self.last_checkpoint = Some(dir.clone());
        Ok(dir)
    }

    fn log(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.metrics, "{value}")
            .and_then(|()| self.metrics.flush())
            .context("writing metrics.jsonl")
    }

    /// Trains until `train.steps`, with validation, samples and checkpoints on schedule.
    pub fn run(&mut self) -> Result<Summary> {
        let total = self.config.train.steps;
        let started = Instant::now();
        let start_step = self.step;
        let tokens_per_step = self.config.tokens_per_step() as f64;
        let flops_per_token = self
            .model
            .config()
            .flops_per_token(self.config.data.seq_len);
        let device = self.model.device();
        let bar = indicatif::ProgressBar::new(total).with_position(self.step);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        tracing::info!(
            params = self.model.num_params(),
            device = ?device,
            kind = ?self.model.kind(),
            from_step = self.step,
            steps = total,
            "training"
        );
        while self.step < total {
            let report = self.train_step()?;
            let step = report.step;
            let tokens_per_s = tokens_per_step / report.seconds.max(1e-9);
            let mut line = json!({
                "kind": "train",
                "step": step,
                "loss": report.loss,
                "lr": report.lr,
                "grad_norm": report.grad_norm,
                "tokens": self.tokens_seen,
                "tokens_per_s": tokens_per_s,
                "step_s": report.seconds,
            });
            if device.is_cuda() {
                line["mfu"] = json!(
                    tokens_per_s * flops_per_token / (self.config.train.gpu_peak_tflops * 1e12)
                );
            }
            if report.skipped {
                line["skipped"] = json!(true);
            }
            self.log(line)?;
            bar.set_position(step);
            bar.set_message(format!(
                "loss {:.4} lr {:.2e} |g| {:.3} {:.0} tok/s",
                report.loss, report.lr, report.grad_norm, tokens_per_s
            ));
            let at = |every: u64| step == total || (every > 0 && step % every == 0);
            if self.valid.is_some()
                && at(self.config.eval.every)
                && let Some(val) = self.evaluate()?
            {
                self.last_val_loss = Some(val);
                self.log(
                    json!({"kind": "eval", "step": step, "val_loss": val, "val_ppl": val.exp()}),
                )?;
                bar.suspend(|| {
                    tracing::info!(step, val_loss = val, val_ppl = val.exp(), "validation")
                });
            }
            let every = self.config.sample.every;
            if every > 0
                && step % every == 0
                && let Some(text) = self.sample_text()?
            {
                self.log(json!({"kind": "sample", "step": step, "text": text}))?;
            }
            if at(self.config.checkpoint.every) {
                let dir = self.save_checkpoint()?;
                bar.suspend(|| tracing::info!(step, checkpoint = %dir.display(), "checkpoint"));
            }
            if self.faults.abort_after_step == Some(step) {
                std::process::abort();
            }
        }
        bar.finish_and_clear();
        Ok(Summary {
            steps: self.step,
            final_loss: self.last_loss,
            val_loss: self.last_val_loss,
            tokens: (self.step - start_step) * tokens_per_step as u64,
            seconds: started.elapsed().as_secs_f64(),
            last_checkpoint: self.last_checkpoint.clone(),
        })
    }
}

fn device_index(device: Device) -> i64 {
    match device {
        Device::Cuda(i) => i as i64,
        _ => 0,
    }
}

/// Opens metrics.jsonl for appending; on resume, first drops lines past the resumed step
/// (written by the interrupted run after its last checkpoint).
fn open_metrics(path: &Path, resumed_at: Option<u64>) -> Result<File> {
    let kept = match (resumed_at, File::open(path)) {
        (Some(step), Ok(file)) => {
            let mut kept = String::new();
            for line in BufReader::new(file).lines() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                let line_step = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v["step"].as_u64());
                if line_step.is_some_and(|s| s <= step) {
                    kept.push_str(&line);
                    kept.push('\n');
                }
            }
            kept
        }
        _ => String::new(),
    };
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(kept.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(file)
}
