//! The demo's thumbs round (the KTO part of `scripts/next-round`) on the end-to-end run: the
//! aligned model answers every prompt once into a rating project, stand-in annotators give
//! thumbs up or down over HTTP (`scripts/annotate_demo.py --rate-project`), the ratings are
//! exported in TRL's unpaired shape, tokenized (`tokenize-chat --kind unpaired`), and KTO
//! with LoRA from the aligned model (`configs/trainer/demo-kto.toml`) must move the model's
//! mean log-prob per token of thumbs-up answers up against thumbs-down ones.

use std::collections::BTreeMap;
use std::path::Path;

use format::DatasetKind;
use jielong_tests::{LabelerSetup, ok, project_id, run_bin};
use serde_json::Value;

use crate::demo_files::{
    annotate_demo, dataset_ids, demo_config, metrics, newest_checkpoint, project_items, read_jsonl,
};

/// Where the end-to-end run stands when the thumbs round starts.
pub struct Demo<'a> {
    /// The run's directory (the test's `runs/demo`).
    pub run: &'a Path,
    pub labeler: &'a LabelerSetup,
    pub url: &'a str,
    /// The model that answers and that KTO starts from.
    pub aligned: &'a Path,
}

/// The mean `score` of thumbs-up rows minus that of thumbs-down rows; `labels` by row id.
fn margin(scores: &[Value], labels: &BTreeMap<String, bool>) -> f64 {
    let mean = |up: bool| {
        let s: Vec<f64> = scores
            .iter()
            .filter(|r| labels[r["id"].as_str().expect("id")] == up)
            .map(|r| r["score"].as_f64().expect("score"))
            .collect();
        assert!(
            !s.is_empty(),
            "no thumbs-{} row",
            if up { "up" } else { "down" }
        );
        s.iter().sum::<f64>() / s.len() as f64
    };
    mean(true) - mean(false)
}

