//! Supervised fine-tuning: packing isolates examples, masked labels stay out of the
//! gradient, the loss falls and a trained answer comes back greedily, LoRA trains only its
//! adapters and merges to the same logits, and an interrupted run resumes bit for bit.

use std::path::Path;

use format::{Message, Role};
use tch::{Device, Kind, Tensor};
use trainer::engine::config::Precision;
use trainer::engine::{Faults, Resume};
use trainer::io::checkpoint::{self, Checkpoint};
use trainer::model::language_model::LanguageModel;
use trainer::model::llama::Packing;
use trainer::model::sample::{SamplingParams, generate};
use trainer::post::config::{PostConfig, Task};
use trainer::post::data::{self, PackedBatch, Sequence};
use trainer::post::sft::sft_loss_sum;

use crate::chat_data::{
    INSTRUCTIONS, base_checkpoint, chat_tokenizer, exchange, post_config_toml, sft_dataset,
    write_config,
};
use crate::helpers::{loss_at, metrics, trainer, trainer_ok};
use crate::model::{grads, max_abs_diff, small_model, zero_grads};

fn packed_logits(lm: &LanguageModel, batch: &PackedBatch) -> Tensor {
    let packing = Packing {
        positions: &batch.positions,
        mask: &batch.mask,
    };
    tch::no_grad(|| lm.logits(&lm.packed_hidden(&batch.ids, packing).expect("hidden")))
        .expect("logits")
}

fn seq(ids: &[u32], target: &[u8]) -> Sequence {
    Sequence {
        ids: ids.to_vec(),
        target: target.to_vec(),
    }
}

#[test]
fn a_packed_example_computes_what_it_computes_alone() {
    let lm = LanguageModel::new(&small_model(false), Device::Cpu, Kind::Float, 4).expect("model");
    let a = seq(&[5, 17, 42, 8, 9, 60, 3], &[0, 0, 0, 1, 1, 1, 1]);
    let b = seq(&[11, 12, 90, 33, 2], &[0, 0, 1, 1, 1]);
    let alone = data::pack(&[&b], 64, Device::Cpu).expect("pack");
    let together = data::pack(&[&a, &b], 64, Device::Cpu).expect("pack");
    assert_eq!(together.ids.size(), vec![1, 12], "one row, no padding");
    let b_alone = packed_logits(&lm, &alone).narrow(1, 0, 5);
    let b_after_a = packed_logits(&lm, &together).narrow(1, 7, 5);
    let diff = max_abs_diff(&b_alone, &b_after_a);
    assert!(
        diff < 1e-5,
        "B's logits change by {diff} when A is packed first"
    );
    // And both equal the plain causal forward of B on its own.
    let ids = Tensor::from_slice(&[11i64, 12, 90, 33, 2]).view([1, 5]);
    let plain = tch::no_grad(|| lm.forward(&ids, 0, None)).expect("forward");
    assert!(max_abs_diff(&plain, &b_alone) < 1e-5);
    // Padding rows: a long sequence takes a row of its own; the short one still matches.
    let long = seq(&[7; 40], &[1; 40]);
    let padded = data::pack(&[&long, &b], 42, Device::Cpu).expect("pack");
    assert_eq!(padded.ids.size(), vec![2, 40]);
    let b_padded = packed_logits(&lm, &padded).narrow(0, 1, 1).narrow(1, 0, 5);
    assert!(max_abs_diff(&b_alone, &b_padded) < 1e-5);
}

fn gradients(lm: &LanguageModel, batch: &PackedBatch) -> Vec<Tensor> {
    zero_grads(lm);
    sft_loss_sum(lm, batch).expect("loss").backward();
    grads(lm)
}

