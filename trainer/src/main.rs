//! `trainer`: command-line entry point; parses arguments and calls into the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use trainer::config::{DataConfig, Precision, RunConfig, TrainSettings};
use trainer::device::{DeviceChoice, runtime_info};
use trainer::engine::Summary;
use trainer::post_config::{PostConfig, Task};
use trainer::train::{Faults, Resume, Trainer};

/// The jielong trainer: Llama-style language models on libtorch, on a GPU or the CPU.
#[derive(Debug, Parser)]
#[command(name = "trainer", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The config overrides every training command takes.
#[derive(Debug, clap::Args)]
struct RunOverrides {
    /// Override data.train.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Override data.valid.
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Override train.out.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override train.steps.
    #[arg(long)]
    steps: Option<u64>,
    /// Override train.device.
    #[arg(long)]
    device: Option<DeviceChoice>,
}

impl RunOverrides {
    fn apply(self, data: &mut DataConfig, train: &mut TrainSettings) {
        if let Some(train_data) = self.data {
            data.train = train_data;
        }
        if self.valid.is_some() {
            data.valid = self.valid;
        }
        if let Some(out) = self.out {
            train.out = out;
        }
        if let Some(steps) = self.steps {
            train.steps = steps;
        }
        if let Some(device) = self.device {
            train.device = device;
        }
    }
}

/// Options shared by `sft`, `dpo` and `reward`.
#[derive(Debug, clap::Args)]
struct PostArgs {
    /// Run configuration (TOML): init_from, [data], [optim], [train], optionally [lora],
    /// [checkpoint], [eval] and the command's own section (configs/trainer/*-tiny.toml).
    #[arg(long)]
    config: PathBuf,
    /// Continue from the newest checkpoint in the output directory.
    #[arg(long, conflicts_with = "resume_from")]
    resume: bool,
    /// Continue from this checkpoint directory.
    #[arg(long)]
    resume_from: Option<PathBuf>,
    /// Override init_from: a checkpoint, an export-hf directory, or a run directory (its
    /// newest checkpoint).
    #[arg(long)]
    init_from: Option<PathBuf>,
    #[command(flatten)]
    overrides: RunOverrides,
    /// Crash tests only: abort the process right after this step.
    #[arg(long, hide = true)]
    abort_after_step: Option<u64>,
}

impl PostArgs {
    /// The config file with the command-line overrides applied, and where to start.
    fn load(self, task: Task) -> Result<(PostConfig, Resume, Faults)> {
        let mut config = PostConfig::load(&self.config, task)?;
        if let Some(init_from) = self.init_from {
            config.init_from = init_from;
        }
        config.init_from = trainer::checkpoint::resolve_run_dir(&config.init_from)?;
        self.overrides.apply(&mut config.data, &mut config.train);
        let faults = Faults {
            abort_after_step: self.abort_after_step,
            abort_in_checkpoint: None,
        };
        Ok((config, resume_choice(self.resume, self.resume_from), faults))
    }
}

fn resume_choice(latest: bool, from: Option<PathBuf>) -> Resume {
    match (latest, from) {
        (_, Some(dir)) => Resume::From(dir),
        (true, None) => Resume::Latest,
        (false, None) => Resume::No,
    }
}

