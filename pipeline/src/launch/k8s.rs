//! `pipeline launch k8s CONFIG --tasks N`: Kubernetes manifests for `kubectl apply`: a
//! ConfigMap with the resolved config, then one Indexed Job per stage of `launch::stages`
//! (`completionMode: Indexed`, `completions: N`, `parallelism: K`, `backoffLimitPerIndex`,
//! `maxFailedIndexes`; each pod's task index is the `JOB_COMPLETION_INDEX` that Kubernetes
//! sets). Kubernetes has no `afterok`: every stage after the first has an init container,
//! `pipeline status CONFIG --wait PREVIOUS`, that polls the previous stage's done markers, so
//! all the manifests can be applied at once and no controller beyond the Job one is needed;
//! it fails once a task before has stayed failed past Kubernetes' retry of it, or after
//! `wait_timeout` seconds.
//! Pods share no disk, so the output (and the inputs) must be in object storage; with
//! `[tokenize.train]` the `tokenizer` stage's pod writes the trained tokenizer to
//! `tokenize.tokenizer` in the bucket, where the `tokenize` pods read it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use super::yaml::to_yaml;
use crate::config::PipelineConfig;
use crate::storage::is_remote;

/// Where the config is mounted in every pod.
pub const CONFIG_IN_POD: &str = "/etc/jielong/config.toml";

/// What to launch and how (also the arguments of `pipeline launch k8s`).
#[derive(Debug, Clone, clap::Args)]
pub struct K8sLaunch {
    /// The pipeline config.
    pub config: PathBuf,
    /// Tasks (pods) each indexed stage is split into.
    #[arg(long)]
    pub tasks: usize,
    /// At most this many pods of a stage at once (parallelism); 0 = all.
    #[arg(long, default_value_t = 0)]
    pub max_parallel: usize,
    /// Container image with `pipeline` on its PATH.
    #[arg(long, default_value = "jielong/pipeline:latest")]
    pub image: String,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Secret with the store's credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
    /// (and AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP where needed) for s3://,
    /// AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY for az://; keys it lacks are
    /// left unset.
    #[arg(long, default_value = "jielong-s3")]
    pub secret: String,
    /// CPU cores per pod (request and worker threads).
    #[arg(long, default_value_t = 4)]
    pub cpus: usize,
    /// Memory per pod (request and limit).
    #[arg(long, default_value = "8Gi")]
    pub memory: String,
    /// Retries of one task before it counts as failed (backoffLimitPerIndex).
    #[arg(long, default_value_t = 3)]
    pub retries: usize,
    /// Failed tasks after which a stage's Job stops (maxFailedIndexes; default N/10, >= 1).
    #[arg(long)]
    pub max_failed: Option<usize>,
    /// Seconds a later stage's pods wait for the stage before it (their init container's
    /// `status --wait --timeout`) before they fail.
    #[arg(long, default_value_t = 86_400)]
    pub wait_timeout: u64,
}

/// Seconds a failed task may stay failed before a waiting init container gives up: a
/// retried index's new pod starts after Kubernetes' pod backoff (10 s doubling, at most 6
/// minutes), and its running marker replaces the failed one.
pub const FAILED_GRACE_SECONDS: u64 = 600;

/// One manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// File name in `--out`, numbered in apply order: `00-config.yaml`, `01-clean.yaml`, ...
    pub file: String,
    pub value: Value,
}

impl Manifest {
    pub fn yaml(&self) -> String {
        to_yaml(&self.value)
    }
}

/// The ConfigMap and the Jobs, in apply order.
pub fn manifests(launch: &K8sLaunch) -> Result<Vec<Manifest>> {
    ensure!(launch.tasks > 0, "--tasks must be at least 1");
    ensure!(launch.cpus > 0, "--cpus must be at least 1");
    let config = PipelineConfig::load(&launch.config)?;
    check_remote(&config, &launch.config)?;
    let run = run_name(&launch.config);
    let toml = toml::to_string_pretty(&config).context("writing the config as TOML")?;
    let mut out = vec![Manifest {
        file: "00-config.yaml".into(),
        value: json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(&format!("{run}-config"), launch, &run, None),
            "data": {"config.toml": toml},
        }),
    }];
    let stages = super::stages(Path::new(CONFIG_IN_POD), &config, launch.tasks);
    let mut previous: Option<&super::StageJob> = None;
    for (i, stage) in stages.iter().enumerate() {
        let name = format!("{run}-{}", stage.name);
        let parallelism = match launch.max_parallel {
            0 => stage.tasks,
            k => k.min(stage.tasks),
        };
        let max_failed = launch
            .max_failed
            .unwrap_or((stage.tasks / 10).max(1))
            .clamp(1, stage.tasks);
        let mut pod = json!({
            "restartPolicy": "Never",
            "containers": [container("pipeline", launch, &stage.args)],
            "volumes": [
                {"name": "config", "configMap": {"name": format!("{run}-config")}},
                {"name": "scratch", "emptyDir": {}},
            ],
        });
        if let Some(previous) = previous {
            let wait = [
                "status",
                CONFIG_IN_POD,
                "--tasks",
                &launch.tasks.to_string(),
                "--wait",
                &previous.name,
                "--timeout",
                &launch.wait_timeout.to_string(),
                "--failed-grace",
                &FAILED_GRACE_SECONDS.to_string(),
            ]
            .map(String::from);
            pod["initContainers"] = json!([container("wait", launch, &wait)]);
        }
        out.push(Manifest {
            file: format!("{:02}-{}.yaml", i + 1, stage.name),
            value: json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": metadata(&name, launch, &run, Some(&stage.name)),
                "spec": {
                    "completionMode": "Indexed",
                    "completions": stage.tasks,
                    "parallelism": parallelism,
                    "backoffLimitPerIndex": launch.retries,
                    "maxFailedIndexes": max_failed,
                    "template": {
                        "metadata": {"labels": labels(&run, Some(&stage.name))},
                        "spec": pod,
                    },
                },
            }),
        });
        previous = Some(stage);
    }
    Ok(out)
}

