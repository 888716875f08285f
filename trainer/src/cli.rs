//! The command line: every subcommand's flags (clap derive), and how they become the
//! library's settings (a config with its overrides, where to resume, a candidates job).
//! `main.rs` dispatches; nothing here trains or prints.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use trainer::candidates::answer::CandidateSettings;
use trainer::candidates::labeler_client::LabelerClient;
use trainer::candidates::prelabel::PrelabelJob;
use trainer::candidates::{CandidatesJob, PromptSource};
use trainer::engine::config::{DataConfig, RunConfig, TrainSettings};
use trainer::engine::device::DeviceChoice;
use trainer::engine::{Faults, Resume};
use trainer::io::checkpoint::resolve_run_dir;
use trainer::model::sample::SamplingParams;
use trainer::post::config::{PostConfig, Task};

/// How long the labeler may take to answer one request (a post of many items included).
const LABELER_TIMEOUT: Duration = Duration::from_secs(300);

/// The jielong trainer: Llama-style language models on libtorch, on a GPU or the CPU.
#[derive(Debug, Parser)]
#[command(name = "trainer", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The config overrides every training command takes.
#[derive(Debug, clap::Args)]
pub struct RunOverrides {
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

/// Where a training command starts: fresh, or from a checkpoint of an earlier run.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// Continue from the newest checkpoint in the output directory.
    #[arg(long, conflicts_with = "resume_from")]
    resume: bool,
    /// Continue from this checkpoint directory.
    #[arg(long)]
    resume_from: Option<PathBuf>,
}

impl ResumeArgs {
    fn resume(self) -> Resume {
        match (self.resume, self.resume_from) {
            (_, Some(dir)) => Resume::From(dir),
            (true, None) => Resume::Latest,
            (false, None) => Resume::No,
        }
    }
}

/// Options of `pretrain`.
#[derive(Debug, clap::Args)]
pub struct PretrainArgs {
    /// Run configuration (TOML).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    resume: ResumeArgs,
    #[command(flatten)]
    overrides: RunOverrides,
    /// Crash tests only: abort the process right after this step.
    #[arg(long, hide = true)]
    abort_after_step: Option<u64>,
    /// Crash tests only: abort while writing this step's checkpoint.
    #[arg(long, hide = true)]
    abort_in_checkpoint: Option<u64>,
}

impl PretrainArgs {
    /// The config file with the command-line overrides applied, and where to start.
    pub fn load(self) -> Result<(RunConfig, Resume, Faults)> {
        let mut run = RunConfig::load(&self.config)?;
        self.overrides.apply(&mut run.data, &mut run.train);
        let faults = Faults {
            abort_after_step: self.abort_after_step,
            abort_in_checkpoint: self.abort_in_checkpoint,
        };
        Ok((run, self.resume.resume(), faults))
    }
}

/// Options shared by `sft`, `dpo`, `kto` and `reward`.
#[derive(Debug, clap::Args)]
pub struct PostArgs {
    /// Run configuration (TOML): init_from, [data], [optim], [train], optionally [lora],
    /// [checkpoint], [eval] and the command's own section (configs/trainer/*-tiny.toml).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    resume: ResumeArgs,
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
    pub fn load(self, task: Task) -> Result<(PostConfig, Resume, Faults)> {
        let mut config = PostConfig::load(&self.config, task)?;
        if let Some(init_from) = self.init_from {
            config.init_from = init_from;
        }
        config.init_from = resolve_run_dir(&config.init_from)?;
        self.overrides.apply(&mut config.data, &mut config.train);
        let faults = Faults {
            abort_after_step: self.abort_after_step,
            abort_in_checkpoint: None,
        };
        Ok((config, self.resume.resume(), faults))
    }
}

/// How `generate` and `generate-candidates` pick each next token. The help texts are
/// `generate`'s; `generate-candidates` words some of them for answers (`mut_arg` below).
#[derive(Debug, clap::Args)]
pub struct SamplingArgs {
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// 0 for greedy decoding.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The settings for one generation (stopping at the model's EOS).
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            max_tokens: self.max_tokens,
            seed: self.seed,
            stop_token: None,
        }
    }
}

