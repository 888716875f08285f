//! GRPO: on a toy task with a rule reward (answers must mention "ball") the mean reward
//! rises from the starting model's level; an interrupted run resumes bit for bit; bad rules
//! are named.

use std::path::Path;

use trainer::post::grpo::advantages;

use crate::chat_data::{
    INSTRUCTIONS, base_checkpoint, exchange, post_config_toml, preference_dataset, sft_dataset,
    write_config,
};
use crate::helpers::{loss_at, metrics, trainer_err, trainer_ok};

const RULES: &str = "[grpo]\ngroup_size = 4\nmax_new_tokens = 10\nbeta = 0.0\n\n[[grpo.rules]]\nkind = \"contains\"\npattern = \"ball\"\n";

/// An sft dataset whose prompts are the test questions numbered from `first`.
fn prompts(root: &Path, name: &str, first: usize, count: usize) -> std::path::PathBuf {
    let conversations: Vec<_> = (first..first + count)
        .map(|i| {
            let (q, a) = INSTRUCTIONS[i % INSTRUCTIONS.len()];
            exchange(&format!("{q} {i}"), a)
        })
        .collect();
    sft_dataset(root, name, &conversations)
}

fn eval_reward(lines: &[serde_json::Value], step: u64) -> f64 {
    lines
        .iter()
        .find(|l| l["kind"] == "eval" && l["step"] == step)
        .and_then(|l| l["val_reward"].as_f64())
        .unwrap_or_else(|| panic!("no eval line at step {step}"))
}

fn rewards(out: &Path, steps: std::ops::RangeInclusive<u64>) -> f64 {
    let lines = metrics(out);
    let n = steps.clone().count() as f64;
    steps
        .map(|s| {
            lines
                .iter()
                .find(|l| l["kind"] == "train" && l["step"] == s)
                .and_then(|l| l["reward"].as_f64())
                .expect("reward")
        })
        .sum::<f64>()
        / n
}

#[test]
fn advantages_are_group_normalised_or_leave_one_out() {
    let a = advantages(&[1.0, 0.0, 0.0, 1.0], false);
    let std = (1.0f64 / 3.0).sqrt();
    assert!((a[0] - 0.5 / (std + 1e-4)).abs() < 1e-9, "{a:?}");
    assert!((a[1] + 0.5 / (std + 1e-4)).abs() < 1e-9, "{a:?}");
    let r = advantages(&[3.0, 0.0, 0.0], true);
    assert_eq!(r, vec![3.0, -1.5, -1.5]);
    assert!(advantages(&[2.0, 2.0], false).iter().all(|&x| x == 0.0));
}

#[test]
fn grpo_raises_the_rule_reward() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 40);
    let data = prompts(tmp.path(), "prompts", 0, 8);
    let held_out = prompts(tmp.path(), "held-out", 100, 4);
    let out = tmp.path().join("grpo");
    let extra = format!("[lora]\nrank = 4\nalpha = 8.0\n\n[eval]\nevery = 1\n\n{RULES}");
    let toml = post_config_toml(&base, &data, &out, 30, &extra)
        .replace(
            "seq_len = 64",
            &format!("valid = \"{}\"\nseq_len = 64", held_out.display()),
        )
        .replace("lr = 0.003", "lr = 0.02")
        .replace("grad_accum = 2", "grad_accum = 1");
    trainer_ok(&["grpo", "--config", &write_config(tmp.path(), "grpo", &toml)]);
    let (first, last) = (rewards(&out, 1..=5), rewards(&out, 26..=30));
    let lines = metrics(&out);
    let step1 = lines.iter().find(|l| l["kind"] == "train").expect("a step");
    eprintln!(
        "grpo: mean reward {first:.3} (steps 1-5) -> {last:.3} (steps 26-30); step 1: {step1}"
    );
    for field in [
        "reward",
        "reward_spread",
        "kl",
        "clip_fraction",
        "answer_length",
    ] {
        assert!(step1[field].is_number(), "{field} missing in {step1}");
    }
    assert!(last > first + 0.2, "reward {first} -> {last}");
    // Step 1 is one update from the starting model: its level, within a step.
    let (before, after) = (eval_reward(&lines, 1), eval_reward(&lines, 30));
    eprintln!("grpo: held-out mean reward {before:.3} -> {after:.3}");
    assert!(after > before + 0.2, "held-out reward {before} -> {after}");
}

#[test]
fn an_interrupted_full_grpo_run_resumes_bit_for_bit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 3);
    let data = prompts(tmp.path(), "prompts", 0, 8);
    let config_for = |name: &str| {
        let out = tmp.path().join(name);
        let rules = RULES.replace("beta = 0.0", "beta = 0.04\nrloo = true");
        let toml =
            post_config_toml(&base, &data, &out, 4, &rules).replace("every = 0", "every = 2");
        (write_config(tmp.path(), name, &toml), out)
    };
    let ((config_a, a), (config_b, b)) = (config_for("a"), config_for("b"));
    trainer_ok(&["grpo", "--config", &config_a]);
    let crashed =
        crate::helpers::trainer(&["grpo", "--config", &config_b, "--abort-after-step", "2"]);
    assert!(!crashed.status.success(), "the abort hook stops the run");
    trainer_ok(&["grpo", "--config", &config_b, "--resume"]);
    let (la, lb) = (metrics(&a), metrics(&b));
    for step in 1..=4 {
        assert_eq!(
            loss_at(&la, step).to_bits(),
            loss_at(&lb, step).to_bits(),
            "loss at step {step}"
        );
    }
    let kl = lb
        .iter()
        .rfind(|l| l["kind"] == "train")
        .and_then(|l| l["kl"].as_f64())
        .expect("kl");
    assert!(
        kl > 0.0,
        "the policy moved away from the reference: kl {kl}"
    );
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let read = |dir: &Path| std::fs::read(dir.join("checkpoints/step-00000004").join(file));
        assert!(
            read(&a).expect("a") == read(&b).expect("b"),
            "{file} differs after resume"
        );
    }
}

