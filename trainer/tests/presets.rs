//! The presets in configs/trainer parse, have the sizes they claim, and `trainer bench` runs.

use std::path::PathBuf;

use trainer::engine::config::RunConfig;

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

#[test]
fn post_training_presets_parse_and_bad_fields_are_named() {
    use trainer::post::config::{PostConfig, Task};
    for (name, task) in [
        ("sft-tiny.toml", Task::Sft),
        ("sft-lora-tiny.toml", Task::Sft),
        ("dpo-tiny.toml", Task::Dpo),
        ("reward-tiny.toml", Task::Reward),
        ("kto-tiny.toml", Task::Kto),
        ("grpo-tiny.toml", Task::Grpo),
        ("demo-reward.toml", Task::Reward),
        ("demo-grpo.toml", Task::Grpo),
    ] {
        PostConfig::load(&preset(name), task).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    let lora = PostConfig::load(&preset("sft-lora-tiny.toml"), Task::Sft).expect("lora");
    assert_eq!(lora.lora.expect("[lora]").targets.len(), 7);

    let text = std::fs::read_to_string(preset("sft-lora-tiny.toml")).expect("preset");
    let typo = text.replace("rank = 8", "rnak = 8");
    let err = format!(
        "{:#}",
        PostConfig::parse(&typo, Task::Sft).expect_err("typo")
    );
    assert!(err.contains("rnak"), "{err}");
    let bad_target = text.replace("\"down_proj\"]", "\"down\"]");
    let err = format!(
        "{:#}",
        PostConfig::parse(&bad_target, Task::Sft).expect_err("target")
    );
    assert!(
        err.contains("lora.targets") && err.contains("\"down\""),
        "{err}"
    );
    let dpo = std::fs::read_to_string(preset("dpo-tiny.toml")).expect("preset");
    let err = format!(
        "{:#}",
        PostConfig::parse(&dpo, Task::Sft).expect_err("section")
    );
    assert!(err.contains("[dpo] applies to `trainer dpo` only"), "{err}");

    // The file name comes with the error from the command line.
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("typo.toml");
    std::fs::write(&path, typo).expect("write");
    let stderr = crate::helpers::trainer_err(&["sft", "--config", path.to_str().expect("utf8")]);
    assert!(
        stderr.contains("typo.toml") && stderr.contains("rnak"),
        "{stderr}"
    );
}

/// `data.doc_start_fraction` (pretraining's) in a post-training config is refused with the
/// field, the command and (from the command line) the file named, not silently ignored.
#[test]
fn post_training_configs_refuse_doc_start_fraction() {
    use trainer::post::config::{PostConfig, Task};
    for (name, task) in [
        ("sft-tiny.toml", Task::Sft),
        ("dpo-tiny.toml", Task::Dpo),
        ("reward-tiny.toml", Task::Reward),
        ("kto-tiny.toml", Task::Kto),
        ("grpo-tiny.toml", Task::Grpo),
    ] {
        let text = std::fs::read_to_string(preset(name)).expect("preset");
        PostConfig::parse(&text, task).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let with = text.replacen("[data]\n", "[data]\ndoc_start_fraction = 0.5\n", 1);
        assert_ne!(with, text, "{name} has a [data] section");
        let err = format!(
            "{:#}",
            PostConfig::parse(&with, task).expect_err("doc_start_fraction")
        );
        assert!(
            err.contains("data.doc_start_fraction applies to `trainer pretrain` only")
                && err.contains(&format!("this {} config", task.as_str())),
            "{name}: {err}"
        );
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("sft-with-windows.toml");
    let text = std::fs::read_to_string(preset("sft-tiny.toml")).expect("preset");
    std::fs::write(
        &path,
        text.replacen("[data]\n", "[data]\ndoc_start_fraction = 0.0\n", 1),
    )
    .expect("write");
    let stderr = crate::helpers::trainer_err(&["sft", "--config", path.to_str().expect("utf8")]);
    assert!(
        stderr.contains("sft-with-windows.toml") && stderr.contains("data.doc_start_fraction"),
        "{stderr}"
    );
}