/// Options of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Run configuration (TOML); its data paths are not used.
    #[arg(long)]
    pub config: PathBuf,
    /// Timed optimizer steps.
    #[arg(long, default_value_t = 10)]
    pub steps: u64,
    /// Untimed steps first (allocator warm-up, kernel selection).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
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
    pub json: bool,
}

impl BenchArgs {
    /// The config file with the command-line overrides applied, checked.
    pub fn load(&self) -> Result<RunConfig> {
        let mut run = RunConfig::load(&self.config)?;
        if let Some(device) = self.device {
            run.train.device = device;
        }
        if self.threads.is_some() {
            run.train.threads = self.threads;
        }
        if let Some(b) = self.micro_batch_size {
            run.train.micro_batch_size = b;
        }
        if let Some(a) = self.grad_accum {
            run.train.grad_accum = a;
        }
        if let Some(t) = self.seq_len {
            run.data.seq_len = t;
        }
        run.validate_settings()?;
        Ok(run)
    }
}

/// Options of `generate-candidates`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("prompt_source").required(true).args(["from_project", "prompts"])))]
#[command(mut_arg("max_tokens", |a| a.default_value("256")
    .help("Longest answer in tokens (an answer normally ends at <|end|> before)")))]
#[command(mut_arg("temperature", |a| a.help("Must be above 0: greedy decoding gives one answer")))]
#[command(mut_arg("top_p", |a| a.help("Keep the most likely tokens up to this probability mass (1: all)")))]
#[command(mut_arg("seed", |a| a.help("Base seed; each sample's seed derives from (seed, prompt, attempt), so a rerun samples the same answers")))]
pub struct CandidatesArgs {
    /// A checkpoint directory (step-N) or an export-hf directory; trained with the chat
    /// template, since prompts are rendered with it.
    #[arg(long)]
    pub model: PathBuf,
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
    /// The project that receives the items: a preference project (comparisons of --k
    /// answers) or, with --k 1, a rating project (one answer to judge).
    #[arg(long, required_unless_present = "dry_run")]
    to_project: Option<i64>,
    /// Different answers per prompt (2-16; 1 for a rating project).
    #[arg(long, default_value_t = 2)]
    k: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
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
}

impl CandidatesArgs {
    /// The job the flags describe, checked, and a client when a token was given. Sets
    /// libtorch's thread count as a side effect (it is process-wide).
    pub fn job(self) -> Result<(CandidatesJob, Option<LabelerClient>)> {
        if let Some(threads) = self.threads {
            tch::set_num_threads(threads);
        }
        let source = match (self.from_project, self.prompts) {
            (Some(project), _) => PromptSource::Labeler { project },
            (None, Some(path)) => PromptSource::File(path),
            (None, None) => bail!("give --from-project ID or --prompts FILE"),
        };
        let s = &self.sampling;
        let job = CandidatesJob {
            model_dir: self.model,
            model_name: self.model_name,
            source,
            to_project: if self.dry_run { None } else { self.to_project },
            output: self.output,
            settings: CandidateSettings {
                k: self.k,
                max_tokens: s.max_tokens,
                temperature: s.temperature,
                top_k: s.top_k,
                top_p: s.top_p,
                seed: s.seed,
                max_attempts: self.max_attempts.unwrap_or(4 * self.k),
            },
            batch_size: self.batch_size.max(1),
            limit: self.limit,
            device: self.device.resolve()?,
        };
        job.settings.validate()?;
        let client = self
            .token
            .as_deref()
            .map(|t| LabelerClient::new(&self.labeler, t, LABELER_TIMEOUT));
        Ok((job, client))
    }
}

/// `trainer prelabel`'s flags.
#[derive(Debug, Args)]
pub struct PrelabelArgs {
    /// A reward model (`trainer reward`) or any checkpoint / export-hf directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The labeler's base URL.
    #[arg(long, env = "LABELER_URL", default_value = "http://127.0.0.1:8080")]
    labeler: String,
    /// An admin's API token (`labeler token create USER`).
    #[arg(long, env = "LABELER_TOKEN", hide_env_values = true)]
    token: String,
    /// The rating or preference project whose items get suggestions.
    #[arg(long)]
    project: i64,
    /// Name stored with the suggestions (default: the checkpoint's run/step-N).
    #[arg(long)]
    source: Option<String>,
    /// Rating items: thumb up above this score (default: the median of the scores).
    #[arg(long)]
    threshold: Option<f64>,
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
}

