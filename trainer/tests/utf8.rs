//! Sampled text stays valid UTF-8 with a byte-level tokenizer whose tokens split characters:
//! the mask on hand-made byte tokens, a random model sampling Chinese at a high temperature
//! (invalid without the mask, valid with it), and a model trained on Chinese: its valid greedy
//! output unchanged, `trainer generate`, `generate-candidates` and pretraining samples valid.

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};
use testkit::tokenizer::{save_bpe, write_pretrain_dataset};
use trainer::engine::config::Precision;
use trainer::io::load::load_dir;
use trainer::model::language_model::LanguageModel;
use trainer::model::sample::{SamplingParams, generate, generate_text, pick_token};
use trainer::model::tokenizer::TextTokenizer;
use trainer::model::utf8::{ByteVocab, TokenBytes, Utf8State, byte_level_char_bytes};
use trainer::post::data::{Sequence, pack};
use trainer::post::grpo::token_logps;
use trainer::post::sampled::SamplingMask;

use crate::helpers::{Phrasebook, tiny_config_toml, trainer_ok};
use crate::model::small_model;

const REPLACEMENT: char = '\u{FFFD}';

/// Chinese sentences (and one emoji, four bytes) with enough repetition for BPE merges
/// that stop inside characters.
const CHINESE: Phrasebook = Phrasebook {
    subjects: ["我的朋友", "那只猫🐱", "老师", "小鸟", "我们"],
    verbs: ["喜欢", "看见", "找到", "跟着"],
    objects: ["红色的球", "绿色的盒子", "那棵老树", "一座小房子"],
    space: "",
    full_stop: "。",
};

fn chinese_document(i: usize) -> String {
    CHINESE.document(i)
}

fn chinese_tokenizer(dir: &Path, vocab_size: usize) -> PathBuf {
    let corpus: Vec<String> = (0..200).map(chinese_document).collect();
    let path = dir.join("bpe-tokenizer.json");
    save_bpe(&path, corpus.iter().map(String::as_str), vocab_size);
    path
}

/// Each id's bytes, read from the tokenizer file independently of the trainer's table.
fn token_bytes(path: &Path) -> Vec<(u32, Vec<u8>)> {
    let hf = tokenizers::Tokenizer::from_file(path).expect("tokenizer");
    let map = byte_level_char_bytes();
    hf.get_vocab(false)
        .into_iter()
        .map(|(token, id)| {
            let bytes = token.chars().map(|c| map[&c]).collect();
            (id, bytes)
        })
        .collect()
}

fn params(temperature: f64, top_k: usize, top_p: f64, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k,
        top_p,
        max_tokens: 48,
        seed,
        stop_token: None,
    }
}

/// Whether the tokens' bytes are valid UTF-8 save for an unfinished character right before a
/// special token or at the end, checked with the tokenizer's own decoder on each stretch of
/// text between special tokens (one there decodes to a single U+FFFD at its end).
fn valid_but_for_unfinished_ends(hf: &tokenizers::Tokenizer, tokens: &[u32]) -> bool {
    let special = |id: &u32| {
        hf.id_to_token(*id)
            .is_some_and(|t| format::SPECIAL_TOKENS.iter().any(|(_, s)| *s == t))
    };
    tokens.split(special).all(|stretch| {
        let text = hf.decode(stretch, false).expect("decode");
        !text.trim_end_matches(REPLACEMENT).contains(REPLACEMENT)
            && text.chars().rev().take_while(|&c| c == REPLACEMENT).count() <= 1
    })
}

