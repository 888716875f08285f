//! Tokenizer training, pretraining shards (round trip, u16/u32, split, shuffle), and chat
//! datasets from labeler exports (mask checked token by token, truncation, errors).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use format::{Dataset, DatasetKind, TokenDtype, Tokens};
use pipeline::config::InputConfig;
use pipeline::readers::ReaderOptions;
use pipeline::tokenize::LoadedTokenizer;
use pipeline::tokenize::chat::{ChatTokenizeOptions, Truncation, tokenize_chat};
use pipeline::tokenize::pretrain::{ShuffleOptions, TokenizeOptions, tokenize};
use pipeline::tokenize::split_pieces;
use pipeline::tokenize::train::{TokenizerTrainConfig, train_tokenizer};

use crate::helpers::{good_chinese, good_english};

/// A JSONL corpus of English and Chinese documents; returns (path, id -> text).
fn corpus(dir: &Path, n: usize) -> (PathBuf, HashMap<String, String>) {
    let mut texts = HashMap::new();
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let text = if i % 3 == 0 {
                good_chinese(i)
            } else {
                good_english(i)
            };
            let id = format!("doc-{i:03}");
            texts.insert(id.clone(), text.clone());
            serde_json::json!({"id": id, "text": text}).to_string()
        })
        .collect();
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, lines.join("\n")).expect("write corpus");
    (path, texts)
}

fn trained_tokenizer(dir: &Path, corpus: &Path) -> PathBuf {
    let output = dir.join("tokenizer.json");
    let summary = train_tokenizer(
        &TokenizerTrainConfig {
            inputs: vec![corpus.display().to_string()],
            reader: ReaderOptions::default(),
            output: output.clone(),
            vocab_size: 600,
            min_frequency: 2,
            max_bytes: 0,
            max_word_bytes: 100_000_000,
        },
        false,
    )
    .expect("train");
    assert!(summary.documents > 0);
    assert!(
        summary.vocab_size > 300 && summary.vocab_size <= 600,
        "{summary:?}"
    );
    output
}

fn options(tokenizer: &Path, output: &Path) -> TokenizeOptions {
    TokenizeOptions {
        tokenizer: tokenizer.to_path_buf(),
        output: output.to_path_buf(),
        train: None,
        max_shard_tokens: 2_000,
        overwrite: false,
        validation_fraction: 0.2,
        split_seed: 7,
        shuffle: None,
        batch_size: 8,
        max_piece_bytes: 100_000,
    }
}

/// Every (id, tokens) of a pretrain dataset, in stored order.
fn documents(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let dataset = Dataset::open_kind(dir, DatasetKind::Pretrain).expect("open");
    let mut out = Vec::new();
    for s in 0..dataset.num_shards() {
        let shard = dataset.shard(s).expect("shard");
        for batch in shard.batches() {
            let ids = batch.strings("doc_id").expect("ids");
            let tokens = batch.tokens("tokens").expect("tokens");
            for row in 0..batch.num_rows() {
                out.push((ids.value(row).to_string(), tokens.row_u32(row)));
            }
        }
    }
    out
}

#[test]
fn trained_tokenizer_has_the_special_tokens_first_and_round_trips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (corpus, texts) = corpus(tmp.path(), 30);
    let tok = LoadedTokenizer::load(&trained_tokenizer(tmp.path(), &corpus)).expect("load");
    let specials: Vec<(String, u32)> = tok.spec.special_tokens.clone().into_iter().collect();
    let ids: BTreeSet<u32> = specials.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids, (0..5).collect::<BTreeSet<u32>>(), "{specials:?}");
    assert_eq!(tok.eos().expect("eos"), 0);
    for text in texts.values().take(5) {
        let ids = tok.encode_long(text, 100_000).expect("encode");
        assert_eq!(&tok.decode(&ids).expect("decode"), text);
    }
    // A special token's text inside content is encoded as plain text only by the chat
    // template's refusal; the tokenizer itself maps it to the special id.
    assert_eq!(
        tok.encode_long("<|endoftext|>", 100).expect("encode"),
        vec![0]
    );
}

