//! The stages of a split `clean` run (`pipeline clean --stage`): `clean`, and with dedup on
//! `pairs`, `components` and `survivors` (see `dedup_tasks`), then `--finish`.

use crate::config::PipelineConfig;

/// A stage of `pipeline clean` split into tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Read, filter, dedup keys (partitioned when dedup is on).
    Clean,
    /// Duplicate candidates per key partition.
    Pairs,
    /// Connected components over them (one task).
    Components,
    /// Kept documents and docs tables per input.
    Survivors,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Clean => "clean",
            Stage::Pairs => "pairs",
            Stage::Components => "components",
            Stage::Survivors => "survivors",
        }
    }
}

/// Whether `config` deduplicates (then a split run has the dedup stages).
pub fn dedups(config: &PipelineConfig) -> bool {
    config.dedup.exact || config.dedup.minhash.enabled
}

/// Stages of a split clean run, in order (the finish step aside).
pub fn stages_of(config: &PipelineConfig) -> Vec<Stage> {
    if dedups(config) {
        vec![
            Stage::Clean,
            Stage::Pairs,
            Stage::Components,
            Stage::Survivors,
        ]
    } else {
        vec![Stage::Clean]
    }
}
