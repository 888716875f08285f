//! Tokenizer training (bounded word table, the library's merges) and pretraining shards (round
//! trip, u16/u32, split, shuffle), and the fast encoder checked id for id against the
//! tokenizers library. Chat datasets are in `tokenize_chat`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use format::{Dataset, DatasetKind, TokenDtype, Tokens};
use pipeline::config::InputConfig;
use pipeline::readers::ReaderOptions;
use pipeline::tokenize::LoadedTokenizer;
use pipeline::tokenize::pretrain::{ShuffleOptions, TokenizeOptions, tokenize};
use pipeline::tokenize::split_pieces;
use pipeline::tokenize::train::{TokenizerTrainConfig, train_tokenizer};

use crate::helpers::{corpus, good_english, trained_tokenizer};

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
        part_bytes: pipeline::tokenize::parts::DEFAULT_PART_BYTES,
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
    assert_eq!(ids, (0..6).collect::<BTreeSet<u32>>(), "{specials:?}");
    assert_eq!(tok.eos().expect("eos"), 0);
    // BOS came last, so the ids of the other specials are those of older tokenizers.
    assert_eq!(tok.bos(), Some(5));
    assert_eq!(tok.spec.special_tokens["end_of_turn"], 4);
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
        assert_eq!(tokens.first(), Some(&5), "{id} must start with BOS");
        assert_eq!(tokens.last(), Some(&0), "{id} must end with EOS");
        let text = tok.decode(&tokens[1..tokens.len() - 1]).expect("decode");
        assert_eq!(&text, &texts[id], "{id} does not round-trip");
    }
    let manifest = Dataset::open(out.join("train"))
        .expect("open")
        .manifest()
        .clone();
    assert_eq!(manifest.token_dtype, TokenDtype::U16);
    assert_eq!(
        manifest.tokenizer.bos(),
        Some(5),
        "the manifest records BOS"
    );
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

/// A shuffle keeps every bucket file open: with more than the soft limit on open files
/// allows, `pipeline tokenize` raises it (up to the hard limit, as `ulimit -Sn` cannot be
/// trusted to be large on a cluster node); past the hard limit it names the setting.
#[test]
fn shuffle_buckets_past_the_open_files_limit_raise_it_or_name_the_setting() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (corpus_path, _) = corpus(tmp.path(), 40);
    let tokenizer = trained_tokenizer(tmp.path(), &corpus_path);
    let config = tmp.path().join("tokenize.toml");
    std::fs::write(
        &config,
        format!(
            "[input]\npaths = [{:?}]\n\n[tokenize]\ntokenizer = {:?}\noutput = {:?}\noverwrite = true\nvalidation_fraction = 0.2\n\n[tokenize.shuffle]\nseed = 1\nbuckets = 200\n",
            corpus_path.display().to_string(),
            tokenizer.display().to_string(),
            tmp.path().join("out").display().to_string(),
        ),
    )
    .expect("write config");
    // 200 buckets, two splits: 656 files with the margin, over a soft limit of 64.
    let under = |limits: &str| {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("{limits}; exec \"$0\" tokenize \"$1\""))
            .arg(env!("CARGO_BIN_EXE_pipeline"))
            .arg(&config)
            .output()
            .expect("run pipeline tokenize")
    };
    let hard = std::process::Command::new("bash")
        .args(["-c", "ulimit -Hn"])
        .output()
        .expect("ulimit");
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_string();
    assert!(
        hard == "unlimited" || hard.parse::<u64>().expect("a number") >= 656,
        "this test needs a hard limit of at least 656 open files, not {hard}"
    );
    let raised = under("ulimit -Sn 64");
    assert!(
        raised.status.success(),
        "{}",
        String::from_utf8_lossy(&raised.stderr)
    );
    assert!(tmp.path().join("out/train/manifest.json").exists());
    let refused = under("ulimit -n 64");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("tokenize.shuffle.buckets = 200") && err.contains("at most 64"),
        "{err}"
    );
}

#[test]
fn a_vocabulary_over_65536_uses_u32_ids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vocab: HashMap<String, u32> = (0..70_000u32)
        .map(|i| (format!("w{i}"), i + 6))
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
        Tokens::U32(list) => assert_eq!(list.get(0), &[5, 70_005, 7, 65_542, 0]),
        Tokens::U16(_) => panic!("ids above 65535 need u32"),
    }
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
    let mut ordered: Vec<(&String, &String)> = texts.iter().collect();
    ordered.sort();
    let library =
        testkit::tokenizer::train_bpe(ordered.iter().map(|(_, text)| text.as_str()), 600, 2);
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