#[test]
fn long_documents_are_encoded_in_pieces_with_the_same_ids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (corpus, _) = corpus(tmp.path(), 30);
    let tok = LoadedTokenizer::load(&trained_tokenizer(tmp.path(), &corpus)).expect("load");
    let text = (0..40).map(good_english).collect::<Vec<_>>().join("\n");
    let pieces = split_pieces(&text, 500);
    assert!(pieces.len() > 20);
    assert_eq!(pieces.concat(), text);
    assert!(pieces.iter().all(|p| p.len() <= 500));
    assert_eq!(
        tok.encode_long(&text, 500).expect("pieces"),
        tok.encode_long(&text, 1 << 30).expect("whole")
    );
}

#[test]
fn pretrain_shards_round_trip_with_a_disjoint_validation_split() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (corpus_path, texts) = corpus(tmp.path(), 60);
    let tokenizer = trained_tokenizer(tmp.path(), &corpus_path);
    let input = InputConfig {
        paths: vec![corpus_path.display().to_string()],
        reader: ReaderOptions::default(),
    };
    let out = tmp.path().join("data");
    let summary = tokenize(&input, &options(&tokenizer, &out), false).expect("tokenize");
    assert_eq!(summary.documents, 60);
    assert!(
        summary.validation_documents > 3 && summary.validation_documents < 25,
        "{summary:?}"
    );

    let tok = LoadedTokenizer::load(&tokenizer).expect("load");
    let train = documents(&out.join("train"));
    let val = documents(&out.join("val"));
    assert_eq!(train.len() + val.len(), 60);
    let train_ids: BTreeSet<&str> = train.iter().map(|(id, _)| id.as_str()).collect();
    assert!(
        val.iter().all(|(id, _)| !train_ids.contains(id.as_str())),
        "a document is in both splits"
    );
    for (id, tokens) in train.iter().chain(&val) {
        assert_eq!(tokens.last(), Some(&0), "{id} must end with EOS");
        let text = tok.decode(&tokens[..tokens.len() - 1]).expect("decode");
        assert_eq!(&text, &texts[id], "{id} does not round-trip");
    }
    let manifest = Dataset::open(out.join("train"))
        .expect("open")
        .manifest()
        .clone();
    assert_eq!(manifest.token_dtype, TokenDtype::U16);
    assert!(manifest.shards.len() > 1, "2000-token shards roll over");
    assert_eq!(
        manifest.tokenizer.sha256,
        format::sha256_file(&tokenizer).expect("hash")
    );
    assert_eq!(manifest.config["tokenize"]["validation_fraction"], 0.2);
}

#[test]
fn shuffle_is_a_deterministic_permutation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (corpus_path, _) = corpus(tmp.path(), 60);
    let tokenizer = trained_tokenizer(tmp.path(), &corpus_path);
    let input = InputConfig {
        paths: vec![corpus_path.display().to_string()],
        reader: ReaderOptions::default(),
    };
    let run = |name: &str, seed: u64| {
        let out = tmp.path().join(name);
        let mut o = options(&tokenizer, &out);
        o.validation_fraction = 0.0;
        o.shuffle = Some(ShuffleOptions { seed, buckets: 4 });
        tokenize(&input, &o, false).expect("tokenize");
        assert!(!out.join("val").exists());
        assert!(
            !out.join("train/.shuffle").exists(),
            "buckets are cleaned up"
        );
        documents(&out.join("train"))
    };
    let plain: Vec<String> = (0..60).map(|i| format!("doc-{i:03}")).collect();
    let a = run("a", 1);
    let b = run("b", 1);
    let c = run("c", 2);
    assert_eq!(a, b, "same seed, same order");
    let order =
        |docs: &[(String, Vec<u32>)]| docs.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    assert_ne!(order(&a), plain, "shuffled");
    assert_ne!(order(&a), order(&c), "another seed, another order");
    let mut sorted = order(&a);
    sorted.sort();
    assert_eq!(sorted, plain, "a permutation: nothing lost or duplicated");
}

