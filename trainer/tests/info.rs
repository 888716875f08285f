//! `trainer info` and the link settings that keep CUDA visible.

use std::process::Command;

use trainer::engine::device::{DeviceChoice, runtime_info};

use crate::helpers::TRAINER;

#[test]
fn info_runs_a_computation_on_the_cpu() {
    let out = Command::new(TRAINER)
        .args(["info", "--device", "cpu", "--json"])
        .output()
        .expect("run trainer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(info["selected_device"], "Cpu");
    assert!(
        info["smoke_test"].as_str().expect("str").starts_with("ok"),
        "{info}"
    );
}

#[test]
fn asking_for_a_missing_gpu_is_an_error() {
    let gpus = tch::Cuda::device_count() as usize;
    let err = DeviceChoice::Cuda(gpus)
        .resolve()
        .expect_err("no such device");
    assert!(err.to_string().contains(&format!("cuda:{gpus}")), "{err}");
    assert!("gpu".parse::<DeviceChoice>().is_err());
    assert_eq!("cuda:1".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(1)));
}

/// The build script keeps `libtorch_cuda.so` linked when the venv's torch has it, so CUDA
/// is visible at run time; the binary must still run here without a GPU (tested above).
#[test]
fn binary_keeps_libtorch_cuda_when_libtorch_has_it() {
    let out = Command::new("ldd").arg(TRAINER).output().expect("ldd");
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(libs.contains("libtorch_cpu.so"), "{libs}");
    let torch_lib = libs
        .lines()
        .find(|l| l.contains("libtorch_cpu.so"))
        .and_then(|l| l.split("=>").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .map(std::path::PathBuf::from)
        .expect("libtorch_cpu path");
    let dir = torch_lib.parent().expect("lib dir");
    if dir.join("libtorch_cuda.so").exists() {
        assert!(
            libs.contains("libtorch_cuda.so"),
            "libtorch_cuda.so dropped by the linker:\n{libs}"
        );
    } else {
        assert!(!libs.contains("libtorch_cuda.so"), "{libs}");
    }
    assert!(!libs.contains("not found"), "unresolved libraries:\n{libs}");
}

#[test]
#[ignore = "needs a CUDA GPU; run with --ignored on a GPU machine"]
fn info_runs_a_computation_on_the_gpu() {
    let info = runtime_info(DeviceChoice::Cuda(0)).expect("cuda runtime");
    assert!(info.cuda_available && info.cuda_devices >= 1, "{info:?}");
    assert!(info.smoke_test.starts_with("ok"), "{info:?}");
}
