//! CUDA checks: bf16 training with fp32 master weights learns and reports MFU, and the GPU
//! forward agrees with the CPU one. Run on a GPU machine with `cargo test -p trainer -- --ignored`.

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
