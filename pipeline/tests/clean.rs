//! The whole cleaning run on a small mixed corpus: counts, outputs, determinism across thread
//! counts, and resume.

use std::path::{Path, PathBuf};

use pipeline::clean::run;
use pipeline::clean::work::{KeptDoc, read_jsonl_zst};
use pipeline::config::PipelineConfig;
use polars::prelude::*;

use crate::helpers::{good_chinese, good_english, warc};

/// Writes the corpus and returns a config reading it into `out`.
fn corpus(dir: &Path, out: &Path) -> PipelineConfig {
    let mut lines = Vec::new();
    let mut push = |id: &str, text: &str| {
        lines.push(serde_json::json!({"id": id, "text": text, "url": format!("https://example.test/{id}")}).to_string())
    };
    for i in 0..6 {
        push(&format!("en-{i}"), &good_english(i));
    }
    for i in 0..4 {
        push(&format!("zh-{i}"), &good_chinese(i));
    }
    push(
        "en-exact-dup",
        &good_english(2).to_uppercase().replace("\n\n", "\n\n  "),
    );
    push("en-near-dup", &good_english(3).replacen("The ", "One ", 1));
    push("zh-near-dup", &good_chinese(1).replacen("的", "之", 1));
    push("spam", &"cheap pills buy now\n".repeat(40));
    push(
        "german",
        "Der schnelle braune Fuchs springt über den faulen Hund. "
            .repeat(20)
            .as_str(),
    );
    push(
        "contact",
        &format!("{} Write to someone@example.org today.", good_english(7)),
    );
    lines.push("{broken json".into());
    std::fs::write(dir.join("mixed.jsonl"), lines.join("\n")).expect("write corpus");
    let text = format!(
        r#"
[input]
paths = ["{}", "{}"]

[output]
dir = "{}"

[run]
batch_size = 4
"#,
        dir.join("mixed.jsonl").display(),
        warc("resiliparse-cc-2020-34.warc.gz").display(),
        out.display()
    );
    let path = dir.join("clean.toml");
    std::fs::write(&path, text).expect("write config");
    PipelineConfig::load(&path).expect("config loads")
}

fn kept(out: &Path) -> Vec<KeptDoc> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(out.join("kept"))
        .expect("kept dir")
        .map(|e| e.expect("entry").path())
        .collect();
    parts.sort();
    parts
        .iter()
        .flat_map(|p| {
            read_jsonl_zst::<KeptDoc>(p)
                .expect("read")
                .map(|d| d.expect("doc"))
        })
        .collect()
}

fn docs_table(out: &Path, index: usize) -> DataFrame {
    let file =
        std::fs::File::open(out.join(format!("docs-{index:05}.parquet"))).expect("docs table");
    ParquetReader::new(file).finish().expect("parquet")
}

/// A text column of a docs table.
fn text_column(table: &DataFrame, name: &str) -> StringChunked {
    table
        .column(name)
        .unwrap_or_else(|e| panic!("column {name}: {e}"))
        .str()
        .unwrap_or_else(|e| panic!("column {name} is not text: {e}"))
        .clone()
}

