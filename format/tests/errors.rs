//! Every broken dataset gives an error that names the file and what is wrong.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};

use format::{
    Dataset, DatasetKind, FormatError, PretrainDoc, SftExample, ShardWriter, shard_file_name,
};

use crate::helpers::{tokenizer, write_one_sft, write_pretrain};

fn message(err: &FormatError) -> String {
    err.to_string()
}

#[test]
fn truncated_shard_is_reported_with_its_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, manifest) = write_pretrain(tmp.path(), "trunc", 30, 1000, 1 << 20);
    let shard = dir.join(shard_file_name(0));
    let file = OpenOptions::new().write(true).open(&shard).expect("open");
    file.set_len(manifest.shards[0].bytes / 2)
        .expect("truncate");

    let err = Dataset::open(&dir).expect_err("a truncated shard must not open");
    assert!(matches!(err, FormatError::SizeMismatch { .. }), "{err:?}");
    let text = message(&err);
    assert!(
        text.contains("shard-00000.arrow") && text.contains("truncated"),
        "{text}"
    );
}

#[test]
fn truncated_ipc_file_fails_to_decode_even_with_matching_manifest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, mut manifest) = write_pretrain(tmp.path(), "trunc2", 30, 1000, 1 << 20);
    let shard = dir.join(shard_file_name(0));
    let cut = manifest.shards[0].bytes - 100;
    OpenOptions::new()
        .write(true)
        .open(&shard)
        .expect("open")
        .set_len(cut)
        .expect("truncate");
    // Someone "fixed" the manifest by hand: the reader must still refuse the file.
    manifest.shards[0].bytes = cut;
    manifest.totals.bytes = cut;
    manifest.write_atomic(&dir).expect("rewrite manifest");

    let dataset = Dataset::open(&dir).expect("sizes now agree");
    let err = dataset
        .shard(0)
        .expect_err("a cut IPC file must not decode");
    let text = message(&err);
    assert!(text.contains("shard-00000.arrow"), "{text}");
    assert!(matches!(err, FormatError::Arrow { .. }), "{err:?}");
}

#[test]
fn corrupted_shard_fails_the_checksum() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, manifest) = write_pretrain(tmp.path(), "corrupt", 30, 1000, 1 << 20);
    let shard = dir.join(shard_file_name(0));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&shard)
        .expect("open");
    // Flip a byte in the middle of the body: same size, different content.
    let at = manifest.shards[0].bytes / 2;
    file.seek(SeekFrom::Start(at)).expect("seek");
    let mut byte = [0u8; 1];
    std::io::Read::read_exact(&mut file, &mut byte).expect("read");
    file.seek(SeekFrom::Start(at)).expect("seek");
    file.write_all(&[byte[0] ^ 0xff]).expect("write");
    drop(file);

    let dataset = Dataset::open(&dir).expect("sizes agree, so open succeeds");
    let err = dataset.verify_checksums().expect_err("checksum must fail");
    assert!(
        matches!(err, FormatError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    assert!(message(&err).contains("shard-00000.arrow"), "{err}");
}

#[test]
fn manifest_naming_a_missing_shard() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, manifest) = write_pretrain(tmp.path(), "missing", 100, 1000, 200);
    let last = &manifest.shards.last().expect("shards").file;
    fs::remove_file(dir.join(last)).expect("remove");
    let err = Dataset::open(&dir).expect_err("missing shard");
    assert!(matches!(err, FormatError::MissingShard { .. }), "{err:?}");
    assert!(message(&err).contains(last.as_str()), "{err}");
}

#[test]
fn unknown_format_version() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = write_pretrain(tmp.path(), "version", 3, 1000, 1 << 20);
    let path = dir.join("manifest.json");
    let text = fs::read_to_string(&path).expect("read");
    fs::write(
        &path,
        text.replace("\"format_version\": 1", "\"format_version\": 7"),
    )
    .expect("write");
    let err = Dataset::open(&dir).expect_err("unknown version");
    assert!(
        matches!(err, FormatError::UnknownVersion { found: 7, .. }),
        "{err:?}"
    );
    assert!(message(&err).contains("manifest.json"), "{err}");
}

#[test]
fn schema_mismatch_when_the_manifest_lies_about_the_kind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, mut manifest) = write_one_sft(
        tmp.path(),
        "sft",
        "e",
        &[2, 9, 4, 3, 8, 4],
        &[0, 0, 0, 0, 1, 1],
        "r",
    );
    manifest.kind = DatasetKind::Preference;
    manifest.write_atomic(&dir).expect("rewrite");

    let err = Dataset::open(&dir)
        .expect("manifest itself is consistent")
        .shard(0)
        .expect_err("schema must not match");
    assert!(matches!(err, FormatError::SchemaMismatch { .. }), "{err:?}");
    let text = message(&err);
    assert!(
        text.contains("shard-00000.arrow") && text.contains("input_ids"),
        "{text}"
    );

    let err = Dataset::open_kind(&dir, DatasetKind::Sft).expect_err("kind differs");
    assert!(matches!(err, FormatError::KindMismatch { .. }), "{err:?}");
}