/// Writes the manifests into `dir` (created); returns their paths.
pub fn write(manifests: &[Manifest], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    manifests
        .iter()
        .map(|m| {
            let path = dir.join(&m.file);
            std::fs::write(&path, m.yaml())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// Pods share no disk: every path the tasks read or write must be in object storage.
fn check_remote(config: &PipelineConfig, file: &Path) -> Result<()> {
    let mut local: Vec<String> = Vec::new();
    if !is_remote(&config.output.dir.to_string_lossy()) {
        local.push(format!(
            "output.dir = {:?}",
            config.output.dir.display().to_string()
        ));
    }
    for p in config.input.paths.iter().filter(|p| !is_remote(p)) {
        local.push(format!("input.paths entry {p:?}"));
    }
    if let Some(t) = &config.tokenize {
        // With [tokenize.train] the tokenizer pod writes it there and the tokenize pods read it.
        let tokenizer = if t.train.is_some() {
            "tokenize.tokenizer (where the tokenizer stage writes what [tokenize.train] trains, e.g. s3://BUCKET/OUT/tokenizer.json)"
        } else {
            "tokenize.tokenizer"
        };
        for (field, p) in [(tokenizer, &t.tokenizer), ("tokenize.output", &t.output)] {
            if !is_remote(&p.to_string_lossy()) {
                local.push(format!("{field} = {:?}", p.display().to_string()));
            }
        }
    }
    if !local.is_empty() {
        bail!(
            "{}: Kubernetes pods share no disk, so every input and output must be in object storage (s3:// or az://); local: {}",
            file.display(),
            local.join(", ")
        );
    }
    Ok(())
}

/// `jielong-STEM`: the config file's stem as a DNS label (lowercase letters, digits, `-`).
fn run_name(config: &Path) -> String {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(40);
    let name = name.trim_matches('-');
    if name.is_empty() {
        "jielong".into()
    } else {
        format!("jielong-{name}")
    }
}

fn labels(run: &str, stage: Option<&str>) -> Value {
    let mut labels = json!({"app.kubernetes.io/name": "jielong", "jielong/run": run});
    if let Some(stage) = stage {
        labels["jielong/stage"] = json!(stage);
    }
    labels
}

fn metadata(name: &str, launch: &K8sLaunch, run: &str, stage: Option<&str>) -> Value {
    json!({"name": name, "namespace": launch.namespace, "labels": labels(run, stage)})
}

/// A container running `pipeline ARGS` with the store's settings from the Secret, the config
/// mounted read-only and a scratch volume for staged inputs and outputs.
fn container(name: &str, launch: &K8sLaunch, args: &[String]) -> Value {
    // Optional: a Secret for one store has no keys of the other (a task without the keys
    // its paths need stops at its first request, naming the store).
    let secret = |key: &str| {
        json!({"name": key, "valueFrom": {"secretKeyRef": {
            "name": launch.secret, "key": key, "optional": true}}})
    };
    let mut command = vec!["pipeline".to_string()];
    command.extend(args.iter().cloned());
    json!({
        "name": name,
        "image": launch.image,
        "command": command,
        "env": [
            secret("AWS_ACCESS_KEY_ID"),
            secret("AWS_SECRET_ACCESS_KEY"),
            secret("AWS_REGION"),
            secret("AWS_ENDPOINT_URL"),
            secret("AWS_ALLOW_HTTP"),
            secret("AZURE_STORAGE_ACCOUNT_NAME"),
            secret("AZURE_STORAGE_ACCOUNT_KEY"),
            {"name": "JIELONG_SCRATCH", "value": "/scratch"},
            {"name": "RAYON_NUM_THREADS", "value": launch.cpus.to_string()},
        ],
        "resources": {
            "requests": {"cpu": launch.cpus.to_string(), "memory": launch.memory},
            "limits": {"memory": launch.memory},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/jielong", "readOnly": true},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
    })
}
