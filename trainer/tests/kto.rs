//! KTO: the loss agrees with TRL's `kto` loss written out in torch (a Python reference from
//! the venv), training raises thumbs-up answers and lowers thumbs-down ones against the
//! reference, an interrupted run resumes bit for bit, and bad inputs are named.

use std::path::Path;

use tch::{Kind, Tensor};
use testkit::python::run_python;
use trainer::post::config::KtoSettings;
use trainer::post::kto::kto_losses;

use crate::chat_data::{
    INSTRUCTIONS, base_checkpoint, post_config_toml, unpaired_dataset, write_config,
};
use crate::helpers::{loss_at, metrics, trainer_err, trainer_ok};

/// TRL's `KTOTrainer.kto_loss` (loss_type "kto") on given log-probabilities, in float64, with
/// the KL term computed without gradient as TRL does; prints the mean loss, the KL and the
/// gradient of the mean loss with respect to the policy's log-probabilities.
const TRL_KTO: &str = r#"
import json, sys, torch
d = json.loads(sys.argv[1])
policy = torch.tensor(d["policy"], dtype=torch.float64, requires_grad=True)
ref = torch.tensor(d["reference"], dtype=torch.float64)
labels = torch.tensor(d["labels"], dtype=torch.bool)
beta, wd, wu = d["beta"], d["desirable_weight"], d["undesirable_weight"]
with torch.no_grad():
    kl = (policy[:, 1] - ref[:, 1]).mean().clamp(min=0)
chosen = policy[labels, 0] - ref[labels, 0]
rejected = policy[~labels, 0] - ref[~labels, 0]
chosen_losses = 1 - torch.sigmoid(beta * (chosen - kl))
rejected_losses = 1 - torch.sigmoid(beta * (kl - rejected))
losses = torch.cat((wd * chosen_losses, wu * rejected_losses), 0)
loss = losses.nanmean()
loss.backward()
print(json.dumps({"loss": loss.item(), "kl": kl.item(), "grad": policy.grad.tolist()}))
"#;

#[test]
fn kto_loss_matches_trls_formula_on_fixed_batches() {
    let settings = KtoSettings {
        beta: 0.3,
        desirable_weight: 1.0,
        undesirable_weight: 1.5,
        cache_dir: None,
    };
    // Log-probs of (matched, mismatched) completions; the second batch's mismatched drift is
    // negative, so its KL estimate clamps to 0.
    let cases = [
        (
            vec![
                [-12.5, -30.0],
                [-8.25, -22.0],
                [-20.0, -15.5],
                [-5.0, -40.0],
                [-9.0, -9.5],
            ],
            vec![
                [-14.0, -31.5],
                [-7.0, -20.0],
                [-18.5, -17.0],
                [-6.5, -43.0],
                [-9.0, -11.0],
            ],
            vec![true, false, true, false, true],
        ),
        (
            vec![[-3.0, -25.0], [-11.0, -21.0], [-6.0, -19.0]],
            vec![[-4.0, -20.0], [-10.0, -20.5], [-6.5, -18.0]],
            vec![false, true, false],
        ),
    ];
    for (policy, reference, labels) in cases {
        let input = serde_json::json!({
            "policy": policy, "reference": reference, "labels": labels, "beta": settings.beta,
            "desirable_weight": settings.desirable_weight,
            "undesirable_weight": settings.undesirable_weight,
        });
        let expected: serde_json::Value =
            serde_json::from_str(run_python(TRL_KTO, &[input.to_string()]).trim()).expect("json");

        let flat = |rows: &[[f64; 2]]| {
            Tensor::from_slice(&rows.iter().flatten().map(|&x| x as f32).collect::<Vec<_>>())
                .view([-1, 2])
        };
        let p = flat(&policy).set_requires_grad(true);
        let desirable = Tensor::from_slice(
            &labels
                .iter()
                .map(|&l| f32::from(u8::from(l)))
                .collect::<Vec<_>>(),
        );
        let terms = kto_losses(&p, &flat(&reference), &desirable, &settings).expect("kto");
        let loss = terms.losses.sum(Kind::Float) / labels.len() as f64;
        loss.backward();

        let close = |ours: f64, theirs: f64, what: &str| {
            assert!(
                (ours - theirs).abs() < 1e-5,
                "{what}: ours {ours}, TRL's {theirs}"
            );
        };
        close(
            loss.double_value(&[]),
            expected["loss"].as_f64().expect("loss"),
            "loss",
        );
        close(
            terms.kl.double_value(&[]),
            expected["kl"].as_f64().expect("kl"),
            "kl",
        );
        let grad = p.grad();
        for (i, row) in expected["grad"]
            .as_array()
            .expect("grad")
            .iter()
            .enumerate()
        {
            for j in 0..2usize {
                close(
                    grad.double_value(&[i as i64, j as i64]),
                    row[j].as_f64().expect("number"),
                    &format!("d loss / d policy[{i}][{j}]"),
                );
            }
        }
    }
}

/// Each question with its trained answer (thumbs up) and with another question's answer
/// (thumbs down).
fn thumbs() -> Vec<(String, String, bool)> {
    let n = INSTRUCTIONS.len();
    (0..n)
        .flat_map(|i| {
            let (question, answer) = INSTRUCTIONS[i];
            let wrong = INSTRUCTIONS[(i + 1) % n].1;
            [
                (question.to_string(), answer.to_string(), true),
                (question.to_string(), wrong.to_string(), false),
            ]
        })
        .collect()
}