#[test]
fn the_mask_follows_utf8_on_hand_made_byte_tokens() {
    let text = |b: &[u8]| TokenBytes::Text(b.to_vec());
    let vocab = ByteVocab::new(vec![
        TokenBytes::Special(b"<|end|>".to_vec()), // 0
        text(b"a"),                               // 1
        text(&[0xe4]),                            // 2: lead of 中 (E4 B8 AD)
        text(&[0xb8]),                            // 3: continuation
        text(&[0xad, b'a']),                      // 4: ends a character, then ASCII
        text("中".as_bytes()),                    // 5
        text(&[0xe0]),                            // 6: needs A0..BF next
        text(&[0x80]),                            // 7
        text(&[0xa0, 0x80]),                      // 8: completes E0
        text(&[0xff]),                            // 9: never UTF-8
        text(&[0xc0]),                            // 10: overlong lead
        text(&[0xed, 0xa0]),                      // 11: a surrogate
        text(&[0xf0, 0x9f]),                      // 12: first half of an emoji
        text(&[0x90, 0xb1]),                      // 13: second half of 🐱 (F0 9F 90 B1)
        TokenBytes::Unused,                       // 14
    ]);
    let allowed =
        |state: Utf8State| -> Vec<u32> { (0..16).filter(|&id| vocab.allows(state, id)).collect() };
    let after = |ids: &[u32]| {
        ids.iter()
            .fold(Utf8State::Between, |s, &id| vocab.advance(s, id))
    };

    assert_eq!(allowed(Utf8State::Between), [0, 1, 2, 5, 6, 12, 14, 15]);
    assert_eq!(after(&[2]), Utf8State::Need2);
    assert_eq!(allowed(after(&[2])), [0, 3, 7, 8, 13, 14, 15]);
    assert_eq!(allowed(after(&[2, 3])), [0, 3, 4, 7, 14, 15]);
    assert_eq!(after(&[2, 3, 4]), Utf8State::Between);
    assert_eq!(
        allowed(after(&[6])),
        [0, 3, 8, 14, 15],
        "E0 then 80 or 90 is overlong"
    );
    assert_eq!(allowed(after(&[12])), [0, 3, 7, 8, 13, 14, 15]);
    assert_eq!(after(&[12, 13]), Utf8State::Between);
    assert_eq!(
        after(&[2, 0]),
        Utf8State::Between,
        "a special token starts afresh"
    );

    // The mask sets exactly the disallowed logits to -inf, so even when they are the most
    // likely, greedy and sampling pick an allowed id; unmasked, greedy picks 9 (0xFF).
    let mut logits = vec![0.0f32; 15];
    logits[9] = 5.0;
    logits[3] = 4.0;
    let unmasked = pick_token(&logits, &params(0.0, 0, 1.0, 0), 0.5).expect("pick");
    assert_eq!(unmasked, 9);
    assert!(vocab.decode(&[unmasked]).0.contains(REPLACEMENT));
    vocab.mask(Utf8State::Between, &mut logits);
    for id in 0..15u32 {
        let masked = logits[id as usize] == f32::NEG_INFINITY;
        assert_eq!(masked, !vocab.allows(Utf8State::Between, id), "id {id}");
    }
    assert_eq!(
        pick_token(&logits, &params(0.0, 0, 1.0, 0), 0.5).expect("pick"),
        0
    );
    for u in [0.0, 0.3, 0.6, 0.999] {
        let id = pick_token(&logits, &params(2.0, 3, 1.0, 0), u).expect("pick");
        assert!(vocab.allows(Utf8State::Between, id), "u {u}: {id}");
    }

    // Decoding drops an unfinished character at the end and before a special token.
    assert_eq!(vocab.decode(&[1, 2, 3, 4]), ("a中a".to_string(), false));
    assert_eq!(vocab.decode(&[1, 2, 3]), ("a".to_string(), true));
    assert_eq!(vocab.decode(&[5, 12]), ("中".to_string(), true));
    assert_eq!(vocab.decode(&[2, 0, 1]), ("<|end|>a".to_string(), true));
    assert_eq!(vocab.decode(&[12, 13, 14]), ("🐱".to_string(), false));

    // A vocabulary with nothing valid to start with is left unmasked (nothing to sample else).
    let stuck = ByteVocab::new(vec![text(&[0x80]), text(&[0xbf])]);
    let mut logits = vec![1.0f32, 2.0];
    stuck.mask(Utf8State::Between, &mut logits);
    assert_eq!(logits, [1.0, 2.0]);
}

#[test]
fn a_random_model_sampling_chinese_writes_valid_utf8_only_with_the_mask() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = chinese_tokenizer(tmp.path(), 330);
    let hf = tokenizers::Tokenizer::from_file(&path).expect("tokenizer");
    let tokenizer = TextTokenizer::from_file(&path).expect("tokenizer");
    // The merges split characters: multi-byte tokens that are not whole characters.
    let partial = token_bytes(&path)
        .into_iter()
        .filter(|(_, b)| b.len() > 1 && std::str::from_utf8(b).is_err())
        .count();
    assert!(partial >= 10, "only {partial} partial multi-byte tokens");
    let vocab = tokenizer.byte_vocab().expect("byte-level");

    let mut config = small_model(false);
    config.vocab_size = hf.get_vocab_size(true) as i64;
    let lm = LanguageModel::new(&config, Device::Cpu, Kind::Float, 3).expect("model");
    let prompt = tokenizer.encode("我的朋友").expect("encode");
    let (mut invalid_without, mut dropped_tails) = (0, 0);
    for seed in 0..40 {
        let p = match seed % 3 {
            0 => params(1.5, 0, 1.0, seed),
            1 => params(1.2, 50, 1.0, seed),
            _ => params(2.0, 0, 0.9, seed),
        };
        let raw = generate(&lm, &prompt, &p, true).expect("unmasked");
        if tokenizer
            .decode(&raw.tokens)
            .expect("decode")
            .contains(REPLACEMENT)
        {
            invalid_without += 1;
        }
        let out = generate_text(&lm, &prompt, &p, true, Some(vocab)).expect("masked");
        assert_eq!(out.tokens.len(), 48);
        assert!(
            valid_but_for_unfinished_ends(&hf, &out.tokens),
            "seed {seed}"
        );
        let text = tokenizer.decode(&out.tokens).expect("decode");
        assert!(!text.contains(REPLACEMENT), "seed {seed}: {text:?}");
        dropped_tails += usize::from(vocab.decode(&out.tokens).1);
        if seed < 3 {
            let full = generate_text(&lm, &prompt, &p, false, Some(vocab)).expect("full");
            assert_eq!(out, full, "KV cache vs recompute, seed {seed}");
        }
    }
    // Without the mask most of these samples hold bytes that are not UTF-8.
    assert!(
        invalid_without >= 20,
        "only {invalid_without} of 40 invalid"
    );
    println!("{invalid_without}/40 invalid unmasked; {dropped_tails} unfinished tails dropped");
}

