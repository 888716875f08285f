//! Dedup split into stages and tasks (`pipeline clean --stage`): N = 1, 3 and 8 tasks give
//! the one-process run's bytes (kept documents, docs tables), also with a components stage
//! that spills to disk, a killed stage converges, and a config changed between stages is
//! refused naming the field.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use pipeline::clean::{Stage, finish, run, run_stage, stages_of};
use pipeline::config::PipelineConfig;
use pipeline::shard::TaskSlice;

use crate::helpers::{good_english, warc};

/// Output files by relative path, as [`outputs`] reads them.
pub type Outputs = BTreeMap<String, Vec<u8>>;

/// Every output file under `dir` (relative path -> bytes), without work files, markers, and
/// the summary and config (timings, paths); a dataset manifest without its time and config
/// (shards with their sha256s, totals and tokenizer stay).
pub fn outputs(dir: &Path) -> Outputs {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(dir).expect("under").display().to_string();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if path.is_dir() && matches!(name.as_deref(), Some("work" | "tasks")) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if rel.ends_with("manifest.json") {
                let mut m: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
                let fields = m.as_object_mut().expect("manifest object");
                assert!(fields.remove("created_at").is_some() && fields.remove("config").is_some());
                out.insert(rel, serde_json::to_vec(&m).expect("json"));
            } else if !rel.ends_with("summary.json") && !rel.ends_with("config.json") {
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

/// Asserts two `outputs` maps are equal, naming the files that differ.
pub(crate) fn assert_same(got: &Outputs, expected: &Outputs, what: &str) {
    let differ: std::collections::BTreeSet<&String> = (got.keys().chain(expected.keys()))
        .filter(|n| got.get(*n) != expected.get(*n))
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: {differ:?} differ from the local run"
    );
}

fn demo(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../data/demo")
        .join(name)
}

/// Lines of a gzipped JSONL file of the demo.
fn demo_lines(name: &str) -> Vec<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(demo(name)).expect("open"))
        .read_to_string(&mut text)
        .expect("gunzip");
    text.lines().map(String::from).collect()
}

/// Ten inputs: slices of the demo towns (English, Chinese), two shared WARCs, and planted
/// duplicates across files (exact copies with other case and spacing, and copies with one
/// sentence changed), so clusters span inputs and tasks.
pub fn dedup_corpus(dir: &Path, per_language: usize) -> Vec<String> {
    let en = demo_lines("towns-en.jsonl.gz");
    let zh = demo_lines("towns-zh.jsonl.gz");
    let mut paths = Vec::new();
    let mut write = |name: &str, lines: &[String]| {
        let path = dir.join(name);
        std::fs::write(&path, lines.join("\n")).expect("write");
        paths.push(path.display().to_string());
    };
    let en = &en[..per_language.min(en.len())];
    let zh = &zh[..per_language.min(zh.len())];
    for (i, chunk) in en.chunks(en.len().div_ceil(4)).enumerate() {
        write(&format!("en-{i}.jsonl"), chunk);
    }
    for (i, chunk) in zh.chunks(zh.len().div_ceil(3)).enumerate() {
        write(&format!("zh-{i}.jsonl"), chunk);
    }
    let text = |line: &String| -> String {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        v["text"].as_str().expect("text").to_string()
    };
    let mut planted = Vec::new();
    for (i, line) in en.iter().chain(zh.iter()).step_by(7).enumerate() {
        let t = text(line);
        let copy = if i % 2 == 0 {
            t.to_uppercase().replace(' ', "  ")
        } else {
            format!("{t}\n\n{}", good_english(i).lines().next().unwrap_or(""))
        };
        planted.push(serde_json::json!({"id": format!("planted-{i}"), "text": copy}).to_string());
    }
    planted.push(serde_json::json!({"id": "fresh", "text": good_english(99)}).to_string());
    write("planted.jsonl", &planted);
    for name in ["cc-whirlwind.warc.gz", "resiliparse-clipped.warc.gz"] {
        let copy = dir.join(name);
        std::fs::copy(warc(name), &copy).expect("copy warc");
        paths.push(copy.display().to_string());
    }
    paths
}

