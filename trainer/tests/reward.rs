//! Reward model: on a synthetic preference set with a learnable rule (answers about the red
//! ball beat answers about the green box) it beats chance clearly on held-out pairs, and
//! `trainer score` scores (prompt, answer) rows with it (and with a plain checkpoint, by
//! mean log-prob).

use std::path::Path;

use crate::chat_data::{base_checkpoint, post_config_toml, preference_dataset, write_config};
use crate::helpers::{metrics, trainer, trainer_ok};

const SUBJECTS: [&str; 5] = ["the cat", "a dog", "the bird", "my friend", "the teacher"];
const VERBS: [&str; 4] = ["sees", "likes", "finds", "follows"];

fn pairs() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for subject in SUBJECTS {
        for verb in VERBS {
            for question in ["what is it?", "tell me."] {
                out.push((
                    format!("{subject}: {question}"),
                    format!("{subject} {verb} the red ball."),
                    format!("{subject} {verb} a green box."),
                ));
            }
        }
    }
    out
}

#[test]
fn the_reward_model_beats_chance_on_held_out_pairs_and_scores_rows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 40);
    let data = preference_dataset(tmp.path(), "prefs", &pairs());
    let out = tmp.path().join("reward");
    let toml = post_config_toml(&base, &data, &out, 40, "[reward]\nvalid_fraction = 0.3\n")
        .replace("micro_batch_size = 2", "micro_batch_size = 4")
        .replace("grad_accum = 2", "grad_accum = 1");
    let config = write_config(tmp.path(), "reward", &toml);
    trainer_ok(&["reward", "--config", &config]);

    let lines = metrics(&out);
    let eval = lines
        .iter()
        .rfind(|l| l["kind"] == "eval")
        .expect("eval line");
    let held_out = eval["val_pairs"].as_u64().expect("val_pairs");
    assert!((5..=25).contains(&held_out), "held-out pairs: {held_out}");
    let accuracy = eval["val_accuracy"].as_f64().expect("accuracy");
    assert!(
        accuracy >= 0.8,
        "held-out accuracy {accuracy} ({held_out} pairs)"
    );
    assert!(eval["val_margin"].as_f64().expect("margin") > 0.0);
    let train = lines
        .iter()
        .rfind(|l| l["kind"] == "train")
        .expect("train line");
    for field in ["accuracy", "margin", "chosen_score", "rejected_score"] {
        assert!(train[field].is_number(), "{field} missing in {train}");
    }

    let ckpt = out.join("checkpoints/step-00000040");
    let input = tmp.path().join("rows.jsonl");
    std::fs::write(
        &input,
        concat!(
            "{\"id\": 1, \"prompt\": \"a dog: tell me.\", \"answer\": \"a dog likes the red ball.\"}\n",
            "{\"id\": 2, \"prompt\": [{\"role\": \"user\", \"content\": \"a dog: tell me.\"}], \"answer\": \"a dog likes a green box.\"}\n",
            "{\"id\": 3, \"answer\": \"no prompt\"}\n",
        ),
    )
    .expect("write rows");
    let scored = tmp.path().join("scores.jsonl");
    // `trainer score` of the rows in `input` by `model`, into `scored`; and the scores back.
    let score = |model: &Path| {
        trainer(&[
            "score",
            "--model",
            model.to_str().expect("utf8"),
            "--input",
            input.to_str().expect("utf8"),
            "--output",
            scored.to_str().expect("utf8"),
            "--device",
            "cpu",
        ])
    };
    let read_scores = || -> Vec<f64> {
        std::fs::read_to_string(&scored)
            .expect("scores")
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("json")["score"]
                    .as_f64()
                    .expect("score")
            })
            .collect()
    };
    let run = score(&ckpt);
    assert!(
        !run.status.success(),
        "a bad row makes the exit status non-zero"
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("rows.jsonl:3: missing field `prompt`"),
        "{stderr}"
    );
    let scores = read_scores();
    assert_eq!(scores.len(), 2, "the good rows are still scored");
    let (good, bad) = (scores[0], scores[1]);
    assert!(good > bad, "red ball {good} vs green box {bad}");

    // A checkpoint without a score head scores by mean log-prob per answer token: the
    // pretrained model finds a sentence of its corpus likelier than scrambled letters.
    std::fs::write(
        &input,
        concat!(
            "{\"id\": \"corpus\", \"prompt\": \"a dog: tell me.\", \"answer\": \"a dog likes the red ball.\"}\n",
            "{\"id\": \"noise\", \"prompt\": \"a dog: tell me.\", \"answer\": \"qz vk ebd xo lyr.\"}\n",
        ),
    )
    .expect("write rows");
    let run = score(&base);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("scored 2 rows by mean log-prob per answer token"),
        "{stderr}"
    );
    let logps = read_scores();
    assert!(
        logps.len() == 2 && logps.iter().all(|l| *l < 0.0) && logps[0] > logps[1] + 0.5,
        "corpus vs noise: {logps:?}"
    );

    let hf = tmp.path().join("reward-hf");
    trainer_ok(&[
        "export-hf",
        ckpt.to_str().expect("utf8"),
        hf.to_str().expect("utf8"),
    ]);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["architectures"][0], "LlamaForSequenceClassification");
}