#[test]
fn clean_run_filters_dedups_and_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("run");
    let mut config = corpus(tmp.path(), &out);
    config.run.threads = 2;
    let summary = run(&config, false).expect("run");

    // 16 JSONL documents (one line is broken) + 16 WARC responses.
    assert_eq!(summary.docs_in, 32);
    // Real crawled HTML has misnested tags: counted in the summary, not logged page by page.
    assert!(
        summary.odd_markup_pages > 0 && summary.odd_markup_pages <= 16,
        "{}",
        summary.odd_markup_pages
    );
    assert!(
        summary
            .render()
            .contains("HTML pages with odd markup (repaired)")
    );
    // Raw input as stored (the gzipped WARC counts compressed), beside the text it gave.
    let stored: u64 = config
        .input
        .paths
        .iter()
        .map(|p| std::fs::metadata(p).expect("input").len())
        .sum();
    assert_eq!(summary.input_bytes, stored);
    assert!(summary.render().contains(&format!(
        "raw input {:.1} MB as stored",
        stored as f64 / 1e6
    )));
    assert_eq!(summary.read_issues, 1);
    assert!(
        summary.issues[0].contains("mixed.jsonl: line 17: invalid JSON"),
        "{:?}",
        summary.issues
    );
    let ids: Vec<String> = kept(&out).into_iter().map(|d| d.id).collect();
    for i in 0..6 {
        assert!(
            ids.contains(&format!("en-{i}")),
            "en-{i} missing from {ids:?}"
        );
    }
    for i in 0..4 {
        assert!(
            ids.contains(&format!("zh-{i}")),
            "zh-{i} missing from {ids:?}"
        );
    }
    for gone in [
        "en-exact-dup",
        "en-near-dup",
        "zh-near-dup",
        "spam",
        "german",
    ] {
        assert!(
            !ids.contains(&gone.to_string()),
            "{gone} should be dropped: {ids:?}"
        );
    }
    assert_eq!(summary.dropped_by.get("exact_dedup"), Some(&1));
    assert_eq!(summary.dropped_by.get("minhash_dedup"), Some(&2));
    assert_eq!(summary.docs_out as usize, ids.len());
    // Text bytes out: those of the documents written (stage 3 parses only the ones dedup
    // drops, and takes them from the input's kept bytes).
    let kept_bytes: usize = kept(&out).iter().map(|d| d.text.len()).sum();
    assert_eq!(summary.text_bytes_out as usize, kept_bytes);
    // Time per stage, for the benchmark's per-stage figures.
    for stage in [
        "read",
        "extract",
        "normalize",
        "langid",
        "filters",
        "pii",
        "dedup_keys",
        "write_work",
    ] {
        assert!(
            summary.stage_seconds.get(stage).is_some_and(|s| *s > 0.0),
            "{stage} not timed: {:?}",
            summary.stage_seconds
        );
    }
    let contact = kept(&out)
        .into_iter()
        .find(|d| d.id == "contact")
        .expect("contact kept");
    assert!(
        contact.text.contains("Write to <EMAIL> today."),
        "{}",
        contact.text
    );

    // One docs-table row per input document with scores and the stage that dropped it.
    let table = docs_table(&out, 0);
    assert_eq!(table.height(), 16);
    let dropped = text_column(&table, "dropped_by");
    let ids_col = text_column(&table, "id");
    let row = |id: &str| {
        (0..table.height())
            .find(|&i| ids_col.get(i) == Some(id))
            .expect(id)
    };
    assert_eq!(dropped.get(row("german")), Some("langid"));
    assert_eq!(dropped.get(row("en-exact-dup")), Some("exact_dedup"));
    assert_eq!(dropped.get(row("en-0")), None);
    let words = table
        .column("gopher_words")
        .expect("col")
        .f64()
        .expect("f64")
        .clone();
    assert!(
        words.get(row("german")).is_some(),
        "filters score dropped documents too"
    );
    let sizes = table
        .column("minhash_cluster_size")
        .expect("col")
        .u64()
        .expect("u64")
        .clone();
    assert_eq!(sizes.get(row("en-3")), Some(2));
    assert!(out.join("summary.json").exists());

    // The HTML report: one chart per distribution, the counts in the summary table.
    let html_path = tmp.path().join("report.html");
    pipeline::report::report(&out, None, &html_path).expect("report");
    let html = std::fs::read_to_string(&html_path).expect("html");
    assert_eq!(html.matches("<svg").count(), 5, "five charts");
    assert!(
        html.contains("<th>documents in</th><td class=\"n\">32</td>"),
        "{html}"
    );
    assert!(html.contains("<th>dropped by exact_dedup</th><td class=\"n\">1</td>"));
    assert!(
        html.contains(">\ncmn\n</text>") && html.contains(">\nlangid\n</text>"),
        "axis labels"
    );

    // Same survivors with one thread.
    let out1 = tmp.path().join("run1");
    let mut one = config.clone();
    one.output.dir = out1.clone();
    one.run.threads = 1;
    run(&one, false).expect("run 1 thread");
    assert_eq!(kept(&out1), kept(&out));

    // The same bytes with both inputs processed at once (the second on a helper thread
    // while the first is on this one, or the other way round).
    let out2 = tmp.path().join("run-at-once");
    let mut both = config.clone();
    both.output.dir = out2.clone();
    both.run.inputs_at_once = 2;
    let at_once = run(&both, false).expect("run 2 inputs at once");
    assert_eq!(at_once.docs_out, summary.docs_out);
    for name in ["kept", "."] {
        let mut files: Vec<_> = std::fs::read_dir(out.join(name))
            .expect("outputs")
            .map(|e| e.expect("entry").file_name())
            .filter(|n| {
                let n = n.to_string_lossy();
                n.starts_with("part-") || n.starts_with("docs-")
            })
            .collect();
        files.sort();
        assert!(files.len() >= 2, "{name}: {files:?}");
        for file in files {
            let (a, b) = (out.join(name).join(&file), out2.join(name).join(&file));
            assert!(
                std::fs::read(&a).expect("read") == std::fs::read(&b).expect("read"),
                "{} differs",
                b.display()
            );
        }
    }

    // Resume: everything is skipped; losing one done marker redoes only that input.
    let again = run(&config, false).expect("rerun");
    assert_eq!(again.inputs_resumed, 2);
    assert_eq!(kept(&out), kept(&out1));
    std::fs::remove_file(out.join("work/input-00001.done.json")).expect("remove marker");
    let partial = run(&config, false).expect("resume");
    assert_eq!(partial.inputs_resumed, 1);
    assert_eq!(partial.docs_out, summary.docs_out);
}

