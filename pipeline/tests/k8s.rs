//! `pipeline launch k8s`: the manifests parse as YAML (read back by PyYAML, an independent
//! parser), pass the Kubernetes OpenAPI schemas (`kubernetes-validate --strict`, see
//! `k8s_schema`; `kubectl apply --dry-run=client` needs an API server, which the tests do not
//! have) and carry what an Indexed Job needs; and their pods' commands, run here as
//! Kubernetes would run them (`JOB_COMPLETION_INDEX` per pod, the finish pod's init container
//! first), give the one-process bytes over the S3 server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipeline::clean::run;
use pipeline::config::PipelineConfig;
use pipeline::launch::yaml::{documents, to_yaml};
use pipeline::storage;
use serde_json::{Value, json};

use crate::cluster::{files, new_bucket, remote_files, s3_endpoint, write_corpus};
use crate::k8s_schema::{parse_yaml, validate};

#[test]
fn the_yaml_writer_reads_back_as_the_same_values() {
    let value = json!({
        "plain": "text",
        "tricky": ["3", "true", "no", "null", "a: b", "# not a comment", "- dash", "", "~",
                   "multi\nline\n  indented", "quote \" and \\ and ünïcode 接龙"],
        "numbers": [0, -1, 2.5, true, false, null],
        "empty": {}, "none": [],
        "nested": [{"a": 1, "b": [{"c": "d"}, [1, [2]]]}, {"yes": "key that YAML 1.1 reads as true"}],
        "app.kubernetes.io/name": "x",
    });
    assert_eq!(parse_yaml(&to_yaml(&value)), vec![value.clone()]);
    let two = parse_yaml(&documents(&[value.clone(), json!({"k": "v"})]));
    assert_eq!(two, vec![value, json!({"k": "v"})]);
}

