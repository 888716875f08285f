//! The presets in configs/trainer parse, have the sizes they claim, and `trainer bench` runs.

use std::path::PathBuf;

use trainer::config::RunConfig;

use crate::helpers::trainer_ok;

fn preset(name: &str) -> PathBuf {
    // Resolved at run time, not baked in: builds are shared between clones.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .expect("CARGO_MANIFEST_DIR (set by cargo when it runs tests)")
        .join("../configs/trainer")
        .join(name)
}

#[test]
fn presets_parse_and_the_gpu_preset_has_about_125m_parameters() {
    let tiny = RunConfig::load(&preset("tiny.toml")).expect("tiny preset");
    let gpu = RunConfig::load(&preset("gpt-125m.toml")).expect("gpt-125m preset");
    let mut model = gpu.model.clone();
    model.vocab_size = 32_000;
    model.validate().expect("valid");
    let params = model.num_params();
    assert!((115_000_000..135_000_000).contains(&params), "{params}");
    assert_eq!(gpu.data.seq_len, 1024);
    let mut model = tiny.model;
    model.vocab_size = 32_000;
    model.validate().expect("valid");
}

#[test]
fn bench_reports_throughput_and_memory() {
    let out = trainer_ok(&[
        "bench",
        "--config",
        preset("tiny.toml").to_str().expect("utf8"),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--seq-len",
        "32",
        "--micro-batch-size",
        "2",
        "--grad-accum",
        "1",
        "--warmup",
        "1",
        "--steps",
        "2",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["tokens_per_step"], 64);
    assert!(
        report["tokens_per_s"].as_f64().expect("tok/s") > 0.0,
        "{report}"
    );
    assert!(
        report["peak_rss_mib"].as_f64().expect("rss") > 10.0,
        "{report}"
    );
    assert!(
        report["final_loss"].as_f64().expect("loss") > 9.0,
        "random ids: about ln(32000)"
    );
    assert!(report["mfu"].is_null());
}
