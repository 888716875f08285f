//! Writing then reading each dataset kind gives back exactly what went in.

use format::{
    Dataset, DatasetKind, FormatError, PreferencePair, SftExample, ShardWriter, TokenDtype, Tokens,
    UnpairedExample, shard_file_name,
};

use crate::helpers::{doc_tokens, tokenizer, write_pretrain};

#[test]
fn pretrain_round_trip_with_u16_tokens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, manifest) = write_pretrain(tmp.path(), "pre", 50, 1000, 1 << 20);
    assert_eq!(manifest.token_dtype, TokenDtype::U16);
    assert_eq!(manifest.totals.rows, 50);

    let dataset = Dataset::open_kind(&dir, DatasetKind::Pretrain).expect("open");
    dataset.verify_checksums().expect("checksums");
    dataset.verify_tokens().expect("tokens");
    assert_eq!(dataset.num_shards(), 1);
    let shard = dataset.shard(0).expect("shard");
    let batch = &shard.batches()[0];
    let ids = batch.strings("doc_id").expect("doc_id");
    let Tokens::U16(tokens) = batch.tokens("tokens").expect("tokens") else {
        panic!("expected u16 tokens for a 1000-token vocabulary");
    };
    assert_eq!(tokens.len(), 50);
    for i in 0..50u32 {
        assert_eq!(ids.value(i as usize), format!("doc-{i}"));
        let expected: Vec<u16> = doc_tokens(i, 1000).iter().map(|&t| t as u16).collect();
        assert_eq!(tokens.get(i as usize), expected.as_slice(), "doc {i}");
        let source = batch.source(i as usize).expect("source");
        assert_eq!(source, if i % 3 == 0 { "web" } else { "books" });
    }
    assert_eq!(manifest.config["test"], "pre");
}

#[test]
fn token_width_follows_vocab_size() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, fits) = write_pretrain(tmp.path(), "fits", 5, 65_536, 1 << 20);
    assert_eq!(fits.token_dtype, TokenDtype::U16);
    let (dir, wide) = write_pretrain(tmp.path(), "wide", 5, 65_537, 1 << 20);
    assert_eq!(wide.token_dtype, TokenDtype::U32);

    let shard = Dataset::open(&dir).expect("open").shard(0).expect("shard");
    match shard.batches()[0].tokens("tokens").expect("tokens") {
        Tokens::U32(list) => assert_eq!(list.get(3), doc_tokens(3, 65_537).as_slice()),
        Tokens::U16(_) => panic!("a 65537-token vocabulary needs u32 ids"),
    }
    // SFT and preference ids are always u32, whatever the vocabulary.
    assert_eq!(DatasetKind::Sft.token_dtype(100), TokenDtype::U32);
}

#[test]
fn writer_rolls_over_at_the_token_budget() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, manifest) = write_pretrain(tmp.path(), "roll", 100, 1000, 200);
    let shards = &manifest.shards;
    assert!(
        shards.len() > 3,
        "expected several shards, got {}",
        shards.len()
    );
    for (i, shard) in shards.iter().enumerate() {
        assert_eq!(shard.file, shard_file_name(i));
        // A shard closes on the first document that reaches the budget.
        if i + 1 < shards.len() {
            assert!(shard.tokens >= 200 && shard.tokens < 200 + 41, "{shard:?}");
        }
    }
    let total_tokens: u64 = (0..100).map(|i| doc_tokens(i, 1000).len() as u64).sum();
    assert_eq!(manifest.totals.tokens, total_tokens);
    assert_eq!(manifest.totals.rows, 100);

    // Reading all shards in order gives the documents in write order.
    let dataset = Dataset::open(&dir).expect("open");
    let mut next = 0u32;
    for s in 0..dataset.num_shards() {
        let shard = dataset.shard(s).expect("shard");
        for batch in shard.batches() {
            let tokens = batch.tokens("tokens").expect("tokens");
            for row in 0..tokens.len() {
                assert_eq!(tokens.row_u32(row), doc_tokens(next, 1000));
                next += 1;
            }
        }
    }
    assert_eq!(next, 100);
}

#[test]
fn tokens_are_read_zero_copy_from_the_memory_map() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = write_pretrain(tmp.path(), "mmap", 20, 1000, 1 << 20);
    let shard = Dataset::open(&dir).expect("open").shard(0).expect("shard");
    let mapped = shard.mapped_bytes().as_ptr_range();
    let Tokens::U16(tokens) = shard.batches()[0].tokens("tokens").expect("tokens") else {
        panic!("expected u16");
    };
    let values = tokens.values().as_ptr_range();
    assert!(
        mapped.start <= values.start as *const u8 && values.end as *const u8 <= mapped.end,
        "token slice {values:?} is not inside the mapped file {mapped:?}: it was copied"
    );
    let offsets = tokens.offsets().as_ptr() as *const u8;
    assert!(mapped.contains(&offsets), "offsets were copied");
    assert_eq!(tokens.offsets().len(), 21);
}

