//! Chat datasets from labeler exports (`tokenize-chat`): the loss mask checked token by
//! token, preference pairs, truncation, bad records, and the labeler's Parquet exports.

use std::path::{Path, PathBuf};

use format::{Dataset, DatasetKind};
use pipeline::tokenize::LoadedTokenizer;
use pipeline::tokenize::chat::{ChatTokenizeOptions, Truncation, tokenize_chat};

use crate::helpers::{corpus, good_english, trained_tokenizer};

/// `tokenize-chat` of one export file, dropping examples over `max_seq_len`.
pub(crate) fn chat_options(
    kind: DatasetKind,
    input: &Path,
    tokenizer: &Path,
    output: &Path,
    max_seq_len: usize,
) -> ChatTokenizeOptions {
    ChatTokenizeOptions {
        kind,
        inputs: vec![input.display().to_string()],
        tokenizer: tokenizer.to_path_buf(),
        output: output.to_path_buf(),
        max_seq_len,
        truncation: Truncation::Drop,
        overwrite: false,
    }
}

/// The labeler's Parquet export of preference pairs: conversations as lists of
/// `{role, content}` structs, `meta` as a JSON string.
fn parquet_export(path: &Path, records: &[serde_json::Value]) {
    use arrow_schema::{DataType, Field, Fields, Schema};
    use std::sync::Arc;
    let message = Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ]);
    let conversation = |name: &str| {
        let item = Field::new("item", DataType::Struct(message.clone()), false);
        Field::new(name, DataType::List(Arc::new(item)), false)
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        conversation("prompt"),
        conversation("chosen"),
        conversation("rejected"),
        Field::new("meta", DataType::Utf8, false),
    ]));
    let rows: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["meta"] = r["meta"].to_string().into();
            r
        })
        .collect();
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .build_decoder()
        .expect("decoder");
    decoder.serialize(&rows).expect("rows");
    let batch = decoder.flush().expect("flush").expect("a batch");
    let file = std::fs::File::create(path).expect("create");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

#[test]
fn parquet_exports_give_the_same_dataset_as_jsonl() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (corpus_path, _) = corpus(tmp.path(), 30);
    let tokenizer = trained_tokenizer(tmp.path(), &corpus_path);
    let pair = |id: &str, question: &str, chosen: &str, rejected: &str| {
        serde_json::json!({"id": id,
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "meta": {"annotator": "ann-2", "shown_order": ["b", "a"]}})
    };
    let mut records = vec![
        pair("p1", "Describe the harbor.", "The busy harbor.", "No."),
        pair("p2", "Name a river.", "The quiet river.", "A garden."),
        pair("p3", "x", "y", "z"),
    ];
    records[2]["chosen"][0]["role"] = "user".into();
    let jsonl = export(tmp.path(), "pairs.jsonl", &records, "");
    let parquet = tmp.path().join("pairs.parquet");
    parquet_export(&parquet, &records);

    let run = |input: &Path, name: &str| {
        let out = tmp.path().join(name);
        let summary = tokenize_chat(&chat_options(
            DatasetKind::Preference,
            input,
            &tokenizer,
            &out,
            512,
        ))
        .expect("tokenize");
        (
            summary,
            Dataset::open_kind(&out, DatasetKind::Preference).expect("open"),
        )
    };
    let (from_jsonl, jsonl_data) = run(&jsonl, "from-jsonl");
    let (from_parquet, parquet_data) = run(&parquet, "from-parquet");
    assert_eq!(from_parquet.records, 3);
    assert_eq!(from_parquet.written, 2);
    assert_eq!(from_parquet.tokens, from_jsonl.tokens);
    assert_eq!(from_parquet.errors.len(), 1, "{:?}", from_parquet.errors);
    assert!(
        from_parquet.errors[0].contains("pairs.parquet: row 3")
            && from_parquet.errors[0].contains("`chosen` must hold exactly one assistant message"),
        "{:?}",
        from_parquet.errors
    );
    let columns = |data: &Dataset| {
        let shard = data.shard(0).expect("shard");
        let batch = &shard.batches()[0];
        let ids: Vec<String> = (0..batch.num_rows())
            .map(|i| batch.strings("pair_id").expect("id").value(i).to_string())
            .collect();
        let tokens: Vec<Vec<u32>> = ["prompt_ids", "chosen_ids", "rejected_ids"]
            .iter()
            .flat_map(|c| {
                let list = batch.u32_lists(c).expect(c);
                (0..batch.num_rows())
                    .map(|i| list.get(i).to_vec())
                    .collect::<Vec<_>>()
            })
            .collect();
        let source: serde_json::Value =
            serde_json::from_str(batch.strings("source_record").expect("src").value(1))
                .expect("json");
        (ids, tokens, source)
    };
    let (ids, tokens, source) = columns(&parquet_data);
    let (jsonl_ids, jsonl_tokens, jsonl_source) = columns(&jsonl_data);
    assert_eq!(ids, ["p1", "p2"]);
    assert_eq!(ids, jsonl_ids);
    assert_eq!(tokens, jsonl_tokens);
    // The provenance names the Parquet row and keeps `meta` as JSON, not as a string.
    assert_eq!(source["row"], 2);
    assert_eq!(jsonl_source["line"], 2);
    assert_eq!(source["meta"], jsonl_source["meta"]);
    assert_eq!(source["meta"]["annotator"], "ann-2");
}

