//! Sampling: the filters, seeded determinism, stopping at EOS, and the KV-cache path giving
//! the same tokens as recomputing the prefix.

use tch::{Device, Kind};
use trainer::model::language_model::LanguageModel;
use trainer::model::sample::{SamplingParams, generate, pick_token};

use crate::helpers::{datasets, tiny_config_file, trainer_ok};
use crate::model::small_model;

fn params(temperature: f64, top_k: usize, top_p: f64) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k,
        top_p,
        max_tokens: 16,
        seed: 0,
        stop_token: None,
    }
}

#[test]
fn filters_pick_from_the_right_set() {
    let logits = [0.0f32, 3f32.ln(), -50.0, 0.0];
    // Greedy, and top-k 1, pick the argmax whatever the draw.
    for u in [0.0, 0.5, 0.999] {
        assert_eq!(
            pick_token(&logits, &params(0.0, 0, 1.0), u).expect("pick"),
            1
        );
        assert_eq!(
            pick_token(&logits, &params(1.0, 1, 1.0), u).expect("pick"),
            1
        );
        assert_eq!(
            pick_token(&logits, &params(1.0, 0, 0.1), u).expect("pick"),
            1
        );
    }
    // Probabilities 1/5, 3/5, ~0, 1/5, ordered (1, 0, 3, 2): the draw walks that order.
    let full = params(1.0, 0, 1.0);
    assert_eq!(pick_token(&logits, &full, 0.59).expect("pick"), 1);
    assert_eq!(pick_token(&logits, &full, 0.61).expect("pick"), 0);
    assert_eq!(pick_token(&logits, &full, 0.81).expect("pick"), 3);
    // top-k 2 keeps ids 1 and 0 (3/4, 1/4); top-p 0.7 keeps ids 1 and 0 as well.
    assert_eq!(
        pick_token(&logits, &params(1.0, 2, 1.0), 0.99).expect("pick"),
        0
    );
    assert_eq!(
        pick_token(&logits, &params(1.0, 0, 0.7), 0.99).expect("pick"),
        0
    );
    assert_eq!(
        pick_token(&logits, &params(1.0, 0, 0.7), 0.74).expect("pick"),
        1
    );
    assert!(params(1.0, 0, 0.0).validate().is_err());
}

#[test]
fn generation_stops_at_the_stop_token() {
    let mut config = small_model(false);
    config.vocab_size = 16;
    let lm = LanguageModel::new(&config, Device::Cpu, Kind::Float, 0).expect("model");
    // All-zero output weights: every logit ties, greedy takes id 0.
    tch::no_grad(|| {
        for (name, mut t) in lm.named_tensors() {
            if name == "lm_head.weight" {
                let _ = t.zero_();
            }
        }
    });
    let mut p = params(0.0, 0, 1.0);
    let out = generate(&lm, &[3, 4], &p, true).expect("generate");
    assert_eq!(out.tokens, vec![0; 16]);
    assert!(!out.stopped);
    p.stop_token = Some(0);
    let out = generate(&lm, &[3, 4], &p, true).expect("generate");
    assert_eq!(out.tokens, vec![0]);
    assert!(out.stopped);
    // The context length bounds the generation.
    p.stop_token = None;
    p.max_tokens = 1000;
    let out = generate(&lm, &[3, 4], &p, true).expect("generate");
    assert_eq!(out.tokens.len(), 62);
}

#[test]
fn cached_and_recomputed_generation_agree_and_the_seed_decides() {
    let lm = LanguageModel::new(&small_model(true), Device::Cpu, Kind::Float, 5).expect("model");
    let prompt = [1u32, 2, 3, 4, 5];
    for seed in 0..4 {
        let mut p = params(1.0, 20, 0.9);
        p.seed = seed;
        p.max_tokens = 40;
        let cached = generate(&lm, &prompt, &p, true).expect("cached");
        let full = generate(&lm, &prompt, &p, false).expect("full");
        assert_eq!(cached, full, "seed {seed}");
        assert_eq!(cached.tokens.len(), 40);
        assert_eq!(generate(&lm, &prompt, &p, true).expect("again"), cached);
    }
    let by_seed: Vec<Vec<u32>> = (0..4)
        .map(|seed| {
            let mut p = params(1.0, 0, 1.0);
            p.seed = seed;
            generate(&lm, &prompt, &p, true).expect("gen").tokens
        })
        .collect();
    assert!(
        by_seed.windows(2).any(|w| w[0] != w[1]),
        "seeds should matter"
    );
}

#[test]
fn the_generate_command_is_seeded_and_its_cache_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    let out = tmp.path().join("run");
    let config = tiny_config_file(tmp.path(), "c", &out, 40);
    trainer_ok(&["pretrain", "--config", config.to_str().expect("utf8")]);
    let ckpt = out.join("checkpoints/step-00000040");
    let ckpt = ckpt.to_str().expect("utf8");
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "generate",
            ckpt,
            "--prompt",
            "the cat",
            "--max-tokens",
            "30",
            "--seed",
            "11",
            "--temperature",
            "0.9",
            "--top-k",
            "40",
            "--device",
            "cpu",
            "--json",
        ];
        args.extend_from_slice(extra);
        serde_json::from_str(&trainer_ok(&args)).expect("json")
    };
    let a = run(&[]);
    assert_eq!(a, run(&[]), "same seed, same text");
    assert_eq!(a, run(&["--no-cache"]), "KV cache vs full recompute");
    let tokens = a["tokens"].as_array().expect("tokens");
    assert!(!tokens.is_empty() && tokens.len() <= 30);
    // The model learnt sentences that end in "." and documents that end in EOS.
    if a["stopped"] == true {
        assert_eq!(tokens.last(), Some(&serde_json::json!(0)));
    }
    assert!(a["text"].as_str().expect("text").len() > 5, "{a}");
    let text = trainer_ok(&[
        "generate",
        ckpt,
        "--prompt",
        "the cat",
        "--temperature",
        "0",
        "--device",
        "cpu",
    ]);
    assert!(text.starts_with("the cat"), "{text}");
}
