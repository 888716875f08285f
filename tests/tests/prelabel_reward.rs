//! `trainer prelabel` with a reward model, end to end: a tiny reward model trained through
//! the real path (TRL-shaped pairs -> `pipeline tokenize-chat --kind preference` ->
//! `trainer reward`) on a rule (answers about the red ball beat answers about the green
//! box) suggests thumbs and winners by that rule, and an annotator sees them in a live
//! labeler.

use std::collections::BTreeMap;
use std::path::Path;

use jielong_tests::{LabelerSetup, call, ok, project_id, run_bin, serve};
use serde_json::{Value, json};

use crate::candidates::{QUESTIONS, answer_queue, patch, tiny_checkpoint};

const SUBJECTS: [&str; 5] = ["the cat", "a dog", "the bird", "my friend", "the teacher"];
const VERBS: [&str; 4] = ["sees", "likes", "finds", "follows"];

fn write_jsonl(path: &Path, rows: &[Value]) -> String {
    let text: String = rows.iter().map(|r| r.to_string() + "\n").collect();
    std::fs::write(path, text).expect("write JSONL");
    path.to_str().expect("utf8").to_string()
}

/// A reward model trained from `checkpoint` on red-ball-beats-green-box pairs.
fn reward_model(root: &Path, checkpoint: &Path) -> String {
    let mut pairs = Vec::new();
    for (i, subject) in SUBJECTS.iter().enumerate() {
        for (j, verb) in VERBS.iter().enumerate() {
            let say = |content: String| json!([{"role": "assistant", "content": content}]);
            pairs.push(json!({
                "id": format!("pair-{i}-{j}"),
                "prompt": [{"role": "user", "content": QUESTIONS[(i + j) % QUESTIONS.len()]}],
                "chosen": say(format!("{subject} {verb} the red ball.")),
                "rejected": say(format!("{subject} {verb} a green box.")),
                "meta": {},
            }));
        }
    }
    let input = write_jsonl(&root.join("pairs.jsonl"), &pairs);
    let data = root.join("prefs");
    let s = |p: &Path| p.to_str().expect("utf8").to_string();
    ok(run_bin(
        "pipeline",
        &[
            "tokenize-chat",
            "--kind",
            "preference",
            "--tokenizer",
            &s(&root.join("tokenizer.json")),
            "--output",
            &s(&data),
            &input,
        ],
        &[],
    ));
    let out = root.join("reward");
    let config = root.join("reward.toml");
    std::fs::write(
        &config,
        format!(
            "init_from = \"{}\"\n[data]\ntrain = \"{}\"\nseq_len = 96\n\
             [optim]\nlr = 0.003\nwarmup_steps = 2\nschedule = \"constant\"\nweight_decay = 0.0\n\
             [train]\nout = \"{}\"\nseed = 3\nsteps = 40\nmicro_batch_size = 4\ndevice = \"cpu\"\nthreads = 1\n\
             [checkpoint]\nevery = 40\nkeep_last = 1\n[reward]\nvalid_fraction = 0.2\n",
            checkpoint.display(),
            data.display(),
            out.display()
        ),
    )
    .expect("write config");
    ok(run_bin(
        "trainer",
        &["reward", "--config", &s(&config)],
        &[],
    ));
    s(&out.join("checkpoints/step-00000040"))
}

