//! The stages of a split `clean` run (`pipeline clean --stage`): `clean`, and with dedup on
//! `pairs`, `components` and `survivors` (see `dedup_tasks`), with `ship` and `check`
//! between `pairs` and `components` when MinHash groups are checked by similarity (see
//! `dedup_checks`), with `[tokenize.train]`
//! `tokenizer` (one task trains the tokenizer on every kept document and writes it to
//! `tokenize.tokenizer`, local or `s3://`), with `[tokenize]` `tokenize` (the kept documents
//! encoded by N tasks with that tokenizer), with `[tokenize.shuffle]` `shards` (the shuffle
//! buckets written as shards by N tasks), then `--finish`.

use crate::config::{KeptFormat, PipelineConfig};
use crate::readers::{InputConfig, ReaderOptions};

/// A stage of `pipeline clean` split into tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Read, filter, dedup keys (partitioned when dedup is on).
    Clean,
    /// Duplicate candidates per key partition.
    Pairs,
    /// Signatures sent to the tasks whose documents' similarity checks need them.
    Ship,
    /// Similarity checks of each task's own documents: the join edges.
    Check,
    /// Connected components over the join edges (one task).
    Components,
    /// Kept documents and docs tables per input.
    Survivors,
    /// `[tokenize.train]`: the tokenizer trained on the kept documents (one task).
    Tokenizer,
    /// The kept documents encoded for `[tokenize]` (without a shuffle each task writes its
    /// parts' training shards; the finish step writes the validation split and manifests).
    Tokenize,
    /// With `[tokenize.shuffle]`: the shuffle buckets written as training shards.
    Shards,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Clean => "clean",
            Stage::Pairs => "pairs",
            Stage::Ship => "ship",
            Stage::Check => "check",
            Stage::Components => "components",
            Stage::Survivors => "survivors",
            Stage::Tokenizer => "tokenizer",
            Stage::Tokenize => "tokenize",
            Stage::Shards => "shards",
        }
    }

    /// Whether the stage is one task whatever the split (it reads every task's output).
    pub fn is_single_task(self) -> bool {
        matches!(self, Stage::Components | Stage::Tokenizer)
    }
}

/// Whether `config` deduplicates (then a split run has the dedup stages).
pub fn dedups(config: &PipelineConfig) -> bool {
    config.dedup.exact || config.dedup.minhash.enabled
}

/// Whether a split run trains its tokenizer (`[tokenize.train]`) in the `tokenizer` stage.
pub fn trains_tokenizer(config: &PipelineConfig) -> bool {
    config.tokenize.as_ref().is_some_and(|t| t.train.is_some())
}

/// The kept documents of a clean run, as the input of its `[tokenize]`.
pub fn kept_input(config: &PipelineConfig) -> InputConfig {
    let ext = match config.output.kept_format {
        KeptFormat::Jsonl => "jsonl.zst",
        KeptFormat::Parquet => "parquet",
    };
    let kept = config.output.dir.join(format!("kept/*.{ext}"));
    InputConfig {
        paths: vec![kept.display().to_string()],
        reader: ReaderOptions::default(),
    }
}

/// The stage `stage` waits for (the one before it), with its task count in a run of `n`
/// tasks.
pub fn before(config: &PipelineConfig, stage: Stage, n: usize) -> Option<(Stage, usize)> {
    let stages = stages_of(config);
    let at = stages.iter().position(|&s| s == stage)?;
    let previous = *stages.get(at.checked_sub(1)?)?;
    Some((previous, if previous.is_single_task() { 1 } else { n }))
}

/// Stages of a split clean run, in order (the finish step aside).
pub fn stages_of(config: &PipelineConfig) -> Vec<Stage> {
    let mut stages = vec![Stage::Clean];
    if dedups(config) {
        stages.push(Stage::Pairs);
        if super::dedup_checks::checks_similarity(config) {
            stages.extend([Stage::Ship, Stage::Check]);
        }
        stages.extend([Stage::Components, Stage::Survivors]);
    }
    if trains_tokenizer(config) {
        stages.push(Stage::Tokenizer);
    }
    if let Some(tokenize) = &config.tokenize {
        stages.push(Stage::Tokenize);
        if tokenize.shuffle.is_some() {
            stages.push(Stage::Shards);
        }
    }
    stages
}