#[test]
fn changing_a_masked_label_changes_nothing_in_the_gradient() {
    let lm = LanguageModel::new(&small_model(false), Device::Cpu, Kind::Float, 6).expect("model");
    let a = seq(&[5, 17, 42, 8, 9, 60, 3], &[0, 0, 0, 1, 1, 1, 1]);
    let b = seq(&[11, 12, 90, 33, 2], &[0, 0, 1, 1, 1]);
    let batch = data::pack(&[&a, &b], 64, Device::Cpu).expect("pack");
    assert_eq!(batch.targets, 4 + 3);
    let reference = gradients(&lm, &batch);

    let with_label = |cell: usize, label: i64| {
        let mut labels = Vec::<i64>::try_from(batch.labels.view([-1])).expect("labels");
        labels[cell] = label;
        let mut changed = data::pack(&[&a, &b], 64, Device::Cpu).expect("pack");
        changed.labels = Tensor::from_slice(&labels).view_as(&batch.labels);
        changed
    };
    // Cell 1 predicts A's token 2 (masked); cell 3 predicts A's token 4 (supervised).
    let masked = gradients(&lm, &with_label(1, 77));
    for (r, m) in reference.iter().zip(&masked) {
        assert!(r.equal(m), "a masked label reached the gradient");
    }
    let supervised = gradients(&lm, &with_label(3, 77));
    assert!(
        reference.iter().zip(&supervised).any(|(r, s)| !r.equal(s)),
        "a supervised label must change the gradient"
    );
}

fn instruction_set(root: &Path) -> std::path::PathBuf {
    let conversations: Vec<Vec<Message>> =
        INSTRUCTIONS.iter().map(|(q, a)| exchange(q, a)).collect();
    sft_dataset(root, "sft", &conversations)
}

#[test]
fn sft_loss_falls_and_the_model_answers_a_trained_question_greedily() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 5);
    let data = instruction_set(tmp.path());
    let out = tmp.path().join("sft");
    let toml = post_config_toml(&base, &data, &out, 80, "").replace("lr = 0.003", "lr = 0.01");
    let config = PostConfig::parse(&toml, Task::Sft).expect("config");
    let summary = trainer::post::sft::run(&config, Resume::No, Faults::default()).expect("sft");

    let lines = metrics(&out);
    let mean = |steps: std::ops::RangeInclusive<u64>| {
        let n = steps.clone().count() as f64;
        steps.map(|s| loss_at(&lines, s)).sum::<f64>() / n
    };
    let (first, last) = (mean(1..=3), mean(78..=80));
    assert!(
        last < first * 0.2,
        "supervised loss went from {first} to {last}"
    );

    let ckpt = Checkpoint::load(&summary.last_checkpoint.expect("checkpoint")).expect("load");
    assert_eq!(ckpt.state.post.as_ref().expect("post").task, Task::Sft);
    let lm = LanguageModel::from_checkpoint(&ckpt, Device::Cpu, Precision::Fp32).expect("lm");
    let (text, template, _) = chat_tokenizer(tmp.path());
    let (question, answer) = INSTRUCTIONS[1];
    let prompt = template
        .render_prompt(&[Message::new(Role::User, question)], &text)
        .expect("prompt");
    let params = SamplingParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        max_tokens: 24,
        seed: 0,
        stop_token: Some(template.end_of_turn()),
    };
    let out = generate(&lm, &prompt, &params, true).expect("generate");
    let expected = template.render_completion(answer, &text).expect("answer");
    assert_eq!(
        out.tokens,
        expected,
        "greedy answer {:?}",
        text.decode(&out.tokens).expect("decode")
    );
}

