//! Dedup split into stages and tasks (`pipeline clean --stage`): N = 1, 3 and 8 tasks give
//! the one-process run's bytes (kept documents, docs tables), a killed stage converges, and
//! a config changed between stages is refused naming the field.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use pipeline::clean::{Stage, finish, run, run_stage};
use pipeline::config::PipelineConfig;
use pipeline::shard::TaskSlice;

use crate::helpers::{good_english, warc};

/// Every output file under `dir` (relative path -> bytes), without work files, markers, and
/// the summary and config (timings, paths).
pub fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(dir).expect("under").display().to_string();
            if rel == "work" || rel == "tasks" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if !rel.ends_with("summary.json") && !rel.ends_with("config.json") {
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
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
fn run_split(config: &PipelineConfig, n: usize) {
    for stage in [
        Stage::Clean,
        Stage::Pairs,
        Stage::Components,
        Stage::Survivors,
    ] {
        for task in (0..n).rev() {
            let slice = Some(TaskSlice::new(task, n).expect("slice"));
            run_stage(config, stage, slice, false)
                .unwrap_or_else(|e| panic!("{} task {task} of {n}: {e:#}", stage.name()));
        }
    }
    finish(config, n, false).expect("finish");
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
    for n in [1, 3, 8] {
        let out = dir.path().join(format!("split-{n}"));
        let config = dedup_config(dir.path(), &inputs, &out);
        run_split(&config, n);
        let got = outputs(&out);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        for (name, bytes) in &expected {
            assert!(got[name] == *bytes, "{name} differs with {n} tasks");
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
    let err = run_stage(&config, Stage::Components, task(0), false).expect_err("too early");
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
    for stage in [Stage::Pairs, Stage::Components, Stage::Survivors] {
        for i in 0..3 {
            run_stage(&config, stage, task(i), false).expect("rerun");
        }
    }
    finish(&config, 3, false).expect("finish");
    assert_eq!(outputs(&out), outputs(&local_out));
    // A finished stage is skipped: rerunning survivors leaves its outputs alone.
    let kept = out.join("kept/part-00000.jsonl.zst");
    std::fs::write(&kept, b"changed").expect("write");
    run_stage(&config, Stage::Survivors, task(0), false).expect("skipped");
    assert_eq!(std::fs::read(&kept).expect("read"), b"changed");
}