fn print_summary(summary: &Summary) {
    println!(
        "trained to step {} in {:.1}s ({} tokens this run, {:.0} tokens/s); final loss {}, validation loss {}",
        summary.steps,
        summary.seconds,
        summary.tokens,
        summary.tokens as f64 / summary.seconds.max(1e-9),
        summary.final_loss.map_or("-".into(), |l| format!("{l:.4}")),
        summary.val_loss.map_or("-".into(), |l| format!("{l:.4}")),
    );
    if let Some(dir) = &summary.last_checkpoint {
        println!("checkpoint: {}", dir.display());
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what libtorch sees (CUDA devices, cuDNN, CPU threads) and run a small matmul on
    /// the chosen device to prove the install works.
    Info {
        /// auto (first GPU if any, else CPU), cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Pretrain a model on a pretrain dataset (configs/trainer/*.toml). Writes
    /// OUT/metrics.jsonl and OUT/checkpoints/step-N/.
    Pretrain {
        /// Run configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Continue from the newest checkpoint in the output directory.
        #[arg(long, conflicts_with = "resume_from")]
        resume: bool,
        /// Continue from this checkpoint directory.
        #[arg(long)]
        resume_from: Option<PathBuf>,
        #[command(flatten)]
        overrides: RunOverrides,
        /// Crash tests only: abort the process right after this step.
        #[arg(long, hide = true)]
        abort_after_step: Option<u64>,
        /// Crash tests only: abort while writing this step's checkpoint.
        #[arg(long, hide = true)]
        abort_in_checkpoint: Option<u64>,
    },
    /// Continue a prompt with a checkpoint or a Hugging Face export.
    Generate {
        /// A checkpoint directory (step-N) or an export-hf directory.
        model: PathBuf,
        #[arg(long, default_value = "")]
        prompt: String,
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        /// 0 for greedy decoding.
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        /// Keep the k most likely tokens (0: all).
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 0.95)]
        top_p: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Recompute the whole prefix at every token instead of using the KV cache.
        #[arg(long)]
        no_cache: bool,
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Print JSON (prompt ids, generated ids, text) instead of the text.
        #[arg(long)]
        json: bool,
    },
    /// Measure training tokens/s (and MFU on CUDA) and peak memory of a config's model and
    /// training step, on random tokens.
    Bench {
        /// Run configuration (TOML); its data paths are not used.
        #[arg(long)]
        config: PathBuf,
        /// Timed optimizer steps.
        #[arg(long, default_value_t = 10)]
        steps: u64,
        /// Untimed steps first (allocator warm-up, kernel selection).
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        #[arg(long)]
        device: Option<DeviceChoice>,
        /// CPU threads for libtorch.
        #[arg(long)]
        threads: Option<i32>,
        /// Override train.micro_batch_size.
        #[arg(long)]
        micro_batch_size: Option<i64>,
        /// Override train.grad_accum.
        #[arg(long)]
        grad_accum: Option<i64>,
        /// Override data.seq_len.
        #[arg(long)]
        seq_len: Option<i64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Supervised fine-tuning on an sft dataset (loss on the assistant's tokens only), full
    /// or with LoRA adapters ([lora] in the config), starting from `init_from`.
    Sft(PostArgs),
    /// Direct Preference Optimization on a preference dataset, starting from `init_from`
    /// (full or LoRA). Reference log-probs are computed once and cached ([dpo] cache_dir).
    Dpo(PostArgs),
    /// Train a reward model (the decoder plus a scalar head on the last token) on a
    /// preference dataset with the Bradley-Terry loss; accuracy on held-out pairs.
    Reward(PostArgs),
    /// Score (prompt, answer) rows with a reward model: reads JSONL lines
    /// {"id", "prompt": "text" or [messages], "answer": "text"} and writes {"id", "score"}.
    Score {
        /// A reward-model checkpoint (or its export-hf directory).
        #[arg(long)]
        model: PathBuf,
        /// Input JSONL.
        #[arg(long)]
        input: PathBuf,
        /// Output JSONL (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Fold a LoRA checkpoint's adapters into its base (fp32) and write a full checkpoint
    /// directory that export-hf, generate and further training accept.
    MergeLora {
        /// The base model: a checkpoint or export-hf directory (normally the adapter's
        /// init_from).
        #[arg(long)]
        base: PathBuf,
        /// The LoRA checkpoint (holds adapter.safetensors).
        #[arg(long)]
        adapter: PathBuf,
        /// Output checkpoint directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Answer prompts with a checkpoint and post the answers to the labeler as comparison
    /// items ("which answer is better?"), k different answers per prompt, each with its
    /// model, checkpoint id and sampling settings. Prompts come from a labeler project
    /// (--from-project) or a JSONL file (--prompts). Running it again with the same
    /// checkpoint creates nothing new: items are named <prompt>@<checkpoint id>, and prompts
    /// the target project already has an item for are not generated again.
    #[command(group(clap::ArgGroup::new("prompt_source").required(true).args(["from_project", "prompts"])))]
    GenerateCandidates {
        /// A checkpoint directory (step-N) or an export-hf directory; trained with the chat
        /// template, since prompts are rendered with it.
        #[arg(long)]
        model: PathBuf,
        /// The labeler's base URL.
        #[arg(long, env = "LABELER_URL", default_value = "http://127.0.0.1:8080")]
        labeler: String,
        /// An admin's API token (`labeler token create USER`).
        #[arg(long, env = "LABELER_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Take the prompts of this labeler project (any kind).
        #[arg(long)]
        from_project: Option<i64>,
        /// Take the prompts of this JSONL file: {"id"?, "prompt": "text" | [{"role", "content"}], "meta"?} per line.
        #[arg(long)]
        prompts: Option<PathBuf>,
        /// The preference project that receives the comparison items.
        #[arg(long, required_unless_present = "dry_run")]
        to_project: Option<i64>,
        /// Different answers per prompt (2-16).
        #[arg(long, default_value_t = 2)]
        k: usize,
        /// Longest answer in tokens (an answer normally ends at <|end|> before).
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// Must be above 0: greedy decoding gives one answer.
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        /// Keep the k most likely tokens (0: all).
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Keep the most likely tokens up to this probability mass (1: all).
        #[arg(long, default_value_t = 0.95)]
        top_p: f64,
        /// Base seed; each sample's seed derives from (seed, prompt, attempt), so a rerun
        /// samples the same answers.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Samples per prompt before giving up on k different answers (default 4k).
        #[arg(long)]
        max_attempts: Option<usize>,
        /// Items per POST to the labeler.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Answer at most this many prompts.
        #[arg(long)]
        limit: Option<usize>,
        /// Name recorded as the candidates' model (default: the run's directory name).
        #[arg(long)]
        model_name: Option<String>,
        /// Generate but post nothing (use with --output to look at the items).
        #[arg(long)]
        dry_run: bool,
        /// Also write the items as JSONL, in the labeler's import format.
        #[arg(long)]
        output: Option<PathBuf>,
        /// CPU threads for libtorch (default: libtorch's choice). One thread is fastest for
        /// small models, whose single-token steps are too small to split.
        #[arg(long)]
        threads: Option<i32>,
        /// auto (first GPU if any, else CPU), cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Write a checkpoint as a Hugging Face directory (LlamaForCausalLM; a reward model as
    /// LlamaForSequenceClassification; LoRA adapters folded in).
    ExportHf {
        /// A checkpoint directory (step-N).
        checkpoint: PathBuf,
        /// Output directory.
        out: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Info { device, json } => {
            let info = runtime_info(device)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!(
                    "jielong trainer {}, libtorch via tch 0.24",
                    env!("CARGO_PKG_VERSION")
                );
                println!("  CUDA available : {}", info.cuda_available);
                println!("  CUDA devices   : {}", info.cuda_devices);
                println!("  cuDNN          : {}", info.cudnn_available);
                println!("  CPU threads    : {}", info.cpu_threads);
                println!("  device         : {}", info.selected_device);
                println!("  smoke test     : {}", info.smoke_test);
            }
        }
        Command::Pretrain {
            config,
            resume,
            resume_from,
            overrides,
            abort_after_step,
            abort_in_checkpoint,
        } => {
            let mut run = RunConfig::load(&config)?;
            overrides.apply(&mut run.data, &mut run.train);
            let faults = Faults {
                abort_after_step,
                abort_in_checkpoint,
            };
            let mut trainer = Trainer::new(run, resume_choice(resume, resume_from), faults)?;
            print_summary(&trainer.run()?);
        }
        Command::Sft(args) => {
            let (config, resume, faults) = args.load(Task::Sft)?;
            print_summary(&trainer::sft::run(&config, resume, faults)?);
        }
        Command::Dpo(args) => {
            let (config, resume, faults) = args.load(Task::Dpo)?;
            let run = trainer::dpo::run(&config, resume, faults)?;
            print_summary(&run.summary);
            println!(
                "reference forward passes: {} (cache {})",
                run.reference_forward_passes,
                run.cache.display()
            );
        }
        Command::Reward(args) => {
            let (config, resume, faults) = args.load(Task::Reward)?;
            print_summary(&trainer::reward::run(&config, resume, faults)?);
        }
        Command::Score {
            model,
            input,
            output,
            device,
        } => {
            let device = device.resolve()?;
            let report = match &output {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut out = std::io::BufWriter::new(file);
                    let report = trainer::reward::score(&model, &input, &mut out, device)?;
                    std::io::Write::flush(&mut out)
                        .with_context(|| format!("writing {}", path.display()))?;
                    report
                }
                None => trainer::reward::score(&model, &input, &mut std::io::stdout(), device)?,
            };
            eprintln!("scored {} rows, {} failed", report.scored, report.failed);
            if report.failed > 0 {
                anyhow::bail!(
                    "{} rows of {} could not be scored",
                    report.failed,
                    input.display()
                );
            }
        }
        Command::MergeLora { base, adapter, out } => {
            trainer::post::merge_lora(&base, &adapter, &out).with_context(|| {
                format!(
                    "merging {} into {} as {}",
                    adapter.display(),
                    base.display(),
                    out.display()
                )
            })?;
            println!("merged {} into {}", adapter.display(), out.display());
        }
        Command::Generate {
            model,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            no_cache,
            device,
            json,
        } => {
            let out = trainer::sample::generate_from_dir(
                &model,
                &prompt,
                trainer::sample::SamplingParams {
                    temperature,
                    top_k,
                    top_p,
                    max_tokens,
                    seed,
                    stop_token: None,
                },
                !no_cache,
                device.resolve()?,
                Precision::Auto,
            )
            .with_context(|| format!("generating with {}", model.display()))?;
            if json {
                println!("{}", serde_json::to_string(&out)?);
            } else {
                println!("{}{}", prompt, out.text);
            }
        }
        Command::Bench {
            config,
            steps,
            warmup,
            device,
            threads,
            micro_batch_size,
            grad_accum,
            seq_len,
            json,
        } => {
            let mut run = RunConfig::load(&config)?;
            if let Some(device) = device {
                run.train.device = device;
            }
            if threads.is_some() {
                run.train.threads = threads;
            }
            if let Some(b) = micro_batch_size {
                run.train.micro_batch_size = b;
            }
            if let Some(a) = grad_accum {
                run.train.grad_accum = a;
            }
            if let Some(t) = seq_len {
                run.data.seq_len = t;
            }
            run.validate_settings()?;
            let report = trainer::bench::run(run, warmup, steps)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{}: {} params on {} ({}), {} threads, {} tokens/step (seq {} x micro {} x accum {})",
                    config.display(),
                    report.params,
                    report.device,
                    report.compute,
                    report.threads,
                    report.tokens_per_step,
                    report.seq_len,
                    report.micro_batch_size,
                    report.grad_accum
                );
                println!(
                    "  {:.0} tokens/s, {:.1} ms/step over {} steps{}; peak RSS {:.0} MiB",
                    report.tokens_per_s,
                    report.step_ms,
                    report.steps,
                    report
                        .mfu
                        .map_or(String::new(), |m| format!(", MFU {:.1}%", m * 100.0)),
                    report.peak_rss_mib
                );
            }
        }
        Command::GenerateCandidates {
            model,
            labeler,
            token,
            from_project,
            prompts,
            to_project,
            k,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            max_attempts,
            batch_size,
            limit,
            model_name,
            dry_run,
            output,
            device,
            threads,
        } => {
            use trainer::candidates::{self, CandidateSettings, CandidatesJob, PromptSource};
            if let Some(threads) = threads {
                tch::set_num_threads(threads);
            }
            let source = match (from_project, prompts) {
                (Some(project), _) => PromptSource::Labeler { project },
                (None, Some(path)) => PromptSource::File(path),
                (None, None) => anyhow::bail!("give --from-project ID or --prompts FILE"),
            };
            let job = CandidatesJob {
                model_dir: model.clone(),
                model_name,
                source,
                to_project: if dry_run { None } else { to_project },
                output,
                settings: CandidateSettings {
                    k,
                    max_tokens,
                    temperature,
                    top_k,
                    top_p,
                    seed,
                    max_attempts: max_attempts.unwrap_or(4 * k),
                },
                batch_size: batch_size.max(1),
                limit,
                device: device.resolve()?,
            };
            job.settings.validate()?;
            let client = token.as_deref().map(|t| {
                trainer::labeler_client::LabelerClient::new(
                    &labeler,
                    t,
                    std::time::Duration::from_secs(300),
                )
            });
            let s = candidates::run(&job, client.as_ref())
                .with_context(|| format!("generating candidates with {}", model.display()))?;
            println!(
                "{}: {} prompt(s); {} already had an item from this checkpoint; generated {} item(s) ({} samples, {} tokens, {:.0} tokens/s); labeler created {}, already had {} ({} post(s)); {} failed; {:.1}s",
                s.checkpoint,
                s.prompts,
                s.already_there,
                s.generated,
                s.samples,
                s.tokens,
                s.tokens as f64 / s.generate_seconds.max(1e-9),
                s.created,
                s.skipped,
                s.posts,
                s.failed.len(),
                s.seconds
            );
            if !s.failed.is_empty() {
                for (prompt, why) in s.failed.iter().take(20) {
                    eprintln!("  {prompt}: {why}");
                }
                anyhow::bail!(
                    "{} prompt(s) got no item (above); the others were posted",
                    s.failed.len()
                );
            }
        }
        Command::ExportHf { checkpoint, out } => {
            trainer::export::export_hf(&checkpoint, &out).with_context(|| {
                format!("exporting {} to {}", checkpoint.display(), out.display())
            })?;
            println!("exported {} to {}", checkpoint.display(), out.display());
        }
    }
    Ok(())
}
