//! `[tokenize.train]` in a split run: the `tokenizer` stage (one task) trains the tokenizer on
//! every kept document and writes it to `tokenize.tokenizer` (local, or `s3://` for
//! Kubernetes pods, which share no disk), the `tokenize` tasks encode with it, the `shards`
//! tasks write the shuffle's buckets as shards and the finish step writes the rest. Run as the Slurm launcher's array tasks on local paths, and as the
//! Kubernetes manifests' pods over the S3 server, the tokenizer, kept files, docs tables,
//! token shards and manifest are the one-process run's bytes; a config that cannot work on
//! Kubernetes is refused naming the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pipeline::clean::run;
use pipeline::config::PipelineConfig;
use pipeline::storage;
use serde_json::Value;

use crate::cluster::{remote_files, s3_endpoint, write_corpus};
use crate::cluster_dedup::{assert_same, outputs};
use crate::k8s::{corpus_in_new_bucket, launch, launched_manifests, pod_command};
use crate::k8s_schema::parse_yaml;

/// A config with dedup, `[tokenize]`, `[tokenize.train]` and `[tokenize.shuffle]`; `out`, `tokenizer` and `dataset`
/// local paths or `s3://` URLs.
fn train_config(
    dir: &Path,
    name: &str,
    inputs: &[String],
    out: &str,
    tokenizer: &str,
    dataset: &str,
) -> PathBuf {
    let text = format!(
        "[input]\npaths = {inputs:?}\n\n[output]\ndir = \"{out}\"\n\n[run]\nbatch_size = 4\n\n[dedup]\nexact = true\n\n[dedup.minhash]\nenabled = true\n\n[tokenize]\ntokenizer = \"{tokenizer}\"\noutput = \"{dataset}\"\nmax_shard_tokens = 2000\nvalidation_fraction = 0.2\n\n[tokenize.train]\nvocab_size = 400\nmin_frequency = 2\n\n[tokenize.shuffle]\nseed = 5\nbuckets = 4\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// The one-process run of the config, all local, under `root`: `root/clean` (with the
/// tokenizer in `root/clean/tokenizer.json`) and `root/dataset`; returns `outputs(root)`.
fn one_process(dir: &Path, inputs: &[String], root: &Path) -> BTreeMap<String, Vec<u8>> {
    let at = |p: &str| root.join(p).display().to_string();
    let path = train_config(
        dir,
        "one-process",
        inputs,
        &at("clean"),
        &at("clean/tokenizer.json"),
        &at("dataset"),
    );
    run(&PipelineConfig::load(&path).expect("config"), false).expect("one process");
    let expected = outputs(root);
    for file in ["clean/tokenizer.json", "dataset/train/manifest.json"] {
        assert!(expected.contains_key(file), "{file}: {:?}", expected.keys());
    }
    assert!(expected.keys().any(|k| k.ends_with(".arrow")));
    expected
}

#[test]
fn slurm_array_tasks_train_the_tokenizer_in_its_stage_with_the_local_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs: Vec<String> = write_corpus(dir.path())
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let expected = one_process(dir.path(), &inputs, &dir.path().join("local"));
    for n in [1, 3] {
        let root = dir.path().join(format!("split-{n}"));
        let at = |p: &str| root.join(p).display().to_string();
        let path = train_config(
            dir.path(),
            &format!("split-{n}"),
            &inputs,
            &at("clean"),
            &at("clean/tokenizer.json"),
            &at("dataset"),
        );
        let config = PipelineConfig::load(&path).expect("config");
        // The stages every launcher submits; each array task runs `pipeline ARGS` with its
        // index in SLURM_ARRAY_TASK_ID, as the sbatch scripts do (last index first).
        let jobs = pipeline::launch::stages(&path, &config, n);
        let names: Vec<(&str, usize)> = jobs.iter().map(|j| (j.name.as_str(), j.tasks)).collect();
        assert_eq!(
            names,
            [
                ("clean", n),
                ("pairs", n),
                ("ship", n),
                ("check", n),
                ("components", 1),
                ("survivors", n),
                ("tokenizer", 1),
                ("tokenize", n),
                ("shards", n),
                ("finish", 1)
            ]
        );
        for job in &jobs {
            for index in (0..job.tasks).rev() {
                let done = Command::new(env!("CARGO_BIN_EXE_pipeline"))
                    .args(&job.args)
                    .env("SLURM_ARRAY_TASK_ID", index.to_string())
                    .env("SLURM_ARRAY_TASK_MIN", "0")
                    .env("SLURM_ARRAY_TASK_COUNT", job.tasks.to_string())
                    .output()
                    .expect("run a task");
                assert!(
                    done.status.success(),
                    "{} task {index} of {n}: {}",
                    job.name,
                    String::from_utf8_lossy(&done.stderr)
                );
            }
        }
        assert_same(&outputs(&root), &expected, &format!("{n} tasks"));
    }

    // The tokenize stage before the tokenizer stage: refused, naming the missing stage.
    let root = dir.path().join("early");
    let at = |p: &str| root.join(p).display().to_string();
    let path = train_config(
        dir.path(),
        "early",
        &inputs,
        &at("clean"),
        &at("clean/tokenizer.json"),
        &at("dataset"),
    );
    let config = PipelineConfig::load(&path).expect("config");
    let jobs = pipeline::launch::stages(&path, &config, 1);
    for job in jobs.iter().take_while(|j| j.name != "tokenizer") {
        let ran = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(&job.args)
            .env("SLURM_ARRAY_TASK_ID", "0")
            .output()
            .expect("run");
        assert!(ran.status.success(), "{}", job.name);
    }
    let tokenize = jobs.iter().find(|j| j.name == "tokenize").expect("stage");
    let early = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(&tokenize.args)
        .env("SLURM_ARRAY_TASK_ID", "0")
        .output()
        .expect("run");
    assert!(!early.status.success());
    let err = String::from_utf8_lossy(&early.stderr);
    assert!(
        err.contains("of stage tokenizer have no done marker"),
        "{err}"
    );
}

/// Every object of the remote directory `url` that `like` names, written under `to` so that
/// `outputs(to)` reads them like a local run's files (`scratch` holds the downloads).
fn fetch_like(url: &str, like: &BTreeMap<String, Vec<u8>>, to: &Path, scratch: &Path) {
    for (rel, bytes) in remote_files(url, like, scratch) {
        let path = to.join(&rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }
}

#[test]
fn k8s_pods_train_the_tokenizer_in_the_bucket_and_give_the_local_bytes() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (bucket, local_inputs) = corpus_in_new_bucket(dir.path(), &endpoint, "k8strain");
    let expected = one_process(dir.path(), &local_inputs, &dir.path().join("local"));

    let remote_inputs = [
        format!("s3://{bucket}/in/*.jsonl"),
        format!("s3://{bucket}/in/*.warc.gz"),
    ];
    let s3 = |p: &str| format!("s3://{bucket}/{p}");
    let config = train_config(
        dir.path(),
        "train",
        &remote_inputs,
        &s3("clean"),
        &s3("clean/tokenizer.json"),
        &s3("dataset"),
    );
    let out = dir.path().join("manifests");
    let files = launched_manifests(&config, 3, &out);
    let docs: Vec<Value> = files
        .iter()
        .map(|f| parse_yaml(&std::fs::read_to_string(f).expect("read")).remove(0))
        .collect();
    let pod_config = dir.path().join("pod-config.toml");
    std::fs::write(
        &pod_config,
        docs[0]["data"]["config.toml"].as_str().expect("toml"),
    )
    .expect("write");
    let stages: Vec<(&str, u64)> = docs[1..]
        .iter()
        .map(|job| {
            let stage = job["metadata"]["labels"]["jielong/stage"].as_str();
            (
                stage.expect("stage"),
                job["spec"]["completions"].as_u64().expect("n"),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("clean", 3),
            ("pairs", 3),
            ("ship", 3),
            ("check", 3),
            ("components", 1),
            ("survivors", 3),
            ("tokenizer", 1),
            ("tokenize", 3),
            ("shards", 3),
            ("finish", 1)
        ]
    );
    // Every Job in apply order, every pod of it (last index first): its init container
    // (waiting for the stage before, done by now), then its container.
    for job in &docs[1..] {
        let pod = &job["spec"]["template"]["spec"];
        let completions = job["spec"]["completions"].as_u64().expect("completions") as usize;
        for index in (0..completions).rev() {
            let init = pod["initContainers"].as_array().into_iter().flatten();
            for container in init.chain(pod["containers"].as_array().expect("containers")) {
                let done = pod_command(container, &pod_config, index)
                    .output()
                    .expect("pod");
                assert!(
                    done.status.success(),
                    "{} pod {index}, container {}: {}",
                    job["metadata"]["name"],
                    container["name"],
                    String::from_utf8_lossy(&done.stderr)
                );
            }
        }
    }

    let got = dir.path().join("got");
    let like = |prefix: &str| -> BTreeMap<String, Vec<u8>> {
        crate::cluster::files(&dir.path().join("local").join(prefix))
    };
    for part in ["clean", "dataset"] {
        let scratch = dir.path().join(format!("fetch-{part}"));
        fetch_like(&s3(part), &like(part), &got.join(part), &scratch);
    }
    assert_same(&outputs(&got), &expected, "k8s pods");
    // Nothing more in the dataset than the local run wrote (its encoded files removed).
    for split in ["train", "val"] {
        let local = storage::list_names(&dir.path().join("local/dataset").join(split));
        let remote = storage::list_names(Path::new(&s3(&format!("dataset/{split}"))));
        assert_eq!(remote.expect("list"), local.expect("list"), "{split}");
    }
    assert!(
        storage::list_names(Path::new(&s3("dataset/work")))
            .expect("list")
            .is_empty()
    );
    let state =
        pipeline::status::status(&PipelineConfig::load(&config).expect("c"), None).expect("status");
    assert!(state.stages.iter().all(|s| s.is_done()), "{state:?}");
    // The run's summary counts every stage's object store traffic and time, the tokenizer
    // and tokenize stages' included: their sum over the markers (`finish` aside).
    let read = |path: &Path| -> Value {
        serde_json::from_slice(&storage::read_small(path).expect("read")).expect("json")
    };
    let summary = read(Path::new(&s3("clean/summary.json")));
    let markers = storage::list_names(Path::new(&s3("clean/tasks"))).expect("list");
    let mut bytes_read = 0;
    for name in markers.iter().filter(|n| !n.starts_with("finish")) {
        let marker = read(Path::new(&s3(&format!("clean/tasks/{name}"))));
        bytes_read += marker["summary"]["object_store"]["bytes_read"]
            .as_u64()
            .expect("bytes_read");
    }
    assert_eq!(
        summary["object_store"]["bytes_read"].as_u64(),
        Some(bytes_read)
    );
    for stage in ["tokenizer", "tokenize", "shards"] {
        assert!(summary["seconds"][stage].as_f64().is_some(), "{summary}");
    }

    // The tokenizer must be where the pods can reach it: a local one is refused, naming it.
    let local_tokenizer = train_config(
        dir.path(),
        "local-tokenizer",
        &remote_inputs,
        &s3("other"),
        "tokenizer.json",
        &s3("other-dataset"),
    );
    let refused = launch(&[local_tokenizer.to_str().expect("utf-8"), "--tasks", "2"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("tokenize.tokenizer (where the tokenizer stage writes")
            && err.contains("= \"tokenizer.json\""),
        "{err}"
    );
}