pub fn dedup_config(dir: &Path, inputs: &[String], out: &Path) -> PipelineConfig {
    let text = format!(
        "[input]\npaths = {inputs:?}\n\n[output]\ndir = \"{}\"\n\n[run]\nbatch_size = 64\n\n[dedup]\nexact = true\nrun_entries = 500\n\n[dedup.minhash]\nenabled = true\n",
        out.display()
    );
    let path = dir.join(format!(
        "dedup-{}.toml",
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    ));
    std::fs::write(&path, text).expect("write config");
    PipelineConfig::load(&path).expect("config loads")
}

/// Every stage of a split run, every task in order (task N-1 first in each stage: the result
/// must not depend on the order tasks run in).
pub(crate) fn run_split(config: &PipelineConfig, n: usize) {
    for stage in stages_of(config) {
        for task in (0..n).rev() {
            let slice = Some(TaskSlice::new(task, n).expect("slice"));
            run_stage(config, stage, slice, false)
                .unwrap_or_else(|e| panic!("{} task {task} of {n}: {e:#}", stage.name()));
        }
    }
    finish(config, n).expect("finish");
}

#[test]
fn split_dedup_gives_the_one_process_bytes_for_1_3_and_8_tasks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = dedup_corpus(dir.path(), 240);
    let local_out = dir.path().join("local");
    let local = run(&dedup_config(dir.path(), &inputs, &local_out), false).expect("local run");
    let expected = outputs(&local_out);
    // The corpus has work for both dedups, and clusters that cross inputs.
    for stage in ["exact_dedup", "minhash_dedup"] {
        assert!(
            local.dropped_by.get(stage).copied().unwrap_or(0) > 3,
            "{stage}: {:?}",
            local.dropped_by
        );
    }
    // The last case: a components stage at memory bound 0, which spills its clusters to
    // disk after the first group and replays every later group as a chunk of its own.
    for (n, components_memory_mb) in [(1, None), (3, None), (8, None), (3, Some(0))] {
        let out = dir
            .path()
            .join(format!("split-{n}-{components_memory_mb:?}"));
        let mut config = dedup_config(dir.path(), &inputs, &out);
        if let Some(mb) = components_memory_mb {
            config.dedup.components_memory_mb = mb;
        }
        run_split(&config, n);
        let got = outputs(&out);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        for (name, bytes) in &expected {
            assert!(
                got[name] == *bytes,
                "{name} differs with {n} tasks, components_memory_mb {components_memory_mb:?}"
            );
        }
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary"))
                .expect("json");
        assert_eq!(summary["docs_out"], local.docs_out, "{n} tasks");
        assert_eq!(summary["docs_in"], local.docs_in, "{n} tasks");
    }
}

#[test]
fn a_killed_dedup_stage_reruns_to_the_same_bytes_and_a_changed_config_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = dedup_corpus(dir.path(), 60);
    let local_out = dir.path().join("local");
    run(&dedup_config(dir.path(), &inputs, &local_out), false).expect("local run");
    let out = dir.path().join("split");
    let config = dedup_config(dir.path(), &inputs, &out);
    let task = |i| Some(TaskSlice::new(i, 3).expect("slice"));
    for i in 0..3 {
        run_stage(&config, Stage::Clean, task(i), false).expect("clean");
    }
    // Pairs before every clean task is done would be refused; here all are: run one task,
    // then "kill" another mid-write: a partial pairs file without its task's marker.
    run_stage(&config, Stage::Pairs, task(0), false).expect("pairs 0");
    let err = run_stage(&config, Stage::Ship, task(0), false).expect_err("too early");
    assert!(format!("{err:#}").contains("[1, 2]"), "{err:#}");
    let partial = out.join("work/dedup/pairs-0001.bin.tmp1");
    std::fs::write(&partial, b"half").expect("write");
    // A config changed between stages is refused, naming the field.
    let mut changed = config.clone();
    changed.dedup.minhash.min_similarity = 0.7;
    let err = run_stage(&changed, Stage::Pairs, task(0), false).expect_err("changed");
    assert!(
        format!("{err:#}").contains("dedup.minhash.min_similarity"),
        "{err:#}"
    );
    // The components stage's memory bound changes no output: a rerun may lower it (here to
    // 0, spilling to disk) and the other stages take its marker.
    let mut lowered = config.clone();
    lowered.dedup.components_memory_mb = 0;
    for stage in stages_of(&config).into_iter().skip(1) {
        let config = if stage == Stage::Components {
            &lowered
        } else {
            &config
        };
        for i in 0..3 {
            run_stage(config, stage, task(i), false).expect("rerun");
        }
    }
    finish(&config, 3).expect("finish");
    assert_eq!(outputs(&out), outputs(&local_out));
    // A finished stage is skipped: rerunning survivors leaves its outputs alone.
    let kept = out.join("kept/part-00000.jsonl.zst");
    std::fs::write(&kept, b"changed").expect("write");
    run_stage(&config, Stage::Survivors, task(0), false).expect("skipped");
    assert_eq!(std::fs::read(&kept).expect("read"), b"changed");
}