/// Runs the round; returns the training rows' margin before and after KTO.
pub fn thumbs_to_kto(demo: &Demo) -> (f64, f64) {
    let (run, url) = (demo.run, demo.url);
    let s = |p: &Path| p.to_str().expect("utf8").to_string();
    let admin = demo.labeler.admin_token.as_str();
    let rate = project_id(&demo.labeler.cli(&[
        "project",
        "create",
        "towns-rate",
        "--kind",
        "rating",
        "--aspect",
        "correctness=5: the reference's fact; 1: wrong",
    ]));

    // 1. One answer per prompt from the aligned model, into the rating project. Sampled
    // (temperature 0.8), where scripts/next-round takes the greedy answer: this test's model
    // has half the demo's SFT steps, and greedily it names the right town or fact in 2 of
    // 44 answers (sampled: 8), too few thumbs up to measure a margin on.
    ok(run_bin(
        "trainer",
        &[
            "generate-candidates",
            "--model",
            &s(demo.aligned),
            "--labeler",
            url,
            "--from-project",
            &demo.labeler.sft_project,
            "--to-project",
            &rate,
            "--k",
            "1",
            "--max-tokens",
            "40",
            "--seed",
            "1",
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
        &[("LABELER_TOKEN", admin)],
    ));
    assert_eq!(project_items(url, admin, "towns-rate"), 48);

    // 2. Thumbs from the stand-ins: up when the answer names the asked town or its fact.
    let log = run.join("thumbs.json");
    let actions = annotate_demo(
        &[
            "--labeler",
            url,
            "--token",
            &demo.labeler.annotator_token,
            "--rate-project",
            &rate,
            "--aspect",
            "correctness",
            "--prompts",
            "data/demo/prompts.jsonl",
        ],
        &log,
    );
    let thumbs: Vec<&Value> = actions
        .as_array()
        .expect("actions")
        .iter()
        .filter(|a| a["action"] == "thumb")
        .collect();
    assert_eq!(thumbs.len(), 44, "48 items, every 12th skipped");
    let ups = thumbs.iter().filter(|a| a["label"] == true).count();
    eprintln!("thumbs: {ups} up, {} down", thumbs.len() - ups);
    assert!(
        (1..thumbs.len()).contains(&ups),
        "the aligned model's answers get both thumbs: {ups} of {} up",
        thumbs.len()
    );

    // 3. The unpaired export: exactly the thumbs given, with the answers rated.
    let export = run.join("export");
    demo.labeler
        .cli(&["export", "--project", "towns-rate", "--out", &s(&export)]);
    let ratings = read_jsonl(&export.join("towns-rate-ratings.jsonl"));
    let given: BTreeMap<(&str, bool), usize> = thumbs.iter().fold(BTreeMap::new(), |mut m, a| {
        let key = (a["answer"].as_str().expect("answer"), a["label"] == true);
        *m.entry(key).or_default() += 1;
        m
    });
    let exported: BTreeMap<(&str, bool), usize> =
        ratings.iter().fold(BTreeMap::new(), |mut m, r| {
            let answer = r["completion"][0]["content"].as_str().expect("completion");
            let key = (answer, r["label"].as_bool().expect("label"));
            *m.entry(key).or_default() += 1;
            m
        });
    assert_eq!(exported, given);
    assert!(
        ratings
            .iter()
            .all(|r| r["meta"]["scores"]["correctness"].is_u64()),
        "the aspect score travels in meta: {:?}",
        ratings[0]
    );

    // 4. As scripts/next-round does: every 4th rating held out, the rest tokenized for KTO.
    let part = |held: bool| -> Vec<&Value> {
        ratings
            .iter()
            .enumerate()
            .filter(|(i, _)| (i % 4 == 3) == held)
            .map(|(_, r)| r)
            .collect()
    };
    let (train, held_out) = (part(false), part(true));
    let lines = |rows: &[&Value]| -> String { rows.iter().map(|r| r.to_string() + "\n").collect() };
    let train_file = run.join("thumbs-train.jsonl");
    std::fs::write(&train_file, lines(&train)).expect("write");
    let unpaired = run.join("round/unpaired");
    ok(run_bin(
        "pipeline",
        &[
            "tokenize-chat",
            "--kind",
            "unpaired",
            "--tokenizer",
            &s(&run.join("tokenizer.json")),
            "--output",
            &s(&unpaired),
            &s(&train_file),
        ],
        &[],
    ));
    let (ids, rows) = dataset_ids(&unpaired, DatasetKind::Unpaired, "example_id");
    assert_eq!((ids.len(), rows as usize), (train.len(), train.len()));

    // 5. KTO with LoRA from the aligned model, then each model scores the answers.
    let config = demo_config("trainer/demo-kto.toml", run);
    ok(run_bin(
        "trainer",
        &[
            "kto",
            "--config",
            &config,
            "--init-from",
            &s(demo.aligned),
            "--steps",
            "12",
            "--device",
            "cpu",
        ],
        &[],
    ));
    let steps = metrics(&run.join("kto"))
        .into_iter()
        .filter(|l| l["kind"] == "train")
        .count();
    assert_eq!(steps, 12);
    let kto = newest_checkpoint(&run.join("kto"));
    let labels: BTreeMap<String, bool> = ratings
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_string(),
                r["label"] == true,
            )
        })
        .collect();
    let score = |model: &Path, rows: &[&Value], name: &str| -> Vec<Value> {
        let input = run.join(format!("{name}-rows.jsonl"));
        let body: String = rows
            .iter()
            .map(|r| {
                let row = serde_json::json!({"id": r["id"], "prompt": r["prompt"],
                    "answer": r["completion"][0]["content"]});
                row.to_string() + "\n"
            })
            .collect();
        std::fs::write(&input, body).expect("write");
        let output = run.join(format!("{name}-scores.jsonl"));
        ok(run_bin(
            "trainer",
            &[
                "score",
                "--model",
                &s(model),
                "--input",
                &s(&input),
                "--output",
                &s(&output),
                "--device",
                "cpu",
            ],
            &[],
        ));
        read_jsonl(&output)
    };
    let before = margin(&score(demo.aligned, &train, "train-before"), &labels);
    let after = margin(&score(&kto, &train, "train-after"), &labels);
    let has_both = |rows: &[&Value]| {
        let up = rows.iter().filter(|r| r["label"] == true).count();
        up > 0 && up < rows.len()
    };
    if has_both(&held_out) {
        let held_before = margin(&score(demo.aligned, &held_out, "held-before"), &labels);
        let held_after = margin(&score(&kto, &held_out, "held-after"), &labels);
        eprintln!("KTO held-out margin {held_before:.3} -> {held_after:.3}");
    }
    eprintln!("KTO training margin {before:.3} -> {after:.3}");
    (before, after)
}
