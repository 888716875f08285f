//! Shared builders: a byte-level BPE tokenizer trained in process, small pretrain datasets
//! encoded with it, and run configs for tiny models.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::tokenizer::{save_bpe, write_pretrain_dataset};
use trainer::engine::config::RunConfig;

pub const TRAINER: &str = env!("CARGO_BIN_EXE_trainer");

/// The words of a small synthetic corpus with enough regularity to learn quickly: sentences
/// of a subject, a verb and an object, words and sentences separated by `space`.
pub struct Phrasebook {
    pub subjects: [&'static str; 5],
    pub verbs: [&'static str; 4],
    pub objects: [&'static str; 4],
    pub space: &'static str,
    pub full_stop: &'static str,
}

impl Phrasebook {
    /// Document `i`: 3 to 6 sentences.
    pub fn document(&self, i: usize) -> String {
        (0..3 + i % 4)
            .map(|j| {
                let k = i * 7 + j * 3;
                let words = [
                    self.subjects[k % 5],
                    self.verbs[(k / 5) % 4],
                    self.objects[(k / 3) % 4],
                ];
                words.join(self.space) + self.full_stop
            })
            .collect::<Vec<_>>()
            .join(self.space)
    }
}

pub const ENGLISH: Phrasebook = Phrasebook {
    subjects: ["the cat", "a dog", "the bird", "my friend", "the teacher"],
    verbs: ["sees", "likes", "finds", "follows"],
    objects: [
        "the red ball",
        "a green box",
        "the old tree",
        "a small house",
    ],
    space: " ",
    full_stop: ".",
};

/// Document `i` of the English corpus.
pub fn document(i: usize) -> String {
    ENGLISH.document(i)
}

/// Trains a byte-level BPE with jielong's special tokens at ids 0..5 on 200 documents and
/// saves it.
pub fn train_tokenizer(dir: &Path, vocab_size: usize) -> PathBuf {
    let corpus: Vec<String> = (0..200).map(document).collect();
    let path = dir.join("bpe-tokenizer.json");
    save_bpe(&path, corpus.iter().map(String::as_str), vocab_size);
    path
}

/// A pretrain dataset of `docs` documents (starting at document `first`) under `dir/name`.
pub fn write_dataset(
    root: &Path,
    name: &str,
    first: usize,
    docs: usize,
    max_shard_tokens: u64,
) -> PathBuf {
    let tokenizer_path = root.join("bpe-tokenizer.json");
    if !tokenizer_path.exists() {
        train_tokenizer(root, 320);
    }
    let dir = root.join(name);
    write_pretrain_dataset(
        &dir,
        &tokenizer_path,
        (first..first + docs).map(|i| (format!("doc-{i}"), document(i))),
        Some(max_shard_tokens),
    );
    dir
}

/// Train and validation datasets under `root`: (train, valid).
pub fn datasets(root: &Path) -> (PathBuf, PathBuf) {
    (
        write_dataset(root, "train", 0, 150, 1500),
        write_dataset(root, "valid", 1000, 30, 1 << 20),
    )
}

/// A tiny run config as TOML (vocab from the dataset, one CPU thread, fixed seed).
pub fn tiny_config_toml(train: &Path, valid: &Path, out: &Path, steps: u64) -> String {
    format!(
        r#"
[model]
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
max_position_embeddings = 64

[data]
train = "{}"
valid = "{}"
seq_len = 32

[optim]
lr = 0.01
min_lr = 0.001
warmup_steps = 10

[train]
out = "{}"
seed = 7
steps = {steps}
micro_batch_size = 4
grad_accum = 2
device = "cpu"
threads = 1

[checkpoint]
every = 20
keep_last = 2

[eval]
every = 50
batches = 2
"#,
        train.display(),
        valid.display(),
        out.display()
    )
}

pub fn tiny_config(train: &Path, valid: &Path, out: &Path, steps: u64) -> RunConfig {
    RunConfig::parse(&tiny_config_toml(train, valid, out, steps)).expect("tiny config")
}

/// Writes the tiny config to `root/name.toml`.
pub fn tiny_config_file(root: &Path, name: &str, out: &Path, steps: u64) -> PathBuf {
    let (train, valid) = (root.join("train"), root.join("valid"));
    let path = root.join(format!("{name}.toml"));
    std::fs::write(&path, tiny_config_toml(&train, &valid, out, steps)).expect("write config");
    path
}

/// Runs the trainer binary.
pub fn trainer(args: &[&str]) -> Output {
    Command::new(TRAINER)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run trainer")
}

/// Runs the trainer binary and requires success.
pub fn trainer_ok(args: &[&str]) -> String {
    let out = trainer(args);
    assert!(
        out.status.success(),
        "trainer {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 stdout")
}

/// Runs the trainer binary, requires failure, returns stderr.
pub fn trainer_err(args: &[&str]) -> String {
    let out = trainer(args);
    assert!(
        !out.status.success(),
        "trainer {args:?} should have failed; stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).expect("utf8 stderr")
}

/// The JSON lines of a run's metrics file.
pub fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("metrics line is JSON"))
        .collect()
}

/// The training loss logged at `step`.
pub fn loss_at(lines: &[serde_json::Value], step: u64) -> f64 {
    lines
        .iter()
        .find(|l| l["kind"] == "train" && l["step"] == step)
        .and_then(|l| l["loss"].as_f64())
        .unwrap_or_else(|| panic!("no train line for step {step}"))
}