fn s3_config(dir: &Path, name: &str, bucket: &str) -> PathBuf {
    let text = format!(
        "[input]\npaths = [\"s3://{bucket}/in/*.jsonl\", \"s3://{bucket}/in/*.warc.gz\"]\n\n[output]\ndir = \"s3://{bucket}/{name}\"\n\n[run]\nbatch_size = 4\n\n[dedup]\nexact = false\n\n[dedup.minhash]\nenabled = false\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

pub(crate) fn launch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(["launch", "k8s"])
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run pipeline launch k8s")
}

#[test]
fn launch_k8s_writes_indexed_jobs_for_kubectl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = s3_config(dir.path(), "My_Run", "b");
    let out = dir.path().join("manifests");
    let ran = launch(&[
        config.to_str().expect("utf-8"),
        "--tasks",
        "3",
        "--max-parallel",
        "2",
        "--image",
        "registry.example/jielong:1",
        "--namespace",
        "data",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(ran.status.success(), "{ran:?}");
    let names: Vec<String> = std::fs::read_dir(&out)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["00-config.yaml", "01-clean.yaml", "02-finish.yaml"]);
    let paths: Vec<PathBuf> = names.iter().map(|n| out.join(n)).collect();
    validate(&paths).unwrap_or_else(|e| panic!("{e}"));
    let read = |name: &str| {
        let mut docs = parse_yaml(&std::fs::read_to_string(out.join(name)).expect("read"));
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    };
    let (map, clean, finish) = (
        read("00-config.yaml"),
        read("01-clean.yaml"),
        read("02-finish.yaml"),
    );

    // The ConfigMap holds the config: it loads back as the same settings.
    assert_eq!(map["kind"], "ConfigMap");
    assert_eq!(map["metadata"]["name"], "jielong-my-run-config");
    assert_eq!(map["metadata"]["namespace"], "data");
    let copy = dir.path().join("from-configmap.toml");
    std::fs::write(&copy, map["data"]["config.toml"].as_str().expect("toml")).expect("write");
    assert_eq!(
        PipelineConfig::load(&copy).expect("loads"),
        PipelineConfig::load(&config).expect("loads")
    );

    for (job, completions, parallelism) in [(&clean, 3, 2), (&finish, 1, 1)] {
        assert_eq!(job["apiVersion"], "batch/v1");
        assert_eq!(job["kind"], "Job");
        let spec = &job["spec"];
        assert_eq!(spec["completionMode"], "Indexed");
        assert_eq!(spec["completions"], completions);
        assert_eq!(spec["parallelism"], parallelism);
        assert_eq!(spec["backoffLimitPerIndex"], 3);
        assert_eq!(spec["maxFailedIndexes"], 1);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        let main = &pod["containers"][0];
        assert_eq!(main["image"], "registry.example/jielong:1");
        assert_eq!(main["resources"]["requests"]["cpu"], "4");
        assert_eq!(main["resources"]["limits"]["memory"], "8Gi");
        let env = main["env"].as_array().expect("env");
        let key = env
            .iter()
            .find(|e| e["name"] == "AWS_SECRET_ACCESS_KEY")
            .expect("secret key env");
        assert_eq!(
            key["valueFrom"]["secretKeyRef"],
            json!({"name": "jielong-s3", "key": "AWS_SECRET_ACCESS_KEY", "optional": true})
        );
        // az:// credentials come from the same Secret.
        assert!(
            env.iter().any(|e| e["name"] == "AZURE_STORAGE_ACCOUNT_KEY"),
            "{env:?}"
        );
        assert_eq!(
            pod["volumes"][0]["configMap"]["name"],
            "jielong-my-run-config"
        );
        assert_eq!(main["volumeMounts"][0]["mountPath"], "/etc/jielong");
    }
    assert_eq!(
        clean["spec"]["template"]["spec"]["containers"][0]["command"],
        json!([
            "pipeline",
            "clean",
            "/etc/jielong/config.toml",
            "--tasks",
            "3"
        ])
    );
    assert!(clean["spec"]["template"]["spec"]["initContainers"].is_null());
    // finish waits for clean's done markers, then runs.
    let finish_pod = &finish["spec"]["template"]["spec"];
    assert_eq!(
        finish_pod["initContainers"][0]["command"],
        json!([
            "pipeline",
            "status",
            "/etc/jielong/config.toml",
            "--tasks",
            "3",
            "--wait",
            "clean",
            "--timeout",
            "86400",
            "--failed-grace",
            "600"
        ])
    );
    assert_eq!(
        finish_pod["containers"][0]["command"],
        json!([
            "pipeline",
            "clean",
            "/etc/jielong/config.toml",
            "--finish",
            "--tasks",
            "3"
        ])
    );

    // Without --out, the same manifests go to stdout for `kubectl apply -f -`.
    let printed = launch(&[
        config.to_str().expect("utf-8"),
        "--tasks",
        "3",
        "--max-parallel",
        "2",
        "--image",
        "registry.example/jielong:1",
        "--namespace",
        "data",
    ]);
    assert!(printed.status.success(), "{printed:?}");
    let docs = parse_yaml(&String::from_utf8_lossy(&printed.stdout));
    assert_eq!(docs, vec![map, clean, finish]);
    let stdout = dir.path().join("stdout.yaml");
    std::fs::write(&stdout, &printed.stdout).expect("write");
    validate(&[stdout]).unwrap_or_else(|e| panic!("{e}"));

    // A local output cannot be shared by pods: refused, naming the field.
    let local = dir.path().join("local.toml");
    std::fs::write(
        &local,
        "[input]\npaths = [\"s3://b/in/\"]\n\n[output]\ndir = \"out\"\n",
    )
    .expect("write");
    let refused = launch(&[local.to_str().expect("utf-8"), "--tasks", "2"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("output.dir = \"out\""), "{err}");
}

/// The manifest files `launch k8s --out DIR` wrote, in apply order.
/// `pipeline launch k8s CONFIG --tasks N --out OUT`, which must succeed; its manifests, in
/// apply order, validated against the Kubernetes schemas.
pub(crate) fn launched_manifests(config: &Path, tasks: usize, out: &Path) -> Vec<PathBuf> {
    let tasks = tasks.to_string();
    let ran = launch(&[
        config.to_str().expect("utf-8"),
        "--tasks",
        &tasks,
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(ran.status.success(), "{ran:?}");
    let files = manifest_files(out);
    validate(&files).unwrap_or_else(|e| panic!("{e}"));
    files
}

pub(crate) fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list manifests")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

/// Runs a manifest container's command here as its pod would: `pipeline` is this build, the
/// config is the ConfigMap's copy, and `JOB_COMPLETION_INDEX` is the pod's index.
pub(crate) fn pod_command(container: &Value, config: &Path, index: usize) -> Command {
    let args: Vec<String> = container["command"]
        .as_array()
        .expect("command")
        .iter()
        .skip(1)
        .map(|a| {
            let a = a.as_str().expect("string");
            if a == pipeline::launch::k8s::CONFIG_IN_POD {
                config.display().to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    command
        .args(args)
        .env("JOB_COMPLETION_INDEX", index.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// The test corpus (`write_corpus`) under `dir/upload` and in a new bucket's `in/`: the
/// bucket, and the local paths in the order the remote patterns `in/*.jsonl`, `in/*.warc.gz`
/// list them.
pub(crate) fn corpus_in_new_bucket(
    dir: &Path,
    endpoint: &str,
    prefix: &str,
) -> (String, Vec<String>) {
    let inputs = write_corpus(dir);
    let bucket = new_bucket(endpoint, prefix);
    let upload = dir.join("upload");
    std::fs::create_dir_all(&upload).expect("mkdir");
    for input in &inputs {
        std::fs::copy(input, upload.join(input.file_name().expect("name"))).expect("copy");
    }
    storage::upload_dir(&upload, &format!("s3://{bucket}/in"), &[], &[]).expect("upload");
    let local_inputs = ["corpus.jsonl", "more.jsonl", "cc.warc.gz"]
        .iter()
        .map(|n| upload.join(n).display().to_string())
        .collect();
    (bucket, local_inputs)
}

#[test]
fn k8s_pods_run_in_order_over_s3_and_give_the_local_bytes() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (bucket, local_inputs) = corpus_in_new_bucket(dir.path(), &endpoint, "k8s");
    let whole = dir.path().join("whole");
    let mut local = PipelineConfig::load(&s3_config(dir.path(), "run", &bucket)).expect("config");
    local.input.paths = local_inputs;
    local.output.dir = whole.clone();
    run(&local, false).expect("one process");

    let config = s3_config(dir.path(), "run", &bucket);
    let out = dir.path().join("manifests");
    launched_manifests(&config, 3, &out);
    let read = |name: &str| parse_yaml(&std::fs::read_to_string(out.join(name)).expect("read"));
    let map = read("00-config.yaml").remove(0);
    let pod_config = dir.path().join("pod-config.toml");
    std::fs::write(
        &pod_config,
        map["data"]["config.toml"].as_str().expect("toml"),
    )
    .expect("w");
    let clean = read("01-clean.yaml").remove(0);
    let finish = read("02-finish.yaml").remove(0);
    let finish_pod = &finish["spec"]["template"]["spec"];

    // Two clean pods; finish's init container keeps waiting for the third.
    let clean_pod = &clean["spec"]["template"]["spec"]["containers"][0];
    for index in [2, 0] {
        let done = pod_command(clean_pod, &pod_config, index)
            .output()
            .expect("pod");
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    let mut wait = pod_command(&finish_pod["initContainers"][0], &pod_config, 0);
    let mut waiting = wait
        .arg("--poll-seconds")
        .arg("1")
        .spawn()
        .expect("init container");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        waiting.try_wait().expect("poll").is_none(),
        "finish started before clean was done"
    );
    let done = pod_command(clean_pod, &pod_config, 1)
        .output()
        .expect("pod");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let started = Instant::now();
    let waited = loop {
        if let Some(status) = waiting.try_wait().expect("poll") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the init container never ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(waited.success());
    let done = pod_command(&finish_pod["containers"][0], &pod_config, 0)
        .output()
        .expect("finish pod");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );

    let expected = files(&whole);
    let url = format!("s3://{bucket}/run");
    assert_eq!(
        remote_files(&url, &expected, &dir.path().join("check")),
        expected
    );
    let state =
        pipeline::status::status(&PipelineConfig::load(&config).expect("c"), None).expect("status");
    assert!(state.stages.iter().all(|s| s.is_done()), "{state:?}");
}