fn number(line: &serde_json::Value, field: &str) -> f64 {
    line[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing in {line}"))
}

#[test]
fn kto_raises_thumbs_up_answers_and_lowers_thumbs_down_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 40);
    let data = unpaired_dataset(tmp.path(), "thumbs", &thumbs());
    let extra = format!(
        "[lora]\nrank = 4\nalpha = 8.0\n\n[kto]\nbeta = 0.1\ncache_dir = \"{}\"\n\n[eval]\nevery = 30\n",
        tmp.path().join("cache").display()
    );
    let out = tmp.path().join("kto");
    let toml = post_config_toml(&base, &data, &out, 30, &extra)
        .replace(
            "seq_len = 64",
            &format!("valid = \"{}\"\nseq_len = 64", data.display()),
        )
        .replace("lr = 0.003", "lr = 0.01")
        .replace("micro_batch_size = 2", "micro_batch_size = 4");
    let summary = trainer_ok(&["kto", "--config", &write_config(tmp.path(), "kto", &toml)]);
    assert!(summary.contains("reference forward passes:"), "{summary}");

    let lines = metrics(&out);
    let step1 = lines
        .iter()
        .find(|l| l["kind"] == "train" && l["step"] == 1)
        .expect("step 1");
    // Before the first update the policy is the reference: every example costs 1/2.
    assert!((loss_at(&lines, 1) - 0.5).abs() < 1e-5, "{step1}");
    for field in ["kl", "accuracy", "desirable", "signed_drift"] {
        assert!(step1[field].is_number(), "{field} missing in {step1}");
    }
    let eval = lines
        .iter()
        .rfind(|l| l["kind"] == "eval")
        .expect("an eval line");
    let (up, down) = (
        number(eval, "val_desirable_drift"),
        number(eval, "val_undesirable_drift"),
    );
    eprintln!(
        "kto: loss {:.4} -> {:.4}, drift up {up:.2} down {down:.2}, val_loss {:.4}, val_accuracy {}",
        loss_at(&lines, 1),
        loss_at(&lines, 30),
        number(eval, "val_loss"),
        number(eval, "val_accuracy")
    );
    assert!(
        up > down + 1.0,
        "thumbs-up drift {up} vs thumbs-down drift {down}"
    );
    assert!(down < 0.0, "thumbs-down answers became less likely: {down}");
    assert!(number(eval, "val_loss") < 0.45, "{eval}");
    assert!(number(eval, "val_accuracy") >= 0.75, "{eval}");
    assert!(loss_at(&lines, 30) < loss_at(&lines, 1));
}

#[test]
fn an_interrupted_full_kto_run_resumes_bit_for_bit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 3);
    let data = unpaired_dataset(tmp.path(), "thumbs", &thumbs());
    let config_for = |name: &str| {
        let out = tmp.path().join(name);
        let extra = format!(
            "[kto]\nbeta = 0.2\nundesirable_weight = 1.3\ncache_dir = \"{}\"\n",
            tmp.path().join(format!("cache-{name}")).display()
        );
        let toml =
            post_config_toml(&base, &data, &out, 6, &extra).replace("every = 0", "every = 2");
        (write_config(tmp.path(), name, &toml), out)
    };
    let ((config_a, a), (config_b, b)) = (config_for("a"), config_for("b"));
    trainer_ok(&["kto", "--config", &config_a]);
    let crashed =
        crate::helpers::trainer(&["kto", "--config", &config_b, "--abort-after-step", "3"]);
    assert!(!crashed.status.success(), "the abort hook stops the run");
    let resumed = trainer_ok(&["kto", "--config", &config_b, "--resume"]);
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
    // The result exports like any checkpoint.
    let hf = tmp.path().join("hf");
    trainer_ok(&[
        "export-hf",
        b.join("checkpoints/step-00000006").to_str().expect("utf8"),
        hf.to_str().expect("utf8"),
    ]);
    assert!(hf.join("model.safetensors").exists() && hf.join("config.json").exists());
}

#[test]
fn kto_names_a_dataset_of_another_kind_and_settings_out_of_place() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 1);
    let prefs = crate::chat_data::preference_dataset(
        tmp.path(),
        "prefs",
        &[("q".into(), "a".into(), "b".into())],
    );
    let out = tmp.path().join("out");
    let wrong_kind = write_config(
        tmp.path(),
        "wrong-kind",
        &post_config_toml(&base, &prefs, &out, 1, ""),
    );
    let err = trainer_err(&["kto", "--config", &wrong_kind]);
    assert!(
        err.contains("unpaired") && err.contains("preference") && err.contains("prefs"),
        "{err}"
    );

    let data = unpaired_dataset(tmp.path(), "thumbs", &thumbs());
    for (extra, expected) in [
        ("[kto]\nbeta = 0.0\n", "kto.beta must be > 0"),
        (
            "[kto]\ndesirable_weight = -1.0\n",
            "kto.desirable_weight must be > 0",
        ),
        ("[kto]\nbeta_typo = 0.1\n", "unknown field `beta_typo`"),
        ("[dpo]\nbeta = 0.1\n", "[dpo] applies to `trainer dpo` only"),
    ] {
        let config = write_config(
            tmp.path(),
            "bad",
            &post_config_toml(&base, &data, &out, 1, extra),
        );
        let err = trainer_err(&["kto", "--config", &config]);
        assert!(err.contains(expected), "{extra}: {err}");
    }
    let dpo_with_kto = write_config(
        tmp.path(),
        "dpo-kto",
        &post_config_toml(&base, &prefs, &out, 1, "[kto]\nbeta = 0.1\n"),
    );
    let err = trainer_err(&["dpo", "--config", &dpo_with_kto]);
    assert!(err.contains("[kto] applies to `trainer kto` only"), "{err}");
}