#[test]
fn config_typos_are_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("bad.toml");
    std::fs::write(
        &path,
        "[input]\npaths = [\"x\"]\n[output]\ndir = \"o\"\n[filters.c4]\nmin_words_per_lin = 3\n",
    )
    .expect("write");
    let err = PipelineConfig::load(&path).expect_err("typo");
    assert!(format!("{err:#}").contains("min_words_per_lin"), "{err:#}");
}

#[test]
fn an_unreadable_input_is_reported_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let good = tmp.path().join("good.jsonl");
    std::fs::write(
        &good,
        serde_json::json!({"id": "g", "text": good_english(1)}).to_string(),
    )
    .expect("write");
    let odd = tmp.path().join("notes.xyz");
    std::fs::write(&odd, "what format is this?").expect("write");
    let path = tmp.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[input]\npaths = [\"{}\", \"{}\"]\n[output]\ndir = \"{}\"\n",
            good.display(),
            odd.display(),
            tmp.path().join("out").display()
        ),
    )
    .expect("config");
    let summary = run(&PipelineConfig::load(&path).expect("config"), false).expect("run");
    assert_eq!(summary.docs_in, 1);
    assert_eq!(summary.docs_out, 1);
    assert_eq!(summary.read_issues, 1);
    assert!(
        summary.issues[0].contains("notes.xyz") && summary.issues[0].contains("set input.format"),
        "{:?}",
        summary.issues
    );
}

#[test]
fn stage_isolated_runs_as_the_benchmark_makes_them() {
    let tmp = tempfile::tempdir().expect("tempdir");

    // Filters only: no language drops, no dedup; the kept documents are written by stage 1
    // and are exactly the rows nothing dropped.
    let out = tmp.path().join("filters");
    let mut config = corpus(tmp.path(), &out);
    config.langid.enabled = false;
    config.pii.email = false;
    config.pii.ip = false;
    config.dedup.exact = false;
    config.dedup.minhash.enabled = false;
    let summary = run(&config, false).expect("filters run");
    assert_eq!(summary.dropped_by.get("langid"), None);
    assert_eq!(summary.dropped_by.get("exact_dedup"), None);
    let ids: Vec<String> = kept(&out).into_iter().map(|d| d.id).collect();
    assert!(ids.contains(&"en-exact-dup".to_string()), "{ids:?}");
    assert_eq!(summary.docs_out as usize, ids.len());
    let table = docs_table(&out, 0);
    let dropped = text_column(&table, "dropped_by");
    let table_ids = text_column(&table, "id");
    let undropped: Vec<&str> = (0..table.height())
        .filter(|&i| dropped.get(i).is_none())
        .filter_map(|i| table_ids.get(i))
        .collect();
    let jsonl_ids: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| undropped.contains(id))
        .collect();
    assert_eq!(jsonl_ids, undropped);
    let contact = kept(&out)
        .into_iter()
        .find(|d| d.id == "contact")
        .expect("contact");
    assert!(contact.text.contains("someone@example.org"), "PII is off");
    // Resume finds the kept documents where stage 1 left them.
    let again = run(&config, false).expect("rerun");
    assert_eq!(again.inputs_resumed, 2);
    assert_eq!(again.docs_out, summary.docs_out);

    // MinHash only: the near duplicate and the upper-cased copy go, by MinHash alone.
    let out = tmp.path().join("minhash");
    let mut config = corpus(tmp.path(), &out);
    config.langid.enabled = false;
    config.filters.gopher_quality.enabled = false;
    config.filters.gopher_repetition.enabled = false;
    config.filters.c4.enabled = false;
    config.filters.fineweb.enabled = false;
    config.dedup.exact = false;
    let summary = run(&config, false).expect("minhash run");
    let ids: Vec<String> = kept(&out).into_iter().map(|d| d.id).collect();
    for gone in ["en-exact-dup", "en-near-dup"] {
        assert!(!ids.contains(&gone.to_string()), "{gone} kept: {ids:?}");
    }
    assert!(ids.contains(&"en-3".to_string()) && ids.contains(&"german".to_string()));
    assert!(
        summary
            .dropped_by
            .get("minhash_dedup")
            .is_some_and(|n| *n >= 2)
    );

    // Candidates are checked: a text with one word in 40 changed (Jaccard about 0.9) goes
    // with the default check, and stays when identical signatures are asked for.
    let original = good_english(5);
    let variant: Vec<String> = original
        .split(' ')
        .enumerate()
        .map(|(i, w)| {
            if i % 40 == 7 {
                format!("changed{i}")
            } else {
                w.to_string()
            }
        })
        .collect();
    let input = tmp.path().join("pair.jsonl");
    let lines = [
        serde_json::json!({"id": "original", "text": original}).to_string(),
        serde_json::json!({"id": "variant", "text": variant.join(" ")}).to_string(),
    ];
    std::fs::write(&input, lines.join("\n")).expect("write");
    config.input.paths = vec![input.display().to_string()];
    for (name, min_similarity, variant_kept) in [("checked", 0.6, false), ("strict", 1.0, true)] {
        let out = tmp.path().join(name);
        config.output.dir = out.clone();
        config.dedup.minhash.min_similarity = min_similarity;
        run(&config, false).expect("run");
        let ids: Vec<String> = kept(&out).into_iter().map(|d| d.id).collect();
        assert_eq!(
            ids.contains(&"variant".to_string()),
            variant_kept,
            "{name}: {ids:?}"
        );
    }
}

