//! What the end-to-end tests read back from a demo run: its configs moved under a test
//! directory, JSON and JSONL files, dataset ids, metrics, checkpoints and labeler projects;
//! and the stand-in annotators that fill its projects.

use std::path::{Path, PathBuf};

use format::{Dataset, DatasetKind};
use jielong_tests::{call, workspace_root};
use serde_json::Value;

/// A demo config with its `runs/demo` paths moved under `dir`; returns the new file.
pub fn demo_config(name: &str, dir: &Path) -> String {
    let text = std::fs::read_to_string(workspace_root().join("configs").join(name))
        .unwrap_or_else(|e| panic!("configs/{name}: {e}"));
    let path = dir.join(name.replace('/', "-"));
    std::fs::write(
        &path,
        text.replace("runs/demo", dir.to_str().expect("utf8")),
    )
    .expect("write config");
    path.to_str().expect("utf8").to_string()
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Every `id_column` value of a dataset, with the manifest's row total.
pub fn dataset_ids(dir: &Path, kind: DatasetKind, id_column: &str) -> (Vec<String>, u64) {
    let dataset = Dataset::open_kind(dir, kind).expect("dataset opens");
    let mut ids = Vec::new();
    for i in 0..dataset.num_shards() {
        let shard = dataset.shard(i).expect("shard");
        for batch in shard.batches() {
            let column = batch.strings(id_column).expect("id column");
            ids.extend(column.iter().map(|v| v.unwrap_or_default().to_string()));
        }
    }
    let rows = dataset.manifest().shards.iter().map(|s| s.rows).sum();
    (ids, rows)
}

pub fn metrics(run: &Path) -> Vec<Value> {
    read_jsonl(&run.join("metrics.jsonl"))
}

pub fn newest_checkpoint(run: &Path) -> PathBuf {
    let mut steps: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints"))
        .expect("checkpoints")
        .map(|e| e.expect("entry").path())
        .collect();
    steps.sort();
    steps.pop().expect("a checkpoint")
}

/// Items in a labeler project, from the admin's project list.
pub fn project_items(url: &str, token: &str, name: &str) -> i64 {
    let (status, listed) = call("GET", &format!("{url}/api/projects"), token, None);
    assert_eq!(status, 200, "{listed}");
    listed
        .as_array()
        .expect("projects")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["items"].as_i64())
        .unwrap_or_else(|| panic!("{name} listed: {listed}"))
}

/// Runs the demo's stand-in annotators (`scripts/annotate_demo.py ARGS --log LOG --quiet`)
/// and returns the actions they logged.
pub fn annotate_demo(args: &[&str], log: &Path) -> Value {
    let mut quiet = args.to_vec();
    quiet.push("--quiet");
    annotate_demo_with_stderr(&quiet, log).0
}

/// Runs the stand-in annotators (`scripts/annotate_demo.py ARGS --log LOG`, stderr a pipe)
/// and returns the actions they logged and what they wrote on stderr.
pub fn annotate_demo_with_stderr(args: &[&str], log: &Path) -> (Value, String) {
    let log_arg = log.to_str().expect("utf8 path");
    let out = std::process::Command::new("python3")
        .current_dir(workspace_root())
        .arg("scripts/annotate_demo.py")
        .args(args)
        .args(["--log", log_arg])
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (read_json(log), stderr)
}
