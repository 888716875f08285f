//! The training loop every command shares (pretrain, sft, dpo, reward). An [`Objective`]
//! says what a micro-batch is and how its loss is computed; the [`Engine`] owns the model,
//! AdamW, checkpoints, resume, metrics.jsonl and the progress bar. Each optimizer step
//! accumulates `grad_accum` micro-batches whose summed losses are divided by the step's true
//! number of units (target tokens, supervised tokens, pairs), clips the global gradient
//! norm, applies AdamW at the scheduled rate, and writes a JSON line of metrics. Started as
//! several processes (torchrun, srun), every rank runs this loop on its rows of each step
//! and the gradients are summed across ranks before the norm ([`parallel`]).
//!
//! Beside the loop live what every command shares: the run configuration, the device
//! choice, the optimizer, the errors a user can act on, and the seeded hashes that make
//! every random choice.

pub mod config;
pub mod device;
pub mod error;
pub mod objective;
pub mod optim;
pub mod parallel;
pub mod report;
pub mod resume;
pub mod seed;
pub mod zero;

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use format::TokenizerInfo;
use serde_json::{Value, json};
use tch::{Device, Kind, TchError, Tensor};

use crate::engine::config::{NonFinitePolicy, RunConfig};
use crate::engine::error::{TrainError, explain_torch_error};
use crate::engine::optim::{AdamW, learning_rate};
use crate::engine::parallel::DataParallel;
use crate::engine::resume::{check_resumable, open_metrics};
use crate::engine::seed::mix;
use crate::engine::zero::{Owners, write_shards};
use crate::io::checkpoint::{
    self, CHECKPOINTS_DIR, Checkpoint, CheckpointData, DataCursor, OptimizerState, TrainerState,
    WriteFault,
};
use crate::io::tensorboard::EventWriter;
use crate::model::language_model::LanguageModel;
use crate::model::lora::{self, AdapterMode};
use crate::post::config::PostSettings;

pub const METRICS_FILE: &str = "metrics.jsonl";

pub use crate::engine::objective::{Evaluation, MicroBatch, MicroStats, NamedSums, Objective};
pub use crate::engine::report::{StepReport, Summary};

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

/// What a run starts from.
#[derive(Debug)]
pub struct Start {
    pub config: RunConfig,
    pub post: Option<PostSettings>,
    /// The initial model (fresh, or the post-training base with its additions).
    pub model: LanguageModel,
    pub tokenizer_info: TokenizerInfo,
    /// The tokenizer file copied into every checkpoint.
    pub tokenizer_path: PathBuf,
    /// The data-parallel job this process is a rank of; None alone.
    pub parallel: Option<DataParallel>,
}

/// A run in progress: model, optimizer, counters, output files.
#[derive(Debug)]
pub struct Engine {
    config: RunConfig,
    post: Option<PostSettings>,
    model: LanguageModel,
    optim: AdamW,
    tokenizer_info: TokenizerInfo,
    tokenizer_path: PathBuf,
    step: u64,
    tokens_seen: u64,
    last_loss: Option<f64>,
    last_val_loss: Option<f64>,
    last_checkpoint: Option<PathBuf>,
    /// metrics.jsonl and the TensorBoard event file: rank 0's only.
    metrics: Option<(File, EventWriter)>,
    faults: Faults,
    parallel: Option<DataParallel>,
    /// ZeRO-1: who updates each parameter (None: every rank updates all).
    zero: Option<Owners>,
}

