//! A dataset written in parts, each by its own writer (as tasks on several machines would),
//! then one manifest over every part's shards.

use std::path::Path;

use format::{
    Dataset, DatasetKind, FormatError, PretrainDoc, ShardEntry, ShardWriter, Tokens,
    part_shard_file_name, write_parts_manifest,
};

use crate::helpers::{doc_tokens, tokenizer, write_pretrain};

const VOCAB: u32 = 1000;

/// Writes documents `docs` as part `part` of the dataset in `dir`, 200-token shards.
fn write_part(root: &Path, dir: &Path, part: usize, docs: std::ops::Range<u32>) -> Vec<ShardEntry> {
    let mut writer = ShardWriter::builder(dir, DatasetKind::Pretrain, tokenizer(root, VOCAB))
        .max_shard_tokens(200)
        .part(part)
        .build()
        .expect("part writer");
    for i in docs {
        writer
            .write(PretrainDoc {
                doc_id: &format!("doc-{i}"),
                // As `write_pretrain` does, so a part can be compared with its shards.
                source: if i % 3 == 0 { "web" } else { "books" },
                tokens: &doc_tokens(i, VOCAB),
            })
            .expect("write");
    }
    writer.finish_part().expect("finish part")
}

/// The documents of `dataset` in reading order: (id, tokens).
fn read_all(dataset: &Dataset) -> Vec<(String, Vec<u32>)> {
    let mut out = Vec::new();
    for s in 0..dataset.num_shards() {
        let shard = dataset.shard(s).expect("shard");
        for batch in shard.batches() {
            let ids = batch.strings("doc_id").expect("ids");
            let Tokens::U16(tokens) = batch.tokens("tokens").expect("tokens") else {
                panic!("u16 ids for a 1000-token vocabulary");
            };
            for r in 0..batch.num_rows() {
                let row = tokens.get(r).iter().map(|&t| u32::from(t)).collect();
                out.push((ids.value(r).to_string(), row));
            }
        }
    }
    out
}

#[test]
fn parts_written_apart_make_one_dataset_in_part_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("parts");
    let ranges = [0..30, 30..45, 45..100];
    // Each part on its own thread, at the same time, into the one directory.
    let entries: Vec<Vec<ShardEntry>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .enumerate()
            .map(|(p, r)| {
                let (root, dir) = (tmp.path(), &dir);
                scope.spawn(move || write_part(root, dir, p, r.clone()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("part"))
            .collect()
    });
    assert!(entries.iter().all(|p| !p.is_empty()));
    assert!(entries[2].len() > 1, "several 200-token shards in a part");
    for (p, part) in entries.iter().enumerate() {
        for (i, shard) in part.iter().enumerate() {
            assert_eq!(shard.file, part_shard_file_name(p, i));
        }
    }
    assert!(
        !dir.join("manifest.json").exists() && !dir.join("tokenizer.json").exists(),
        "a part writes shards only"
    );
    let manifest = write_parts_manifest(
        &dir,
        DatasetKind::Pretrain,
        tokenizer(tmp.path(), VOCAB),
        serde_json::json!({"test": "parts"}),
        entries.concat(),
    )
    .expect("manifest");
    assert_eq!(manifest.totals.rows, 100);
    let dataset = Dataset::open_kind(&dir, DatasetKind::Pretrain).expect("open");
    dataset.verify_checksums().expect("checksums");
    dataset.verify_tokens().expect("tokens");
    let expected: Vec<(String, Vec<u32>)> = (0..100)
        .map(|i| (format!("doc-{i}"), doc_tokens(i, VOCAB)))
        .collect();
    assert_eq!(read_all(&dataset), expected);
    assert_eq!(dataset.manifest().config["test"], "parts");

    // A part holding what a one-writer dataset's first shards hold has their bytes: only
    // the names differ.
    let (_, whole) = write_pretrain(tmp.path(), "whole", 30, VOCAB, 200);
    let digests =
        |shards: &[ShardEntry]| shards.iter().map(|s| s.sha256.clone()).collect::<Vec<_>>();
    assert_eq!(digests(&entries[0]), digests(&whole.shards));
}

#[test]
fn a_part_written_again_replaces_only_what_its_earlier_attempt_left() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("rerun");
    let first = write_part(tmp.path(), &dir, 0, 0..20);
    let part0: Vec<Vec<u8>> = first
        .iter()
        .map(|s| std::fs::read(dir.join(&s.file)).expect("read"))
        .collect();
    write_part(tmp.path(), &dir, 1, 20..60);
    // A killed attempt at part 1: a temp file, and a shard a longer attempt had written.
    std::fs::write(dir.join(".shard-00001-00007.arrow.tmp"), b"partial").expect("write");
    std::fs::write(dir.join(part_shard_file_name(1, 9)), b"stale").expect("write");
    let second = write_part(tmp.path(), &dir, 1, 20..40);
    assert!(!dir.join(".shard-00001-00007.arrow.tmp").exists());
    assert!(!dir.join(part_shard_file_name(1, 9)).exists());
    for (s, bytes) in first.iter().zip(&part0) {
        assert_eq!(
            &std::fs::read(dir.join(&s.file)).expect("read"),
            bytes,
            "{}",
            s.file
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|s| s.file.clone())
        .collect();
    expected.sort();
    assert_eq!(
        names, expected,
        "part 1's first attempt left nothing behind"
    );
    write_parts_manifest(
        &dir,
        DatasetKind::Pretrain,
        tokenizer(tmp.path(), VOCAB),
        serde_json::Value::Null,
        [first, second].concat(),
    )
    .expect("manifest");
    let dataset = Dataset::open(&dir).expect("open");
    dataset.verify_checksums().expect("checksums");
    assert_eq!(read_all(&dataset).len(), 40);
}

#[test]
fn parts_and_whole_datasets_end_their_own_way() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let part = ShardWriter::builder(
        tmp.path().join("a"),
        DatasetKind::Pretrain,
        tokenizer(tmp.path(), VOCAB),
    )
    .part(3)
    .build()
    .expect("part writer");
    assert!(matches!(part.finish(), Err(FormatError::Misuse(m)) if m.contains("finish_part")));
    let whole = ShardWriter::builder(
        tmp.path().join("b"),
        DatasetKind::Pretrain,
        tokenizer(tmp.path(), VOCAB),
    )
    .build()
    .expect("writer");
    assert!(matches!(whole.finish_part(), Err(FormatError::Misuse(_))));
    // One shard named by two parts' entries is refused, and no manifest is written.
    let dir = tmp.path().join("twice");
    let entries = write_part(tmp.path(), &dir, 0, 0..5);
    let twice = [entries.clone(), entries].concat();
    let refused = write_parts_manifest(
        &dir,
        DatasetKind::Pretrain,
        tokenizer(tmp.path(), VOCAB),
        serde_json::Value::Null,
        twice,
    );
    assert!(
        matches!(&refused, Err(FormatError::Misuse(m)) if m.contains("listed twice")),
        "{refused:?}"
    );
    assert!(!dir.join("manifest.json").exists());
}
