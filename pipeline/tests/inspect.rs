//! `inspect` describes each dataset kind from its manifest and first rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use format::{DatasetKind, SftExample, ShardWriter, TokenizerSpec};
use pipeline::inspect::{InspectOptions, inspect};

fn spec(root: &Path) -> TokenizerSpec {
    let path = root.join("tokenizer.src.json");
    std::fs::write(&path, "{}").expect("tokenizer");
    TokenizerSpec {
        path,
        vocab_size: 100,
        special_tokens: BTreeMap::from([("eos".into(), 0), ("end_of_turn".into(), 4)]),
    }
}

fn sft_dataset(root: &Path) -> PathBuf {
    let dir = root.join("sft");
    let mut w = ShardWriter::builder(&dir, DatasetKind::Sft, spec(root))
        .build()
        .expect("writer");
    w.write(SftExample {
        example_id: "ex-1",
        input_ids: &[2, 50, 51, 4, 3, 60, 4],
        loss_mask: &[0, 0, 0, 0, 0, 1, 1],
        source_record: "labeler:response/7",
    })
    .expect("write");
    w.finish().expect("finish");
    dir
}

fn render(dir: &Path, options: InspectOptions) -> String {
    let mut out = Vec::new();
    inspect(dir, options, &mut out).expect("inspect");
    String::from_utf8(out).expect("utf8")
}

#[test]
fn sft_samples_mark_the_supervised_ids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = sft_dataset(tmp.path());
    let text = render(
        &dir,
        InspectOptions {
            verify: true,
            ..InspectOptions::default()
        },
    );
    assert!(text.contains("kind       sft"), "{text}");
    assert!(text.contains("token ids  uint32"), "{text}");
    assert!(text.contains("specials   end_of_turn=4 eos=0"), "{text}");
    assert!(text.contains("1 shards, 1 rows, 7 tokens"), "{text}");
    assert!(
        text.contains("ex-1 (labeler:response/7) 7 ids, 2 supervised: 2 50 51 4 3 60* 4*"),
        "{text}"
    );
    assert!(text.contains("verified"), "{text}");
}

#[test]
fn a_directory_without_manifest_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err =
        inspect(tmp.path(), InspectOptions::default(), &mut Vec::new()).expect_err("not a dataset");
    assert!(format!("{err:#}").contains("manifest.json"), "{err:#}");
}