/// Submits `config`'s stages as Slurm array jobs (`pipeline launch slurm`, at most 2 tasks at
/// once, arrays of at most 4) and waits for them; panics with the logs when `done` is
/// missing afterwards.
fn launch_and_wait(dir: &Path, config: &Path, n: usize, done: &Path) {
    let scripts = dir.join(format!("jobs-{n}"));
    let launched = std::process::Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(dir)
        .args(["launch", "slurm"])
        .arg(config)
        .args(["--tasks", &n.to_string(), "--max-parallel", "2"])
        .args(["--max-array-size", "4", "--scripts-dir"])
        .arg(&scripts)
        .output()
        .expect("run pipeline launch slurm");
    let stdout = String::from_utf8_lossy(&launched.stdout).to_string();
    assert!(
        launched.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&launched.stderr)
    );
    let ids = stdout
        .trim()
        .strip_prefix("submitted jobs ")
        .expect("job ids")
        .replace(' ', ",");
    let started = std::time::Instant::now();
    loop {
        let queue = std::process::Command::new("squeue")
            .args(["-h", "-j", &ids])
            .output()
            .expect("squeue");
        if String::from_utf8_lossy(&queue.stdout).trim().is_empty() {
            break;
        }
        assert!(started.elapsed().as_secs() < 600, "jobs {ids} still queued");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    if !done.exists() {
        let logs: Vec<String> = std::fs::read_dir(scripts.join("logs"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        panic!(
            "{} missing after jobs {ids}; logs:\n{}",
            done.display(),
            logs.join("\n---\n")
        );
    }
}

#[test]
fn launch_slurm_runs_the_dedup_stages_with_the_local_bytes_for_1_3_and_8_tasks() {
    let Some(_) = crate::cluster::slurm_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = dedup_corpus(dir.path(), 60);
    let tokenizer = crate::helpers::trained_tokenizer(dir.path(), Path::new(&inputs[0]));
    let config = |name: &str, clean: &str| -> PathBuf {
        let text = format!(
            "[input]\npaths = {inputs:?}\n\n[output]\ndir = \"{clean}\"\n\n[dedup]\nexact = true\n\n[dedup.minhash]\nenabled = true\n\n[tokenize]\ntokenizer = \"{}\"\noutput = \"{name}/dataset\"\nmax_shard_tokens = 2000\nvalidation_fraction = 0.2\n",
            tokenizer.display()
        );
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write config");
        path
    };
    let mut local = PipelineConfig::load(&config("local", "local/clean")).expect("config");
    local.output.dir = dir.path().join("local/clean");
    if let Some(t) = local.tokenize.as_mut() {
        t.output = dir.path().join("local/dataset");
    }
    run(&local, false).expect("local run");
    let expected = outputs(&dir.path().join("local"));
    assert!(expected.keys().any(|k| k.ends_with(".arrow")));
    // With the S3 server running, the 8-task run writes its clean output to a bucket.
    let s3 = crate::cluster::s3_endpoint()
        .map(|e| format!("s3://{}/clean", crate::cluster::new_bucket(&e, "slurm")));
    for n in [1, 3, 8] {
        let name = format!("slurm-{n}");
        let clean = match &s3 {
            Some(url) if n == 8 => url.clone(),
            _ => format!("{name}/clean"),
        };
        let path = config(&name, &clean);
        let out = dir.path().join(&name);
        launch_and_wait(
            dir.path(),
            &path,
            n,
            &out.join("dataset/train/manifest.json"),
        );
        let mut got = outputs(&out);
        if clean.starts_with("s3://") {
            let like: BTreeMap<String, Vec<u8>> = expected
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("clean/")?.to_string(), v.clone())))
                .collect();
            let fetched = crate::cluster::remote_files(&clean, &like, &dir.path().join("fetched"));
            got.extend(fetched.into_iter().map(|(k, v)| (format!("clean/{k}"), v)));
        }
        assert_same(&got, &expected, &format!("{n} tasks"));
        if n == 3 {
            // A survivors task killed mid-write: its marker gone, its output half written.
            // Launching again redoes only it and converges to the same bytes.
            std::fs::remove_file(out.join("clean/tasks/survivors-00001-of-00003.json"))
                .expect("remove marker");
            std::fs::write(out.join("clean/kept/part-00001.jsonl.zst"), b"half").expect("write");
            std::fs::remove_file(out.join("clean/summary.json")).expect("remove summary");
            std::fs::remove_dir_all(out.join("dataset")).expect("remove dataset");
            launch_and_wait(
                dir.path(),
                &path,
                n,
                &out.join("dataset/train/manifest.json"),
            );
            assert_same(&outputs(&out), &expected, "rerun after a kill");
        }
    }
}

