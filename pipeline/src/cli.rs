//! The `pipeline` command line: every subcommand and flag, with the help text users read.
//! `main.rs` parses these and calls the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use format::DatasetKind;
use pipeline::tokenize::chat::Truncation;

/// The jielong data pipeline: web corpora to tokenized Arrow datasets for the trainer.
#[derive(Debug, Parser)]
#[command(name = "pipeline", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read corpora (WARC/WET/JSONL/Parquet/text), extract, normalize, identify the language,
    /// filter, redact PII and deduplicate. Writes OUT/kept/ (the kept documents),
    /// OUT/docs-*.parquet (one row per input document with every score and why it was dropped)
    /// and OUT/summary.json. Rerunning with the same config skips finished inputs.
    Clean {
        /// The TOML config (see configs/pipeline/).
        config: PathBuf,
        /// Print the resolved config (every default filled in) and exit.
        #[arg(long)]
        dry_run: bool,
        /// Worker threads (overrides run.threads; 0 = one per core).
        #[arg(long)]
        threads: Option<usize>,
        #[command(flatten)]
        task: TaskArgs,
        /// Which stage of a split run (--tasks N) this task runs: clean (read, filter, keys),
        /// with dedup pairs, (with min_similarity > 0) ship and check, components (one
        /// task), survivors, with [tokenize.train] tokenizer (one task), with [tokenize]
        /// tokenize, with [tokenize.shuffle] shards, then --finish.
        #[arg(long, value_enum, default_value = "clean")]
        stage: pipeline::clean::Stage,
        /// After every task of a split run (--tasks N): check their done markers, write
        /// summary.json over all of them and write [tokenize]'s dataset.
        #[arg(long, requires = "tasks")]
        finish: bool,
    },
    /// Run a config's stages on a cluster scheduler.
    Launch {
        #[command(subcommand)]
        scheduler: LaunchCommand,
    },
    /// Per stage of a split run: tasks done, running, failed (with their last error) and not
    /// started, read from the markers in OUT/tasks/ (local, s3:// or az://).
    Status {
        /// The pipeline config the run was launched with.
        config: PathBuf,
        /// Tasks the run was split into (default: the number in its markers).
        #[arg(long)]
        tasks: Option<usize>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Poll until every task of this stage is done (how Kubernetes stages wait).
        #[arg(long, requires = "tasks")]
        wait: Option<String>,
        /// Seconds between polls with --wait.
        #[arg(long, default_value_t = 30)]
        poll_seconds: u64,
        /// With --wait: fail after this many seconds (default: wait as long as it takes).
        #[arg(long, requires = "wait")]
        timeout: Option<u64>,
        /// With --wait: a failed task of the awaited stage (or one before it) fails the wait
        /// once it has stayed failed this many seconds (0: at once; for schedulers that
        /// retry it).
        #[arg(long, requires = "wait", default_value_t = 0)]
        failed_grace: u64,
    },
    /// Print the main text of a page: an HTML file, or the HTML responses of a WARC file.
    /// With a JSONL of {"id", "html"} pages and --jsonl-out, extract them all (the
    /// benchmark's batch mode) and print the pages, empty pages and MB/s on one thread.
    Extract {
        /// An HTML file, a WARC/WET file (.warc, .warc.gz), or with --jsonl-out a JSONL file.
        file: PathBuf,
        /// WARC: only the record with this target URI; HTML: a hint for charset detection.
        #[arg(long)]
        url: Option<String>,
        /// Show every text block, whether it was kept and why not.
        #[arg(long, conflicts_with = "jsonl_out")]
        explain: bool,
        /// Batch mode: write {"id", "text", "seconds"} lines here.
        #[arg(long)]
        jsonl_out: Option<PathBuf>,
    },
    /// Train a tokenizer.
    Tokenizer {
        #[command(subcommand)]
        command: TokenizerCommand,
    },
    /// Encode documents into a pretraining dataset (OUT/train, OUT/val) with the [input] and
    /// [tokenize] tables of a config; see configs/pipeline/tokenize.toml.
    /// With --tasks N: task i encodes its share of the inputs (without a shuffle it writes
    /// its parts' training shards); with [tokenize.shuffle], --shards tasks then write the
    /// shuffle buckets as shards; then --finish writes the validation split and manifests.
    Tokenize(TokenizeArgs),
    /// Render labeler exports (JSONL in the TRL shapes) into an sft, preference or unpaired dataset.
    TokenizeChat {
        /// sft ({"id","messages","meta"} records), preference ({"id","prompt","chosen","rejected","meta"})
        /// or unpaired (thumbs: {"id","prompt","completion","label": true|false,"meta"}; id optional).
        #[arg(long)]
        kind: ChatKind,
        /// The tokenizer.json (must have the chat special tokens, e.g. one from `pipeline tokenizer train`).
        #[arg(long)]
        tokenizer: PathBuf,
        /// The dataset directory to write.
        #[arg(long)]
        output: PathBuf,
        /// Longest example in tokens.
        #[arg(long, default_value_t = 2048)]
        max_seq_len: usize,
        /// What to do with longer examples.
        #[arg(long, value_enum, default_value_t = Truncation::Drop)]
        truncation: Truncation,
        /// Replace an existing dataset in OUTPUT.
        #[arg(long)]
        overwrite: bool,
        /// Export files (JSONL, .jsonl.gz, .jsonl.zst, or the labeler's Parquet), directories or globs.
        #[arg(required = true)]
        inputs: Vec<String>,
    },
    /// Write an HTML report with charts of a clean run (and optionally its tokenized dataset).
    Report {
        /// The clean run directory (output.dir of the config).
        run: PathBuf,
        /// A tokenized dataset to include (token-length distribution).
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// Output file.
        #[arg(long, default_value = "report.html")]
        output: PathBuf,
    },
    /// Describe a dataset directory: manifest, tokenizer, shards, a few rows. Opening reads
    /// only metadata; --verify reads everything.
    Inspect {
        /// The dataset directory (the one holding manifest.json).
        dataset: PathBuf,
        /// Rows to show from the first shard.
        #[arg(long, default_value_t = 3)]
        samples: usize,
        /// Check every file's sha256 and every token id against the vocabulary.
        #[arg(long)]
        verify: bool,
        /// Print manifest.json as JSON instead.
        #[arg(long, conflicts_with_all = ["samples", "verify"])]
        json: bool,
    },
}

