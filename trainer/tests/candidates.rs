//! `generate-candidates` without a labeler: prompts from a file, a dry run writing the items
//! (seeded, so the same every time), and prompts that cannot get k different answers. The run
//! against a live labeler is in the end-to-end tests (`tests/tests/candidates.rs`).

use std::path::Path;

use serde_json::Value;

use crate::helpers::{datasets, tiny_config_file, trainer, trainer_err, trainer_ok};

fn checkpoint(root: &Path) -> String {
    datasets(root);
    let out = root.join("chatty");
    let config = tiny_config_file(root, "c", &out, 20);
    trainer_ok(&["pretrain", "--config", config.to_str().expect("utf8")]);
    out.join("checkpoints/step-00000020")
        .to_str()
        .expect("utf8")
        .to_string()
}

fn items(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn a_dry_run_writes_the_same_importable_items_every_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ckpt = checkpoint(tmp.path());
    let prompts = tmp.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        concat!(
            r#"{"id": "cat", "prompt": "the cat"}"#,
            "\n\n",
            r#"{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a dog"}], "meta": {"topic": "dogs"}}"#,
            "\n",
            r#"{"id": "bird", "prompt": "the bird"}"#,
            "\n",
        ),
    )
    .expect("write prompts");
    let run = |seed: &str, out: &str| {
        let out = tmp.path().join(out);
        trainer_ok(&[
            "generate-candidates",
            "--model",
            &ckpt,
            "--prompts",
            prompts.to_str().expect("utf8"),
            "--dry-run",
            "--output",
            out.to_str().expect("utf8"),
            "--k",
            "3",
            "--max-tokens",
            "12",
            "--seed",
            seed,
            "--device",
            "cpu",
        ]);
        items(&out)
    };

    let first = run("5", "a.jsonl");
    assert_eq!(first, run("5", "b.jsonl"), "same seed, same items");
    assert_ne!(first, run("6", "c.jsonl"), "the seed matters");

    assert_eq!(first.len(), 3);
    let ids: Vec<&str> = first
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();
    assert!(ids[0].starts_with("cat@chatty/step-20/"), "{ids:?}");
    assert!(
        ids[1].starts_with("sha-"),
        "an id-less prompt is named by its hash: {ids:?}"
    );
    assert!(ids[2].starts_with("bird@chatty/step-20/"), "{ids:?}");
    for item in &first {
        // The labeler's import shape: id, prompt, candidates, meta; nothing else.
        let keys: Vec<&String> = item.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["candidates", "id", "meta", "prompt"]);
        let candidates = item["candidates"].as_array().expect("candidates");
        assert_eq!(candidates.len(), 3);
        let mut texts: Vec<&str> = candidates
            .iter()
            .map(|c| c["content"].as_str().expect("content").trim())
            .collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), 3, "three different answers: {item}");
        for c in candidates {
            assert_eq!(c["model"], "chatty");
            assert_eq!(c["sampling"]["max_tokens"], 12);
            assert!(
                item["id"]
                    .as_str()
                    .expect("id")
                    .ends_with(c["checkpoint"].as_str().expect("checkpoint"))
            );
        }
    }
    assert_eq!(first[1]["meta"]["source"]["meta"]["topic"], "dogs");
    assert_eq!(first[1]["prompt"][0]["role"], "system");
}

#[test]
fn prompts_without_k_different_answers_and_bad_arguments_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ckpt = checkpoint(tmp.path());
    let prompts = tmp.path().join("prompts.jsonl");
    std::fs::write(&prompts, "{\"id\": \"cat\", \"prompt\": \"the cat\"}\n").expect("write");
    let prompts = prompts.to_str().expect("utf8");
    let base = [
        "generate-candidates",
        "--model",
        &ckpt,
        "--prompts",
        prompts,
        "--max-tokens",
        "8",
        "--device",
        "cpu",
    ];
    let run_err = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        trainer_err(&args)
    };

    // Top-k 1 always picks the same tokens: one answer, however many seeds are tried.
    let err = run_err(&["--dry-run", "--top-k", "1", "--max-attempts", "5"]);
    assert!(
        err.contains("cat")
            && err.contains("different non-empty answer")
            && err.contains("5 samples"),
        "{err}"
    );
    // Greedy cannot give two answers; k is bounded; posting needs a labeler and a token.
    let err = run_err(&["--dry-run", "--temperature", "0"]);
    assert!(err.contains("temperature"), "{err}");
    let err = run_err(&["--dry-run", "--k", "17"]);
    assert!(err.contains("--k 17"), "{err}");
    // One answer (for a rating project) may be greedy: one item with one candidate.
    let single = tmp.path().join("single.jsonl");
    let single_path = single.to_str().expect("utf8");
    trainer_ok(
        &[
            &base[..],
            &[
                "--dry-run",
                "--k",
                "1",
                "--temperature",
                "0",
                "--output",
                single_path,
            ],
        ]
        .concat(),
    );
    let single = items(&single);
    assert_eq!(single.len(), 1);
    assert_eq!(
        single[0]["candidates"].as_array().map(Vec::len),
        Some(1),
        "{}",
        single[0]
    );
    let err = run_err(&["--to-project", "3"]);
    assert!(err.contains("--token"), "{err}");
    // Without --to-project or --dry-run, clap says what is missing.
    let out = trainer(&base);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--to-project"));

    // A bad prompts file is reported by line before any model work.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"prompt\": \"fine\"}\n{\"promt\": \"typo\"}\n{\"prompt\": [{\"role\": \"assistant\", \"content\": \"x\"}]}\n",
    )
    .expect("write");
    let err = trainer_err(&[
        "generate-candidates",
        "--model",
        &ckpt,
        "--prompts",
        bad.to_str().expect("utf8"),
        "--dry-run",
    ]);
    assert!(
        err.contains("2 bad line(s)") && err.contains("bad.jsonl:2") && err.contains("bad.jsonl:3"),
        "{err}"
    );
}
