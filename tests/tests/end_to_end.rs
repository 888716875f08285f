//! The whole path on the corpus shipped in `data/demo` (English and Chinese documents and a
//! real Common Crawl WARC file), with the demo's own configs: pipeline -> tokenizer and
//! pretraining shards -> a tiny model pretrained on the CPU until it beats the unigram
//! baseline -> the labeler on a real database -> the model's candidate answers posted into
//! it -> annotators (scripts/annotate_demo.py, over HTTP) write answers, compare, tie and
//! skip -> export -> sft and preference datasets -> SFT then DPO -> a reward model and a
//! GRPO step it scores -> thumbs on the aligned model's single answers and KTO on them
//! (`thumbs_round`) -> Hugging Face export -> the aligned model's candidates back in the
//! labeler. Every hand-off is checked: counts,
//! ids and provenance preserved, nothing lost or duplicated between export and shards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use format::{Dataset, DatasetKind};
use jielong_tests::{LabelerSetup, ok, run_bin, serve, workspace_root};
use serde_json::Value;

use crate::demo_files::{
    annotate_demo, dataset_ids, demo_config, metrics, newest_checkpoint, project_items, read_json,
    read_jsonl,
};
use crate::thumbs_round::{Demo, thumbs_to_kto};

#[test]
fn a_corpus_becomes_an_aligned_model_through_the_labeler() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = tmp.path();
    let root = workspace_root();
    let s = |p: &Path| p.to_str().expect("utf8").to_string();

    // 1. Pipeline: clean, filter, dedup, train the tokenizer, write pretraining shards.
    let pipeline_config = demo_config("pipeline/demo.toml", run);
    ok(run_bin("pipeline", &["clean", &pipeline_config], &[]));
    let summary = read_json(&run.join("clean/summary.json"));
    // 1,400 English + 1,100 Chinese JSONL documents + 16 WARC responses.
    assert_eq!(summary["docs_in"], 2516, "{summary}");
    let kept = summary["docs_out"].as_u64().expect("docs_out");
    assert!(
        (1800..2516).contains(&kept),
        "the filters keep most of it and drop some: {summary}"
    );
    for stage in ["gopher_repetition", "langid"] {
        assert!(
            summary["dropped_by"][stage].as_u64().unwrap_or(0) > 0,
            "{stage} dropped nothing: {summary}"
        );
    }
    let tokenize = &summary["tokenize"];
    assert_eq!(
        tokenize["train_documents"].as_u64().expect("train")
            + tokenize["validation_documents"].as_u64().expect("val"),
        kept,
        "every kept document is in exactly one split: {tokenize}"
    );
    let tokenizer = run.join("tokenizer.json");
    let (train_ids, train_rows) =
        dataset_ids(&run.join("pretrain/train"), DatasetKind::Pretrain, "doc_id");
    let (val_ids, val_rows) =
        dataset_ids(&run.join("pretrain/val"), DatasetKind::Pretrain, "doc_id");
    assert_eq!(train_rows + val_rows, kept);
    let train_set: BTreeSet<&String> = train_ids.iter().collect();
    assert_eq!(train_set.len(), train_ids.len(), "no document twice");
    assert!(
        val_ids.iter().all(|id| !train_set.contains(id)),
        "no validation document in training"
    );
    assert!(
        train_ids.iter().any(|id| id.starts_with("towns-zh-"))
            && train_ids.iter().any(|id| id.starts_with("towns-en-")),
        "both languages reach the shards"
    );

    // 2. Pretraining until the validation loss is clearly below the unigram baseline.
    let pretrain_config = demo_config("trainer/demo.toml", run);
    ok(run_bin(
        "trainer",
        &[
            "pretrain",
            "--config",
            &pretrain_config,
            "--steps",
            "100",
            "--device",
            "cpu",
        ],
        &[],
    ));
    let lines = metrics(&run.join("model"));
    let eval = lines
        .iter()
        .rfind(|l| l["kind"] == "eval")
        .expect("an eval line");
    let (val, unigram) = (
        eval["val_loss"].as_f64().expect("val_loss"),
        eval["unigram_loss"].as_f64().expect("unigram_loss"),
    );
    assert!(
        val < unigram - 1.0,
        "validation loss {val} is not clearly below the unigram baseline {unigram}"
    );
    let base = newest_checkpoint(&run.join("model"));

    // 3. The labeler on its own database: accounts, an SFT project of the shipped prompts
    //    and an empty comparison project.
    let labeler = LabelerSetup::new("towns-answers", "towns-compare");
    let (admin, annotator) = (
        labeler.admin_token.as_str(),
        labeler.annotator_token.as_str(),
    );
    let (answers, compare) = (
        labeler.sft_project.as_str(),
        labeler.preference_project.as_str(),
    );
    let prompts_file = root.join("data/demo/prompts.jsonl");
    let prompts = read_jsonl(&prompts_file);
    assert_eq!(prompts.len(), 48);
    labeler.cli(&["import", "--project", "towns-answers", &s(&prompts_file)]);
    let server = serve(&labeler.database_url);
    let url = server.address.as_str();

    // 4. The pretrained model answers every prompt twice, into the comparison project.
    let generate = |model: &Path| {
        ok(run_bin(
            "trainer",
            &[
                "generate-candidates",
                "--model",
                &s(model),
                "--labeler",
                url,
                "--from-project",
                answers,
                "--to-project",
                compare,
                "--k",
                "2",
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
        ))
    };
    generate(&base);
    assert_eq!(project_items(url, admin, "towns-compare"), 48);

    // 5. Annotators at work, through the HTTP API.
    let actions_file = run.join("actions.json");
    let actions = annotate_demo(
        &[
            "--labeler",
            url,
            "--token",
            annotator,
            "--sft-project",
            answers,
            "--compare-project",
            compare,
            "--prompts",
            &s(&prompts_file),
        ],
        &actions_file,
    );
    let actions = actions.as_array().expect("actions");
    let of = |action: &str| -> Vec<&Value> {
        actions.iter().filter(|a| a["action"] == action).collect()
    };
    let (written, choices, skips) = (of("answer"), of("choice"), of("skip"));
    assert_eq!(written.len() + choices.len() + skips.len(), 96);
    assert!(!skips.is_empty(), "the annotator skips some items");
    let label = |c: &str| choices.iter().filter(|a| a["choice"] == c).count();
    let decided = label("a") + label("b");
    assert!(decided > 0, "some comparisons are decided: {actions:?}");
    assert!(
        label("tie") + label("both_bad") > 0,
        "some comparisons are ties or both bad: {actions:?}"
    );

    // 6. Export: exactly the labels given, nothing for the skipped items.
    let export = run.join("export");
    for project in ["towns-answers", "towns-compare"] {
        labeler.cli(&["export", "--project", project, "--out", &s(&export)]);
    }
    let sft_rows = read_jsonl(&export.join("towns-answers-sft.jsonl"));
    let pairs = read_jsonl(&export.join("towns-compare-pairs.jsonl"));
    let ties = read_jsonl(&export.join("towns-compare-ties.jsonl"));
    let exported_answers: BTreeMap<&str, &str> = sft_rows
        .iter()
        .map(|r| {
            let messages = r["messages"].as_array().expect("messages");
            let last = messages.last().expect("a message");
            assert_eq!(last["role"], "assistant");
            (
                r["meta"]["item"].as_str().expect("item"),
                last["content"].as_str().expect("content"),
            )
        })
        .collect();
    let given_answers: BTreeMap<&str, &str> = written
        .iter()
        .map(|a| {
            (
                a["external_id"].as_str().expect("id"),
                a["answer"].as_str().expect("answer"),
            )
        })
        .collect();
    assert_eq!(exported_answers, given_answers);
    assert_eq!(pairs.len(), decided);
    assert_eq!(ties.len(), label("tie") + label("both_bad"));
    for pair in &pairs {
        let item = pair["meta"]["item"].as_str().expect("item");
        let action = choices
            .iter()
            .find(|a| a["external_id"] == item)
            .unwrap_or_else(|| panic!("{item} was not decided"));
        assert_eq!(pair["chosen"][0]["content"], action["chosen"], "{item}");
        assert_eq!(pair["rejected"][0]["content"], action["rejected"], "{item}");
        let checkpoint = pair["meta"]["chosen_candidate"]["checkpoint"]
            .as_str()
            .expect("provenance: the checkpoint that wrote the answer");
        assert!(checkpoint.starts_with("model/step-"), "{checkpoint}");
    }

    // 7. The exports become datasets; every example keeps its record id, none is lost.
    let tokenize_chat = |kind: &str, input: &Path, output: &Path| {
        ok(run_bin(
            "pipeline",
            &[
                "tokenize-chat",
                "--kind",
                kind,
                "--tokenizer",
                &s(&tokenizer),
                "--output",
                &s(output),
                &s(input),
            ],
            &[],
        ))
    };
    let sft_data = run.join("round/sft");
    let preference_data = run.join("round/preference");
    tokenize_chat("sft", &export.join("towns-answers-sft.jsonl"), &sft_data);
    tokenize_chat(
        "preference",
        &export.join("towns-compare-pairs.jsonl"),
        &preference_data,
    );
    let (example_ids, sft_count) = dataset_ids(&sft_data, DatasetKind::Sft, "example_id");
    let export_ids: BTreeSet<&str> = sft_rows
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(sft_count as usize, sft_rows.len());
    assert_eq!(
        example_ids
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        export_ids
    );
    assert_eq!(example_ids.len(), export_ids.len(), "no example twice");
    let (pair_ids, pair_count) = dataset_ids(&preference_data, DatasetKind::Preference, "pair_id");
    assert_eq!(pair_count as usize, pairs.len());
    assert_eq!(
        pair_ids.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        pairs
            .iter()
            .map(|r| r["id"].as_str().expect("id"))
            .collect::<BTreeSet<_>>()
    );

    // The labeler's Parquet exports make the same datasets: same examples, same tokens.
    let parquet_export = run.join("export-parquet");
    for project in ["towns-answers", "towns-compare"] {
        labeler.cli(&[
            "export",
            "--project",
            project,
            "--out",
            &s(&parquet_export),
            "--format",
            "parquet",
        ]);
    }
    for (kind, file, from_jsonl, id_column) in [
        (
            DatasetKind::Sft,
            "towns-answers-sft",
            &sft_data,
            "example_id",
        ),
        (
            DatasetKind::Preference,
            "towns-compare-pairs",
            &preference_data,
            "pair_id",
        ),
    ] {
        let from_parquet = run.join(format!("round/{file}-from-parquet"));
        tokenize_chat(
            kind.as_str(),
            &parquet_export.join(format!("{file}.parquet")),
            &from_parquet,
        );
        let tokens = |dir: &Path| -> u64 {
            let dataset = Dataset::open_kind(dir, kind).expect("dataset opens");
            dataset.manifest().shards.iter().map(|s| s.tokens).sum()
        };
        assert_eq!(
            dataset_ids(&from_parquet, kind, id_column),
            dataset_ids(from_jsonl, kind, id_column),
            "{file}"
        );
        assert_eq!(tokens(&from_parquet), tokens(from_jsonl), "{file}");
    }

    // 8. SFT from the pretrained model, then DPO (LoRA) from the SFT model.
    let sft_config = demo_config("trainer/demo-sft.toml", run);
    ok(run_bin(
        "trainer",
        &[
            "sft",
            "--config",
            &sft_config,
            "--steps",
            "30",
            "--device",
            "cpu",
        ],
        &[],
    ));
    let sft_lines = metrics(&run.join("sft"));
    let sft_loss: Vec<f64> = sft_lines
        .iter()
        .filter(|l| l["kind"] == "train")
        .map(|l| l["loss"].as_f64().expect("loss"))
        .collect();
    assert_eq!(sft_loss.len(), 30);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&sft_loss[25..]) < mean(&sft_loss[..5]) * 0.7,
        "SFT loss falls: {sft_loss:?}"
    );
    let dpo_config = demo_config("trainer/demo-dpo.toml", run);
    ok(run_bin(
        "trainer",
        &[
            "dpo",
            "--config",
            &dpo_config,
            "--steps",
            "12",
            "--device",
            "cpu",
        ],
        &[],
    ));
    let dpo_lines = metrics(&run.join("dpo"));
    let dpo_train: Vec<&Value> = dpo_lines.iter().filter(|l| l["kind"] == "train").collect();
    assert_eq!(dpo_train.len(), 12);
    let margin = |l: &Value| l["margin"].as_f64().expect("margin");
    assert!(
        margin(dpo_train[11]) > margin(dpo_train[0]),
        "the implicit reward margin grows: {dpo_train:?}"
    );
    let aligned = newest_checkpoint(&run.join("dpo"));

    // 8b. A reward model on the comparisons, and a GRPO step it scores on the shipped
    // prompts (scripts/next-round).
    let reward_config = demo_config("trainer/demo-reward.toml", run);
    ok(run_bin(
        "trainer",
        &["reward", "--config", &reward_config, "--device", "cpu"],
        &[],
    ));
    let grpo_config = demo_config("trainer/demo-grpo.toml", run);
    let text = std::fs::read_to_string(&grpo_config).expect("grpo config");
    let prompts_at = format!("\"{}/data/demo/", root.display());
    std::fs::write(&grpo_config, text.replace("\"data/demo/", &prompts_at)).expect("write");
    ok(run_bin(
        "trainer",
        &[
            "grpo",
            "--config",
            &grpo_config,
            "--steps",
            "2",
            "--device",
            "cpu",
        ],
        &[],
    ));
    let grpo_train: Vec<Value> = metrics(&run.join("grpo"))
        .into_iter()
        .filter(|l| l["kind"] == "train")
        .collect();
    assert_eq!(grpo_train.len(), 2);
    for line in &grpo_train {
        let spread = line["reward_spread"].as_f64().expect("spread");
        assert!(
            line["reward"].as_f64().is_some_and(f64::is_finite) && spread > 0.0,
            "the reward model scores the answers apart: {line}"
        );
    }

    // 8c. Thumbs up / down on the aligned model's single answers -> KTO from it
    // (scripts/next-round): thumbs-up answers gain log-probability on thumbs-down ones.
    let (before, after) = thumbs_to_kto(&Demo {
        run,
        labeler: &labeler,
        url,
        aligned: &aligned,
    });
    assert!(
        after > before + 0.05,
        "KTO parts the thumbs: mean log-prob per token, up minus down, {before:.3} -> {after:.3}"
    );

    // 9. The aligned model in Hugging Face format, and its answers back in the labeler.
    let hf = run.join("hf");
    ok(run_bin(
        "trainer",
        &["export-hf", &s(&aligned), &s(&hf)],
        &[],
    ));
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(hf.join(file).is_file(), "{file} missing from the export");
    }
    assert_eq!(
        read_json(&hf.join("config.json"))["architectures"][0],
        "LlamaForCausalLM"
    );
    generate(&aligned);
    assert_eq!(
        project_items(url, admin, "towns-compare"),
        96,
        "a new checkpoint's answers are new comparisons"
    );
    drop(server);
}