impl PrelabelArgs {
    /// The job and the labeler client the flags describe.
    pub fn job(self) -> Result<(PrelabelJob, LabelerClient)> {
        let client = LabelerClient::new(&self.labeler, &self.token, LABELER_TIMEOUT);
        let job = PrelabelJob {
            model_dir: self.model,
            project: self.project,
            source: self.source,
            threshold: self.threshold,
            device: self.device.resolve()?,
        };
        Ok((job, client))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    Pretrain(PretrainArgs),
    /// Continue a prompt with a checkpoint or a Hugging Face export.
    Generate {
        /// A checkpoint directory (step-N) or an export-hf directory.
        model: PathBuf,
        #[arg(long, default_value = "")]
        prompt: String,
        #[command(flatten)]
        sampling: SamplingArgs,
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
    Bench(BenchArgs),
    /// Write one self-contained HTML page comparing training runs: curves, final figures,
    /// samples and the config fields that differ.
    Report {
        /// Run directories (each a train.out holding metrics.jsonl).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The HTML file to write.
        #[arg(long, short, default_value = "report.html")]
        out: PathBuf,
    },
    /// Supervised fine-tuning on an sft dataset (loss on the assistant's tokens only), full
    /// or with LoRA adapters ([lora] in the config), starting from `init_from`.
    Sft(PostArgs),
    /// Direct Preference Optimization on a preference dataset, starting from `init_from`
    /// (full or LoRA). Reference log-probs are computed once and cached ([dpo] cache_dir).
    Dpo(PostArgs),
    /// KTO on an unpaired dataset (thumbs up / down, `pipeline tokenize-chat --kind
    /// unpaired`), starting from `init_from` (full or LoRA); [kto] beta, desirable_weight,
    /// undesirable_weight, cache_dir. Reference log-probs are cached as for dpo.
    Kto(PostArgs),
    /// Online RL (GRPO, or RLOO with [grpo] rloo = true) on the prompts of an sft dataset:
    /// group_size answers sampled per prompt, scored by [[grpo.rules]], clipped policy ratio,
    /// KL to init_from; full or LoRA.
    Grpo(PostArgs),
    /// Train a reward model (the decoder plus a scalar head on the last token) on a
    /// preference dataset with the Bradley-Terry loss; accuracy on held-out pairs.
    Reward(PostArgs),
    /// Score (prompt, answer) rows with a reward model, or with any other checkpoint by the
    /// mean log-probability per answer token: reads JSONL lines
    /// {"id", "prompt": "text" or [messages], "answer": "text"} and writes {"id", "score"}.
    Score {
        /// A reward-model checkpoint, or any checkpoint (mean log-prob per answer token), or
        /// an export-hf directory.
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
    /// items ("which answer is better?"), k different answers per prompt (or, with --k 1, as
    /// single answers to a rating project: thumbs up or down), each with its
    /// model, checkpoint id and sampling settings. Prompts come from a labeler project
    /// (--from-project) or a JSONL file (--prompts). Running it again with the same
    /// checkpoint creates nothing new: items are named <prompt>@<checkpoint id>, and prompts
    /// the target project already has an item for are not generated again.
    GenerateCandidates(CandidatesArgs),
    /// Suggest a verdict for every item of a rating or preference project and post the
    /// suggestions to the labeler (PUT /api/projects/{id}/prelabels): a thumb for rating
    /// items (up when the answer scores above --threshold, by default the median), the
    /// best-scored candidate for preference items. Scores come from a reward model, or from a
    /// plain checkpoint's mean log-probability per answer token.
    Prelabel(PrelabelArgs),
    /// Write a checkpoint as a Hugging Face directory (LlamaForCausalLM; a reward model as
    /// LlamaForSequenceClassification; LoRA adapters folded in).
    ExportHf {
        /// A checkpoint directory (step-N).
        checkpoint: PathBuf,
        /// Output directory.
        out: PathBuf,
    },
}