pub(crate) fn export(
    dir: &Path,
    name: &str,
    records: &[serde_json::Value],
    extra: &str,
) -> PathBuf {
    let path = dir.join(name);
    let mut text: Vec<String> = records.iter().map(|r| r.to_string()).collect();
    if !extra.is_empty() {
        text.push(extra.to_string());
    }
    std::fs::write(&path, text.join("\n")).expect("export");
    path
}

#[test]
fn sft_mask_covers_exactly_the_assistant_answers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (corpus_path, _) = corpus(tmp.path(), 30);
    let tokenizer = trained_tokenizer(tmp.path(), &corpus_path);
    let records = vec![
        serde_json::json!({"id": "r1", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a river."},
            {"role": "assistant", "content": "The quiet river."},
            {"role": "user", "content": "And a garden?"},
            {"role": "assistant", "content": "The wide garden."}
        ], "meta": {"annotator": "ann-1", "checkpoint": "ckpt-7"}}),
        serde_json::json!({"id": "r2", "messages": [{"role": "user", "content": "no answer"}], "meta": {}}),
        serde_json::json!({"id": "r3", "messages": [
            {"role": "user", "content": good_english(1)},
            {"role": "assistant", "content": "Short answer."}
        ], "meta": {}}),
    ];
    let path = export(tmp.path(), "sft.jsonl", &records, "{not json");
    let out = tmp.path().join("sft");
    let opts = chat_options(DatasetKind::Sft, &path, &tokenizer, &out, 120);
    let summary = tokenize_chat(&opts).expect("tokenize chat");
    assert_eq!(summary.records, 4);
    assert_eq!(summary.written, 1);
    assert_eq!(summary.dropped_too_long, 1, "r3 is longer than 120 tokens");
    assert_eq!(summary.errors.len(), 2, "{:?}", summary.errors);
    assert!(
        summary.errors[0].contains("line 2") && summary.errors[0].contains("no assistant turn"),
        "{:?}",
        summary.errors
    );
    assert!(summary.errors[1].contains("line 4"), "{:?}", summary.errors);

    let tok = LoadedTokenizer::load(&tokenizer).expect("load");
    let dataset = Dataset::open_kind(&out, DatasetKind::Sft).expect("open");
    let shard = dataset.shard(0).expect("shard");
    let batch = &shard.batches()[0];
    let ids = batch.u32_lists("input_ids").expect("ids").get(0).to_vec();
    let mask = batch.loss_mask().expect("mask").get(0).to_vec();
    assert_eq!(batch.strings("example_id").expect("id").value(0), "r1");
    let provenance: serde_json::Value =
        serde_json::from_str(batch.strings("source_record").expect("src").value(0)).expect("json");
    assert_eq!(provenance["meta"]["checkpoint"], "ckpt-7");
    assert_eq!(provenance["line"], 1);
    assert_eq!(
        ids.first(),
        tok.bos().as_ref(),
        "an example starts with BOS"
    );
    // Token by token: the supervised ids are exactly each answer followed by <|end|>.
    let end = tok.spec.special_tokens["end_of_turn"];
    let assistant = tok.spec.special_tokens["assistant"];
    let mut expected_mask = Vec::new();
    let mut in_answer = false;
    for &id in &ids {
        if id == assistant {
            expected_mask.push(0);
            in_answer = true;
        } else if id == end {
            expected_mask.push(u8::from(in_answer));
            in_answer = false;
        } else {
            expected_mask.push(u8::from(in_answer));
        }
    }
    assert_eq!(mask, expected_mask);
    let supervised: Vec<u32> = ids
        .iter()
        .zip(&mask)
        .filter(|(_, m)| **m == 1)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(
        tok.decode(&supervised).expect("decode"),
        "The quiet river.<|end|>The wide garden.<|end|>"
    );

    // `inspect` shows the sample decoded, with the trained spans marked.
    let mut shown = Vec::new();
    pipeline::inspect::inspect(
        &out,
        pipeline::inspect::InspectOptions::default(),
        &mut shown,
    )
    .expect("inspect");
    let shown = String::from_utf8(shown).expect("utf8");
    assert!(
        shown.contains("<|assistant|>⟦The quiet river.<|end|>⟧<|user|>And a garden?"),
        "{shown}"
    );

    // With truncation the long example keeps its (only) complete answer when it fits, and is
    // counted; here the prompt alone is too long, so it is an error, not a silent drop.
    let mut t = opts.clone();
    t.truncation = Truncation::Truncate;
    t.output = tmp.path().join("sft-trunc");
    let summary = tokenize_chat(&t).expect("tokenize chat");
    assert_eq!(summary.written, 1);
    assert!(
        summary
            .errors
            .iter()
            .any(|e| e.contains("r3") && e.contains("no complete assistant turn")),
        "{:?}",
        summary.errors
    );
}

