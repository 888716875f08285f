//! The pipeline config (`configs/pipeline/*.toml`): inputs, each stage's settings, outputs.
//! Unknown keys are errors; every omitted key takes the published default.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

use crate::dedup::DedupOptions;
use crate::filters::FilterOptions;
use crate::langid::LangIdOptions;
use crate::normalize::NormalizeOptions;
use crate::pii::PiiOptions;
// The `[input]` table is the readers' own settings; re-exported here with the other tables.
pub use crate::readers::InputConfig;
use crate::tokenize::pretrain::TokenizeOptions;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub input: InputConfig,
    pub output: OutputConfig,
    #[serde(default)]
    pub normalize: NormalizeOptions,
    #[serde(default)]
    pub langid: LangIdOptions,
    #[serde(default)]
    pub filters: FilterOptions,
    #[serde(default)]
    pub pii: PiiOptions,
    #[serde(default)]
    pub dedup: DedupOptions,
    #[serde(default)]
    pub run: RunOptions,
    /// Optional: tokenize the kept documents into a pretraining dataset after cleaning.
    #[serde(default)]
    pub tokenize: Option<TokenizeOptions>,
}

/// How kept documents are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeptFormat {
    /// `kept/part-NNNNN.jsonl.zst`
    #[default]
    Jsonl,
    /// `kept/part-NNNNN.parquet`
    Parquet,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// The run directory (relative to the working directory).
    pub dir: PathBuf,
    #[serde(default)]
    pub kept_format: KeptFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunOptions {
    /// Worker threads; 0 = one per core.
    pub threads: usize,
    /// Documents per parallel batch.
    pub batch_size: usize,
    /// Exit non-zero when any input record could not be read.
    pub fail_on_error: bool,
    /// Remote (`s3://`) inputs fetched while the one before is processed, at most this many
    /// past it (each its own GET, so up to this many at once; each a copy on the scratch
    /// disk); 0 fetches each input when its turn comes.
    pub fetch_ahead: usize,
    /// Inputs a clean run processes at the same time, each through its own reader and writer
    /// threads (one gzip stream inflates ~100 MB/s of stored WARC, which keeps about 5 worker
    /// threads busy); 0 = one per 4 worker threads (1 up to 4 threads).
    pub inputs_at_once: usize,
    /// Remote inputs (all formats but Parquet) read as they arrive, from one GET each, with
    /// no scratch copy: for machines without a scratch disk. One stream runs at 50-100 MB/s
    /// from S3, so several inputs at once (`inputs_at_once`) keep many cores busy.
    pub stream_inputs: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            threads: 0,
            batch_size: 256,
            fail_on_error: false,
            fetch_ahead: crate::storage::FETCH_AHEAD,
            inputs_at_once: 0,
            stream_inputs: false,
        }
    }
}

impl PipelineConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let config: PipelineConfig =
            toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        config
            .check()
            .with_context(|| format!("config {}", path.display()))?;
        Ok(config)
    }

    /// Settings that parse but cannot work.
    pub fn check(&self) -> Result<()> {
        ensure!(!self.input.paths.is_empty(), "input.paths is empty");
        ensure!(self.run.batch_size > 0, "run.batch_size must be > 0");
        ensure!(
            self.run.inputs_at_once <= 256,
            "run.inputs_at_once = {}: at most 256 inputs at once",
            self.run.inputs_at_once
        );
        let m = &self.dedup.minhash;
        ensure!(
            m.bands > 0 && m.rows > 0,
            "dedup.minhash.bands and rows must be > 0"
        );
        ensure!(
            m.word_ngram > 0 && m.char_ngram > 0,
            "dedup.minhash n-gram sizes must be > 0"
        );
        ensure!(self.dedup.run_entries > 0, "dedup.run_entries must be > 0");
        if let Some(t) = &self.tokenize {
            t.check()?;
            // Both keep a split run's task markers in `tasks/`, under the same names.
            ensure!(
                t.output != self.output.dir,
                "tokenize.output is output.dir ({}): give the dataset a directory of its own (e.g. {}/dataset)",
                self.output.dir.display(),
                self.output.dir.display()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_in_the_run_directory_is_refused() {
        let text = |dataset: &str| {
            format!(
                "[input]\npaths = [\"in.jsonl\"]\n[output]\ndir = \"runs/x\"\n[tokenize]\ntokenizer = \"t.json\"\noutput = \"{dataset}\"\n"
            )
        };
        let config =
            |dataset: &str| -> PipelineConfig { toml::from_str(&text(dataset)).expect("parses") };
        let err = config("runs/x")
            .check()
            .expect_err("the run's own directory");
        assert!(
            err.to_string().contains("tokenize.output is output.dir"),
            "{err}"
        );
        config("runs/x/dataset")
            .check()
            .expect("a directory of its own");
    }
}