const LORA: &str = "
[lora]
rank = 4
alpha = 8.0
dropout = 0.0
targets = [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"]
";

#[test]
fn lora_trains_only_the_adapters_and_the_merged_model_gives_the_same_logits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 40);
    let data = instruction_set(tmp.path());
    let out = tmp.path().join("lora");
    let toml = post_config_toml(&base, &data, &out, 30, LORA).replace("lr = 0.003", "lr = 0.01");
    let config = write_config(tmp.path(), "lora", &toml);
    trainer_ok(&["sft", "--config", &config]);

    let lines = metrics(&out);
    let (first, last) = (loss_at(&lines, 1), loss_at(&lines, 30));
    assert!(last < first * 0.7, "LoRA loss went from {first} to {last}");
    let dir = out.join("checkpoints/step-00000030");
    assert!(dir.join("adapter.safetensors").is_file());
    assert!(dir.join("adapter_config.json").is_file());
    assert!(
        !dir.join("model.safetensors").exists(),
        "only adapters are saved"
    );
    let peft: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).expect("config"))
            .expect("json");
    assert_eq!(peft["r"], 4);
    assert_eq!(peft["peft_type"], "LORA");
    let optimizer = checkpoint::read_safetensors(&dir.join("optimizer.safetensors")).expect("opt");
    assert!(
        optimizer
            .keys()
            .all(|k| k.contains(".lora_A.") || k.contains(".lora_B.")),
        "optimizer state for adapters only"
    );
    // 2 layers x 7 projections x (A, B) x (exp_avg, exp_avg_sq).
    assert_eq!(optimizer.len(), 2 * 7 * 2 * 2);

    let base_ckpt = Checkpoint::load(&base).expect("base");
    let adapted = Checkpoint::load(&dir).expect("adapter checkpoint");
    let lm = LanguageModel::from_checkpoint(&adapted, Device::Cpu, Precision::Fp32).expect("lm");
    for (name, tensor) in lm.base_tensors() {
        assert!(
            tensor.equal(&base_ckpt.model[&name]),
            "base weight {name} changed"
        );
    }
    let adapters = adapted.adapter.as_ref().expect("adapter tensors");
    let b = &adapters["model.layers.0.self_attn.q_proj.lora_B.weight"];
    assert!(
        f64::try_from(b.abs().max()).expect("max") > 0.0,
        "B trained"
    );

    let merged = tmp.path().join("merged");
    trainer_ok(&[
        "merge-lora",
        "--base",
        base.to_str().expect("utf8"),
        "--adapter",
        dir.to_str().expect("utf8"),
        "--out",
        merged.to_str().expect("utf8"),
    ]);
    let merged_lm = LanguageModel::from_checkpoint(
        &Checkpoint::load(&merged).expect("merged"),
        Device::Cpu,
        Precision::Fp32,
    )
    .expect("merged lm");
    let ids = Tensor::from_slice(&[2i64, 17, 42, 99, 5, 250, 4, 8, 300, 12]).view([1, 10]);
    let (with_adapters, folded) = tch::no_grad(|| {
        (
            lm.forward(&ids, 0, None).expect("adapted"),
            merged_lm.forward(&ids, 0, None).expect("merged"),
        )
    });
    let diff = max_abs_diff(&with_adapters, &folded);
    assert!(diff < 1e-5, "merged logits differ by {diff}");
    let base_lm =
        LanguageModel::from_checkpoint(&base_ckpt, Device::Cpu, Precision::Fp32).expect("base");
    let base_logits = tch::no_grad(|| base_lm.forward(&ids, 0, None)).expect("base logits");
    assert!(
        max_abs_diff(&base_logits, &folded) > 1e-3,
        "the adapter did something"
    );

    let hf = tmp.path().join("merged-hf");
    trainer_ok(&[
        "export-hf",
        merged.to_str().expect("utf8"),
        hf.to_str().expect("utf8"),
    ]);
    let reloaded = trainer::io::hf::load_hf(&hf, Device::Cpu, Precision::Fp32).expect("reload");
    let hf_logits = tch::no_grad(|| reloaded.forward(&ids, 0, None)).expect("hf logits");
    assert!(max_abs_diff(&hf_logits, &folded) < 1e-5);
}

#[test]
fn an_interrupted_lora_sft_run_resumes_bit_for_bit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 3);
    let data = instruction_set(tmp.path());
    let lora = LORA.replace("dropout = 0.0", "dropout = 0.1");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let config_a = write_config(
        tmp.path(),
        "a",
        &post_config_toml(&base, &data, &a, 8, &lora).replace("every = 0", "every = 3"),
    );
    let config_b = write_config(
        tmp.path(),
        "b",
        &post_config_toml(&base, &data, &b, 8, &lora).replace("every = 0", "every = 3"),
    );
    trainer_ok(&["sft", "--config", &config_a]);
    let crashed = trainer(&["sft", "--config", &config_b, "--abort-after-step", "5"]);
    assert!(!crashed.status.success());
    trainer_ok(&["sft", "--config", &config_b, "--resume"]);

    let (la, lb) = (metrics(&a), metrics(&b));
    for step in 1..=8 {
        assert_eq!(
            loss_at(&la, step).to_bits(),
            loss_at(&lb, step).to_bits(),
            "loss at step {step}"
        );
    }
    for file in ["adapter.safetensors", "optimizer.safetensors"] {
        let read = |dir: &Path| std::fs::read(dir.join("checkpoints/step-00000008").join(file));
        assert!(
            read(&a).expect("a") == read(&b).expect("b"),
            "{file} differs after resume"
        );
    }
}