/// Which task of a split stage this process is (else from SLURM_ARRAY_TASK_ID or
/// JOB_COMPLETION_INDEX). Task i takes the inputs whose number in the sorted listing is i mod N.
#[derive(Debug, clap::Args)]
pub struct TaskArgs {
    /// This task's index, 0-based.
    #[arg(long)]
    pub task: Option<usize>,
    /// How many tasks the stage is split into.
    #[arg(long)]
    pub tasks: Option<usize>,
}

/// `pipeline tokenize CONFIG [--task i --tasks N | --shards --task i --tasks N | --finish --tasks N]`.
#[derive(Debug, clap::Args)]
pub struct TokenizeArgs {
    pub config: PathBuf,
    #[command(flatten)]
    pub task: TaskArgs,
    /// With [tokenize.shuffle], after every task of a split run: task i writes the shuffle
    /// buckets b with b mod N = i as training shards (`shard-BBBBB-IIIII.arrow`).
    #[arg(long, requires = "tasks", conflicts_with = "finish")]
    pub shards: bool,
    /// After every task of a split run (and with a shuffle every shards task): write the
    /// validation split and the manifests.
    #[arg(long, requires = "tasks")]
    pub finish: bool,
}

#[derive(Debug, Subcommand)]
pub enum LaunchCommand {
    /// Write sbatch scripts (one job array per stage: clean; with dedup pairs, ship and check
    /// (with similarity checks), a one-task components, survivors; with [tokenize.train] a
    /// one-task tokenizer; with [tokenize] tokenize, and with [tokenize.shuffle] shards; then
    /// a one-task `finish`; chained with --dependency=afterok) and submit them, or print them
    /// with --dry-run.
    Slurm {
        /// The pipeline config.
        config: PathBuf,
        /// Tasks each array stage is split into.
        #[arg(long)]
        tasks: usize,
        /// At most this many tasks at once (%K); 0 = no limit.
        #[arg(long, default_value_t = 0)]
        max_parallel: usize,
        /// The Slurm partition.
        #[arg(long)]
        partition: Option<String>,
        /// Where the scripts and logs/ go.
        #[arg(long, default_value = "slurm-jobs")]
        scripts_dir: PathBuf,
        /// Largest array (default: MaxArraySize from `scontrol show config`).
        #[arg(long)]
        max_array_size: Option<usize>,
        /// Cores per task (#SBATCH --cpus-per-task, and as many worker threads). Default:
        /// the cluster's, usually 1. A clean task processes one input per 4 cores at once
        /// (`run.inputs_at_once`), so any count keeps its cores busy; fewer, larger tasks
        /// make fewer dedup shuffle requests (they grow as tasks squared).
        #[arg(long)]
        cpus_per_task: Option<usize>,
        /// Print the scripts instead of submitting them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write Kubernetes manifests for `kubectl apply -f`: a ConfigMap with the config and one
    /// Indexed Job per stage (each later stage's pods first wait for the previous stage's
    /// done markers). Inputs and output must be in object storage (s3:// or az://).
    K8s {
        #[command(flatten)]
        launch: pipeline::launch::k8s::K8sLaunch,
        /// Write one file per manifest here instead of printing them all.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer (with jielong's special tokens) on documents.
    Train {
        /// Output tokenizer.json.
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value_t = 32_000)]
        vocab_size: usize,
        #[arg(long, default_value_t = 2)]
        min_frequency: u64,
        /// Stop after this many bytes of text (0 = all).
        #[arg(long, default_value_t = 1 << 30)]
        max_bytes: u64,
        /// Bound on the total bytes of distinct words kept for training; when the table fills,
        /// the rarest words are dropped. Peak memory is roughly 100x this (2 GB by default).
        #[arg(long, default_value_t = pipeline::tokenize::train::default_max_word_bytes())]
        max_word_bytes: u64,
        /// JSONL / Parquet field holding the text.
        #[arg(long, default_value = "text")]
        text_field: String,
        /// Input files, directories or globs (any format `clean` reads).
        #[arg(required = true)]
        inputs: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ChatKind {
    Sft,
    Preference,
    Unpaired,
}

impl From<ChatKind> for DatasetKind {
    fn from(kind: ChatKind) -> Self {
        match kind {
            ChatKind::Sft => DatasetKind::Sft,
            ChatKind::Preference => DatasetKind::Preference,
            ChatKind::Unpaired => DatasetKind::Unpaired,
        }
    }
}
