//! `pipeline launch`: runs a config's stages on the schedulers users already have, as array
//! jobs whose tasks call `pipeline clean --tasks N` (each task finds its index in the
//! scheduler's environment). `slurm` writes sbatch scripts chained with `afterok`; `k8s`
//! writes Indexed Job manifests whose pods wait for the previous stage's done markers.

pub mod k8s;
pub mod slurm;
pub mod yaml;

use std::path::Path;

/// One stage of a split run: `tasks` tasks that all run `pipeline ARGS`, each finding its
/// index in the scheduler's environment; task i's done marker is
/// `OUT/tasks/NAME-0000i-of-0000N.json`. A stage starts when every task of the previous one
/// is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    pub tasks: usize,
    /// The arguments after the `pipeline` executable.
    pub args: Vec<String>,
}

/// The stages of `config` (the file at `config`, as the tasks will see it) split into `tasks`
/// tasks, in order: the `clean` array, then the one-task `finish` (summary, `[tokenize]`).
pub fn stages(config: &Path, tasks: usize) -> Vec<Stage> {
    let config = config.display().to_string();
    let n = tasks.to_string();
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    vec![
        Stage {
            name: "clean".into(),
            tasks,
            args: args(&["clean", &config, "--tasks", &n]),
        },
        Stage {
            name: "finish".into(),
            tasks: 1,
            args: args(&["clean", &config, "--finish", "--tasks", &n]),
        },
    ]
}