#[test]
fn grpo_names_bad_rules_and_missing_sections() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 1);
    let data = prompts(tmp.path(), "prompts", 0, 2);
    let out = tmp.path().join("out");
    for (extra, expected) in [
        ("", "`trainer grpo` needs a [grpo] section"),
        (
            "[grpo]\ngroup_size = 4\n",
            "[grpo] needs a reward: [[grpo.rules]], command or reward_model",
        ),
        ("[grpo]\ngroup_size = 1\n", "grpo.group_size must be >= 2"),
        (
            "[grpo]\n[[grpo.rules]]\nkind = \"regex\"\npattern = \"(\"\n",
            "grpo.rules[0]: pattern \"(\" is not a regex",
        ),
        (
            "[grpo]\n[[grpo.rules]]\nkind = \"fuzzy\"\npattern = \"x\"\n",
            "unknown variant `fuzzy`",
        ),
    ] {
        let config = write_config(
            tmp.path(),
            "bad",
            &post_config_toml(&base, &data, &out, 1, extra),
        );
        let err = trainer_err(&["grpo", "--config", &config]);
        assert!(err.contains(expected), "{extra}: {err}");
    }
}

/// `[grpo]` scored by the shell script `script` (written to `root/name.sh`).
fn command_section(root: &Path, name: &str, script: &str) -> String {
    let path = root.join(format!("{name}.sh"));
    std::fs::write(&path, script).expect("script");
    format!(
        "[grpo]\ngroup_size = 2\nmax_new_tokens = 6\ncommand = [\"sh\", \"{}\"]\n",
        path.display()
    )
}

#[test]
fn grpo_scores_with_a_command_and_a_reward_model_and_logs_samples() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 3);
    let data = prompts(tmp.path(), "prompts", 0, 4);
    // A reward model trained for two steps from the same base.
    let pairs: Vec<_> = INSTRUCTIONS
        .iter()
        .map(|(q, a)| (q.to_string(), a.to_string(), "no.".to_string()))
        .collect();
    let prefs = preference_dataset(tmp.path(), "prefs", &pairs);
    let rm_out = tmp.path().join("rm");
    let rm_config = write_config(
        tmp.path(),
        "rm",
        &post_config_toml(&base, &prefs, &rm_out, 2, ""),
    );
    trainer_ok(&["reward", "--config", &rm_config]);
    let rm = rm_out.join("checkpoints/step-00000002");

    let script = "while read -r line; do case \"$line\" in *ball*) echo 1;; *) echo '{\"score\": 0.25}';; esac; done\n";
    let out = tmp.path().join("grpo");
    let extra = format!(
        "{}reward_model = \"{}\"\nreward_model_weight = 0.5\nsample_every = 1\n",
        command_section(tmp.path(), "score", script),
        rm.display()
    );
    let config = write_config(
        tmp.path(),
        "grpo",
        &post_config_toml(&base, &data, &out, 2, &extra),
    );
    trainer_ok(&["grpo", "--config", &config]);
    let lines = metrics(&out);
    let samples: Vec<_> = lines.iter().filter(|l| l["kind"] == "sample").collect();
    assert_eq!(samples.len(), 2, "one sample line per step");
    let text = samples[0]["text"].as_str().expect("text");
    assert!(
        text.starts_with("<|bos|><|user|>") && text.contains("] "),
        "{text}"
    );
    let reward = lines
        .iter()
        .find(|l| l["kind"] == "train")
        .and_then(|l| l["reward"].as_f64())
        .expect("reward");
    // The command gives 0.25 or 1 and the reward model a finite score: not a rule's 0.
    assert!(reward.is_finite() && reward != 0.0, "{reward}");
}

#[test]
fn reward_command_protocol_errors_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 1);
    let data = prompts(tmp.path(), "prompts", 0, 2);
    let out = tmp.path().join("out");
    for (name, script, expected) in [
        (
            "fails",
            "cat > /dev/null; echo boom >&2; exit 3\n",
            "failed (exit status: 3): boom",
        ),
        (
            "short",
            "cat > /dev/null; echo 1\n",
            "wrote 1 score lines for 4 answers",
        ),
        (
            "words",
            "while read -r line; do echo high; done\n",
            "output line 1: \"high\" is not a number or {\"score\": number}",
        ),
    ] {
        let config = write_config(
            tmp.path(),
            name,
            &post_config_toml(
                &base,
                &data,
                &out,
                1,
                &command_section(tmp.path(), name, script),
            ),
        );
        let err = trainer_err(&["grpo", "--config", &config]);
        assert!(
            err.contains("the reward command `sh ") && err.contains(expected),
            "{name}: {err}"
        );
    }
}