#[test]
fn a_reward_model_prelabels_by_the_rule_it_learned() {
    // Arrange: the reward model; a rating project of six answers (three about the red ball)
    // and a preference project of four pairs, the red-ball answer first in two of them.
    let tmp = tempfile::tempdir().expect("tempdir");
    let checkpoint = tiny_checkpoint(tmp.path(), 20);
    let model = reward_model(tmp.path(), &checkpoint);
    let labeler = LabelerSetup::new("questions", "duel");
    let (admin, ann) = (
        labeler.admin_token.as_str(),
        labeler.annotator_token.as_str(),
    );
    let duel = labeler.preference_project.clone();
    let thumbs = project_id(&labeler.cli(&["project", "create", "thumbs", "--kind", "rating"]));
    let answer = |i: usize, red: bool| {
        let object = if red { "the red ball" } else { "a green box" };
        format!("{} {} {object}.", SUBJECTS[(i + 2) % 5], VERBS[(i + 1) % 4])
    };
    let ratings: Vec<Value> = (0..6)
        .map(|i| {
            json!({"id": format!("r{i}"), "prompt": QUESTIONS[i % QUESTIONS.len()],
                   "candidates": [{"content": answer(i, i % 2 == 0)}]})
        })
        .collect();
    let pairs: Vec<Value> = (0..4)
        .map(|i| {
            let (first, second) = (answer(i, i % 2 == 0), answer(i, i % 2 == 1));
            json!({"id": format!("p{i}"), "prompt": QUESTIONS[i],
                   "candidates": [{"content": first}, {"content": second}]})
        })
        .collect();
    labeler.cli(&[
        "import",
        "--project",
        "thumbs",
        &write_jsonl(&tmp.path().join("ratings.jsonl"), &ratings),
    ]);
    labeler.cli(&[
        "import",
        "--project",
        "duel",
        &write_jsonl(&tmp.path().join("duels.jsonl"), &pairs),
    ]);
    let server = serve(&labeler.database_url);
    let url = server.address.as_str();
    let prelabel = |project: &str| {
        ok(run_bin(
            "trainer",
            &[
                "prelabel",
                "--model",
                &model,
                "--labeler",
                url,
                "--project",
                project,
                "--source",
                "rm-40",
                "--device",
                "cpu",
            ],
            &[("LABELER_TOKEN", admin)],
        ))
    };

    // Act
    let rated = prelabel(&thumbs);
    let ranked = prelabel(&duel);

    // Assert: scored by the score head; what the annotator is shown follows the rule.
    eprintln!("{rated}{ranked}");
    assert!(
        rated.contains("by reward model") && rated.contains("3 of 6 thumb(s) up"),
        "{rated}"
    );
    assert!(
        ranked.contains("by reward model") && ranked.contains("4 preference winner(s)"),
        "{ranked}"
    );
    let mut suggested = BTreeMap::new();
    for project in [&thumbs, &duel] {
        let status = patch(
            &format!("{url}/api/admin/projects/{project}"),
            admin,
            &json!({"prelabels": "shown"}),
        );
        assert_eq!(status, 200);
        answer_queue(url, ann, project, |assignment, task| {
            let (status, suggestion) = call(
                "GET",
                &format!("{url}/api/assignments/{assignment}/suggestion"),
                ann,
                None,
            );
            assert_eq!(status, 200, "{suggestion}");
            assert_eq!(suggestion["source"], "rm-40");
            let answers = task["answers"].as_array().expect("answers");
            // The answer the model favours: the rated one with a thumb up, or the winner.
            let (favoured, body) = match suggestion["label"].as_bool() {
                Some(up) => (
                    up.then(|| answers[0]["content"].clone()),
                    json!({"label": up}),
                ),
                None => {
                    let winner = suggestion["winner"].as_str().expect("a winner");
                    let shown = answers
                        .iter()
                        .find(|a| a["label"] == winner)
                        .expect("shown");
                    let choice = winner.to_lowercase();
                    (Some(shown["content"].clone()), json!({"choice": choice}))
                }
            };
            let red = answers.iter().find(|a| {
                a["content"]
                    .as_str()
                    .is_some_and(|c| c.contains("red ball"))
            });
            suggested.insert(
                task["external_id"].as_str().expect("id").to_string(),
                (favoured, red.map(|a| a["content"].clone())),
            );
            body
        });
    }
    assert_eq!(suggested.len(), 10, "{suggested:?}");
    for (id, (favoured, red)) in &suggested {
        assert_eq!(favoured, red, "{id}: the model favours the red-ball answer");
    }
    drop(server);
}