/// GRPO takes a sampled answer's log-probs under the distribution the sampler drew it from,
/// which with a byte-level tokenizer is masked as well as tempered. Answers sampled from a
/// random model and packed together as in a rollout: each token's log-prob is the sampler's
/// own, `log_softmax(row / T)` of the masked next-token row of a plain forward pass over the
/// prompt and the answer so far. Without the mask they are off (the masked tokens carry mass).
#[test]
fn grpo_log_probs_of_sampled_answers_follow_the_utf8_mask() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = chinese_tokenizer(tmp.path(), 330);
    let tokenizer = TextTokenizer::from_file(&path).expect("tokenizer");
    let vocab = tokenizer.byte_vocab().expect("byte-level");
    let mut config = small_model(false);
    config.vocab_size = i64::from(tokenizer.vocab_size());
    let lm = LanguageModel::new(&config, Device::Cpu, Kind::Float, 3).expect("model");
    let prompt = tokenizer.encode("我的朋友").expect("encode");
    let temperature = 1.5;
    let answers: Vec<Vec<u32>> = (0..3)
        .map(|seed| {
            let p = SamplingParams {
                max_tokens: 12,
                ..params(temperature, 0, 1.0, seed)
            };
            generate_text(&lm, &prompt, &p, true, Some(vocab))
                .expect("sample")
                .tokens
        })
        .collect();
    let seqs: Vec<Sequence> = answers
        .iter()
        .map(|a| Sequence::prompt_answer(&prompt, a))
        .collect();
    let packed = pack(&seqs.iter().collect::<Vec<_>>(), 256, Device::Cpu).expect("pack");
    let mask = SamplingMask::new(&packed, vocab, config.vocab_size).expect("mask");
    let logps = |mask: Option<&SamplingMask>| -> Vec<f64> {
        let t = token_logps(&lm, &packed, temperature, mask).expect("log-probs");
        Vec::<f64>::try_from(t.reshape([-1]).to_kind(Kind::Double)).expect("host")
    };
    let (masked, unmasked) = (logps(Some(&mask)), logps(None));

    let (mut offset, mut masking_steps, mut gap) = (0, 0, 0.0f64);
    for answer in &answers {
        let mut state = Utf8State::Between;
        for (i, &token) in answer.iter().enumerate() {
            let ids: Vec<i64> = prompt
                .iter()
                .chain(&answer[..i])
                .map(|&t| i64::from(t))
                .collect();
            let logits = lm
                .forward(&Tensor::from_slice(&ids).unsqueeze(0), 0, None)
                .expect("forward");
            let mut row =
                Vec::<f32>::try_from(logits.select(1, ids.len() as i64 - 1).squeeze_dim(0))
                    .expect("row");
            vocab.mask(state, &mut row);
            masking_steps += usize::from(row.contains(&f32::NEG_INFINITY));
            let scaled: Vec<f64> = row.iter().map(|&l| f64::from(l) / temperature).collect();
            let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_total = scaled.iter().map(|l| (l - max).exp()).sum::<f64>().ln() + max;
            let expected = scaled[token as usize] - log_total;
            let cell = offset + prompt.len() - 1 + i;
            assert!(
                (masked[cell] - expected).abs() < 1e-3,
                "answer token {i}: GRPO {} vs sampler {expected}",
                masked[cell]
            );
            gap = gap.max((unmasked[cell] - expected).abs());
            state = vocab.advance(state, token);
        }
        offset += prompt.len() + answer.len();
    }
    println!("the mask acted at {masking_steps} steps; unmasked log-probs off by up to {gap:.3}");
    assert!(
        masking_steps >= 10,
        "the mask acted at {masking_steps} steps"
    );
    assert!(
        gap > 0.05,
        "unmasked log-probs within {gap} of the sampler's"
    );
}

