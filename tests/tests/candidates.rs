//! The model in the loop, end to end: a tiny checkpoint trained on chat-formatted text
//! (`trainer pretrain`), a running `labeler serve` on its own database, and
//! `trainer generate-candidates` answering a project's prompts and posting comparison items
//! that an annotator then opens, judges and exports with the candidates' provenance. A second
//! run with the same checkpoint creates nothing. `trainer prelabel` posts suggestions the
//! agreement API compares with an annotator's verdicts.

use std::path::{Path, PathBuf};
use std::time::Instant;

use jielong_tests::{LabelerSetup, call, fails, ok, run_bin, serve};
use serde_json::{Value, json};
use testkit::tokenizer::{save_bpe, write_pretrain_dataset};

pub(crate) const QUESTIONS: [&str; 5] = [
    "what does the cat see?",
    "what does a dog like?",
    "where is the bird?",
    "who follows the teacher?",
    "what is in the box?",
];

/// Conversation `i` of the training text: a question and a one-sentence answer.
fn conversation(i: usize) -> String {
    const SUBJECTS: [&str; 5] = ["the cat", "a dog", "the bird", "my friend", "the teacher"];
    const VERBS: [&str; 4] = ["sees", "likes", "finds", "follows"];
    const OBJECTS: [&str; 4] = [
        "the red ball",
        "a green box",
        "the old tree",
        "a small house",
    ];
    let k = i * 7;
    format!(
        "<|user|>{}<|end|><|assistant|>{} {} {}.<|end|>",
        QUESTIONS[i % QUESTIONS.len()],
        SUBJECTS[k % 5],
        VERBS[(k / 5) % 4],
        OBJECTS[(k / 3) % 4]
    )
}

/// A byte-level BPE with jielong's special tokens, and a pretrain dataset of conversations
/// encoded with it (each ending in EOS).
fn chat_dataset(root: &Path) -> PathBuf {
    let corpus: Vec<String> = (0..100).map(conversation).collect();
    let tokenizer_path = root.join("tokenizer.json");
    save_bpe(&tokenizer_path, corpus.iter().map(String::as_str), 300);
    let dir = root.join("chat");
    write_pretrain_dataset(
        &dir,
        &tokenizer_path,
        (0..200).map(|i| (format!("chat-{i}"), conversation(i))),
        None,
    );
    dir
}

