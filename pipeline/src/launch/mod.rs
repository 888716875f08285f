//! `pipeline launch`: runs a config's stages on the schedulers users already have, as array
//! jobs whose tasks call `pipeline clean --tasks N` (each task finds its index in the
//! scheduler's environment). `slurm` writes sbatch scripts chained with `afterok`; `k8s`
//! writes Indexed Job manifests whose pods wait for the previous stage's done markers.
//! [`stages`] is the one list of stages every launcher submits and `pipeline status` reads.

pub mod k8s;
pub mod slurm;
pub mod yaml;

use std::path::Path;

use crate::clean::{Stage, stages_of};
use crate::config::PipelineConfig;

/// One stage of a split run: an array of `tasks` tasks, each running `pipeline ARGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageJob {
    /// `clean`, `pairs`, `ship`, `check`, `components`, `survivors`, `tokenizer`, `tokenize`,
    /// `shards` or `finish`.
    pub name: String,
    pub tasks: usize,
    /// Whether the stage has one task per task of the run (else one task in all).
    pub per_task: bool,
    /// The arguments after the `pipeline` executable.
    pub args: Vec<String>,
}

/// The stages of `config` (at `config_path`) split into `tasks` tasks, in the order they
/// must run, each after the previous one has succeeded: `clean`, with dedup on `pairs`,
/// (with similarity checks `ship` and `check`), `components` (one task) and `survivors`,
/// with `[tokenize.train]` `tokenizer` (one task), with `[tokenize]` `tokenize` (and with
/// `[tokenize.shuffle]` `shards`), then `finish` (one task: summary, the dataset).
pub fn stages(config_path: &Path, config: &PipelineConfig, tasks: usize) -> Vec<StageJob> {
    let base = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["clean".to_string(), config_path.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--tasks".to_string(), tasks.to_string()]);
        args
    };
    let mut out: Vec<StageJob> = stages_of(config)
        .into_iter()
        .map(|stage| {
            let one = stage.is_single_task();
            StageJob {
                name: stage.name().to_string(),
                tasks: if one { 1 } else { tasks },
                per_task: !one,
                args: match stage {
                    Stage::Clean => base(&[]),
                    _ => base(&["--stage", stage.name()]),
                },
            }
        })
        .collect();
    out.push(StageJob {
        name: "finish".into(),
        tasks: 1,
        per_task: false,
        args: base(&["--finish"]),
    });
    out
}
