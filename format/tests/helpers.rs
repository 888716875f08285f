//! Small builders shared by the tests: a tokenizer spec and datasets of each kind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use format::{DatasetKind, Manifest, PretrainDoc, SftExample, ShardWriter, TokenizerSpec};

pub const EOS: u32 = 0;

/// A tokenizer file on disk (format never parses it) with the usual special tokens.
pub fn tokenizer(dir: &Path, vocab_size: u32) -> TokenizerSpec {
    let path = dir.join("source-tokenizer.json");
    std::fs::write(&path, br#"{"model": "stand-in for a tokenizers file"}"#)
        .expect("write tokenizer");
    let special_tokens = BTreeMap::from([
        ("eos".to_string(), EOS),
        ("system".to_string(), 1),
        ("user".to_string(), 2),
        ("assistant".to_string(), 3),
        ("end_of_turn".to_string(), 4),
    ]);
    TokenizerSpec {
        path,
        vocab_size,
        special_tokens,
    }
}

/// Document `i` of a deterministic synthetic corpus: 1..=40 tokens ending in EOS.
pub fn doc_tokens(i: u32, vocab_size: u32) -> Vec<u32> {
    let len = 1 + (i * 7919) % 40;
    let mut tokens: Vec<u32> = (0..len)
        .map(|j| 5 + (i.wrapping_mul(31).wrapping_add(j * 17)) % (vocab_size - 5))
        .collect();
    tokens.push(EOS);
    tokens
}

/// Writes `n` synthetic pretrain documents to `dir/name` and returns its path and manifest.
pub fn write_pretrain(
    root: &Path,
    name: &str,
    n: u32,
    vocab_size: u32,
    max_shard_tokens: u64,
) -> (PathBuf, Manifest) {
    let dir = root.join(name);
    let mut writer = ShardWriter::builder(&dir, DatasetKind::Pretrain, tokenizer(root, vocab_size))
        .max_shard_tokens(max_shard_tokens)
        .config(serde_json::json!({"test": name}))
        .build()
        .expect("build writer");
    for i in 0..n {
        let tokens = doc_tokens(i, vocab_size);
        let source = if i % 3 == 0 { "web" } else { "books" };
        writer
            .write(PretrainDoc {
                doc_id: &format!("doc-{i}"),
                source,
                tokens: &tokens,
            })
            .expect("write doc");
    }
    let manifest = writer.finish().expect("finish");
    (dir, manifest)
}

/// Writes an sft dataset of the one example `(input_ids, loss_mask)` to `dir/name` (tokenizer
/// spec with a vocabulary of 100); returns its path and manifest.
pub fn write_one_sft(
    root: &Path,
    name: &str,
    example_id: &str,
    input_ids: &[u32],
    loss_mask: &[u8],
    source_record: &str,
) -> (PathBuf, Manifest) {
    let dir = root.join(name);
    let mut writer = ShardWriter::builder(&dir, DatasetKind::Sft, tokenizer(root, 100))
        .build()
        .expect("writer");
    writer
        .write(SftExample {
            example_id,
            input_ids,
            loss_mask,
            source_record,
        })
        .expect("write");
    let manifest = writer.finish().expect("finish");
    (dir, manifest)
}