#[test]
fn split_dedup_over_s3_gives_the_local_bytes() {
    let Some(endpoint) = crate::cluster::s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = dedup_corpus(dir.path(), 60);
    let local_out = dir.path().join("local");
    run(&dedup_config(dir.path(), &inputs, &local_out), false).expect("local run");
    let expected = outputs(&local_out);
    let bucket = crate::cluster::new_bucket(&endpoint, "ddedup");
    let out_url = format!("s3://{bucket}/clean");
    let config = dedup_config(dir.path(), &inputs, Path::new(&out_url));
    run_split(&config, 3);
    let got = crate::cluster::remote_files(&out_url, &expected, &dir.path().join("fetched"));
    assert_same(&got, &expected, "3 tasks over s3");
    assert!(
        pipeline::storage::exists(Path::new(&format!(
            "{out_url}/tasks/survivors-00002-of-00003.json"
        )))
        .expect("head")
    );
    // More tasks than the 10 inputs: tasks without an input upload empty packs.
    let wide_url = format!("s3://{bucket}/wide");
    run_split(&dedup_config(dir.path(), &inputs, Path::new(&wide_url)), 12);
    let got = crate::cluster::remote_files(&wide_url, &expected, &dir.path().join("wide"));
    assert_same(&got, &expected, "12 tasks over s3");
    // The finish step sums every task's object store traffic (other tests in this process
    // talk to the same server at once, so only its presence is checked here).
    let summary = pipeline::storage::read_small(Path::new(&format!("{out_url}/summary.json")))
        .expect("summary");
    let summary: serde_json::Value = serde_json::from_slice(&summary).expect("json");
    let traffic = &summary["object_store"];
    // Inputs are local here: the input part of what was read is counted apart (0 unless
    // another test of this process read remote inputs meanwhile).
    assert!(traffic["input_bytes_read"].is_u64(), "{summary}");
    for field in [
        "bytes_read",
        "read_requests",
        "bytes_written",
        "write_requests",
    ] {
        assert!(traffic[field].as_u64() > Some(0), "{field}: {summary}");
    }
}

#[test]
fn every_launcher_gets_one_list_of_stages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = vec![dir.path().join("a.jsonl").display().to_string()];
    let config = dedup_config(dir.path(), &inputs, &dir.path().join("out"));
    let path = Path::new("c.toml");
    let stages = pipeline::launch::stages;
    let jobs = stages(path, &config, 4);
    let names: Vec<(&str, usize)> = jobs.iter().map(|j| (j.name.as_str(), j.tasks)).collect();
    assert_eq!(
        names,
        [
            ("clean", 4),
            ("pairs", 4),
            ("ship", 4),
            ("check", 4),
            ("components", 1),
            ("survivors", 4),
            ("finish", 1)
        ]
    );
    assert_eq!(
        jobs[4].args,
        ["clean", "c.toml", "--stage", "components", "--tasks", "4"]
    );
    assert_eq!(
        jobs[6].args,
        ["clean", "c.toml", "--finish", "--tasks", "4"]
    );
    let names = |c| -> Vec<String> { stages(path, c, 4).into_iter().map(|j| j.name).collect() };
    // Without similarity checks, no ship and check stages.
    let mut unchecked = config.clone();
    unchecked.dedup.minhash.min_similarity = 0.0;
    assert_eq!(names(&unchecked)[1..3], ["pairs", "components"]);
    let mut plain = config.clone();
    plain.dedup.exact = false;
    plain.dedup.minhash.enabled = false;
    assert_eq!(names(&plain), ["clean", "finish"]);
}
