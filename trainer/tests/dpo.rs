//! DPO: training raises the implicit reward margin and the preference accuracy on its pairs,
//! and a second run reads the cached reference log-probs instead of recomputing them.

use std::path::Path;

use crate::chat_data::{
    INSTRUCTIONS, base_checkpoint, post_config_toml, preference_dataset, write_config,
};
use crate::helpers::{loss_at, metrics, trainer_ok};

/// Each question with its trained answer as chosen and another question's answer as
/// rejected, twice over with the rejected answers rotated.
fn pairs() -> Vec<(String, String, String)> {
    let n = INSTRUCTIONS.len();
    (1..=2)
        .flat_map(|shift| {
            (0..n).map(move |i| {
                let (question, chosen) = INSTRUCTIONS[i];
                let rejected = INSTRUCTIONS[(i + shift) % n].1;
                (question.into(), chosen.into(), rejected.into())
            })
        })
        .collect()
}

fn line<'a>(lines: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .rfind(|l| l["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} line"))
}

fn number(line: &serde_json::Value, field: &str) -> f64 {
    line[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing in {line}"))
}

#[test]
fn dpo_raises_the_margin_and_a_second_run_does_no_reference_forward_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 40);
    let data = preference_dataset(tmp.path(), "prefs", &pairs());
    let cache = tmp.path().join("cache");
    let extra = format!(
        "[lora]\nrank = 4\nalpha = 8.0\n\n[dpo]\nbeta = 0.1\ncache_dir = \"{}\"\n",
        cache.display()
    );
    let config_for = |name: &str, out: &Path, steps: u64| {
        let toml = post_config_toml(&base, &data, out, steps, &extra)
            .replace(
                "seq_len = 64",
                &format!("valid = \"{}\"\nseq_len = 64", data.display()),
            )
            .replace("lr = 0.003", "lr = 0.01");
        write_config(tmp.path(), name, &toml)
    };
    let first = tmp.path().join("first");
    trainer_ok(&["dpo", "--config", &config_for("first", &first, 30)]);
    let lines = metrics(&first);
    let reference = line(&lines, "reference");
    assert!(number(reference, "reference_forward_passes") > 0.0);
    assert_eq!(reference["cached"], false);
    let step1 = lines
        .iter()
        .find(|l| l["kind"] == "train" && l["step"] == 1)
        .expect("step 1");
    for field in [
        "accuracy",
        "margin",
        "chosen_reward",
        "rejected_reward",
        "chosen_logp_drift",
        "rejected_logp_drift",
    ] {
        assert!(step1[field].is_number(), "{field} missing in {step1}");
    }
    // Before the first update the policy is the reference: no margin yet.
    assert!(number(step1, "margin").abs() < 1e-4, "{step1}");
    let eval = line(&lines, "eval");
    let (margin, accuracy) = (number(eval, "val_margin"), number(eval, "val_accuracy"));
    assert!(
        margin > 0.3,
        "reward margin on the training pairs: {margin}"
    );
    assert!(
        accuracy >= 0.85,
        "preference accuracy on the training pairs: {accuracy}"
    );
    assert!(number(eval, "val_chosen_logp_drift") > number(eval, "val_rejected_logp_drift"));
    assert!(loss_at(&lines, 30) < loss_at(&lines, 1));

    let second = tmp.path().join("second");
    let out = trainer_ok(&["dpo", "--config", &config_for("second", &second, 2)]);
    assert!(out.contains("reference forward passes: 0"), "{out}");
    let lines2 = metrics(&second);
    let reference = line(&lines2, "reference");
    assert_eq!(number(reference, "reference_forward_passes"), 0.0);
    assert_eq!(reference["cached"], true);
    assert_eq!(
        loss_at(&lines2, 1).to_bits(),
        loss_at(&lines, 1).to_bits(),
        "the cached reference gives the same first step"
    );
}

#[test]
fn an_interrupted_full_dpo_run_resumes_bit_for_bit() {
    // Full fine-tuning: the reference is a separate frozen copy of init_from, and resuming
    // must reuse its cached log-probs and land on the same numbers.
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 3);
    let data = preference_dataset(tmp.path(), "prefs", &pairs());
    let config_for = |name: &str| {
        let out = tmp.path().join(name);
        let extra = format!(
            "[dpo]\nbeta = 0.1\ncache_dir = \"{}\"\n",
            tmp.path().join(format!("cache-{name}")).display()
        );
        let toml =
            post_config_toml(&base, &data, &out, 6, &extra).replace("every = 0", "every = 2");
        (write_config(tmp.path(), name, &toml), out)
    };
    let ((config_a, a), (config_b, b)) = (config_for("a"), config_for("b"));
    trainer_ok(&["dpo", "--config", &config_a]);
    let crashed =
        crate::helpers::trainer(&["dpo", "--config", &config_b, "--abort-after-step", "3"]);
    assert!(!crashed.status.success(), "the abort hook stops the run");
    let resumed = trainer_ok(&["dpo", "--config", &config_b, "--resume"]);
    assert!(resumed.contains("reference forward passes: 0"), "{resumed}");

    let (la, lb) = (metrics(&a), metrics(&b));
    for step in 1..=6 {
        assert_eq!(
            loss_at(&la, step).to_bits(),
            loss_at(&lb, step).to_bits(),
            "loss at step {step}"
        );
    }
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let read = |dir: &Path| std::fs::read(dir.join("checkpoints/step-00000006").join(file));
        assert!(
            read(&a).expect("a") == read(&b).expect("b"),
            "{file} differs after resume"
        );
    }
}