#[test]
fn sft_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("sft");
    let mut writer = ShardWriter::builder(&dir, DatasetKind::Sft, tokenizer(tmp.path(), 300))
        .build()
        .expect("writer");
    let examples: Vec<(String, Vec<u32>, Vec<u8>)> = (0..10u32)
        .map(|i| {
            let ids: Vec<u32> = (0..5 + i).map(|j| (i * 13 + j) % 300).collect();
            let mask: Vec<u8> = (0..5 + i).map(|j| u8::from(j >= 3)).collect();
            (format!("ex-{i}"), ids, mask)
        })
        .collect();
    for (id, ids, mask) in &examples {
        writer
            .write(SftExample {
                example_id: id,
                input_ids: ids,
                loss_mask: mask,
                source_record: &format!("labeler:{id}"),
            })
            .expect("write");
    }
    let manifest = writer.finish().expect("finish");
    assert_eq!(manifest.kind, DatasetKind::Sft);
    assert_eq!(manifest.token_dtype, TokenDtype::U32);

    let dataset = Dataset::open_kind(&dir, DatasetKind::Sft).expect("open");
    let shard = dataset.shard(0).expect("shard");
    let batch = &shard.batches()[0];
    let ids = batch.u32_lists("input_ids").expect("input_ids");
    let masks = batch.loss_mask().expect("mask");
    let records = batch.strings("source_record").expect("source_record");
    for (i, (id, want_ids, want_mask)) in examples.iter().enumerate() {
        assert_eq!(batch.strings("example_id").expect("ids").value(i), id);
        assert_eq!(ids.get(i), want_ids.as_slice());
        assert_eq!(masks.get(i), want_mask.as_slice());
        assert_eq!(records.value(i), format!("labeler:{id}"));
    }
}

#[test]
fn preference_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pref");
    let mut writer =
        ShardWriter::builder(&dir, DatasetKind::Preference, tokenizer(tmp.path(), 300))
            .max_shard_tokens(30)
            .build()
            .expect("writer");
    for i in 0..6u32 {
        writer
            .write(PreferencePair {
                pair_id: &format!("pair-{i}"),
                prompt_ids: &[2, 10 + i, 4, 3],
                chosen_ids: &[20 + i, 21, 4],
                rejected_ids: &[30 + i, 4],
                source_record: "rec",
            })
            .expect("write");
    }
    let manifest = writer.finish().expect("finish");
    assert_eq!(manifest.totals.tokens, 6 * 9);
    assert_eq!(
        manifest.shards.len(),
        2,
        "rollover counts all three id columns"
    );

    let dataset = Dataset::open_kind(&dir, DatasetKind::Preference).expect("open");
    let mut i = 0u32;
    for s in 0..dataset.num_shards() {
        let shard = dataset.shard(s).expect("shard");
        for batch in shard.batches() {
            for row in 0..batch.num_rows() {
                assert_eq!(
                    batch.strings("pair_id").expect("id").value(row),
                    format!("pair-{i}")
                );
                assert_eq!(
                    batch.u32_lists("prompt_ids").expect("p").get(row),
                    &[2, 10 + i, 4, 3]
                );
                assert_eq!(
                    batch.u32_lists("chosen_ids").expect("c").get(row),
                    &[20 + i, 21, 4]
                );
                assert_eq!(
                    batch.u32_lists("rejected_ids").expect("r").get(row),
                    &[30 + i, 4]
                );
                i += 1;
            }
        }
    }
    assert_eq!(i, 6);
}

#[test]
fn unpaired_round_trip_keeps_labels_and_refuses_empty_or_out_of_range_completions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("thumbs");
    let mut writer = ShardWriter::builder(&dir, DatasetKind::Unpaired, tokenizer(tmp.path(), 300))
        .max_shard_tokens(20)
        .build()
        .expect("writer");
    let example = |i: u32, completion: &'static [u32]| UnpairedExample {
        example_id: "",
        prompt_ids: &[2, 4, 3],
        completion_ids: completion,
        label: !i.is_multiple_of(3),
        source_record: "rec",
    };
    for i in 0..5u32 {
        let id = format!("ex-{i}");
        writer
            .write(UnpairedExample {
                example_id: &id,
                ..example(i, &[20, 21, 4])
            })
            .expect("write");
    }
    let empty = writer.write(example(9, &[])).expect_err("empty completion");
    assert!(
        matches!(&empty, FormatError::InvalidRow { message, .. } if message.contains("completion_ids must not be empty")),
        "{empty}"
    );
    let wide = writer
        .write(example(9, &[300]))
        .expect_err("token out of range");
    assert!(
        matches!(&wide, FormatError::TokenOutOfRange { column, token: 300, .. } if column == "completion_ids"),
        "{wide}"
    );
    let manifest = writer.finish().expect("finish");
    assert_eq!(
        (manifest.kind, manifest.totals.rows),
        (DatasetKind::Unpaired, 5)
    );
    assert_eq!(manifest.token_dtype, TokenDtype::U32);
    assert!(manifest.shards.len() > 1, "rollover counts both id columns");

    let dataset = Dataset::open_kind(&dir, DatasetKind::Unpaired).expect("open");
    dataset.verify_checksums().expect("checksums");
    dataset.verify_tokens().expect("tokens");
    let mut i = 0u32;
    for s in 0..dataset.num_shards() {
        let shard = dataset.shard(s).expect("shard");
        for batch in shard.batches() {
            for row in 0..batch.num_rows() {
                assert_eq!(
                    batch.strings("example_id").expect("id").value(row),
                    format!("ex-{i}")
                );
                assert_eq!(
                    batch.u32_lists("completion_ids").expect("c").get(row),
                    &[20, 21, 4]
                );
                assert_eq!(
                    batch.labels().expect("labels").value(row),
                    !i.is_multiple_of(3)
                );
                i += 1;
            }
        }
    }
    assert_eq!(i, 5);
}
