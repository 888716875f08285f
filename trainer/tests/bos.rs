//! Issue 19: a model pretrained on short texts completes their openings from bare prompts
//! (nothing before the opening). With BOS at every document start, windows aligned to
//! document starts and BOS prepended by `generate`, it does; the same model trained the old
//! way (no BOS in the shards, windows anywhere) does measurably worse.
//!
//! The corpus makes a bare opening ambiguous without BOS: line `i` is pair `i` then pair
//! `i + 1`, so every opening pair also ends another line. In the training stream the text
//! before a pair tells the two apart; a bare prompt has only BOS to say "a text starts here".

use std::collections::BTreeMap;
use std::path::Path;

use format::{DatasetKind, PretrainDoc, ShardWriter, TokenizerSpec};
use serde_json::json;
use tch::Device;
use testkit::tokenizer::save_bpe;
use trainer::engine::config::Precision;
use trainer::model::sample::{SamplingParams, generate_from_dir};

use crate::helpers::trainer_ok;

const LINES: usize = 24;
const STEPS: u64 = 250;

/// Word `k`: two consonant-vowel syllables, distinct for every k < 70.
fn word(k: usize) -> String {
    const C: &[u8] = b"bdfgklmnprstvz";
    const V: &[u8] = b"aeiou";
    let chars = [
        C[k % 14],
        V[k / 14 % 5],
        C[(k * 5 + 3) % 14],
        V[(k + 2) % 5],
    ];
    String::from_utf8(chars.to_vec()).expect("ascii")
}

/// Opening pair `i` (wrapping): two words.
fn pair(i: usize) -> String {
    let i = i % LINES;
    format!("{} {}", word(2 * i), word(2 * i + 1))
}

/// Line `i`: its opening pair, then the next line's opening pair.
fn line(i: usize) -> String {
    format!("{} {}", pair(i), pair(i + 1))
}

/// A pretrain dataset of every line, each repeated so the stream holds a few thousand
/// tokens; with `bos`, each document starts with the tokenizer's BOS (today's shards),
/// without, the manifest records no BOS (shards from before BOS existed).
fn write_dataset(dir: &Path, tokenizer_path: &Path, bos: bool) {
    let tokenizer = tokenizers::Tokenizer::from_file(tokenizer_path).expect("tokenizer");
    let mut special_tokens: BTreeMap<String, u32> = format::SPECIAL_TOKENS
        .iter()
        .map(|(name, text)| (name.to_string(), tokenizer.token_to_id(text).expect("id")))
        .collect();
    if !bos {
        special_tokens.remove("bos");
    }
    let bos_id = special_tokens.get("bos").copied();
    let eos = special_tokens["eos"];
    let spec = TokenizerSpec {
        path: tokenizer_path.to_path_buf(),
        vocab_size: tokenizer.get_vocab_size(true) as u32,
        special_tokens,
    };
    let mut writer = ShardWriter::builder(dir, DatasetKind::Pretrain, spec)
        .build()
        .expect("writer");
    for copy in 0..8 {
        for i in 0..LINES {
            let mut ids: Vec<u32> = bos_id.into_iter().collect();
            ids.extend_from_slice(tokenizer.encode(line(i), false).expect("encode").get_ids());
            ids.push(eos);
            writer
                .write(PretrainDoc {
                    doc_id: &format!("line-{i}-{copy}"),
                    source: "synthetic",
                    tokens: &ids,
                })
                .expect("write");
        }
    }
    writer.finish().expect("finish");
}

/// Pretrains the tiny model on `data` for `STEPS` steps (default window settings unless
/// `extra_data` says otherwise) and returns its last checkpoint.
fn pretrain(root: &Path, name: &str, data: &Path, extra_data: &str) -> std::path::PathBuf {
    pretrain_with(root, name, data, extra_data, STEPS)
}

fn pretrain_steps(root: &Path, name: &str, data: &Path, steps: u64) -> std::path::PathBuf {
    pretrain_with(root, name, data, "", steps)
}