#[test]
fn a_vocabulary_over_65536_uses_u32_ids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vocab: HashMap<String, u32> = (0..70_000u32)
        .map(|i| (format!("w{i}"), i + 5))
        .chain(
            format::SPECIAL_TOKENS
                .iter()
                .enumerate()
                .map(|(i, (_, t))| (t.to_string(), i as u32)),
        )
        .collect();
    let model = tokenizers::models::wordlevel::WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("w0".into())
        .build()
        .expect("word level");
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    let specials: Vec<tokenizers::AddedToken> = format::SPECIAL_TOKENS
        .iter()
        .map(|(_, t)| tokenizers::AddedToken::from(*t, true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    let path = tmp.path().join("big.json");
    tokenizer.save(&path, false).expect("save");
    std::fs::write(
        tmp.path().join("c.jsonl"),
        "{\"id\": \"x\", \"text\": \"w69999 w1 w65536\"}\n",
    )
    .expect("corpus");
    let input = InputConfig {
        paths: vec![tmp.path().join("c.jsonl").display().to_string()],
        reader: ReaderOptions::default(),
    };
    let mut o = options(&path, &tmp.path().join("big"));
    o.validation_fraction = 0.0;
    tokenize(&input, &o, false).expect("tokenize");
    let dataset = Dataset::open(tmp.path().join("big/train")).expect("open");
    assert_eq!(dataset.token_dtype(), TokenDtype::U32);
    let shard = dataset.shard(0).expect("shard");
    match shard.batches()[0].tokens("tokens").expect("tokens") {
        Tokens::U32(list) => assert_eq!(list.get(0), &[70_004, 6, 65_541, 0]),
        Tokens::U16(_) => panic!("ids above 65535 need u32"),
    }
}

/// `tokenize-chat` of one export file, dropping examples over `max_seq_len`.
fn chat_options(
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

fn export(dir: &Path, name: &str, records: &[serde_json::Value], extra: &str) -> PathBuf {
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
        "<|user|>Describe the harbor.<|end|><|assistant|>"
    );
    assert_eq!(decode("chosen_ids"), "The busy harbor.<|end|>");
    assert_eq!(decode("rejected_ids"), "No.<|end|>");
}

/// Random text from a palette of the cases the GPT-2 split distinguishes: letters of several
/// scripts, combining marks, digits of several kinds, apostrophes and contractions, runs of
/// different whitespace, punctuation, emoji and the special tokens.
fn tricky_text(rng: &mut crate::helpers::Rng) -> String {
    const PALETTE: &[&str] = &[
        "word",
        "Word",
        " ",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        " \n ",
        "\r\n",
        "\u{a0}",
        "\u{3000}",
        "'s",
        "'S",
        "'t",
        "'re",
        "'ve",
        "'m",
        "'ll",
        "'d",
        "'",
        "''",
        "don't",
        "12",
        "٣",
        "Ⅻ",
        "½",
        "3.14",
        ",",
        ".",
        "!?",
        "—",
        "(",
        ")",
        "e\u{301}",
        "\u{301}",
        "中文",
        "汉字。",
        "，",
        "ß",
        "Ωμέγα",
        "Привет",
        "مرحبا",
        "😀",
        "👍🏽",
        "<|endoftext|>",
        "<|user|>",
        "<|end",
        "|>",
        "_",
        "#",
        "$5",
        "x²",
        "",
    ];
    let n = rng
        .pick(&["1", "3", "8", "20"])
        .parse::<usize>()
        .unwrap_or(1);
    (0..n).map(|_| rng.pick(PALETTE)).collect()
}

#[test]
fn fast_encoder_gives_the_ids_of_the_tokenizers_library() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (corpus_path, texts) = corpus(tmp.path(), 60);
    let tok = LoadedTokenizer::load(&trained_tokenizer(tmp.path(), &corpus_path)).expect("load");
    assert!(tok.is_fast(), "a trained tokenizer takes the fast path");
    let library = |text: &str| -> Vec<u32> {
        tok.tokenizer
            .encode(text, false)
            .expect("library encode")
            .get_ids()
            .to_vec()
    };
    let mut checked = 0;
    let mut check = |text: &str| {
        assert_eq!(
            tok.encode_long(text, 1 << 30).expect("fast encode"),
            library(text),
            "{text:?}"
        );
        checked += 1;
    };
    for text in texts.values() {
        check(text);
    }
    // Real web pages (English, Chinese, Russian; after HTML extraction).
    for name in [
        "resiliparse-cc-2020-34.warc.gz",
        "dolma-sample-0000.warc.gz",
        "cc-whirlwind.warc.gz",
    ] {
        let pages = crate::helpers::collect(&crate::helpers::warc(name), &ReaderOptions::default());
        assert!(!pages.docs.is_empty(), "{name}");
        for page in &pages.docs {
            check(&page.text);
        }
    }
    let mut rng = crate::helpers::Rng::new(11);
    for _ in 0..3000 {
        check(&tricky_text(&mut rng));
    }
    // Twice: the second pass is served from the word cache.
    for text in texts.values().take(10) {
        check(text);
    }
    assert!(checked > 3100);
}

