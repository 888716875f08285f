//! The BOS contract: with a `bos` special token every row starts with it (the writer refuses
//! one that does not, `verify_tokens` finds one in a shard), a manifest records it and is
//! checked on read, and a dataset written before BOS existed reads as "no BOS".

use std::fs;

use format::{
    Dataset, DatasetKind, FormatError, MANIFEST_FILE, Manifest, PreferencePair, PretrainDoc,
    SftExample, ShardWriter,
};

use crate::helpers::{EOS, tokenizer, write_pretrain};

const BOS: u32 = 5;

fn with_bos(root: &std::path::Path) -> format::TokenizerSpec {
    let mut spec = tokenizer(root, 100);
    spec.special_tokens.insert("bos".into(), BOS);
    spec
}

#[test]
fn rows_must_start_with_bos_when_the_tokenizer_has_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pretrain");
    let mut writer = ShardWriter::builder(&dir, DatasetKind::Pretrain, with_bos(tmp.path()))
        .build()
        .expect("writer");
    let err = writer
        .write(PretrainDoc {
            doc_id: "bare",
            source: "web",
            tokens: &[10, 11, EOS],
        })
        .expect_err("a document without BOS");
    assert!(
        matches!(err, FormatError::InvalidRow { .. })
            && err.to_string().contains("bare")
            && err.to_string().contains("bos id 5"),
        "{err}"
    );
    writer
        .write(PretrainDoc {
            doc_id: "good",
            source: "web",
            tokens: &[BOS, 10, 11, EOS],
        })
        .expect("a document with BOS");
    let manifest = writer.finish().expect("finish");
    assert_eq!(manifest.tokenizer.bos(), Some(BOS));
    let dataset = Dataset::open(&dir).expect("open");
    assert_eq!(dataset.manifest().tokenizer.bos(), Some(BOS));
    dataset.verify_tokens().expect("every row starts with BOS");

    let mut sft = ShardWriter::builder(
        tmp.path().join("sft"),
        DatasetKind::Sft,
        with_bos(tmp.path()),
    )
    .build()
    .expect("writer");
    let err = sft
        .write(SftExample {
            example_id: "e",
            input_ids: &[2, 10, 4, 3, 11, 4],
            loss_mask: &[0, 0, 0, 0, 1, 1],
            source_record: "{}",
        })
        .expect_err("an example without BOS");
    assert!(err.to_string().contains("input_ids must start"), "{err}");
    let mut pref = ShardWriter::builder(
        tmp.path().join("pref"),
        DatasetKind::Preference,
        with_bos(tmp.path()),
    )
    .build()
    .expect("writer");
    let err = pref
        .write(PreferencePair {
            pair_id: "p",
            prompt_ids: &[2, 10, 4, 3],
            chosen_ids: &[11, 4],
            rejected_ids: &[12, 4],
            source_record: "{}",
        })
        .expect_err("a prompt without BOS");
    assert!(err.to_string().contains("prompt_ids must start"), "{err}");
}

#[test]
fn a_dataset_from_before_bos_reads_as_no_bos() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, manifest) = write_pretrain(tmp.path(), "old", 20, 1000, 1 << 20);
    assert_eq!(manifest.tokenizer.bos(), None);
    let dataset = Dataset::open(&dir).expect("an old dataset opens");
    assert_eq!(dataset.manifest().tokenizer.bos(), None);
    dataset.verify_tokens().expect("no BOS to check");
}

#[test]
fn a_manifest_whose_bos_does_not_hold_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, manifest) = write_pretrain(tmp.path(), "edited", 20, 1000, 1 << 20);
    let edit = |bos: u32| {
        let mut m: Manifest = manifest.clone();
        m.tokenizer.special_tokens.insert("bos".into(), bos);
        fs::write(
            dir.join(MANIFEST_FILE),
            serde_json::to_vec_pretty(&m).expect("json"),
        )
        .expect("write manifest");
    };
    edit(5000);
    let err = Dataset::open(&dir).expect_err("bos outside the vocabulary");
    let text = err.to_string();
    assert!(
        text.contains("manifest.json") && text.contains("outside vocab_size"),
        "{text}"
    );
    edit(EOS);
    let err = Dataset::open(&dir).expect_err("bos = eos");
    assert!(err.to_string().contains("equals eos"), "{err}");
    // A manifest that claims BOS over shards written without it: the full check finds the
    // first row that does not start with it.
    edit(BOS);
    let dataset = Dataset::open(&dir).expect("opens: shards are read lazily");
    let err = dataset.verify_tokens().expect_err("rows lack BOS");
    let text = err.to_string();
    assert!(
        text.contains("shard-00000.arrow") && text.contains(", row ") && text.contains("bos id 5"),
        "{text}"
    );
}