#[test]
fn preference_pairs_render_prompt_and_answers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (corpus_path, _) = corpus(tmp.path(), 30);
    let tokenizer = trained_tokenizer(tmp.path(), &corpus_path);
    let records = vec![
        serde_json::json!({"id": "p1",
            "prompt": [{"role": "user", "content": "Describe the harbor."}],
            "chosen": [{"role": "assistant", "content": "The busy harbor."}],
            "rejected": [{"role": "assistant", "content": "No."}],
            "meta": {"shown_order": ["b", "a"]}}),
        serde_json::json!({"id": "p2",
            "prompt": [{"role": "user", "content": "x"}],
            "chosen": [{"role": "user", "content": "wrong role"}],
            "rejected": [{"role": "assistant", "content": "y"}],
            "meta": {}}),
    ];
    let path = export(tmp.path(), "pref.jsonl", &records, "");
    let out = tmp.path().join("pref");
    let summary = tokenize_chat(&chat_options(
        DatasetKind::Preference,
        &path,
        &tokenizer,
        &out,
        512,
    ))
    .expect("tokenize");
    assert_eq!(summary.written, 1);
    assert!(
        summary.errors[0].contains("`chosen` must hold exactly one assistant message"),
        "{:?}",
        summary.errors
    );
    let tok = LoadedTokenizer::load(&tokenizer).expect("load");
    let dataset = Dataset::open_kind(&out, DatasetKind::Preference).expect("open");
    let shard = dataset.shard(0).expect("shard");
    let batch = &shard.batches()[0];
    let decode = |col: &str| {
        tok.decode(batch.u32_lists(col).expect(col).get(0))
            .expect("decode")
    };
    assert_eq!(
        decode("prompt_ids"),
        "<|bos|><|user|>Describe the harbor.<|end|><|assistant|>"
    );
    assert_eq!(decode("chosen_ids"), "The busy harbor.<|end|>");
    assert_eq!(decode("rejected_ids"), "No.<|end|>");

    // A prompt cut to fit loses its oldest tokens but keeps BOS first.
    let full = batch
        .u32_lists("prompt_ids")
        .expect("prompt")
        .get(0)
        .to_vec();
    let chosen = batch.u32_lists("chosen_ids").expect("chosen").get(0).len();
    let mut t = chat_options(
        DatasetKind::Preference,
        &path,
        &tokenizer,
        &tmp.path().join("pref-trunc"),
        chosen + 4,
    );
    t.truncation = Truncation::Truncate;
    assert_eq!(tokenize_chat(&t).expect("tokenize").truncated, 1);
    let dataset = Dataset::open_kind(&t.output, DatasetKind::Preference).expect("open");
    let shard = dataset.shard(0).expect("shard");
    let cut = shard.batches()[0]
        .u32_lists("prompt_ids")
        .expect("prompt")
        .get(0)
        .to_vec();
    assert_eq!(cut.len(), 4);
    assert_eq!(cut[0], full[0], "BOS stays first");
    assert_eq!(cut[1..], full[full.len() - 3..]);
}