#[test]
fn undetermined_language_is_its_own_label_that_keep_lists_can_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lines = [
        serde_json::json!({"id": "english", "text": good_english(1)}),
        // No letters: whatlang has no guess at all.
        serde_json::json!({"id": "digits", "text": "1984 2001 3.14159 2.71828 42 -- 1234 5678 +/- 90%"}),
        // A guess below the default min_score of 0.5.
        serde_json::json!({"id": "mixed", "text": "ok sí ja oui da"}),
    ];
    let input = tmp.path().join("docs.jsonl");
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&input, text.join("\n")).expect("write");
    let run_with = |name: &str, langid: &str| -> DataFrame {
        let out = tmp.path().join(name);
        let config = format!(
            "[input]\npaths = [\"{}\"]\n[output]\ndir = \"{}\"\n[langid]\n{langid}\n",
            input.display(),
            out.display()
        );
        let path = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&path, config).expect("config");
        run(&PipelineConfig::load(&path).expect("config loads"), false).expect("run");
        docs_table(&out, 0)
    };
    let column = |table: &DataFrame, name: &str, id: &str| -> Option<String> {
        let ids = text_column(table, "id");
        let row = (0..table.height())
            .find(|&i| ids.get(i) == Some(id))
            .expect(id);
        text_column(table, name).get(row).map(str::to_string)
    };

    // keep = [] keeps every document, whatever its language score.
    let all = run_with("all", "keep = []\ndefault_min_score = 0.0");
    for id in ["english", "digits", "mixed"] {
        assert_ne!(
            column(&all, "dropped_by", id).as_deref(),
            Some("langid"),
            "{id}"
        );
    }
    assert_eq!(column(&all, "lang", "english").as_deref(), Some("eng"));
    assert_eq!(column(&all, "lang", "digits").as_deref(), Some("und"));
    assert_ne!(column(&all, "lang", "mixed"), None);

    // The default keep list and scores drop them, and the docs table says why.
    let default = run_with("default", "");
    assert_eq!(column(&default, "lang", "mixed").as_deref(), Some("und"));
    assert_eq!(column(&default, "dropped_by", "english"), None);
    for id in ["digits", "mixed"] {
        assert_eq!(
            column(&default, "dropped_by", id).as_deref(),
            Some("langid")
        );
        let reason = column(&default, "drop_reason", id).expect("reason");
        assert!(reason.contains("undetermined"), "{id}: {reason}");
    }
    assert!(
        column(&default, "drop_reason", "mixed")
            .is_some_and(|r| r.contains("best guess") && r.contains("< min_score 0.5")),
        "the reason names the guess and its threshold"
    );

    // A keep list can name `und`.
    let named = run_with("named", "keep = [\"und\"]");
    assert_eq!(
        column(&named, "dropped_by", "english").as_deref(),
        Some("langid")
    );
    assert_ne!(
        column(&named, "dropped_by", "digits").as_deref(),
        Some("langid")
    );
}

/// The configs shipped in `configs/pipeline/` load and pass their checks (a typo or a
/// renamed key there would stop a user at the first command), with the documented values.
#[test]
fn the_shipped_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/pipeline");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("configs/pipeline") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name == "tokenize.toml" {
            pipeline::tokenize::pretrain::TokenizeConfig::load(&path).expect("tokenize.toml");
        } else {
            let config = PipelineConfig::load(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(config.run.fetch_ahead, 8, "{name}");
        }
        names.push(name);
    }
    names.sort();
    assert_eq!(names, ["clean-web.toml", "demo.toml", "tokenize.toml"]);
}
