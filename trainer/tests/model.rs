//! The model on its own: shapes, parameter counts, and the KV-cache path against a full
//! recompute.

use tch::{Device, Kind, Tensor};
use trainer::engine::config::ModelConfig;
use trainer::model::language_model::LanguageModel;

pub fn small_model(tied: bool) -> ModelConfig {
    ModelConfig {
        vocab_size: 97,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 64,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        tie_word_embeddings: tied,
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).expect("scalar")
}

#[test]
fn parameter_count_matches_the_variables_and_names_are_hugging_face_names() {
    for tied in [false, true] {
        let config = small_model(tied);
        let lm = LanguageModel::new(&config, Device::Cpu, Kind::Float, 0).expect("model");
        assert_eq!(lm.num_params(), config.num_params(), "tied={tied}");
        let names: Vec<String> = lm.named_tensors().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"model.embed_tokens.weight".to_string()));
        assert!(names.contains(&"model.layers.1.self_attn.k_proj.weight".to_string()));
        assert!(names.contains(&"model.layers.0.mlp.down_proj.weight".to_string()));
        assert!(names.contains(&"model.norm.weight".to_string()));
        assert_eq!(names.contains(&"lm_head.weight".to_string()), !tied);
    }
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let config = small_model(false);
    let a = LanguageModel::new(&config, Device::Cpu, Kind::Float, 3).expect("model");
    let b = LanguageModel::new(&config, Device::Cpu, Kind::Float, 3).expect("model");
    let c = LanguageModel::new(&config, Device::Cpu, Kind::Float, 4).expect("model");
    let w = |lm: &LanguageModel| lm.named_tensors()[0].1.shallow_clone();
    assert!(w(&a).equal(&w(&b)));
    assert!(!w(&a).equal(&w(&c)));
}

#[test]
fn forward_is_causal() {
    let lm = LanguageModel::new(&small_model(false), Device::Cpu, Kind::Float, 1).expect("model");
    let ids = Tensor::from_slice(&[5i64, 9, 13, 2, 40, 41]).view([1, 6]);
    let changed = ids.copy();
    let _ = changed.get(0).get(5).fill_(77);
    let a = lm.forward(&ids, 0, None).expect("forward");
    let b = lm.forward(&changed, 0, None).expect("forward");
    assert_eq!(a.size(), [1, 6, 97]);
    // Positions before the changed token see the same logits, the last one does not.
    assert!(max_abs_diff(&a.narrow(1, 0, 5), &b.narrow(1, 0, 5)) == 0.0);
    assert!(max_abs_diff(&a.narrow(1, 5, 1), &b.narrow(1, 5, 1)) > 1e-4);
}

#[test]
fn kv_cache_chunks_give_the_full_recompute_logits() {
    for tied in [false, true] {
        let lm =
            LanguageModel::new(&small_model(tied), Device::Cpu, Kind::Float, 2).expect("model");
        let ids: Vec<i64> = (0..20).map(|i| (i * 37 + 11) % 97).collect();
        let all = Tensor::from_slice(&ids).view([1, 20]);
        let full = tch::no_grad(|| lm.forward(&all, 0, None)).expect("full");
        let mut cache = lm.new_cache(1, 20).expect("cache");
        let mut pieces = Vec::new();
        // A prefill of 7, a chunk of 5 after cached positions (explicit mask), then single
        // tokens (no mask).
        for (start, len) in [(0, 7), (7, 5), (12, 1), (13, 1), (14, 6)] {
            let chunk = all.narrow(1, start, len);
            let out = tch::no_grad(|| lm.forward(&chunk, start, Some(&mut cache))).expect("cached");
            pieces.push(out);
        }
        assert_eq!(cache.len(), 20);
        let cached = Tensor::cat(&pieces, 1);
        let diff = max_abs_diff(&full, &cached);
        assert!(diff < 1e-5, "tied={tied}: cached logits differ by {diff}");
        // Appending past the capacity is an error, not a panic.
        let extra = Tensor::from_slice(&[1i64]).view([1, 1]);
        assert!(lm.forward(&extra, 20, Some(&mut cache)).is_err());
    }
}

#[test]
fn invalid_shapes_are_refused_with_the_field_named() {
    let mut config = small_model(false);
    config.num_key_value_heads = 3;
    let err = config.validate().expect_err("4 heads, 3 kv heads");
    assert!(err.to_string().contains("num_key_value_heads"), "{err}");
    let mut config = small_model(false);
    config.hidden_size = 30;
    let err = config.validate().expect_err("30 / 4");
    assert!(err.to_string().contains("hidden_size"), "{err}");
}

#[test]
fn positions_beyond_the_context_are_an_error() {
    let lm = LanguageModel::new(&small_model(false), Device::Cpu, Kind::Float, 0).expect("model");
    let ids = Tensor::zeros([1, 65], (Kind::Int64, Device::Cpu));
    let err = lm.forward(&ids, 0, None).expect_err("65 > 64 positions");
    assert!(err.to_string().contains("max_position_embeddings"), "{err}");
}

#[test]
fn chunked_cross_entropy_gives_the_loss_and_gradients_of_the_full_logits() {
    tch::manual_seed(3);
    // 150 rows: two full chunks and a partial one; some targets ignored (-100).
    let (n, width, vocab) = (150, 16, 97);
    let hidden = Tensor::randn([n, width], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let weight =
        (Tensor::randn([vocab, width], (Kind::Float, Device::Cpu)) * 0.3).set_requires_grad(true);
    let targets = Tensor::randint(vocab, [n], (Kind::Int64, Device::Cpu));
    let _ = targets.narrow(0, 10, 5).fill_(-100);
    let scale = 1.0 / 145.0;

    let logits = hidden.matmul(&weight.tr());
    let full = trainer::model::loss::cross_entropy_sum(&logits, &targets).expect("loss");
    (&full * scale).backward();
    let (full_dh, full_dw) = (hidden.grad().copy(), weight.grad().copy());
    let _ = hidden.grad().zero_();
    let _ = weight.grad().zero_();

    let (loss, surrogate) =
        trainer::model::loss::chunked_cross_entropy(&hidden, &weight, &targets, scale)
            .expect("loss");
    surrogate.backward();
    assert!((f64::try_from(&loss).expect("f64") - f64::try_from(&full).expect("f64")).abs() < 1e-3);
    assert!(max_abs_diff(&hidden.grad(), &full_dh) < 1e-6);
    assert!(max_abs_diff(&weight.grad(), &full_dw) < 1e-6);
    assert!(
        f64::try_from(full_dh.abs().sum(Kind::Float)).expect("f64") > 0.1,
        "gradients are not trivial"
    );
    // Ignored rows get no gradient.
    assert_eq!(
        f64::try_from(hidden.grad().narrow(0, 10, 5).abs().sum(Kind::Float)).expect("f64"),
        0.0
    );
}