/// Pretrains a tiny model on the chat dataset for `steps`; returns the last checkpoint.
pub(crate) fn tiny_checkpoint(root: &Path, steps: u64) -> PathBuf {
    let data = chat_dataset(root);
    let out = root.join("runs/loop");
    let config = root.join("tiny.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[model]
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
max_position_embeddings = 96

[data]
train = "{data}"
seq_len = 48

[optim]
lr = 0.01
min_lr = 0.001
warmup_steps = 5

[train]
out = "{out}"
seed = 7
steps = {steps}
micro_batch_size = 8
grad_accum = 1
device = "cpu"
threads = 1

[checkpoint]
every = {steps}
keep_last = 1
"#,
            data = data.display(),
            out = out.display()
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("utf8").to_string();
    ok(run_bin("trainer", &["pretrain", "--config", &config], &[]));
    out.join(format!("checkpoints/step-{steps:08}"))
}

#[test]
fn generated_candidates_reach_annotators_once() {
    // Arrange: a checkpoint, a labeler with an admin, an annotator, a project of prompts and
    // an empty preference project.
    let tmp = tempfile::tempdir().expect("tempdir");
    let checkpoint = tiny_checkpoint(tmp.path(), 60);
    let checkpoint = checkpoint.to_str().expect("utf8");
    let labeler = LabelerSetup::new("questions", "duel");
    let (admin, ann) = (
        labeler.admin_token.as_str(),
        labeler.annotator_token.as_str(),
    );
    let (questions, duel) = (
        labeler.sft_project.as_str(),
        labeler.preference_project.as_str(),
    );
    let prompts = tmp.path().join("prompts.jsonl");
    let rows: String = QUESTIONS
        .iter()
        .enumerate()
        .map(|(i, q)| json!({"id": format!("q{i}"), "prompt": q}).to_string() + "\n")
        .collect();
    std::fs::write(&prompts, rows).expect("write prompts");
    labeler.cli(&[
        "import",
        "--project",
        "questions",
        prompts.to_str().expect("utf8"),
    ]);
    let server = serve(&labeler.database_url);
    let url = server.address.as_str();
    let generate = |token: &str, to: &str, extra: &[&str]| {
        let mut args = vec![
            "generate-candidates",
            "--model",
            checkpoint,
            "--labeler",
            url,
            "--from-project",
            questions,
            "--to-project",
            to,
            "--max-tokens",
            "24",
            "--temperature",
            "1.0",
            "--seed",
            "3",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        if !extra.contains(&"--k") {
            args.extend_from_slice(&["--k", "2"]);
        }
        run_bin("trainer", &args, &[("LABELER_TOKEN", token)])
    };

    // Clear refusals before any model work: a bad token, an annotator's token, a project
    // that is not a preference project, a labeler that is not there.
    let err = fails(generate("jlt_wrong", duel, &[]));
    assert!(
        err.contains("401") && err.contains("LABELER_TOKEN"),
        "{err}"
    );
    let err = fails(generate(ann, duel, &[]));
    assert!(err.contains("403"), "{err}");
    let err = fails(generate(admin, questions, &[]));
    assert!(
        err.contains("kind sft") && err.contains("preference"),
        "{err}"
    );
    // One answer per prompt goes to a rating project, not a comparison.
    let err = fails(generate(admin, duel, &["--k", "1"]));
    assert!(
        err.contains("kind preference") && err.contains("--kind rating"),
        "{err}"
    );
    let err = fails(run_bin(
        "trainer",
        &[
            "generate-candidates",
            "--model",
            checkpoint,
            "--labeler",
            "http://127.0.0.1:9",
            "--token",
            admin,
            "--from-project",
            questions,
            "--to-project",
            duel,
        ],
        &[],
    ));
    assert!(err.contains("cannot reach the labeler"), "{err}");

    // Act
    let started = Instant::now();
    let first = ok(generate(admin, duel, &[]));
    let first_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let second = ok(generate(admin, duel, &[]));
    let second_secs = started.elapsed().as_secs_f64();
    eprintln!("first run ({first_secs:.1}s): {first}second run ({second_secs:.1}s): {second}");

    // Assert: five comparison items, each opened by the annotator with two different answers
    // to its prompt.
    assert!(
        first.contains("generated 5 item(s)") && first.contains("labeler created 5"),
        "{first}"
    );
    assert!(
        second.contains("5 already had an item") && second.contains("generated 0 item(s)"),
        "{second}"
    );
    let (status, listed) = call("GET", &format!("{url}/api/projects"), admin, None);
    assert_eq!(status, 200);
    let duel_row = listed
        .as_array()
        .expect("projects")
        .iter()
        .find(|p| p["name"] == "duel")
        .cloned()
        .expect("duel listed");
    assert_eq!(
        duel_row["items"], 5,
        "no duplicates after two runs: {duel_row}"
    );

    let mut opened = Vec::new();
    answer_queue(url, ann, duel, |assignment, _| {
        let (status, again) = call(
            "GET",
            &format!("{url}/api/assignments/{assignment}"),
            ann,
            None,
        );
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["kind"], "preference");
        let answers = again["answers"].as_array().expect("answers");
        assert_eq!(answers.len(), 2, "{again}");
        assert_ne!(answers[0]["content"], answers[1]["content"], "{again}");
        assert!(
            answers
                .iter()
                .all(|a| !a["content"].as_str().unwrap_or("").trim().is_empty())
        );
        let question = again["prompt"][0]["content"]
            .as_str()
            .expect("prompt")
            .to_string();
        assert!(QUESTIONS.contains(&question.as_str()), "{again}");
        let external = again["external_id"]
            .as_str()
            .expect("external id")
            .to_string();
        assert!(
            external.starts_with("item-") && external.contains("@loop/step-60/"),
            "{external}"
        );
        opened.push(external);
        json!({"choice": "a"})
    });
    assert_eq!(opened.len(), 5);

    // The export carries each candidate's provenance.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let export = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{url}/api/projects/{duel}/export?part=pairs"))
            .bearer_auth(admin)
            .send()
            .await
            .expect("export")
            .text()
            .await
            .expect("body")
    });
    let pairs: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSONL"))
        .collect();
    assert_eq!(pairs.len(), 5);
    let mut ends = Vec::new();
    for pair in &pairs {
        for c in [
            &pair["meta"]["chosen_candidate"],
            &pair["meta"]["rejected_candidate"],
        ] {
            assert_eq!(c["model"], "loop", "{pair}");
            let ckpt = c["checkpoint"].as_str().expect("checkpoint");
            assert!(ckpt.starts_with("loop/step-60/") && ckpt.len() == "loop/step-60/".len() + 12);
            assert_eq!(c["sampling"]["temperature"], 1.0);
            assert_eq!(c["sampling"]["max_tokens"], 24);
            assert!(c["sampling"]["seed"].is_u64());
        }
        for answer in [
            &pair["chosen"][0]["content"],
            &pair["rejected"][0]["content"],
        ] {
            assert!(!answer.as_str().expect("answer").contains("<|"), "{pair}");
        }
        ends.extend(
            pair["meta"]["item_meta"]["finish_reasons"]
                .as_array()
                .expect("finish reasons")
                .iter()
                .map(|r| r.as_str().expect("reason").to_string()),
        );
        assert_eq!(
            pair["meta"]["item_meta"]["generated_by"],
            "trainer generate-candidates"
        );
        assert!(
            pair["meta"]["item_meta"]["source"]["item_id"].is_i64(),
            "{pair}"
        );
    }
    // Answers end at the end-of-turn token the model learnt (or run to --max-tokens).
    assert_eq!(ends.len(), 10);
    assert!(ends.iter().any(|e| e == "end_of_turn"), "{ends:?}");
    drop(server);
}