fn pretrain_with(
    root: &Path,
    name: &str,
    data: &Path,
    extra_data: &str,
    steps: u64,
) -> std::path::PathBuf {
    let out = root.join(name);
    let config = format!(
        r#"
[model]
hidden_size = 64
intermediate_size = 128
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
max_position_embeddings = 64

[data]
train = "{}"
seq_len = 32
{extra_data}

[optim]
lr = 0.01
min_lr = 0.001
warmup_steps = 20

[train]
out = "{}"
seed = 3
steps = {steps}
micro_batch_size = 8
grad_accum = 1
device = "cpu"
threads = 1

[checkpoint]
every = {steps}
"#,
        data.display(),
        out.display()
    );
    let path = root.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("config");
    trainer_ok(&["pretrain", "--config", path.to_str().expect("utf8")]);
    out.join(format!("checkpoints/step-{steps:08}"))
}

/// How many lines the model in `dir` (checkpoint or export) completes from their bare
/// opening pair (greedy), and the completions; `bos` is the id every prompt must start with.
fn completed(dir: &Path, bos: Option<u32>) -> (usize, Vec<String>) {
    let mut right = 0;
    let mut texts = Vec::new();
    for i in 0..LINES {
        let params = SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            max_tokens: 8,
            seed: 0,
            stop_token: None,
        };
        let out = generate_from_dir(dir, &pair(i), params, true, Device::Cpu, Precision::Fp32)
            .expect("generate");
        assert_eq!(
            out.prompt_ids.first() == bos.as_ref(),
            bos.is_some(),
            "{}: prompt {:?}",
            dir.display(),
            out.prompt_ids
        );
        if out.text.starts_with(&format!(" {}", pair(i + 1))) {
            right += 1;
        }
        texts.push(format!("{} |{}", pair(i), out.text));
    }
    (right, texts)
}

#[test]
fn a_model_completes_openings_from_bare_prompts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let words: std::collections::BTreeSet<String> = (0..2 * LINES).map(word).collect();
    assert_eq!(words.len(), 2 * LINES, "the words are distinct");
    let texts: Vec<String> = (0..LINES).map(line).collect();
    let tokenizer = tmp.path().join("tokenizer.json");
    save_bpe(&tokenizer, texts.iter().map(String::as_str), 400);

    let with_bos = tmp.path().join("with-bos");
    write_dataset(&with_bos, &tokenizer, true);
    let ckpt = pretrain(tmp.path(), "bos", &with_bos, "");
    let (right, samples) = completed(&ckpt, Some(5));
    eprintln!("with BOS and aligned windows: {right}/{LINES} completed\n{samples:#?}");
    assert!(
        right * 10 >= LINES * 8,
        "only {right}/{LINES} bare openings completed: {samples:#?}"
    );

    // The old way: shards without BOS, windows anywhere. The model learns the same text
    // (its stream holds the same lines), but a bare opening is as much the end of a line
    // as a start to it.
    let without = tmp.path().join("without-bos");
    write_dataset(&without, &tokenizer, false);
    let old = pretrain(tmp.path(), "old", &without, "doc_start_fraction = 0.0");
    let (old_right, old_samples) = completed(&old, None);
    eprintln!("without BOS, windows anywhere: {old_right}/{LINES} completed\n{old_samples:#?}");
    assert!(
        old_right + LINES / 6 <= right,
        "BOS should complete clearly more openings: {right} vs {old_right}"
    );
}

/// Exports `ckpt` to `out` and returns its `tokenizer_config.json` and `config.json`.
fn export(ckpt: &Path, out: &Path) -> (serde_json::Value, serde_json::Value) {
    trainer_ok(&[
        "export-hf",
        ckpt.to_str().expect("utf8"),
        out.to_str().expect("utf8"),
    ]);
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(name)).expect(name)).expect("json")
    };
    (read("tokenizer_config.json"), read("config.json"))
}

