//! The chunked log-probs of DPO and GRPO steps: values and gradients as autograd through the
//! full logits gives them, with a mask and a temperature, over several chunks.

use tch::{Device, Kind, Tensor};
use trainer::model::language_model::LanguageModel;
use trainer::model::loss::{chunked_label_logps, chunked_label_logps_surrogate};
use trainer::post::data::{self, Sequence};
use trainer::post::dpo::sequence_logps;
use trainer::post::grpo::token_logps;
use trainer::post::step_logps::StepLogps;

use crate::model::{grads, max_abs_diff, small_model, zero_grads};

#[test]
fn chunked_label_logps_and_their_gradient_match_autograd_through_the_full_logits() {
    tch::manual_seed(7);
    // 130 rows: two full chunks of 64 and a partial one.
    let (n, width, vocab) = (130, 16, 97);
    let rows = Tensor::randn([n, width], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let weight =
        (Tensor::randn([vocab, width], (Kind::Float, Device::Cpu)) * 0.3).set_requires_grad(true);
    let labels = Tensor::randint(vocab, [n], (Kind::Int64, Device::Cpu));
    // Two ids masked per row, never the label: (label + 1) and (label + 2) mod vocab.
    let banned = |labels: &Tensor| {
        let ids = Tensor::arange(vocab, (Kind::Int64, Device::Cpu)).unsqueeze(0);
        let next = |k: i64| ((labels + k).remainder(vocab)).unsqueeze(1);
        ids.eq_tensor(&next(1)).logical_or(&ids.eq_tensor(&next(2)))
    };
    let adjust = |logits: Tensor, start: i64, len: i64| {
        logits.f_masked_fill(&banned(&labels.narrow(0, start, len)), f64::NEG_INFINITY)
    };
    let temperature = 0.7;
    let upstream = Tensor::randn([n], (Kind::Float, Device::Cpu));

    let full = (rows
        .matmul(&weight.tr())
        .masked_fill(&banned(&labels), f64::NEG_INFINITY)
        / temperature)
        .log_softmax(-1, Kind::Float)
        .gather(1, &labels.unsqueeze(1), false)
        .squeeze_dim(1);
    (&full * &upstream).sum(Kind::Float).backward();
    let (full_dr, full_dw) = (rows.grad().copy(), weight.grad().copy());
    let _ = rows.grad().zero_();
    let _ = weight.grad().zero_();

    let logps = chunked_label_logps(&rows, &weight, &labels, temperature, &adjust).expect("logps");
    assert!(!logps.requires_grad());
    assert!(max_abs_diff(&logps, &full.detach()) < 1e-5);
    chunked_label_logps_surrogate(&rows, &weight, &labels, temperature, &adjust, &upstream)
        .expect("surrogate")
        .backward();
    assert!(
        f64::try_from(full_dr.abs().max()).expect("f64") > 1e-2,
        "not trivial"
    );
    assert!(max_abs_diff(&rows.grad(), &full_dr) < 1e-5);
    assert!(max_abs_diff(&weight.grad(), &full_dw) < 1e-5);
    // A frozen weight gets no gradient, the rows the same one.
    let frozen = weight.detach();
    let _ = rows.grad().zero_();
    chunked_label_logps_surrogate(&rows, &frozen, &labels, temperature, &adjust, &upstream)
        .expect("surrogate")
        .backward();
    assert!(max_abs_diff(&rows.grad(), &full_dr) < 1e-5);
}

/// A DPO-like loss over a step's log-probs: the chunked route (a plain fp32 output layer)
/// and its `finish` give the model the gradients autograd gives through the logits.
#[test]
fn a_steps_chunked_log_probs_give_the_model_the_gradients_of_the_graph_route() {
    let lm = LanguageModel::new(&small_model(false), Device::Cpu, Kind::Float, 11).expect("model");
    assert!(lm.chunkable_output_weight().is_some());
    let seq = |ids: Vec<u32>, target: Vec<u8>| Sequence { ids, target };
    // 59 + 3 + 2 targets: two chunks on the CPU.
    let long = seq((0..60).map(|t| (t * 7 % 97) as u32).collect(), vec![1; 60]);
    let a = seq(vec![5, 17, 42, 8, 9, 60, 3], vec![0, 0, 0, 1, 1, 1, 1]);
    let b = seq(vec![11, 12, 90, 33, 2], vec![0, 0, 1, 1, 1]);
    let batch = data::pack(&[&long, &a, &b], 64, Device::Cpu).expect("pack");
    assert!(batch.targets > 64, "{}", batch.targets);
    let loss = |per_sequence: &Tensor| {
        let scaled = per_sequence * Tensor::from_slice(&[0.1f32, -0.2, 0.3]);
        scaled.log_sigmoid().neg().sum(Kind::Float)
    };
    zero_grads(&lm);
    let graph = StepLogps::through_logits(&lm, &batch, 1.0, None)
        .and_then(|l| l.per_sequence(&batch))
        .expect("logps");
    loss(&graph).backward();
    let want = grads(&lm);
    zero_grads(&lm);
    let step = StepLogps::new(&lm, &batch, 1.0, None).expect("step");
    let per_sequence = step.per_sequence(&batch).expect("per sequence");
    assert!(max_abs_diff(&per_sequence, &graph.detach()) < 1e-4);
    let per_token = step.per_token(&batch).expect("per token");
    // The no-graph log-probs (reference, old, evaluation), chunked too, are the same.
    let tokens = token_logps(&lm, &batch, 1.0, None).expect("tokens");
    assert!(!tokens.requires_grad());
    assert!(max_abs_diff(&per_token, &tokens) < 1e-5);
    let sequences = sequence_logps(&lm, &batch).expect("sequences");
    assert!(max_abs_diff(&sequences, &graph.detach()) < 1e-4);
    loss(&per_sequence).backward();
    // The loss's backward stops at the log-probs: nothing reached the model yet.
    assert!(
        grads(&lm)
            .iter()
            .all(|g| !g.defined() || f64::try_from(g.abs().sum(Kind::Float)).expect("f64") == 0.0)
    );
    step.finish().expect("finish");
    for ((name, _), (got, want)) in lm.named_tensors().iter().zip(grads(&lm).iter().zip(&want)) {
        assert!(max_abs_diff(got, want) < 1e-5, "{name}");
    }
    assert!(
        want.iter()
            .any(|g| f64::try_from(g.abs().sum(Kind::Float)).expect("f64") > 0.0)
    );
}