#[test]
fn a_chinese_model_generates_valid_text_and_its_valid_greedy_output_is_unchanged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let tokenizer_path = chinese_tokenizer(root, 330);
    for (name, first, docs) in [("train", 0, 150), ("valid", 1000, 30)] {
        write_pretrain_dataset(
            &root.join(name),
            &tokenizer_path,
            (first..first + docs).map(|i| (format!("doc-{i}"), chinese_document(i))),
            None,
        );
    }
    let out = root.join("zh");
    let mut toml = tiny_config_toml(&root.join("train"), &root.join("valid"), &out, 20);
    toml.push_str("\n[sample]\nevery = 5\nprompt = \"老师\"\ntemperature = 2.0\ntop_p = 1.0\n");
    let config = root.join("zh.toml");
    std::fs::write(&config, toml).expect("config");
    trainer_ok(&["pretrain", "--config", config.to_str().expect("utf8")]);
    let samples: Vec<String> = crate::helpers::metrics(&out)
        .iter()
        .filter(|l| l["kind"] == "sample")
        .map(|l| l["text"].as_str().expect("text").to_string())
        .collect();
    assert_eq!(samples.len(), 4);
    for text in &samples {
        assert!(!text.contains(REPLACEMENT), "{text:?}");
    }
    let ckpt_dir = out.join("checkpoints/step-00000020");
    let ckpt = ckpt_dir.to_str().expect("utf8");

    // Greedy output that was valid without the mask is the same with it; sampling at the
    // temperature the commands below use gives invalid bytes without it.
    let (lm, _) = load_dir(&ckpt_dir, Device::Cpu, Precision::Auto).expect("load");
    let tokenizer = TextTokenizer::from_file(&tokenizer_path).expect("tokenizer");
    let vocab = tokenizer.byte_vocab().expect("byte-level");
    let (mut valid_greedy, mut invalid_sampled) = (0, 0);
    for (i, text) in ["我们", "老师", "那只猫", "小鸟看见", "绿色的"]
        .iter()
        .enumerate()
    {
        let prompt = tokenizer.encode(text).expect("encode");
        let greedy = params(0.0, 0, 1.0, 0);
        let raw = generate(&lm, &prompt, &greedy, true).expect("greedy");
        if !tokenizer
            .decode(&raw.tokens)
            .expect("decode")
            .contains(REPLACEMENT)
            && !vocab.decode(&raw.tokens).1
        {
            valid_greedy += 1;
            let masked = generate_text(&lm, &prompt, &greedy, true, Some(vocab)).expect("masked");
            assert_eq!(masked, raw, "{text}");
        }
        let hot = params(2.0, 0, 1.0, i as u64);
        let raw = generate(&lm, &prompt, &hot, true).expect("sampled");
        invalid_sampled += usize::from(
            tokenizer
                .decode(&raw.tokens)
                .expect("decode")
                .contains(REPLACEMENT),
        );
    }
    assert!(
        valid_greedy >= 3,
        "greedy valid for {valid_greedy} of 5 prompts"
    );
    assert!(invalid_sampled >= 1, "no invalid sample without the mask");
    println!("greedy valid for {valid_greedy}/5, unmasked samples invalid for {invalid_sampled}/5");

    for seed in ["1", "2", "3", "4", "5", "6"] {
        let json: serde_json::Value = serde_json::from_str(&trainer_ok(&[
            "generate",
            ckpt,
            "--prompt",
            "我们",
            "--max-tokens",
            "40",
            "--temperature",
            "2.0",
            "--seed",
            seed,
            "--device",
            "cpu",
            "--json",
        ]))
        .expect("json");
        let text = json["text"].as_str().expect("text");
        assert!(!text.contains(REPLACEMENT), "seed {seed}: {text:?}");
    }

    let prompts = root.join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"id\": \"cat\", \"prompt\": \"那只猫\"}\n{\"id\": \"bird\", \"prompt\": \"小鸟喜欢\"}\n",
    )
    .expect("prompts");
    let items = root.join("items.jsonl");
    let (prompts, items) = (
        prompts.to_str().expect("utf8"),
        items.to_str().expect("utf8"),
    );
    // A dry run writes what would be posted: 2 prompts, 4 different answers each.
    let args = format!(
        "generate-candidates --model {ckpt} --prompts {prompts} --dry-run --output {items} \
         --k 4 --max-tokens 13 --temperature 2.0 --seed 9 --device cpu"
    );
    trainer_ok(&args.split_whitespace().collect::<Vec<_>>());
    let lines = std::fs::read_to_string(items).expect("items");
    let mut answers = 0;
    for line in lines.lines() {
        let item: serde_json::Value = serde_json::from_str(line).expect("item");
        for candidate in item["candidates"].as_array().expect("candidates") {
            let content = candidate["content"].as_str().expect("content");
            assert!(!content.contains(REPLACEMENT), "{content:?}");
            answers += 1;
        }
    }
    assert_eq!(answers, 8);
}
