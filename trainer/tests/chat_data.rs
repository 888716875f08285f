//! Builders for post-training tests: a base checkpoint pretrained for a few steps; `sft`,
//! `preference` and `unpaired` datasets rendered with the chat template through `format`'s
//! ShardWriter, and post-training configs for the tiny model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use format::{
    ChatTemplate, DatasetKind, Message, PreferencePair, Role, SPECIAL_TOKENS, SftExample,
    ShardWriter, TokenizerSpec, UnpairedExample,
};
use trainer::model::tokenizer::TextTokenizer;

use crate::helpers::{datasets, tiny_config_toml, trainer_ok};

/// Pretrains the tiny model for `steps` steps under `root` and returns its last checkpoint
/// (the tokenizer is `root/bpe-tokenizer.json`). In a `trainer` process of its own: its
/// initial weights are drawn from libtorch's one generator per process, which other tests
/// of this process draw from at the same time, so an in-process base differed from run to
/// run, and so did the post-training tests' results on it.
pub fn base_checkpoint(root: &Path, steps: u64) -> PathBuf {
    let (train, valid) = datasets(root);
    let out = root.join("base");
    let toml = tiny_config_toml(&train, &valid, &out, steps).replace("every = 20", "every = 0");
    let config = root.join("base.toml");
    std::fs::write(&config, toml).expect("write the base config");
    trainer_ok(&["pretrain", "--config", &config.display().to_string()]);
    trainer::io::checkpoint::resolve_run_dir(&out).expect("the base's last checkpoint")
}

/// The test tokenizer and the chat template on its special tokens.
pub fn chat_tokenizer(root: &Path) -> (TextTokenizer, ChatTemplate, TokenizerSpec) {
    let path = root.join("bpe-tokenizer.json");
    let raw = tokenizers::Tokenizer::from_file(&path).expect("tokenizer");
    let special: BTreeMap<String, u32> = SPECIAL_TOKENS
        .iter()
        .map(|(name, text)| (name.to_string(), raw.token_to_id(text).expect("special")))
        .collect();
    let template = ChatTemplate::from_special_tokens(&special).expect("template");
    let spec = TokenizerSpec {
        path: path.clone(),
        vocab_size: raw.get_vocab_size(true) as u32,
        special_tokens: special,
    };
    (
        TextTokenizer::from_file(&path).expect("text tokenizer"),
        template,
        spec,
    )
}

/// A conversation of one user question and one assistant answer.
pub fn exchange(question: &str, answer: &str) -> Vec<Message> {
    vec![
        Message::new(Role::User, question),
        Message::new(Role::Assistant, answer),
    ]
}

/// The instruction pairs the SFT tests train on (words of the pretraining corpus).
pub const INSTRUCTIONS: [(&str, &str); 4] = [
    ("what does the cat see?", "the cat sees the red ball."),
    ("who likes a green box?", "my friend likes a green box."),
    ("where is the bird?", "the bird finds the old tree."),
    ("what does a dog follow?", "a dog follows a small house."),
];

/// An `sft` dataset of `conversations` under `root/name`.
pub fn sft_dataset(root: &Path, name: &str, conversations: &[Vec<Message>]) -> PathBuf {
    let (text, template, spec) = chat_tokenizer(root);
    let dir = root.join(name);
    let mut writer = ShardWriter::builder(&dir, DatasetKind::Sft, spec)
        .build()
        .expect("writer");
    for (i, messages) in conversations.iter().enumerate() {
        let rendered = template.render(messages, &text).expect("render");
        writer
            .write(SftExample {
                example_id: &format!("ex-{i}"),
                input_ids: &rendered.input_ids,
                loss_mask: &rendered.loss_mask,
                source_record: "test",
            })
            .expect("write");
    }
    writer.finish().expect("finish");
    dir
}

/// A `preference` dataset of (question, chosen, rejected) under `root/name`.
pub fn preference_dataset(root: &Path, name: &str, pairs: &[(String, String, String)]) -> PathBuf {
    let (text, template, spec) = chat_tokenizer(root);
    let dir = root.join(name);
    let mut writer = ShardWriter::builder(&dir, DatasetKind::Preference, spec)
        .build()
        .expect("writer");
    for (i, (question, chosen, rejected)) in pairs.iter().enumerate() {
        let prompt = template
            .render_prompt(&[Message::new(Role::User, question.as_str())], &text)
            .expect("prompt");
        writer
            .write(PreferencePair {
                pair_id: &format!("pair-{i}"),
                prompt_ids: &prompt,
                chosen_ids: &template.render_completion(chosen, &text).expect("chosen"),
                rejected_ids: &template
                    .render_completion(rejected, &text)
                    .expect("rejected"),
                source_record: "test",
            })
            .expect("write");
    }
    writer.finish().expect("finish");
    dir
}

/// An `unpaired` dataset of (question, answer, thumbs up) under `root/name`.
pub fn unpaired_dataset(root: &Path, name: &str, rows: &[(String, String, bool)]) -> PathBuf {
    let (text, template, spec) = chat_tokenizer(root);
    let dir = root.join(name);
    let mut writer = ShardWriter::builder(&dir, DatasetKind::Unpaired, spec)
        .build()
        .expect("writer");
    for (i, (question, answer, label)) in rows.iter().enumerate() {
        let prompt = template
            .render_prompt(&[Message::new(Role::User, question.as_str())], &text)
            .expect("prompt");
        writer
            .write(UnpairedExample {
                example_id: &format!("ex-{i}"),
                prompt_ids: &prompt,
                completion_ids: &template.render_completion(answer, &text).expect("answer"),
                label: *label,
                source_record: "test",
            })
            .expect("write");
    }
    writer.finish().expect("finish");
    dir
}

/// A post-training config for the tiny model as TOML; `extra` is appended (sections such
/// as `[lora]`).
pub fn post_config_toml(
    init_from: &Path,
    train: &Path,
    out: &Path,
    steps: u64,
    extra: &str,
) -> String {
    format!(
        r#"
init_from = "{}"

[data]
train = "{}"
seq_len = 64

[optim]
lr = 0.003
warmup_steps = 2
schedule = "constant"
weight_decay = 0.0

[train]
out = "{}"
seed = 3
steps = {steps}
micro_batch_size = 2
grad_accum = 2
device = "cpu"
threads = 1

[checkpoint]
every = 0
keep_last = 2
{extra}
"#,
        init_from.display(),
        train.display(),
        out.display()
    )
}

/// Writes a config file and returns its path as a string.
pub fn write_config(root: &Path, name: &str, toml: &str) -> String {
    let path = root.join(format!("{name}.toml"));
    std::fs::write(&path, toml).expect("write config");
    path.to_str().expect("utf8").to_string()
}