#[test]
fn token_out_of_range_is_refused_by_the_writer_and_found_by_the_reader() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("range");
    let mut writer = ShardWriter::builder(&dir, DatasetKind::Pretrain, tokenizer(tmp.path(), 100))
        .build()
        .expect("writer");
    let err = writer
        .write(PretrainDoc {
            doc_id: "bad",
            source: "web",
            tokens: &[5, 100, 0],
        })
        .expect_err("100 is out of range for vocab 100");
    assert!(
        matches!(err, FormatError::TokenOutOfRange { token: 100, .. }),
        "{err:?}"
    );
    assert!(message(&err).contains("\"bad\""), "{err}");
    // The writer is still usable after a rejected row.
    writer
        .write(PretrainDoc {
            doc_id: "good",
            source: "web",
            tokens: &[5, 99, 0],
        })
        .expect("good row");
    let mut manifest = writer.finish().expect("finish");

    // A manifest claiming a smaller vocabulary than the ids stored.
    manifest.tokenizer.vocab_size = 50;
    manifest.write_atomic(&dir).expect("rewrite");
    let dataset = Dataset::open(&dir).expect("open");
    let err = dataset.verify_tokens().expect_err("99 >= 50");
    assert!(
        matches!(
            err,
            FormatError::TokenOutOfRange {
                token: 99,
                vocab_size: 50,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(message(&err).contains("shard-00000.arrow"), "{err}");
}

#[test]
fn writer_rejects_malformed_rows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut pre = ShardWriter::builder(
        tmp.path().join("p"),
        DatasetKind::Pretrain,
        tokenizer(tmp.path(), 100),
    )
    .build()
    .expect("writer");
    let err = pre
        .write(PretrainDoc {
            doc_id: "no-eos",
            source: "web",
            tokens: &[5, 6],
        })
        .expect_err("missing eos");
    assert!(message(&err).contains("eos"), "{err}");
    let err = pre
        .write(SftExample {
            example_id: "x",
            input_ids: &[1],
            loss_mask: &[1],
            source_record: "r",
        })
        .expect_err("wrong kind");
    assert!(matches!(err, FormatError::Misuse(_)), "{err:?}");

    let mut sft = ShardWriter::builder(
        tmp.path().join("s"),
        DatasetKind::Sft,
        tokenizer(tmp.path(), 100),
    )
    .build()
    .expect("writer");
    let err = sft
        .write(SftExample {
            example_id: "len",
            input_ids: &[1, 2],
            loss_mask: &[1],
            source_record: "r",
        })
        .expect_err("length mismatch");
    assert!(message(&err).contains("loss_mask"), "{err}");
    let err = sft
        .write(SftExample {
            example_id: "zero",
            input_ids: &[1, 2],
            loss_mask: &[0, 0],
            source_record: "r",
        })
        .expect_err("no supervised token");
    assert!(message(&err).contains("no supervised token"), "{err}");
}

#[test]
fn existing_dataset_is_not_clobbered_unless_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = write_pretrain(tmp.path(), "keep", 10, 1000, 1 << 20);
    let err = ShardWriter::builder(&dir, DatasetKind::Pretrain, tokenizer(tmp.path(), 1000))
        .build()
        .expect_err("must refuse");
    assert!(message(&err).contains("already holds a dataset"), "{err}");
    Dataset::open(&dir).expect("the old dataset is intact");

    let writer = ShardWriter::builder(&dir, DatasetKind::Pretrain, tokenizer(tmp.path(), 1000))
        .overwrite(true)
        .build()
        .expect("overwrite");
    // Until finish(), the directory is not a dataset any more.
    assert!(!dir.join("manifest.json").exists());
    let manifest = writer.finish().expect("finish");
    assert_eq!(manifest.totals.rows, 0);
}

#[test]
fn bad_builder_settings_name_the_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = ShardWriter::builder(
        tmp.path().join("z"),
        DatasetKind::Pretrain,
        tokenizer(tmp.path(), 100),
    )
    .max_shard_tokens(0)
    .build()
    .expect_err("zero budget");
    assert!(message(&err).contains("max_shard_tokens"), "{err}");
    let mut spec = tokenizer(tmp.path(), 100);
    spec.special_tokens.remove("eos");
    let err = ShardWriter::builder(tmp.path().join("y"), DatasetKind::Pretrain, spec)
        .build()
        .expect_err("no eos");
    assert!(message(&err).contains("eos"), "{err}");
}

#[test]
fn a_tokenizer_that_does_not_match_the_manifest_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = write_pretrain(tmp.path(), "tok", 5, 1000, 1 << 20);
    fs::write(dir.join("tokenizer.json"), b"{\"another\": \"tokenizer\"}").expect("write");
    let err = Dataset::open(&dir).expect_err("ids from another tokenizer");
    assert!(
        matches!(err, FormatError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    assert!(message(&err).contains("tokenizer.json"), "{err}");
}
