//! Which part of a stage this process runs: task `index` of `count`, from `--task/--tasks` or
//! from the scheduler's environment (Slurm job arrays, Kubernetes Indexed Jobs). Inputs are
//! assigned by their position in the sorted input listing modulo `count`, so every task
//! agrees on the split whichever lists first, and output names keep the global input number.

use anyhow::{Result, bail, ensure};

/// Task `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSlice {
    index: usize,
    count: usize,
}

impl TaskSlice {
    pub fn new(index: usize, count: usize) -> Result<Self> {
        ensure!(count > 0, "--tasks must be at least 1");
        ensure!(
            index < count,
            "task index {index} is out of range for {count} tasks (0..{count})"
        );
        Ok(Self { index, count })
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether input number `input` (in the sorted listing) is this task's.
    pub fn owns(&self, input: usize) -> bool {
        input % self.count == self.index
    }

    /// The done marker name of this task in `stage`: `tasks/STAGE-00003-of-00008.json`.
    pub fn marker(&self, stage: &str) -> String {
        format!("tasks/{stage}-{:05}-of-{:05}.json", self.index, self.count)
    }

    /// The slice from the flags, else from the environment: `SLURM_ARRAY_TASK_ID` (minus
    /// `SLURM_ARRAY_TASK_MIN`) of `SLURM_ARRAY_TASK_COUNT` (or `--tasks`), or
    /// `JOB_COMPLETION_INDEX` of `--tasks`. `None` when nothing says the stage is split.
    pub fn from_args_or_env(task: Option<usize>, tasks: Option<usize>) -> Result<Option<Self>> {
        Self::resolve(task, tasks, &|name| std::env::var(name).ok())
    }

    /// `from_args_or_env` with the environment as a function (for tests).
    pub fn resolve(
        task: Option<usize>,
        tasks: Option<usize>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>> {
        let number = |name: &str| -> Result<Option<usize>> {
            match env(name) {
                None => Ok(None),
                Some(v) => match v.trim().parse() {
                    Ok(n) => Ok(Some(n)),
                    Err(_) => bail!("{name}={v:?} is not a task number"),
                },
            }
        };
        if let Some(index) = task {
            let Some(count) = tasks else {
                bail!("--task needs --tasks");
            };
            return Self::new(index, count).map(Some);
        }
        // An array task id may be an offset array (--array=8-15): ids start at the minimum.
        // An array split in pieces (larger than MaxArraySize) exports the first id of its
        // piece as JIELONG_TASK_OFFSET.
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let offset = number("JIELONG_TASK_OFFSET")?.unwrap_or(0);
            let count = match tasks {
                Some(n) => n,
                None => number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "SLURM_ARRAY_TASK_ID is set but neither --tasks nor SLURM_ARRAY_TASK_COUNT"
                    )
                })?,
            };
            ensure!(
                id >= min,
                "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
            );
            return Self::new(id - min + offset, count).map(Some);
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let Some(count) = tasks else {
                bail!("JOB_COMPLETION_INDEX is set: give the number of tasks with --tasks");
            };
            return Self::new(index, count).map(Some);
        }
        match tasks {
            Some(1) | None => Ok(None),
            Some(n) => bail!(
                "--tasks {n} without --task, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX: which task is this?"
            ),
        }
    }
}
