//! `pipeline launch slurm CONFIG --tasks N`: one sbatch script per stage of
//! [`super::stages`] (the `clean` array of N tasks, with dedup the `pairs`, (`ship`, `check`,)
//! `components` and `survivors` arrays, then the one-task `finish` that writes the summary
//! and tokenizes), chained with `--dependency=afterok`, throttled with `%K`, one log per
//! task. Arrays larger than the cluster's `MaxArraySize` are submitted as pieces that pass
//! their first index on as `JIELONG_TASK_OFFSET`; the pieces of a stage run one after the other, so `%K` still bounds
//! the whole stage.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// What to launch and how.
#[derive(Debug, Clone)]
pub struct SlurmLaunch {
    /// The pipeline config (made absolute in the scripts).
    pub config: PathBuf,
    pub tasks: usize,
    /// At most this many tasks of a stage at once (`%K`); 0 = no limit.
    pub max_parallel: usize,
    pub partition: Option<String>,
    /// Where the scripts and the `logs/` directory go.
    pub scripts_dir: PathBuf,
    /// The largest array (`MaxArraySize`); read from `scontrol show config` when `None`.
    pub max_array_size: Option<usize>,
    /// Cores per task (`--cpus-per-task`, and as many worker threads); the cluster's default
    /// (usually 1) when `None`.
    pub cpus_per_task: Option<usize>,
}

/// One sbatch script: a stage, or a piece of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub stage: String,
    pub path: PathBuf,
    pub text: String,
}

/// The scripts in submission order; each waits for the previous stage's (`afterok`).
pub fn scripts(launch: &SlurmLaunch) -> Result<Vec<Script>> {
    ensure!(launch.tasks > 0, "--tasks must be at least 1");
    ensure!(
        launch.cpus_per_task != Some(0),
        "--cpus-per-task must be at least 1"
    );
    let max_array = match launch.max_array_size {
        Some(n) => n,
        None => max_array_size()?,
    };
    ensure!(max_array > 0, "MaxArraySize is 0");
    let exe = std::env::current_exe().context("finding the pipeline executable")?;
    let config = std::path::absolute(&launch.config)
        .with_context(|| format!("resolving {}", launch.config.display()))?;
    let loaded = crate::config::PipelineConfig::load(&config)?;
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let logs = std::path::absolute(launch.scripts_dir.join("logs"))?;
    let mut out = Vec::new();
    for job in super::stages(&config, &loaded, launch.tasks) {
        let args: Vec<String> = job.args.iter().map(|a| quote(Path::new(a))).collect();
        let run = format!("exec {} {}", quote(&exe), args.join(" "));
        if !job.per_task {
            out.push(script(launch, &job.name, job.tasks, &cwd, &logs, &run));
            continue;
        }
        // Pieces of at most MaxArraySize tasks, each passing on its first index.
        let (mut start, mut piece) = (0, 0);
        while start < job.tasks {
            let len = (job.tasks - start).min(max_array);
            let command = format!("export JIELONG_TASK_OFFSET={start}\n{run}");
            let stage = format!("{}-{piece:03}", job.name);
            out.push(script(launch, &stage, len, &cwd, &logs, &command));
            start += len;
            piece += 1;
        }
    }
    Ok(out)
}

fn script(
    launch: &SlurmLaunch,
    stage: &str,
    len: usize,
    cwd: &Path,
    logs: &Path,
    command: &str,
) -> Script {
    let throttle = match launch.max_parallel {
        0 => String::new(),
        k => format!("%{k}"),
    };
    let partition = launch
        .partition
        .as_ref()
        .map(|p| format!("#SBATCH --partition={p}\n"))
        .unwrap_or_default();
    // The worker threads follow the cores given, whether or not the cluster binds tasks to
    // them (a task on a node of 64 cores with `task/none` would otherwise start 64).
    let (cpus, threads) = match launch.cpus_per_task {
        Some(c) => (
            format!("#SBATCH --cpus-per-task={c}\n"),
            format!("export RAYON_NUM_THREADS={c}\n"),
        ),
        None => (String::new(), String::new()),
    };
    let text = format!(
        "#!/bin/bash\n#SBATCH --job-name=jielong-{stage}\n#SBATCH --array=0-{}{throttle}\n{partition}{cpus}#SBATCH --chdir={}\n#SBATCH --output={}/{stage}-%A_%a.log\nset -euo pipefail\n{threads}{command}\n",
        len - 1,
        cwd.display(),
        logs.display(),
    );
    Script {
        stage: stage.to_string(),
        path: launch.scripts_dir.join(format!("{stage}.sbatch")),
        text,
    }
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// `MaxArraySize` of the cluster (`scontrol show config`).
pub fn max_array_size() -> Result<usize> {
    let out = Command::new("scontrol")
        .args(["show", "config"])
        .output()
        .context("running `scontrol show config` (is Slurm installed and SLURM_CONF set?)")?;
    ensure!(
        out.status.success(),
        "`scontrol show config` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        if let Some((key, value)) = line.split_once('=')
            && key.trim() == "MaxArraySize"
        {
            return value
                .trim()
                .parse()
                .with_context(|| format!("MaxArraySize {value:?} is not a number"));
        }
    }
    bail!("`scontrol show config` does not say MaxArraySize")
}

/// Writes the scripts and submits them in order, each piece after the previous one; returns
/// the job ids.
pub fn submit(scripts: &[Script]) -> Result<Vec<String>> {
    let mut ids: Vec<String> = Vec::new();
    for s in scripts {
        if let Some(dir) = s.path.parent() {
            std::fs::create_dir_all(dir.join("logs"))
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&s.path, &s.text)
            .with_context(|| format!("writing {}", s.path.display()))?;
        let mut sbatch = Command::new("sbatch");
        sbatch.arg("--parsable");
        if let Some(previous) = ids.last() {
            sbatch.arg(format!("--dependency=afterok:{previous}"));
        }
        let out = sbatch
            .arg(&s.path)
            .output()
            .context("running sbatch (is Slurm installed and SLURM_CONF set?)")?;
        ensure!(
            out.status.success(),
            "sbatch {} failed: {}",
            s.path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        ensure!(
            !id.is_empty(),
            "sbatch printed no job id for {}",
            s.path.display()
        );
        ids.push(id);
    }
    Ok(ids)
}