/// A blocking PATCH with a JSON body: the status.
pub(crate) fn patch(url: &str, token: &str, body: &Value) -> u16 {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        reqwest::Client::new()
            .patch(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    })
}

/// Takes every task of `project`'s queue as the annotator `token`: `answer` gets each
/// assignment id and task and gives the body to submit. The number of tasks answered.
pub(crate) fn answer_queue(
    url: &str,
    token: &str,
    project: &str,
    mut answer: impl FnMut(i64, &Value) -> Value,
) -> usize {
    let mut answered = 0;
    loop {
        let next = format!("{url}/api/projects/{project}/next");
        let (status, task) = call("POST", &next, token, None);
        if status == 204 {
            return answered;
        }
        assert_eq!(status, 200, "{task}");
        let assignment = task["assignment_id"].as_i64().expect("assignment");
        let body = answer(assignment, &task);
        let (status, reply) = call(
            "POST",
            &format!("{url}/api/assignments/{assignment}/submit"),
            token,
            Some(&body),
        );
        assert_eq!(status, 201, "{reply}");
        answered += 1;
    }
}

/// `trainer prelabel` against a live labeler, the agreement API on its suggestions, and
/// `trainer grpo` reading a labeler project's prompts.
#[test]
fn prelabel_posts_suggestions_that_the_agreement_page_compares() {
    // Arrange: a checkpoint (no score head: answers are scored by mean log-prob), a rating
    // project of six answered prompts and a preference project of three pairs.
    let tmp = tempfile::tempdir().expect("tempdir");
    let checkpoint = tiny_checkpoint(tmp.path(), 20);
    let checkpoint = checkpoint.to_str().expect("utf8");
    let labeler = LabelerSetup::new("questions", "duel");
    let (admin, ann) = (
        labeler.admin_token.as_str(),
        labeler.annotator_token.as_str(),
    );
    let duel = labeler.preference_project.clone();
    let thumbs = jielong_tests::project_id(
        &labeler.cli(&["project", "create", "thumbs", "--kind", "rating"]),
    );
    let answers = [
        "the cat sees the red ball.",
        "a dog likes a green box.",
        "zq xv kkk ww.",
        "the bird finds the old tree.",
        "box box box box.",
        "my friend follows a small house.",
    ];
    let write = |name: &str, rows: Vec<Value>| {
        let path = tmp.path().join(name);
        let text: String = rows.iter().map(|r| r.to_string() + "\n").collect();
        std::fs::write(&path, text).expect("write items");
        path.to_str().expect("utf8").to_string()
    };
    let ratings = write(
        "ratings.jsonl",
        answers
            .iter()
            .enumerate()
            .map(|(i, a)| {
                json!({"id": format!("r{i}"), "prompt": QUESTIONS[i % QUESTIONS.len()],
                       "candidates": [{"content": a}]})
            })
            .collect(),
    );
    let pairs = write(
        "pairs.jsonl",
        (0..3)
            .map(|i| {
                json!({"id": format!("p{i}"), "prompt": QUESTIONS[i],
                       "candidates": [{"content": answers[2 * i + 1]}, {"content": answers[2 * i]}]})
            })
            .collect(),
    );
    labeler.cli(&["import", "--project", "thumbs", &ratings]);
    labeler.cli(&["import", "--project", "duel", &pairs]);
    let server = serve(&labeler.database_url);
    let url = server.address.as_str();
    let prelabel = |project: &str| {
        run_bin(
            "trainer",
            &[
                "prelabel",
                "--model",
                checkpoint,
                "--labeler",
                url,
                "--project",
                project,
                "--device",
                "cpu",
            ],
            &[("LABELER_TOKEN", admin)],
        )
    };

    // Act
    let rated = ok(prelabel(&thumbs));
    let ranked = ok(prelabel(&duel));
    let again = ok(prelabel(&thumbs));
    let err = fails(prelabel(&labeler.sft_project));

    // Assert: every item got a suggestion (median threshold: three thumbs up of six), the same
    // on a second run, and an SFT project is refused by name.
    eprintln!("{rated}{ranked}");
    assert!(
        rated.contains("scored 6 item(s) by mean log-prob per answer token")
            && rated.contains("3 of 6 thumb(s) up")
            && rated.contains("stored 6"),
        "{rated}"
    );
    assert!(
        ranked.contains("3 preference winner(s)") && ranked.contains("stored 3"),
        "{ranked}"
    );
    assert_eq!(rated, again);
    assert!(
        err.contains("kind sft") && err.contains("rating and preference"),
        "{err}"
    );

    // The annotator sees each suggestion (project setting `shown`) and disagrees with it on
    // two items; the agreement API compares the six verdicts with the suggestions.
    let status = patch(
        &format!("{url}/api/admin/projects/{thumbs}"),
        admin,
        &json!({"prelabels": "shown"}),
    );
    assert_eq!(status, 200);
    let mut suggested = 0;
    let answered = answer_queue(url, ann, &thumbs, |assignment, _| {
        let (status, suggestion) = call(
            "GET",
            &format!("{url}/api/assignments/{assignment}/suggestion"),
            ann,
            None,
        );
        assert_eq!(status, 200, "{suggestion}");
        let model = suggestion["label"].as_bool().expect("a thumb suggested");
        let human = if suggested < 2 { !model } else { model };
        suggested += 1;
        json!({"label": human})
    });
    assert_eq!(answered, 6);
    let (status, agreement) = call(
        "GET",
        &format!("{url}/api/projects/{thumbs}/agreement"),
        admin,
        None,
    );
    assert_eq!(status, 200, "{agreement}");
    let model = &agreement["model"];
    assert_eq!(model["compared"], 6, "{agreement}");
    let share = model["agreement"].as_f64().expect("agreement");
    assert!((share - 4.0 / 6.0).abs() < 1e-9, "{agreement}");
    assert!(model["kappa"].is_number(), "{agreement}");

    // The same project's prompts feed GRPO through the API (data.train = its URL).
    let out = tmp.path().join("grpo");
    let config = tmp.path().join("grpo.toml");
    std::fs::write(
        &config,
        format!(
            "init_from = \"{checkpoint}\"\n[data]\ntrain = \"{url}/projects/{thumbs}\"\nseq_len = 96\n\
             [optim]\nlr = 0.001\n[train]\nout = \"{}\"\nsteps = 1\nmicro_batch_size = 6\ndevice = \"cpu\"\nthreads = 1\n\
             [checkpoint]\nevery = 0\n[grpo]\ngroup_size = 2\nmax_new_tokens = 8\n\
             [[grpo.rules]]\nkind = \"contains\"\npattern = \"the\"\n",
            out.display()
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("utf8");
    let err = fails(run_bin("trainer", &["grpo", "--config", config], &[]));
    assert!(err.contains("LABELER_TOKEN"), "{err}");
    ok(run_bin(
        "trainer",
        &["grpo", "--config", config],
        &[("LABELER_TOKEN", admin)],
    ));
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    let step: Value = metrics
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .find(|l| l["kind"] == "train")
        .expect("a train line");
    assert!(step["answer_length"].is_number(), "{step}");
    drop(server);
}
