//! Watching runs: a run's TensorBoard scalars read back with the `tensorboard` package's own
//! event reader (from the venv) are every number of its metrics.jsonl, at the same steps;
//! `trainer report` compares two runs on one page.

use std::collections::BTreeMap;

use crate::helpers::{datasets, metrics, tiny_config_file, trainer_ok};

const READ_EVENTS: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps({tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}))
"#;

#[test]
fn tensorboard_reads_every_scalar_of_the_metrics_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    let out = tmp.path().join("run");
    let config = tiny_config_file(tmp.path(), "run", &out, 6);
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("every = 50", "every = 3");
    std::fs::write(&config, text).expect("config");
    trainer_ok(&["pretrain", "--config", config.to_str().expect("utf8")]);

    let json = testkit::python::run_python(READ_EVENTS, &[out.as_os_str()]);
    let scalars: BTreeMap<String, Vec<(i64, f64)>> =
        serde_json::from_str(&json).expect("scalars as JSON");
    let mut checked = 0;
    for line in metrics(&out) {
        let (kind, step) = (line["kind"].as_str().expect("kind"), line["step"].as_i64());
        let Some(step) = step else { continue };
        for (field, value) in line.as_object().expect("object") {
            let Some(value) = value.as_f64() else {
                continue;
            };
            if field == "step" {
                continue;
            }
            let tag = format!("{kind}/{field}");
            let series = scalars
                .get(&tag)
                .unwrap_or_else(|| panic!("no scalar {tag}; have {:?}", scalars.keys()));
            let (_, got) = series
                .iter()
                .find(|(s, _)| *s == step)
                .unwrap_or_else(|| panic!("{tag} has no step {step}"));
            let want = value as f32 as f64;
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{tag} at step {step}: {got} vs {want}"
            );
            checked += 1;
        }
    }
    for tag in [
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/tokens_per_s",
        "eval/val_loss",
    ] {
        assert!(scalars.contains_key(tag), "{tag} missing");
    }
    assert!(checked > 30, "only {checked} numbers checked");
}

#[test]
fn the_report_compares_runs_with_curves_samples_and_config_differences() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    let mut runs = Vec::new();
    for (name, seed) in [("a", 7), ("b", 8)] {
        let out = tmp.path().join(name);
        let config = tiny_config_file(tmp.path(), name, &out, 6);
        let text = std::fs::read_to_string(&config)
            .expect("config")
            .replace("seed = 7", &format!("seed = {seed}"))
            .replace("every = 20", "every = 6")
            + "\n[sample]\nevery = 3\nprompt = \"<b>the\"\nmax_tokens = 8\n";
        std::fs::write(&config, text).expect("config");
        trainer_ok(&["pretrain", "--config", config.to_str().expect("utf8")]);
        runs.push(out.to_str().expect("utf8").to_string());
    }
    let page = tmp.path().join("report.html");
    trainer_ok(&[
        "report",
        &runs[0],
        &runs[1],
        "--out",
        page.to_str().expect("utf8"),
    ]);
    let html = std::fs::read_to_string(&page).expect("report");
    for needle in [
        "Training loss",
        "Validation loss",
        "Learning rate",
        "<svg",
        "config.train.seed",
        "config.train.out",
        "&lt;b&gt;the",
    ] {
        assert!(html.contains(needle), "report lacks {needle}");
    }
    assert!(!html.contains("<b>the"), "sample text is not escaped");
}
