//! Unpaired (thumbs up / down) datasets from rating exports: TRL's
//! `{"prompt", "completion", "label", "meta"}` rows, the label kept, and bad rows named by
//! file, line and field.

use format::{Dataset, DatasetKind};
use pipeline::tokenize::LoadedTokenizer;
use pipeline::tokenize::chat::tokenize_chat;

use crate::helpers::{corpus, trained_tokenizer};
use crate::tokenize_chat::{chat_options, export};

#[test]
fn unpaired_rows_keep_prompt_completion_and_label() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (corpus_path, _) = corpus(tmp.path(), 30);
    let tokenizer = trained_tokenizer(tmp.path(), &corpus_path);
    let row = |id: Option<&str>, answer: &str, label: serde_json::Value| {
        let mut r = serde_json::json!({
            "prompt": [{"role": "user", "content": "Describe the harbor."}],
            "completion": [{"role": "assistant", "content": answer}],
            "label": label,
            "meta": {"annotator": "ann-1", "aspects": {"helpfulness": 4}}});
        if let Some(id) = id {
            r["id"] = id.into();
        }
        r
    };
    let mut records = vec![
        row(Some("r1"), "The busy harbor.", true.into()),
        row(None, "No.", false.into()),
        row(Some("r3"), "x", "yes".into()),
        row(Some("r4"), "y", true.into()),
    ];
    records[3]["completion"][0]["role"] = "user".into();
    records[1].as_object_mut().expect("object").remove("id");
    let mut missing = row(Some("r5"), "z", true.into());
    missing.as_object_mut().expect("object").remove("label");
    records.push(missing);
    let path = export(tmp.path(), "ratings.jsonl", &records, "");
    let out = tmp.path().join("unpaired");

    let summary = tokenize_chat(&chat_options(
        DatasetKind::Unpaired,
        &path,
        &tokenizer,
        &out,
        512,
    ))
    .expect("tokenize");

    assert_eq!((summary.records, summary.written), (5, 2), "{summary:?}");
    let errors = &summary.errors;
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].contains("ratings.jsonl: line 3")
            && errors[0]
                .contains("`label` must be true (thumbs up) or false (thumbs down), found \"yes\""),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("line 4")
            && errors[1].contains("`completion` must hold exactly one assistant message"),
        "{errors:?}"
    );
    assert!(
        errors[2].contains("line 5") && errors[2].contains("missing field `label`"),
        "{errors:?}"
    );
    let tok = LoadedTokenizer::load(&tokenizer).expect("load");
    let dataset = Dataset::open_kind(&out, DatasetKind::Unpaired).expect("open");
    assert_eq!(dataset.manifest().kind, DatasetKind::Unpaired);
    dataset.verify_checksums().expect("checksums");
    dataset.verify_tokens().expect("tokens");
    let shard = dataset.shard(0).expect("shard");
    let batch = &shard.batches()[0];
    let decode = |col: &str, i: usize| {
        tok.decode(batch.u32_lists(col).expect(col).get(i))
            .expect("decode")
    };
    assert_eq!(
        decode("prompt_ids", 0),
        "<|bos|><|user|>Describe the harbor.<|end|><|assistant|>"
    );
    assert_eq!(decode("completion_ids", 0), "The busy harbor.<|end|>");
    assert_eq!(decode("completion_ids", 1), "No.<|end|>");
    let labels = batch.labels().expect("labels");
    assert!(labels.value(0) && !labels.value(1));
    let ids = batch.strings("example_id").expect("ids");
    assert_eq!(ids.value(0), "r1");
    assert_eq!(
        ids.value(1),
        "ratings:line 2",
        "an id-less row is named by its place"
    );
    let source: serde_json::Value =
        serde_json::from_str(batch.strings("source_record").expect("src").value(0)).expect("json");
    assert_eq!(source["meta"]["aspects"]["helpfulness"], 4);
    assert_eq!(source["line"], 1);
}
