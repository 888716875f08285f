//! `pipeline status CONFIG`: per stage of `launch::stages`, which tasks are done, running,
//! failed (with their last error) or not started, read from the markers in `OUT/tasks/` (one
//! listing, then one read per running or failed task), local or `s3://`. `--wait STAGE`
//! polls until a stage is done (the Kubernetes launcher's way of ordering stages), and fails
//! when it cannot be: a failed task, or `--timeout`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::config::PipelineConfig;
use crate::task_state::{Attempt, Marker, parse_marker, unix_now};

/// The state of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    pub output: String,
    pub tasks: usize,
    pub stages: Vec<StageStatus>,
}

/// One stage's tasks by state (indexes ascending).
#[derive(Debug, Clone, Serialize)]
pub struct StageStatus {
    pub stage: String,
    pub tasks: usize,
    pub done: Vec<usize>,
    /// Started and not finished: running now, or killed (see when it started).
    pub running: Vec<TaskAttempt>,
    pub failed: Vec<TaskAttempt>,
    pub not_started: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskAttempt {
    pub task: usize,
    #[serde(flatten)]
    pub attempt: Attempt,
}

impl StageStatus {
    pub fn is_done(&self) -> bool {
        self.done.len() == self.tasks
    }
}

/// Reads the markers of `config`'s run split into `tasks` tasks; without `tasks`, the number
/// the `clean` markers were written with.
pub fn status(config: &PipelineConfig, tasks: Option<usize>) -> Result<RunStatus> {
    let out = &config.output.dir;
    let dir = out.join("tasks");
    let mut markers: BTreeMap<(String, usize), BTreeMap<usize, Vec<Marker>>> = BTreeMap::new();
    for name in crate::storage::list_names(&dir)? {
        if let Some((stage, index, count, marker)) = parse_marker(&name) {
            markers
                .entry((stage, count))
                .or_default()
                .entry(index)
                .or_default()
                .push(marker);
        }
    }
    let tasks = match tasks {
        Some(n) => n,
        None => {
            let counts: Vec<usize> = markers
                .keys()
                .filter(|(stage, _)| stage == "clean")
                .map(|(_, n)| *n)
                .collect();
            match counts.as_slice() {
                [n] => *n,
                [] => bail!(
                    "{} holds no task markers: no task has started yet (give --tasks N to list them)",
                    dir.display()
                ),
                many => bail!(
                    "{} holds markers of runs split into {many:?} tasks: say which with --tasks",
                    dir.display()
                ),
            }
        }
    };
    let mut stages = Vec::new();
    // Only the stages' names and task counts are used here, not their command lines.
    for stage in crate::launch::stages(Path::new("CONFIG"), config, tasks) {
        let found = markers
            .get(&(stage.name.clone(), stage.tasks))
            .cloned()
            .unwrap_or_default();
        let mut status = StageStatus {
            stage: stage.name.clone(),
            tasks: stage.tasks,
            done: Vec::new(),
            running: Vec::new(),
            failed: Vec::new(),
            not_started: Vec::new(),
        };
        for index in 0..stage.tasks {
            let has = |m| found.get(&index).is_some_and(|v| v.contains(&m));
            let attempt = |m| -> Result<TaskAttempt> {
                let slice = crate::shard::TaskSlice::new(index, stage.tasks)?;
                let path = crate::task_state::marker_path(out, &stage.name, slice, m);
                let bytes = crate::storage::read_small(&path)?;
                let attempt = serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(TaskAttempt {
                    task: index,
                    attempt,
                })
            };
            if has(Marker::Done) {
                status.done.push(index);
            } else if has(Marker::Running) {
                status.running.push(attempt(Marker::Running)?);
            } else if has(Marker::Failed) {
                status.failed.push(attempt(Marker::Failed)?);
            } else {
                status.not_started.push(index);
            }
        }
        stages.push(status);
    }
    Ok(RunStatus {
        output: out.display().to_string(),
        tasks,
        stages,
    })
}

/// How `wait_for` polls and when it gives up.
#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    /// Time between polls.
    pub every: Duration,
    /// Give up after this long; `None`: wait as long as it takes.
    pub timeout: Option<Duration>,
    /// A failed task counts once it has stayed failed (no newer attempt) this long: zero
    /// fails at once; a scheduler that retries failed tasks (Kubernetes'
    /// `backoffLimitPerIndex`) needs the time its retry takes to start.
    pub failed_grace: Duration,
}

