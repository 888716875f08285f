//! Pretraining end to end: the loss falls, metrics and checkpoints are written, and a run
//! that crashes (during a step or while checkpointing) resumes to the very same numbers.

use std::path::Path;

use trainer::engine::{Faults, Resume};
use trainer::io::checkpoint::{self, TrainerState};
use trainer::pretrain::Trainer;

use crate::helpers::{
    datasets, loss_at, metrics, tiny_config, tiny_config_file, trainer, trainer_ok,
};

#[test]
fn a_tiny_model_learns_and_the_run_leaves_metrics_and_checkpoints() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (train, valid) = datasets(tmp.path());
    let out = tmp.path().join("run");
    let mut config = tiny_config(&train, &valid, &out, 60);
    config.sample.every = 30;
    config.sample.prompt = "the cat".into();
    let mut run = Trainer::new(config, Resume::No, Faults::default()).expect("trainer");
    let summary = run.run().expect("run");
    assert_eq!(summary.steps, 60);

    let lines = metrics(&out);
    let train_lines: Vec<_> = lines.iter().filter(|l| l["kind"] == "train").collect();
    assert_eq!(train_lines.len(), 60);
    for line in &train_lines {
        for field in ["loss", "lr", "grad_norm", "tokens", "tokens_per_s"] {
            assert!(line[field].is_number(), "{field} missing in {line}");
        }
    }
    let mean = |steps: std::ops::RangeInclusive<u64>| {
        let n = steps.clone().count() as f64;
        steps.map(|s| loss_at(&lines, s)).sum::<f64>() / n
    };
    let (first, last) = (mean(1..=5), mean(56..=60));
    // ln(320) = 5.77 at initialisation; the corpus is highly regular.
    assert!(first > 5.0, "initial loss {first}");
    assert!(last < first - 2.0, "loss went from {first} to {last}");
    assert_eq!(
        lines.iter().filter(|l| l["kind"] == "eval").count(),
        2,
        "at 50 and 60"
    );
    let val = summary.val_loss.expect("validation loss");
    assert!(
        val < first - 1.5,
        "validation loss {val} vs initial {first}"
    );
    let eval = lines
        .iter()
        .rfind(|l| l["kind"] == "eval")
        .expect("eval line");
    assert!((eval["val_ppl"].as_f64().expect("ppl") - val.exp()).abs() < 1e-9);
    // The unigram baseline on the same validation windows (2 batches of 4 windows of 32
    // targets), from add-one smoothed counts of every training token.
    let train_tokens = all_tokens(&train);
    let mut counts = vec![1.0f64; 320];
    for &t in &train_tokens {
        counts[t as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    let valid_tokens = all_tokens(&valid);
    let targets: Vec<u32> = (0..8)
        .flat_map(|w| valid_tokens[w * 32 + 1..=w * 32 + 32].to_vec())
        .collect();
    let unigram = -targets
        .iter()
        .map(|&t| (counts[t as usize] / total).ln())
        .sum::<f64>()
        / targets.len() as f64;
    let logged = eval["unigram_loss"].as_f64().expect("unigram_loss");
    assert!((logged - unigram).abs() < 1e-9, "{logged} vs {unigram}");
    assert!(val < unigram - 0.5, "val {val} vs unigram {unigram}");
    assert!(train_lines[0]["grad_norm"].as_f64().expect("norm") > 0.0);

    let samples: Vec<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "sample")
        .map(|l| l["text"].as_str().expect("sample text"))
        .collect();
    assert_eq!(samples.len(), 2, "samples at 30 and 60");
    assert!(
        samples
            .iter()
            .all(|s| s.starts_with("the cat") && s.len() > 7),
        "{samples:?}"
    );

    // keep_last = 2 of the checkpoints at 20, 40, 60.
    let kept: Vec<u64> = checkpoint::list(&out.join("checkpoints"))
        .expect("list")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(kept, vec![40, 60]);
    let dir = summary.last_checkpoint.expect("checkpoint");
    for file in [
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "tokenizer.json",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let state: TrainerState =
        serde_json::from_slice(&std::fs::read(dir.join("trainer_state.json")).expect("state"))
            .expect("state json");
    assert_eq!(state.step, 60);
    assert_eq!(state.optimizer_updates, 60);
    assert_eq!(state.data.tokens_seen, 60 * 2 * 4 * 32);
    assert_eq!(
        state.config.model.vocab_size, 320,
        "resolved from the dataset"
    );
    assert_eq!(state.tokenizer.special("eos"), Some(0));
}

/// Every token of a pretrain dataset, in stream order.
fn all_tokens(dir: &Path) -> Vec<u32> {
    let dataset = format::Dataset::open(dir).expect("dataset");
    let mut out = Vec::new();
    for i in 0..dataset.num_shards() {
        let shard = dataset.shard(i).expect("shard");
        for batch in shard.batches() {
            match batch.tokens("tokens").expect("tokens") {
                format::Tokens::U16(list) => {
                    out.extend(list.values().iter().map(|&t| u32::from(t)))
                }
                format::Tokens::U32(list) => out.extend_from_slice(list.values()),
            }
        }
    }
    out
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_run_killed_at_step_70_resumes_to_the_uninterrupted_loss_bit_for_bit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let config_a = tiny_config_file(tmp.path(), "a", &a, 100);
    let config_b = tiny_config_file(tmp.path(), "b", &b, 100);
    let (config_a, config_b) = (
        config_a.to_str().expect("utf8"),
        config_b.to_str().expect("utf8"),
    );

    trainer_ok(&["pretrain", "--config", config_a]);

    // Crash 1: the process dies in the middle of writing the step-40 checkpoint.
    let crashed = trainer(&[
        "pretrain",
        "--config",
        config_b,
        "--abort-in-checkpoint",
        "40",
    ]);
    assert!(!crashed.status.success());
    let ckpts = b.join("checkpoints");
    let listed: Vec<u64> = checkpoint::list(&ckpts)
        .expect("list")
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(listed, vec![20], "the half-written step 40 must not count");
    assert!(
        ckpts.join(".tmp-step-00000040").exists(),
        "the crash left its temp dir"
    );

    // Crash 2: resumed from step 20, killed right after step 70 (last checkpoint: 60).
    let crashed = trainer(&[
        "pretrain",
        "--config",
        config_b,
        "--resume",
        "--abort-after-step",
        "70",
    ]);
    assert!(!crashed.status.success());
    assert!(
        !ckpts.join(".tmp-step-00000040").exists(),
        "stale temp dir cleaned up"
    );
    let lines = metrics(&b);
    assert!(
        lines.iter().any(|l| l["step"] == 70),
        "the run got to step 70"
    );
    assert_eq!(
        checkpoint::latest(&ckpts).expect("latest"),
        Some(ckpts.join("step-00000060"))
    );

    trainer_ok(&["pretrain", "--config", config_b, "--resume"]);

    let (la, lb) = (metrics(&a), metrics(&b));
    for step in 1..=100 {
        assert_eq!(
            loss_at(&la, step).to_bits(),
            loss_at(&lb, step).to_bits(),
            "loss at step {step}"
        );
    }
    let steps_b: Vec<u64> = lb
        .iter()
        .filter(|l| l["kind"] == "train")
        .map(|l| l["step"].as_u64().expect("step"))
        .collect();
    assert_eq!(
        steps_b,
        (1..=100).collect::<Vec<_>>(),
        "one metrics line per step"
    );
    let val = |lines: &[serde_json::Value]| {
        lines
            .iter()
            .rfind(|l| l["kind"] == "eval")
            .map(|l| l["val_loss"].clone())
    };
    assert_eq!(val(&la), val(&lb));
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let (fa, fb) = (
            a.join("checkpoints/step-00000100").join(file),
            b.join("checkpoints/step-00000100").join(file),
        );
        assert!(read(&fa) == read(&fb), "{file} differs after resume");
    }
}