impl Engine {
    /// Prepares the output directory and, when resuming, restores weights, optimizer and
    /// counters from the checkpoint.
    pub fn new(start: Start, resume: Resume, faults: Faults) -> Result<Self> {
        let Start {
            config,
            post,
            model,
            tokenizer_info,
            tokenizer_path,
            parallel,
        } = start;
        let main = parallel.as_ref().is_none_or(|p| p.world().is_main());
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
        let mut optim = AdamW::new(model.trainable_tensors(), &config.optim)?;
        if main {
            fs::create_dir_all(&config.train.out)
                .with_context(|| format!("creating {}", config.train.out.display()))?;
        }
        let metrics_path = config.train.out.join(METRICS_FILE);

        let mut trainer_state = None;
        if let Some(dir) = &resume_from {
            let ckpt = Checkpoint::load(dir)?;
            let ranks = parallel.as_ref().map_or(1, DataParallel::size);
            check_resumable(&ckpt, &config, post.as_ref(), ranks)?;
            match &ckpt.adapter {
                Some(adapter) => {
                    model.load_trainable(adapter, &dir.join(lora::ADAPTER_FILE))?;
                }
                None => model.load_tensors(&ckpt.model, &dir.join(checkpoint::MODEL_FILE))?,
            }
            optim
                .load_state(&ckpt.optimizer_state()?, ckpt.state.optimizer_updates)
                .with_context(|| format!("restoring the optimizer from {}", dir.display()))?;
            tracing::info!(checkpoint = %dir.display(), step = ckpt.state.step, "resuming");
            trainer_state = Some(ckpt.state);
        }
        if let Some(dp) = &parallel {
            let step = trainer_state.as_ref().map_or(0, |s| s.step);
            dp.check_same_start(&config, post.as_ref(), step)?;
            // Every rank starts from rank 0's weights and moments.
            let mut tensors: Vec<Tensor> = model
                .trainable_tensors()
                .into_iter()
                .map(|(_, t)| t)
                .collect();
            tensors.extend(optim.state_tensors().into_iter().map(|(_, t)| t));
            dp.broadcast_from_main(&tensors)?;
        }
        let zero = match &parallel {
            Some(dp) if config.train.zero == 1 => {
                let owners = Owners::new(optim.params(), dp.size());
                optim.shard(|name| owners.owner(name) == Some(dp.rank()));
                Some(owners)
            }
            _ => None,
        };
        let metrics = if main {
            let metrics = open_metrics(&metrics_path, trainer_state.as_ref().map(|s| s.step))?;
            Some((metrics, EventWriter::create(&config.train.out)?))
        } else {
            None
        };
        let mut engine = Self {
            config,
            post,
            model,
            optim,
            tokenizer_info,
            tokenizer_path,
            step: 0,
            tokens_seen: 0,
            last_loss: None,
            last_val_loss: None,
            last_checkpoint: resume_from,
            metrics,
            faults,
            parallel,
            zero,
        };
        if let Some(state) = trainer_state {
            engine.step = state.step;
            engine.tokens_seen = state.data.tokens_seen;
            engine.last_loss = state.last_loss;
            engine.last_val_loss = state.last_val_loss;
        }
        Ok(engine)
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

    pub fn tokenizer_info(&self) -> &TokenizerInfo {
        &self.tokenizer_info
    }

    /// The data-parallel job this run is a rank of, if any.
    pub fn parallel(&self) -> Option<&DataParallel> {
        self.parallel.as_ref()
    }

    /// Whether this process writes checkpoints, metrics and progress (rank 0, or alone).
    pub fn is_main(&self) -> bool {
        self.parallel.as_ref().is_none_or(|p| p.world().is_main())
    }

    /// Ranks in the job (1 alone).
    pub fn world_size(&self) -> u64 {
        self.parallel.as_ref().map_or(1, DataParallel::size)
    }

    /// One optimizer step over `grad_accum` micro-batches.
    pub fn train_step<O: Objective>(&mut self, objective: &mut O) -> Result<StepReport> {
        let started = Instant::now();
        let step = self.step + 1;
        let accum = self.config.train.grad_accum as u64;
        let (rank, world) = match &self.parallel {
            Some(dp) => {
                dp.set_progress(step);
                (dp.rank(), dp.size())
            }
            None => (0, 1),
        };
        let mut batches = (0..accum)
            .map(|micro| {
                objective.batch(MicroBatch {
                    step,
                    micro,
                    accum,
                    rank,
                    world,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut units: f64 = batches.iter().map(|b| objective.units(b)).sum();
        let mut comm = 0.0;
        if let Some(dp) = &self.parallel {
            // The loss is normalised by the whole job's units.
            let t = Instant::now();
            units = dp
                .sum(&[units])
                .with_context(|| format!("step {step}: summing the job's units"))?[0];
            comm += t.elapsed().as_secs_f64();
        }
        ensure!(units > 0.0, "step {step} has nothing to train on");
        objective
            .prepare(&self.model, &mut batches, self.parallel.as_ref())
            .with_context(|| format!("step {step}: preparing the micro-batches"))?;
        self.optim.zero_grad();
        // Adapter dropout is the only randomness after initialisation: seeded by (seed, step),
        // and by the rank in a job of several (their rows differ, so should their masks).
        let seed = match rank {
            0 => mix(&[self.config.train.seed, step]),
            _ => mix(&[self.config.train.seed, step, rank]),
        };
        tch::manual_seed((seed >> 1) as i64);
        let device = self.model.device();
        let model = &self.model;
        let (loss_sum, sums, tokens) = model
            .with_adapters(AdapterMode::Train, || {
                let mut total = Tensor::f_zeros([], (Kind::Float, device))?;
                let mut sums: NamedSums = Vec::new();
                let mut tokens = 0i64;
                for batch in &batches {
                    let stats = objective.backward(model, batch, units)?;
                    total = total.f_add(&stats.loss_sum.f_to_kind(Kind::Float)?)?;
                    tokens += stats.tokens;
                    for (name, value) in stats.sums {
                        match sums.iter_mut().find(|(n, _)| *n == name) {
                            Some((_, acc)) => *acc = acc.f_add(&value)?,
                            None => sums.push((name, value)),
                        }
                    }
                }
                Ok::<_, TchError>((total, sums, tokens))
            })
            .map_err(|e| explain_torch_error(e, &self.config, step))?;
        let mut totals = vec![f64::try_from(loss_sum)?, tokens as f64];
        for (_, sum) in &sums {
            totals.push(f64::try_from(sum)?);
        }
        if let Some(dp) = &self.parallel {
            let t = Instant::now();
            dp.all_reduce_grads(self.optim.params())
                .with_context(|| format!("step {step}: summing the gradients"))?;
            totals = dp
                .sum(&totals)
                .with_context(|| format!("step {step}: summing the losses"))?;
            comm += t.elapsed().as_secs_f64();
        }
        let loss = totals[0] / units;
        let tokens = totals[1] as i64;
        let metrics = sums
            .iter()
            .zip(&totals[2..])
            .map(|((name, _), sum)| (*name, sum / units))
            .collect();
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
            if let (Some(owners), Some(dp)) = (&self.zero, &self.parallel) {
                let t = Instant::now();
                owners
                    .gather_params(dp, self.optim.params())
                    .with_context(|| format!("step {step}: gathering the ZeRO-1 shards"))?;
                comm += t.elapsed().as_secs_f64();
            }
            self.last_loss = Some(loss);
        } else {
            tracing::warn!(step, loss, grad_norm, "non-finite step skipped");
        }
        self.optim.zero_grad();
        self.step = step;
        self.tokens_seen += tokens as u64;
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
            comm_seconds: comm,
            tokens: tokens as u64,
            metrics,
        })
    }

    /// Writes a checkpoint of the current step: the whole model, or with LoRA only the
    /// trainable tensors as `adapter.safetensors` with `adapter_config.json`. Rank 0 writes
    /// for the job (every rank holds the same weights); the others return its directory.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        let root = self.config.train.out.join(CHECKPOINTS_DIR);
        // ZeRO-1: every rank writes its own moments; rank 0 adds the manifest.
        let optimizer = match (&self.zero, &self.parallel) {
            (Some(_), Some(dp)) => write_shards(dp, &root, self.step, &self.optim)?,
            _ => OptimizerState::Whole(self.optim.state_tensors()),
        };
        if !self.is_main() {
            let dir = self
                .config
                .train
                .out
                .join(CHECKPOINTS_DIR)
                .join(checkpoint::step_dir_name(self.step));
            self.last_checkpoint = Some(dir.clone());
            return Ok(dir);
        }
        let state = TrainerState {
            step: self.step,
            optimizer_updates: self.optim.steps(),
            seed: self.config.train.seed,
            data: DataCursor {
                samples_seen: self.step
                    * (self.config.train.grad_accum * self.config.train.micro_batch_size) as u64
                    * self.world_size(),
                tokens_seen: self.tokens_seen,
            },
            world_size: self.world_size(),
            last_loss: self.last_loss,
            last_val_loss: self.last_val_loss,
            tokenizer: self.tokenizer_info.clone(),
            config: self.config.clone(),
            post: self.post.clone(),
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            trainer_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let fault = if self.faults.abort_in_checkpoint == Some(self.step) {
            WriteFault::AbortMidway
        } else {
            WriteFault::None
        };
        let (model, weights_file, extra_files) = match (self.model.lora(), &self.post) {
            (Some(lora), Some(post)) => {
                let adapter = self
                    .model
                    .trainable_tensors()
                    .into_iter()
                    .map(|(n, t)| (lora::to_peft_name(&n), t))
                    .collect();
                let config = lora.peft_config(&post.init_from.display().to_string());
                (
                    adapter,
                    lora::ADAPTER_FILE,
                    vec![(
                        lora::ADAPTER_CONFIG_FILE,
                        serde_json::to_vec_pretty(&config)?,
                    )],
                )
            }
            _ => (
                self.model.named_tensors(),
                checkpoint::MODEL_FILE,
                Vec::new(),
            ),
        };
        let data = CheckpointData {
            model,
            weights_file,
            extra_files,
            optimizer,
            state: &state,
            tokenizer_file: &self.tokenizer_path,
        };
        let dir = checkpoint::save(&root, &data, self.config.checkpoint.keep_last, fault)?;
        self.last_checkpoint = Some(dir.clone());
        Ok(dir)
    }

    /// Appends a line to metrics.jsonl and its numbers to the TensorBoard event file (rank 0
    /// only; a no-op on the other ranks).
    pub fn log(&mut self, value: Value) -> Result<()> {
        let Some((metrics, events)) = &mut self.metrics else {
            return Ok(());
        };
        writeln!(metrics, "{value}")
            .and_then(|()| metrics.flush())
            .context("writing metrics.jsonl")?;
        events.write_line(&value)
    }

    /// Evaluates and logs an `eval` line.
    pub fn evaluate<O: Objective>(&mut self, objective: &mut O) -> Result<Option<Evaluation>> {
        let Some(eval) = tch::no_grad(|| objective.evaluate(&self.model))? else {
            return Ok(None);
        };
        self.last_val_loss = Some(eval.loss);
        let mut line = json!({"kind": "eval", "step": self.step, "val_loss": eval.loss});
        for (k, v) in &eval.fields {
            line[k] = v.clone();
        }
        self.log(line)?;
        Ok(Some(eval))
    }

    /// Trains until `train.steps`, with evaluation, samples and checkpoints on schedule.
    pub fn run<O: Objective>(&mut self, objective: &mut O) -> Result<Summary> {
        let total = self.config.train.steps;
        let started = Instant::now();
        let tokens_at_start = self.tokens_seen;
        let flops_per_token = self
            .model
            .config()
            .flops_per_token(self.config.data.seq_len);
        let device = self.model.device();
        let bar = if self.is_main() {
            indicatif::ProgressBar::new(total).with_position(self.step)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        tracing::info!(
            params = self.model.num_params(),
            trainable = self.optim.params().iter().map(|(_, t)| t.numel()).sum::<usize>(),
            device = ?device,
            kind = ?self.model.kind(),
            ranks = self.world_size(),
            from_step = self.step,
            steps = total,
            "training"
        );
        if self.config.eval.at_start && self.step == 0 {
            self.evaluate(objective)?;
        }
        while self.step < total {
            let report = self.train_step(objective)?;
            let step = report.step;
            let tokens_per_s = report.tokens as f64 / report.seconds.max(1e-9);
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
            for (name, value) in &report.metrics {
                line[*name] = json!(value);
            }
            if device.is_cuda() {
                // The whole job's tokens over the whole job's peak.
                let peak = self.config.train.gpu_peak_tflops * 1e12 * self.world_size() as f64;
                line["mfu"] = json!(tokens_per_s * flops_per_token / peak);
            }
            if report.skipped {
                line["skipped"] = json!(true);
            }
            if self.parallel.is_some() {
                line["comm_s"] = json!(report.comm_seconds);
            }
            self.log(line)?;
            bar.set_position(step);
            bar.set_message(format!(
                "loss {:.4} lr {:.2e} |g| {:.3} {:.0} tok/s",
                report.loss, report.lr, report.grad_norm, tokens_per_s
            ));
            let at = |every: u64| step == total || (every > 0 && step % every == 0);
            if at(self.config.eval.every)
                && let Some(eval) = self.evaluate(objective)?
            {
                bar.suspend(|| tracing::info!(step, val_loss = eval.loss, "evaluation"));
            }
            let every = self.config.sample.every;
            if every > 0
                && step % every == 0
                && self.is_main()
                && let Some(text) = objective.sample(&self.model, step)?
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
            tokens: self.tokens_seen - tokens_at_start,
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