#[test]
fn a_model_from_before_bos_generates_and_exports_without_it() {
    // Short runs: what is checked here is which ids start a prompt, not what follows.
    let tmp = tempfile::tempdir().expect("tempdir");
    let texts: Vec<String> = (0..LINES).map(line).collect();
    let tokenizer = tmp.path().join("tokenizer.json");
    save_bpe(&tokenizer, texts.iter().map(String::as_str), 400);
    let (new, old) = (tmp.path().join("new"), tmp.path().join("old"));
    write_dataset(&new, &tokenizer, true);
    write_dataset(&old, &tokenizer, false);
    for (name, data, bos) in [("new", &new, Some(5u32)), ("old", &old, None)] {
        let ckpt = pretrain_steps(tmp.path(), name, data, 5);
        let hf = tmp.path().join(format!("{name}-hf"));
        let (tok_config, config) = export(&ckpt, &hf);
        assert_eq!(tok_config["add_bos_token"], bos.is_some(), "{name}");
        assert_eq!(
            tok_config["chat_template"],
            format::chat_template_jinja(bos.is_some()),
            "{name}"
        );
        // Without BOS, bos_token_id names EOS as exports before BOS did.
        assert_eq!(config["bos_token_id"], bos.unwrap_or(0), "{name}");
        for dir in [&ckpt, &hf] {
            let out = generate_from_dir(
                dir,
                &pair(0),
                SamplingParams {
                    temperature: 0.0,
                    top_k: 0,
                    top_p: 1.0,
                    max_tokens: 2,
                    seed: 0,
                    stop_token: None,
                },
                true,
                Device::Cpu,
                Precision::Fp32,
            )
            .expect("generate");
            assert_eq!(
                out.prompt_ids.first().copied() == bos,
                bos.is_some(),
                "{}: {:?}",
                dir.display(),
                out.prompt_ids
            );
            let bare = usize::from(bos.is_some());
            assert_eq!(out.prompt_ids.len(), bare + 2, "{:?}", out.prompt_ids);
            // GRPO's prompts from a file are rendered for the model too: BOS only if it
            // was trained with it, though the tokenizer has `<|bos|>` either way.
            let prompts = tmp.path().join("prompts.jsonl");
            std::fs::write(&prompts, format!("{}\n", json!({"prompt": pair(0)}))).expect("write");
            let rows = trainer::post::prompts::read(&prompts, dir).expect("grpo prompts");
            let ids = &rows.rows[0].ids;
            assert_eq!(
                ids.first().copied() == bos,
                bos.is_some(),
                "{}: {ids:?}",
                dir.display()
            );
            assert_eq!(
                ids.iter().filter(|&&t| t == 5).count(),
                bare,
                "{}: {ids:?}",
                dir.display()
            );
            assert_eq!(rows.tokenizer.bos(), bos, "{}", dir.display());
        }
    }
}

/// A prompt that already starts with the BOS text (`<|bos|>`, which encodes to the BOS id)
/// gets no second BOS: its ids, and so its output, are those of the bare prompt, from a
/// checkpoint and from its export.
#[test]
fn a_prompt_that_starts_with_the_bos_text_gets_one_bos() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let texts: Vec<String> = (0..LINES).map(line).collect();
    let tokenizer = tmp.path().join("tokenizer.json");
    save_bpe(&tokenizer, texts.iter().map(String::as_str), 400);
    let data = tmp.path().join("data");
    write_dataset(&data, &tokenizer, true);
    let ckpt = pretrain_steps(tmp.path(), "bos-text", &data, 5);
    let hf = tmp.path().join("bos-text-hf");
    export(&ckpt, &hf);
    let generate = |dir: &Path, prompt: &str| {
        let params = SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            max_tokens: 4,
            seed: 0,
            stop_token: None,
        };
        generate_from_dir(dir, prompt, params, true, Device::Cpu, Precision::Fp32)
            .expect("generate")
    };
    for dir in [&ckpt, &hf] {
        let bare = generate(dir, &pair(0));
        assert_eq!(bare.prompt_ids.first(), Some(&5), "{}", dir.display());
        let marked = generate(dir, &format!("{}{}", format::BOS_TOKEN, pair(0)));
        assert_eq!(marked.prompt_ids, bare.prompt_ids, "{}", dir.display());
        assert_eq!(marked.tokens, bare.tokens, "{}", dir.display());
    }
}
