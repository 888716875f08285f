//! CUDA checks: bf16 training with fp32 master weights learns and reports MFU, the GPU
//! forward agrees with the CPU one, and the chunked loss in its GPU-sized chunks gives the
//! full logits' loss and gradients, as do the chunked log-probs of DPO and GRPO steps. Run
//! on a GPU machine with `scripts/gpu-checks`.

use tch::{Device, Kind, Tensor};
use trainer::engine::config::DataOrder;
use trainer::engine::device::DeviceChoice;
use trainer::engine::{Faults, Resume};
use trainer::model::language_model::LanguageModel;
use trainer::pretrain::Trainer;

use crate::helpers::{datasets, loss_at, metrics, tiny_config};
use crate::model::small_model;

#[test]
#[ignore = "needs a CUDA GPU"]
fn bf16_training_on_the_gpu_learns_and_reports_mfu() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (train, valid) = datasets(tmp.path());
    let out = tmp.path().join("run");
    let mut config = tiny_config(&train, &valid, &out, 60);
    config.train.device = DeviceChoice::Cuda(0);
    config.data.order = DataOrder::Random;
    let mut run = Trainer::new(config, Resume::No, Faults::default()).expect("trainer");
    assert_eq!(run.model().kind(), Kind::BFloat16);
    run.run().expect("run");
    let lines = metrics(&out);
    assert!(loss_at(&lines, 60) < loss_at(&lines, 1) - 2.0);
    let line = lines.iter().find(|l| l["kind"] == "train").expect("line");
    assert!(line["mfu"].as_f64().expect("mfu") > 0.0, "{line}");
    // Master weights stay fp32.
    for (name, t) in run.model().named_tensors() {
        assert_eq!(t.kind(), Kind::Float, "{name}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn the_gpu_forward_matches_the_cpu_forward() {
    let config = small_model(false);
    let cpu = LanguageModel::new(&config, Device::Cpu, Kind::Float, 9).expect("cpu model");
    let ids = Tensor::from_slice(&[3i64, 14, 15, 92, 65, 35, 89, 79]).view([1, 8]);
    let reference = cpu.forward(&ids, 0, None).expect("cpu");
    let weights = cpu.named_tensors().into_iter().collect();
    for (kind, tolerance) in [(Kind::Float, 1e-4), (Kind::BFloat16, 5e-2)] {
        let gpu = LanguageModel::new(&config, Device::Cuda(0), kind, 0).expect("gpu model");
        gpu.load_tensors(&weights, std::path::Path::new("cpu model"))
            .expect("copy");
        let logits = gpu
            .forward(&ids, 0, None)
            .expect("gpu")
            .to_kind(Kind::Float)
            .to_device(Device::Cpu);
        let diff = f64::try_from((logits - &reference).abs().max()).expect("diff");
        assert!(diff < tolerance, "{kind:?}: {diff}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn the_chunked_loss_in_gpu_sized_chunks_matches_the_full_logits_in_bf16() {
    // vocab 32,768: chunks of 2,048 rows on a GPU, so 5,000 rows are three of them.
    let device = Device::Cuda(0);
    tch::manual_seed(6);
    let (n, width, vocab) = (5000, 64, 32768);
    let leaf = Tensor::randn([n, width], (Kind::Float, device)).set_requires_grad(true);
    let weight =
        (Tensor::randn([vocab, width], (Kind::Float, device)) * 0.1).set_requires_grad(true);
    let targets = Tensor::randint(vocab, [n], (Kind::Int64, device));
    let _ = targets.narrow(0, 100, 50).fill_(-100);
    let hidden = || leaf.to_kind(Kind::BFloat16);
    let full = trainer::model::loss::cross_entropy_sum(
        &hidden().matmul(&weight.to_kind(Kind::BFloat16).tr()),
        &targets,
    )
    .expect("loss");
    (&full * 1e-3).backward();
    let (full_dh, full_dw) = (leaf.grad().copy(), weight.grad().copy());
    let _ = leaf.grad().zero_();
    let _ = weight.grad().zero_();
    let (loss, surrogate) =
        trainer::model::loss::chunked_cross_entropy(&hidden(), &weight, &targets, 1e-3)
            .expect("chunked");
    surrogate.backward();
    let (loss, full) = (
        f64::try_from(&loss).expect("f64"),
        f64::try_from(&full).expect("f64"),
    );
    assert!((loss - full).abs() < 1e-3 * full, "{loss} against {full}");
    for (got, want) in [(leaf.grad(), full_dh), (weight.grad(), full_dw)] {
        let size = f64::try_from(want.abs().max()).expect("f64");
        let diff = f64::try_from((got - &want).abs().max()).expect("f64");
        assert!(size > 0.0 && diff < 2e-2 * size, "{diff} of {size}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn chunked_label_logps_in_gpu_sized_chunks_match_autograd_in_bf16() {
    // vocab 32,768: chunks of 2,048 rows on a GPU, so 5,000 rows are three of them.
    let device = Device::Cuda(0);
    tch::manual_seed(8);
    let (n, width, vocab) = (5000, 64, 32768);
    let leaf = Tensor::randn([n, width], (Kind::Float, device)).set_requires_grad(true);
    let weight =
        (Tensor::randn([vocab, width], (Kind::Float, device)) * 0.1).set_requires_grad(true);
    let labels = Tensor::randint(vocab, [n], (Kind::Int64, device));
    let upstream = Tensor::randn([n], (Kind::Float, device));
    let hidden = || leaf.to_kind(Kind::BFloat16);
    let keep = |logits: Tensor, _: i64, _: i64| Ok(logits);
    let full = (hidden()
        .matmul(&weight.to_kind(Kind::BFloat16).tr())
        .to_kind(Kind::Float)
        / 0.8)
        .log_softmax(-1, Kind::Float)
        .gather(1, &labels.unsqueeze(1), false)
        .squeeze_dim(1);
    (&full * &upstream).sum(Kind::Float).backward();
    let (full_dh, full_dw) = (leaf.grad().copy(), weight.grad().copy());
    let _ = leaf.grad().zero_();
    let _ = weight.grad().zero_();
    let logps = trainer::model::loss::chunked_label_logps(&hidden(), &weight, &labels, 0.8, &keep)
        .expect("logps");
    let diff = f64::try_from((&logps - full.detach()).abs().max()).expect("f64");
    assert!(diff < 1e-3, "log-probs off by {diff}");
    trainer::model::loss::chunked_label_logps_surrogate(
        &hidden(),
        &weight,
        &labels,
        0.8,
        &keep,
        &upstream,
    )
    .expect("surrogate")
    .backward();
    for (got, want) in [(leaf.grad(), full_dh), (weight.grad(), full_dw)] {
        let size = f64::try_from(want.abs().max()).expect("f64");
        let diff = f64::try_from((got - &want).abs().max()).expect("f64");
        assert!(size > 0.0 && diff < 2e-2 * size, "{diff} of {size}");
    }
}