#[test]
fn other_tokenizer_shapes_use_the_library() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (corpus_path, _) = corpus(tmp.path(), 30);
    let path = trained_tokenizer(tmp.path(), &corpus_path);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    json["pre_tokenizer"]["add_prefix_space"] = true.into();
    let changed = tmp.path().join("prefix-space.json");
    std::fs::write(&changed, json.to_string()).expect("write");
    let tok = LoadedTokenizer::load(&changed).expect("load");
    assert!(
        !tok.is_fast(),
        "a prefix space is not what the fast path does"
    );
    let text = "Hello world, 中文 text.";
    assert_eq!(
        tok.encode_long(text, 1 << 30).expect("encode"),
        tok.tokenizer.encode(text, false).expect("encode").get_ids()
    );
}

#[test]
fn training_counts_words_like_the_library_and_stays_bounded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (corpus_path, texts) = corpus(tmp.path(), 240);
    // Unbounded (the table never fills): the same vocabulary and merges as the library's own
    // `Tokenizer::train` with the same trainer settings.
    let ours = trained_tokenizer(tmp.path(), &corpus_path);
    let mut library = tokenizers::Tokenizer::new(tokenizers::models::bpe::BPE::default());
    let byte_level = tokenizers::pre_tokenizers::byte_level::ByteLevel::new(false, true, true);
    library.with_pre_tokenizer(Some(byte_level));
    let specials: Vec<tokenizers::AddedToken> = format::SPECIAL_TOKENS
        .iter()
        .map(|(_, text)| tokenizers::AddedToken::from(*text, true))
        .collect();
    let mut trainer = tokenizers::models::TrainerWrapper::BpeTrainer(
        tokenizers::models::bpe::BpeTrainerBuilder::new()
            .vocab_size(600)
            .min_frequency(2)
            .special_tokens(specials)
            .initial_alphabet(
                tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
                    .into_iter()
                    .collect(),
            )
            .build(),
    );
    let mut ordered: Vec<(&String, &String)> = texts.iter().collect();
    ordered.sort();
    library
        .train(&mut trainer, ordered.iter().map(|(_, text)| text.as_str()))
        .expect("library train");
    let model = |t: &tokenizers::Tokenizer| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&t.to_string(false).expect("json"))
            .expect("parse")["model"]
            .clone()
    };
    let ours = LoadedTokenizer::load(&ours).expect("load");
    assert_eq!(model(&ours.tokenizer), model(&library));

    // Bounded: a table of 10 kB of words on a corpus with more drops the rarest, says so, and
    // still gives a tokenizer that round-trips every text.
    let output = tmp.path().join("bounded.json");
    let summary = train_tokenizer(
        &TokenizerTrainConfig {
            inputs: vec![corpus_path.display().to_string()],
            reader: ReaderOptions::default(),
            output: output.clone(),
            vocab_size: 600,
            min_frequency: 2,
            max_bytes: 0,
            max_word_bytes: 10_000,
        },
        false,
    )
    .expect("train");
    assert!(summary.pruned_up_to >= 1, "{summary:?}");
    assert!(summary.word_bytes <= 10_000, "{summary:?}");
    let bounded = LoadedTokenizer::load(&output).expect("load");
    assert!(bounded.spec.vocab_size > 300);
    for text in texts.values() {
        let ids = bounded.encode_long(text, 1 << 20).expect("encode");
        assert_eq!(&bounded.decode(&ids).expect("decode"), text);
    }
}