/// Polls until every task of `stage` is done. Fails, naming the tasks, when a task of
/// `stage` or of a stage before it has failed (for `failed_grace`: it will not be done
/// without a rerun), or when `timeout` passes.
pub fn wait_for(
    config: &PipelineConfig,
    tasks: usize,
    stage: &str,
    options: WaitOptions,
) -> Result<RunStatus> {
    let started = std::time::Instant::now();
    loop {
        let run = status(config, Some(tasks))?;
        let Some(at) = run.stages.iter().position(|s| s.stage == stage) else {
            let names: Vec<&str> = run.stages.iter().map(|s| s.stage.as_str()).collect();
            bail!(
                "--wait {stage}: no such stage (stages: {})",
                names.join(", ")
            );
        };
        let s = &run.stages[at];
        if s.is_done() {
            return Ok(run);
        }
        let now = unix_now();
        let failed: Vec<String> = run.stages[..=at]
            .iter()
            .flat_map(|s| s.failed.iter().map(move |f| (s, f)))
            .filter(|(_, f)| now.saturating_sub(f.attempt.at) >= options.failed_grace.as_secs())
            .map(|(s, f)| {
                format!(
                    "{} task {} on {} (pid {}): {}",
                    s.stage,
                    f.task,
                    f.attempt.host,
                    f.attempt.pid,
                    f.attempt.error.as_deref().unwrap_or("(no error recorded)")
                )
            })
            .collect();
        if !failed.is_empty() {
            bail!(
                "--wait {stage}: {} failed task(s), so {stage} will not finish without a rerun: {}",
                failed.len(),
                failed.join("; ")
            );
        }
        if let Some(timeout) = options.timeout
            && started.elapsed() >= timeout
        {
            bail!(
                "--wait {stage}: timed out after {} s with {} of {} tasks done ({} running, {} not started)",
                timeout.as_secs(),
                s.done.len(),
                s.tasks,
                s.running.len(),
                s.not_started.len()
            );
        }
        tracing::info!(
            "waiting for {stage}: {} of {} tasks done, {} failed",
            s.done.len(),
            s.tasks,
            s.failed.len()
        );
        let left = options
            .timeout
            .map_or(options.every, |t| t.saturating_sub(started.elapsed()));
        std::thread::sleep(options.every.min(left).max(Duration::from_millis(100)));
    }
}

impl RunStatus {
    /// A table of counts per stage, then the failed and running tasks.
    pub fn render(&self) -> String {
        let now = unix_now();
        let mut out = format!("{} (split into {} tasks)\n", self.output, self.tasks);
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:>6} {:>8} {:>7} {:>12}",
            "stage", "tasks", "done", "running", "failed", "not started"
        );
        for s in &self.stages {
            let _ = writeln!(
                out,
                "{:<10} {:>6} {:>6} {:>8} {:>7} {:>12}",
                s.stage,
                s.tasks,
                s.done.len(),
                s.running.len(),
                s.failed.len(),
                s.not_started.len()
            );
        }
        for s in &self.stages {
            for f in &s.failed {
                let a = &f.attempt;
                let _ = writeln!(
                    out,
                    "failed: {} task {} on {} (pid {}, {} s ago): {}",
                    s.stage,
                    f.task,
                    a.host,
                    a.pid,
                    now.saturating_sub(a.at),
                    a.error.as_deref().unwrap_or("(no error recorded)")
                );
            }
            for r in &s.running {
                let a = &r.attempt;
                let _ = writeln!(
                    out,
                    "running: {} task {} on {} (pid {}) since {} s ago (if that host or pid is gone, the task was killed: rerun it)",
                    s.stage,
                    r.task,
                    a.host,
                    a.pid,
                    now.saturating_sub(a.at)
                );
            }
        }
        out
    }
}
