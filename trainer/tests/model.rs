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

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).expect("scalar")
}

/// Zeroes the gradients of the model's parameters.
pub fn zero_grads(lm: &LanguageModel) {
    for (_, p) in lm.named_tensors() {
        let mut p = p;
        p.zero_grad();
    }
}

/// Copies of the gradients of the model's parameters, in `named_tensors` order.
pub fn grads(lm: &LanguageModel) -> Vec<Tensor> {
    lm.named_tensors()
        .iter()
        .map(|(_, p)| p.grad().copy())
        .collect()
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

/// bf16 compute with fp32 master weights (a bf16 run's output layer): the chunked loss gives
/// the loss and gradients of the full path (the weight taken in bf16, the logits' loss in
/// fp32), the hidden gradient in bf16 and the weight's in fp32, within bf16 rounding.
#[test]
fn chunked_cross_entropy_in_bf16_gives_the_loss_and_gradients_of_the_full_bf16_logits() {
    tch::manual_seed(4);
    let (n, width, vocab) = (150, 16, 97);
    let leaf = Tensor::randn([n, width], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let weight =
        (Tensor::randn([vocab, width], (Kind::Float, Device::Cpu)) * 0.3).set_requires_grad(true);
    let targets = Tensor::randint(vocab, [n], (Kind::Int64, Device::Cpu));
    let _ = targets.narrow(0, 20, 7).fill_(-100);
    let scale = 1.0 / 143.0;
    // The hidden states in bf16, as a bf16 run's last layer gives them.
    let hidden = || leaf.to_kind(Kind::BFloat16);

    let logits = hidden().matmul(&weight.to_kind(Kind::BFloat16).tr());
    let full = trainer::model::loss::cross_entropy_sum(&logits, &targets).expect("loss");
    (&full * scale).backward();
    let (full_dh, full_dw) = (leaf.grad().copy(), weight.grad().copy());
    let _ = leaf.grad().zero_();
    let _ = weight.grad().zero_();

    let (loss, surrogate) =
        trainer::model::loss::chunked_cross_entropy(&hidden(), &weight, &targets, scale)
            .expect("loss");
    surrogate.backward();
    assert_eq!(loss.kind(), Kind::Float);
    let (loss, full) = (
        f64::try_from(&loss).expect("f64"),
        f64::try_from(&full).expect("f64"),
    );
    assert!(
        (loss - full).abs() < 1e-3 * full.abs(),
        "{loss} against {full}"
    );
    let size = |t: &Tensor| f64::try_from(t.abs().max()).expect("f64");
    assert!(
        size(&full_dh) > 1e-3 && size(&full_dw) > 1e-3,
        "gradients are not trivial"
    );
    let dh = max_abs_diff(&leaf.grad(), &full_dh);
    let dw = max_abs_diff(&weight.grad(), &full_dw);
    assert!(dh < 2e-2 * size(&full_dh), "hidden gradient off by {dh}");
    assert!(dw < 2e-2 * size(&full_dw), "weight gradient off by {dw}");
    assert_eq!(
        f64::try_from(leaf.grad().narrow(0, 20, 7).abs().sum(Kind::Float)).expect("f64"),
        0.0
    );
}

/// A bf16 model (fp32 master weights, bf16 compute) takes the chunked loss in
/// `lm_loss_backward`: the same loss and gradients as the full bf16 logits, within bf16
/// rounding.
#[test]
fn a_bf16_models_pretraining_loss_is_chunked_and_matches_the_full_logits() {
    let lm =
        LanguageModel::new(&small_model(false), Device::Cpu, Kind::BFloat16, 5).expect("model");
    tch::manual_seed(5);
    let ids = Tensor::randint(97, [2, 40], (Kind::Int64, Device::Cpu));
    let targets = Tensor::randint(97, [2, 40], (Kind::Int64, Device::Cpu));
    zero_grads(&lm);
    let chunked = lm.lm_loss_backward(&ids, &targets, 0.01).expect("chunked");
    let chunked_grads = grads(&lm);
    zero_grads(&lm);
    let logits = lm.model_forward(&ids).expect("logits");
    assert_eq!(logits.kind(), Kind::BFloat16);
    let full = trainer::model::loss::cross_entropy_sum(&logits, &targets).expect("loss");
    (&full * 0.01).backward();
    let (chunked, full) = (
        f64::try_from(&chunked).expect("f64"),
        f64::try_from(&full).expect("f64"),
    );
    assert!(
        (chunked - full).abs() < 1e-2 * full,
        "{chunked} against {full}"
    );
    for ((name, _), (c, f)) in lm
        .named_tensors()
        .iter()
        .zip(chunked_grads.iter().zip(grads(&lm)))
    {
        let size = f64::try_from(f.abs().max()).expect("f64");
        let diff = max_abs_diff(c, &f);
        assert!(
            size > 0.0 && diff <= 5e-2 * size,
            "{name}: {diff} of {size}"
        );
    }
}

/// The evaluation loss (no graph, chunked over the labelled rows) is the full logits' loss.
#[test]
fn the_evaluation_loss_is_the_full_logits_loss_without_a_graph() {
    let lm = LanguageModel::new(&small_model(false), Device::Cpu, Kind::Float, 12).expect("model");
    tch::manual_seed(12);
    let ids = Tensor::randint(97, [3, 50], (Kind::Int64, Device::Cpu));
    let targets = Tensor::randint(97, [3, 50], (Kind::Int64, Device::Cpu));
    let _ = targets.narrow(1, 0, 7).fill_(-100);
    let full =
        trainer::model::loss::cross_entropy_sum(&lm.model_forward(&ids).expect("logits"), &targets)
            .expect("loss");
    let chunked = lm.lm_loss_sum(&ids, &targets).expect("eval loss");
    assert!(!chunked.requires_grad());
    let (a, b) = (
        f64::try_from(&chunked).expect("f64"),
        f64::try_from(&full).expect("f64"),
    );
    assert!(b > 1.0 && (a - b).abs() < 1e-4 * b, "{a} against {b}");
}

/// Sampling's forward takes the last position's logits only: the same as the full forward's
/// last row, on a whole prompt and on a cached step.
#[test]
fn the_last_positions_logits_are_the_full_forwards_last_row() {
    let lm = LanguageModel::new(&small_model(false), Device::Cpu, Kind::Float, 13).expect("model");
    let ids = Tensor::from_slice(&[3i64, 14, 15, 92, 65, 35, 89, 79]).view([1, 8]);
    let full = lm.forward(&ids, 0, None).expect("forward").narrow(1, 7, 1);
    let last = lm.forward_last(&ids, 0, None).expect("last");
    assert_eq!(last.size(), vec![1, 1, 97]);
    assert!(max_abs_diff(&full, &last) < 1e-5);
    let mut cache = lm.new_cache(1, 9).expect("cache");
    let _ = lm.forward_last(&ids, 0, Some(&mut cache)).expect("prefill");
    let next = Tensor::from_slice(&[23i64]).view([1, 1]);
    let cached = lm.forward_last(&next, 8, Some(&mut cache)).expect("step");
    let whole = Tensor::cat(&[ids, next], 1);
    let full = lm
        .forward(&whole, 0, None)
        .expect("forward")
        .narrow(1, 8, 1);
    assert!(max_abs_diff(&full, &cached) < 1e-5);
}