/// The losses take logits at the target cells only; they equal, with their gradients, the
/// same losses over the full `[rows, len, vocab]` logits (padding row included), and the
/// SFT objective's chunked backward gives `sft_loss_sum`'s loss and gradients.
#[test]
fn losses_from_the_target_cells_logits_equal_those_from_the_full_logits() {
    use trainer::model::loss::cross_entropy_sum;
    use trainer::post::step_logps::StepLogps;

    let lm = LanguageModel::new(&small_model(false), Device::Cpu, Kind::Float, 8).expect("model");
    let a = seq(&[5, 17, 42, 8, 9, 60, 3], &[0, 0, 0, 1, 1, 1, 1]);
    let b = seq(&[11, 12, 90, 33, 2], &[0, 0, 1, 1, 1]);
    let long = seq(
        &[7; 20],
        &[0; 10].iter().chain(&[1; 10]).copied().collect::<Vec<u8>>(),
    );
    let batch = data::pack(&[&long, &a, &b], 20, Device::Cpu).expect("pack");
    let full = |lm: &LanguageModel| {
        let packing = Packing {
            positions: &batch.positions,
            mask: &batch.mask,
        };
        let hidden = lm.packed_hidden(&batch.ids, packing).expect("hidden");
        lm.logits(&hidden).expect("logits")
    };
    // Each loss, then its value and gradients, by both routes.
    let run = |loss: &dyn Fn() -> Tensor| -> (Tensor, Vec<Tensor>) {
        zero_grads(&lm);
        let value = loss();
        value.sum(Kind::Float).backward();
        (value.detach(), grads(&lm))
    };
    // Equal up to float32 rounding, relative to the values: the summed losses are ~76, where
    // the two routes' summation orders differ by ~1.5e-5 (2e-7 of it) on some CPUs.
    let close = |x: &Tensor, y: &Tensor| {
        let scale = f64::try_from(x.abs().max()).expect("scalar").max(1.0);
        max_abs_diff(x, y) / scale
    };
    let same = |what: &str, (v1, g1): (Tensor, Vec<Tensor>), (v2, g2): (Tensor, Vec<Tensor>)| {
        assert!(close(&v1, &v2) < 1e-5, "{what}: {v1} against {v2}");
        for (x, y) in g1.iter().zip(&g2) {
            assert!(close(x, y) < 1e-5, "{what}: gradients differ");
        }
        assert!(
            g1.iter()
                .any(|g| f64::try_from(g.abs().sum(Kind::Float)).expect("sum") > 0.0)
        );
    };
    same(
        "sft",
        run(&|| sft_loss_sum(&lm, &batch).expect("sft")),
        run(&|| {
            cross_entropy_sum(&full(&lm), &batch.target_labels().expect("labels")).expect("ce")
        }),
    );
    // Per sequence and per token: the full logits' log-softmax at each target label.
    let full_token_logps = |temperature: f64| {
        let labels = batch.target_labels().expect("labels");
        let logps = (full(&lm) / temperature).log_softmax(-1, Kind::Float);
        let at = logps
            .gather(2, &labels.clamp_min(0).unsqueeze(2), false)
            .squeeze_dim(2);
        at * labels.ne(-100).to_kind(Kind::Float)
    };
    same(
        "sequence log-probs",
        run(&|| {
            let logps = StepLogps::through_logits(&lm, &batch, 1.0, None).expect("logps");
            logps.per_sequence(&batch).expect("dpo")
        }),
        run(&|| {
            let per = full_token_logps(1.0).view([-1]);
            Tensor::zeros([batch.sequences + 1], (Kind::Float, Device::Cpu))
                .scatter_add(0, &batch.sequence_of.view([-1]), &per)
                .narrow(0, 0, batch.sequences)
        }),
    );
    same(
        "token log-probs at temperature 0.7",
        run(&|| {
            let logps = StepLogps::through_logits(&lm, &batch, 0.7, None).expect("logps");
            logps.per_token(&batch).expect("grpo")
        }),
        run(&|| full_token_logps(0.7)),
    );
    // The SFT objective's backward: the loss and its gradient a chunk of target cells at a
    // time, without a graph; the same as `sft_loss_sum`'s.
    let chunked = || {
        zero_grads(&lm);
        let hidden = lm
            .packed_hidden(&batch.ids, batch.packing())
            .expect("hidden");
        let (cells, targets) = batch.target_cells().expect("cells");
        let value = lm
            .loss_backward_at(&hidden, &cells, &targets, 1.0)
            .expect("backward");
        (value, grads(&lm))
    };
    same(
        "sft, chunked",
        chunked(),
        run(&|| sft_loss_sum(&lm, &batch).expect("sft")),
    );
}
