//! Object store requests of a split dedup run over the S3 server, as each task counts them in
//! its done marker (every task is its own `pipeline` process, so the counts are its own):
//! each stage stays within what its design allows, and after `clean` no stage makes a
//! request per input or per document.

use std::path::Path;
use std::process::{Command, Output};

use pipeline::storage::{RemoteObject, Transfer};

use crate::cluster::{new_bucket, s3_endpoint, upload_inputs};
use crate::cluster_dedup::dedup_corpus;

/// Signatures closer than this are read in one range (`dedup_remote::SIGNATURE_GAP`).
const SIGNATURE_GAP: u64 = 64 << 10;
/// Bytes read past a sectioned file's offsets in the same GET (`dedup_sections`).
const SECTION_PREFETCH: u64 = 64 << 10;

/// `pipeline ARGS` with its scratch directory in `scratch`.
fn pipeline_output(args: &[&str], scratch: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args)
        .env("JIELONG_SCRATCH", scratch)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run pipeline")
}

/// `pipeline ARGS`, which must succeed.
fn run(args: &[&str], scratch: &Path) {
    let out = pipeline_output(args, scratch);
    assert!(
        out.status.success(),
        "pipeline {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The summary task `index` of `stage` recorded in its done marker.
fn marker_summary(out: &str, stage: &str, index: usize, tasks: usize) -> serde_json::Value {
    let url = format!("{out}/tasks/{stage}-{index:05}-of-{tasks:05}.json");
    let bytes = pipeline::storage::read_small(Path::new(&url)).expect("marker");
    let marker: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    marker["summary"].clone()
}

/// The traffic task `index` of `stage` recorded in its done marker.
fn traffic(out: &str, stage: &str, index: usize, tasks: usize) -> Transfer {
    let summary = marker_summary(out, stage, index, tasks);
    serde_json::from_value(summary["object_store"].clone()).expect("traffic")
}

#[test]
fn each_stage_of_a_split_run_over_s3_stays_within_its_request_budget() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let scratch = dir.path().join("scratch");
    let inputs = dedup_corpus(dir.path(), 60);
    let bucket = new_bucket(&endpoint, "traffic");
    // The inputs are objects too: the clean stage reads each once, in one GET.
    let sizes = upload_inputs(&format!("s3://{bucket}/in"), &inputs);
    for n in [1usize, 3] {
        let out = format!("s3://{bucket}/out-{n}");
        let config = dir.path().join(format!("traffic-{n}.toml"));
        std::fs::write(
            &config,
            format!(
                "[input]\npaths = [\"s3://{bucket}/in/\"]\n\n[output]\ndir = \"{out}\"\n\n[run]\nbatch_size = 64\n\n[dedup]\nexact = true\nrun_entries = 500\n\n[dedup.minhash]\nenabled = true\n"
            ),
        )
        .expect("config");
        let config = config.display().to_string();
        for stage in ["clean", "pairs", "ship", "check", "components", "survivors"] {
            let tasks = if stage == "components" { 1 } else { n };
            for task in 0..tasks {
                let (i, count) = (task.to_string(), n.to_string());
                let args = ["clean", &config, "--task", &i, "--tasks", &count];
                run(&[&args[..], &["--stage", stage]].concat(), &scratch);
            }
        }
        // What a task owns: inputs i with i % n == t (in listing order).
        let owned = |t: usize| -> Vec<u64> {
            sizes
                .iter()
                .enumerate()
                .filter(|(i, _)| i % n == t)
                .map(|(_, &s)| s)
                .collect()
        };
        // Ranges of a task's signatures pack further apart than the gap, at most.
        let sigs_ranges = |t: usize| -> u64 {
            let url = format!("{out}/work/dedup/sigs-task-{t:05}-of-{n:05}.bin");
            let size = RemoteObject::parse(&url)
                .and_then(|o| o.read_all())
                .expect("sigs pack")
                .len() as u64;
            size.div_ceil(SIGNATURE_GAP).max(1)
        };
        let n64 = n as u64;
        for t in 0..n {
            let what = format!("{n} tasks, task {t}");
            // clean: its marker looked up (one HEAD), the inputs listed (one LIST), each of
            // its inputs in one GET and nothing else; three packs and config.json written,
            // each in one PUT (its marker, written with these counts, comes after them).
            let clean = traffic(&out, "clean", t, n);
            let mine = owned(t);
            assert_eq!(clean.head_requests, 1, "clean, {what}: {clean:?}");
            assert_eq!(clean.list_requests, 1, "clean, {what}: {clean:?}");
            assert_eq!(clean.get_requests, mine.len() as u64, "clean, {what}");
            assert_eq!(clean.input_bytes_read, mine.iter().sum::<u64>(), "{what}");
            assert_eq!(clean.bytes_read, clean.input_bytes_read, "clean, {what}");
            assert_eq!(clean.put_requests, 4, "clean, {what}: {clean:?}");
            assert_eq!(clean.multipart_requests, 0, "clean, {what}");
            // pairs: one LIST of the markers, its clean marker, then per clean task the keys
            // pack's header and its partitions' range (no signature); its pairs pack and
            // groups file written (every task has MinHash partitions here).
            let pairs = traffic(&out, "pairs", t, n);
            assert_eq!((pairs.list_requests, pairs.head_requests), (1, 0), "{what}");
            assert_eq!(pairs.get_requests, 1 + 2 * n64, "pairs, {what}: {pairs:?}");
            assert_eq!(pairs.put_requests, 2, "pairs, {what}");
            // ship: the markers listed, its pairs marker, per groups file its section's
            // offsets with 64 KiB past them (and the rest of a section ending further),
            // its own signatures' ranges; one file written. check: the same with the
            // shipped files (its groups come in its own ship task's file) instead of the
            // groups files.
            for (stage, kind) in [("ship", "groups"), ("check", "shipped")] {
                let x = traffic(&out, stage, t, n);
                assert_eq!(
                    (x.list_requests, x.head_requests),
                    (1, 0),
                    "{stage}, {what}"
                );
                let sections: u64 = (0..n).map(|w| section_reads(&out, kind, w, n, t)).sum();
                let least = 1 + sections;
                // A single task ships nothing: no signature read.
                let most = if stage == "ship" && n == 1 {
                    least
                } else {
                    least + sigs_ranges(t)
                };
                assert!(
                    (least..=most).contains(&x.get_requests),
                    "{stage}, {what}: {x:?}, {least} to {most}"
                );
                assert_eq!(x.put_requests, 1, "{stage}, {what}");
            }
            // survivors: the markers listed, the components marker, its clean task's kept
            // pack and its clusters pack; per input its kept part and docs table written.
            let survivors = traffic(&out, "survivors", t, n);
            assert_eq!(
                (survivors.list_requests, survivors.head_requests),
                (1, 0),
                "survivors, {what}: {survivors:?}"
            );
            assert_eq!(
                survivors.get_requests, 3,
                "survivors, {what}: {survivors:?}"
            );
            assert_eq!(survivors.put_requests, 2 * mine.len() as u64, "{what}");
        }
        // components: the markers listed, every check marker, pairs pack and edges file; a
        // clusters pack per survivors task written.
        let components = traffic(&out, "components", 0, 1);
        assert_eq!(
            (components.list_requests, components.head_requests),
            (1, 0),
            "{n} tasks: {components:?}"
        );
        assert_eq!(
            components.get_requests,
            3 * n64,
            "{n} tasks: {components:?}"
        );
        assert_eq!(components.put_requests, n64, "{n} tasks: {components:?}");
    }
}

/// GETs a reader of section `k` of writer `w`'s sectioned file makes: one for the offsets
/// and 64 KiB past them, a second when its section ends further.
fn section_reads(out: &str, kind: &str, w: usize, n: usize, k: usize) -> u64 {
    let url = format!("{out}/work/dedup/{kind}-task-{w:05}-of-{n:05}.bin");
    let bytes = RemoteObject::parse(&url)
        .and_then(|o| o.read_all())
        .expect("sectioned file");
    let word = |i: usize| u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("word"));
    assert_eq!(word(0), n as u64, "{url}: sections");
    // The count and the offsets up to k + 1.
    let header = 8 + 8 * (k as u64 + 2);
    if word(2 + k) > header + SECTION_PREFETCH {
        2
    } else {
        1
    }
}

/// A config naming its input objects one by one (as a crawl's path list does): each task
/// finds them in one listing per parent prefix, not in a HEAD per object, keeps the order
/// given, expands a prefix named without its `/`, and names an object that is not there.
#[test]
fn inputs_named_one_by_one_are_found_by_listing_their_parents_not_a_head_each() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let scratch = dir.path().join("scratch");
    let inputs = dedup_corpus(dir.path(), 30);
    let bucket = new_bucket(&endpoint, "named");
    // Inputs under two parents, the last one alone under `in/c/`.
    let mut named = Vec::new();
    for (i, path) in inputs.iter().enumerate() {
        let path = Path::new(path);
        let name = path.file_name().expect("name").to_string_lossy();
        let parent = match i {
            _ if i + 1 == inputs.len() => "c",
            _ if i % 2 == 0 => "a",
            _ => "b",
        };
        let url = format!("s3://{bucket}/in/{parent}/{name}");
        RemoteObject::parse(&url)
            .and_then(|o| o.upload(path))
            .expect("upload input");
        if parent != "c" {
            named.push(url);
        }
    }
    assert!(named.len() >= 4, "{} inputs", inputs.len());
    // Given in reverse: the order given is kept; `in/c` is a prefix named without its `/`.
    named.reverse();
    let mut patterns = named.clone();
    patterns.push(format!("s3://{bucket}/in/c"));
    let found = pipeline::readers::expand_inputs(&patterns, Default::default()).expect("expand");
    let found: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(found[..named.len()], named[..]);
    assert_eq!(found.len(), named.len() + 1);
    assert!(found[named.len()].starts_with(&format!("s3://{bucket}/in/c/")));
    let missing = format!("s3://{bucket}/in/a/not-there.jsonl");
    let err =
        pipeline::readers::expand_inputs(&[named[0].clone(), missing.clone()], Default::default())
            .expect_err("a missing object");
    assert!(format!("{err:#}").contains(&missing), "{err:#}");

    let out = format!("s3://{bucket}/out");
    let config = dir.path().join("named.toml");
    let list = patterns
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &config,
        format!(
            "[input]\npaths = [{list}]\n\n[output]\ndir = \"{out}\"\n\n[dedup]\nexact = true\n"
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    run(
        &[
            "clean", &config, "--task", "0", "--tasks", "1", "--stage", "clean",
        ],
        &scratch,
    );
    let clean = traffic(&out, "clean", 0, 1);
    // Its marker looked up (one HEAD); `in/a/` and `in/b/` listed once each (the named
    // objects' parents), `in/` (where `in/c` is found to be a prefix) and `in/c/` once.
    assert_eq!(clean.head_requests, 1, "{clean:?}");
    assert_eq!(clean.list_requests, 4, "{clean:?}");
    assert_eq!(clean.get_requests, inputs.len() as u64, "{clean:?}");
}

/// A clean task that failed on a corrupt input and is rerun on the same disk resumes the
/// inputs it had finished from their work files, each compared with its listing (the same
/// size?) and not fetched again; only the fixed input is read. Inputs are fetched ahead of
/// processing (`run.fetch_ahead`, 8 by default), so this also runs the prefetch against the
/// server.
#[test]
fn a_clean_task_rerun_on_its_disk_fetches_only_the_inputs_it_had_not_finished() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let scratch = dir.path().join("scratch");
    // Less the clipped WARC, which `fail_on_error` would fail on.
    let mut inputs = dedup_corpus(dir.path(), 30);
    inputs.retain(|p| !p.ends_with("resiliparse-clipped.warc.gz"));
    let bucket = new_bucket(&endpoint, "rerun");
    upload_inputs(&format!("s3://{bucket}/in"), &inputs);
    // Listed last: the good inputs are done when the task fails on it.
    let good_line = serde_json::json!({"id": "z-1", "text": "a fixed line"}).to_string();
    let bad = RemoteObject::parse(&format!("s3://{bucket}/in/zz-bad.jsonl")).expect("url");
    bad.put(format!("{good_line}\n{{\"id\": broken\n").into_bytes())
        .expect("upload");
    let write_config = |out: &str| {
        let config = dir
            .path()
            .join(format!("{}.toml", out.rsplit('/').next().unwrap_or("x")));
        std::fs::write(
            &config,
            format!(
                "[input]\npaths = [\"s3://{bucket}/in/\"]\n\n[output]\ndir = \"{out}\"\n\n[run]\nfail_on_error = true\n\n[dedup]\nexact = true\n"
            ),
        )
        .expect("config");
        config.display().to_string()
    };
    fn args(config: &str) -> [&str; 8] {
        [
            "clean", config, "--task", "0", "--tasks", "1", "--stage", "clean",
        ]
    }
    let out = format!("s3://{bucket}/out");
    let config = write_config(&out);
    let rerun = args(&config);
    let failed = pipeline_output(&rerun, &scratch);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        !failed.status.success() && stderr.contains("zz-bad.jsonl: line 2"),
        "{stderr}"
    );

    let fixed = format!("{good_line}\n");
    bad.put(fixed.clone().into_bytes()).expect("fix");
    run(&rerun, &scratch);
    let clean = traffic(&out, "clean", 0, 1);
    assert_eq!(clean.input_bytes_read, fixed.len() as u64, "{clean:?}");
    assert_eq!(clean.get_requests, 1, "{clean:?}");
    // The marker's lookup only: each input with a done record is compared by the size its
    // listing gave (the fixed one's has changed, so it is read again), not by a HEAD each.
    assert_eq!(clean.head_requests, 1, "{clean:?}");
    // The same task run afresh over the fixed inputs counts the same documents.
    let fresh_out = format!("s3://{bucket}/fresh");
    let fresh_config = write_config(&fresh_out);
    run(&args(&fresh_config), &scratch);
    let (resumed, fresh) = (
        marker_summary(&out, "clean", 0, 1),
        marker_summary(&fresh_out, "clean", 0, 1),
    );
    assert_eq!(resumed["inputs_resumed"], inputs.len(), "{resumed}");
    assert_eq!(fresh["inputs_resumed"], 0, "{fresh}");
    for field in [
        "inputs",
        "docs_in",
        "docs_out",
        "text_bytes_in",
        "input_bytes",
    ] {
        assert_eq!(resumed[field], fresh[field], "{field}: {resumed} {fresh}");
    }
    assert!(
        resumed["seconds"]["fetch_wait"].as_f64().is_some(),
        "{resumed}"
    );
}

/// A download is one GET up to a part's size, else ranged GETs of a part each, several at a
/// time, written at their offsets: the object's bytes whatever its size (an empty object, one
/// byte, a part less one, one part, one more, and several parts with a short last one).
#[test]
fn downloads_in_ranged_parts_give_the_object_bytes() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = new_bucket(&endpoint, "parts");
    let part = 64 << 10;
    for size in [0, 1, part - 1, part, part + 1, 3 * part + part / 2] {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
        let object = RemoteObject::parse(&format!("s3://{bucket}/o-{size}")).expect("url");
        object.put(bytes.clone()).expect("upload");
        let local = dir.path().join(format!("o-{size}"));
        let (got, requests) = object.download_in_parts(&local, part, 3).expect("download");
        assert_eq!(got, size, "size {size}");
        assert_eq!(requests, size.div_ceil(part).max(1), "size {size}");
        assert!(std::fs::read(&local).expect("read") == bytes, "size {size}");
    }
}

/// The tokenizer trainer reads `s3://` inputs one fetched ahead of the one it reads, stops
/// after the input that reaches `max_bytes`, and leaves no copy behind (the one fetched for
/// nothing included).
#[test]
fn tokenizer_training_over_s3_stops_at_max_bytes_and_leaves_no_copies() {
    use pipeline::tokenize::train::{TokenizerTrainConfig, train_tokenizer};
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = new_bucket(&endpoint, "tokenizer");
    let inputs: Vec<String> = dedup_corpus(dir.path(), 40)
        .into_iter()
        .filter(|p| p.ends_with(".jsonl"))
        .collect();
    let sizes = upload_inputs(&format!("s3://{bucket}/in"), &inputs);
    assert!(inputs.len() >= 3, "{inputs:?}");
    let output = dir.path().join("tokenizer.json");
    let config = |max_bytes: u64| TokenizerTrainConfig {
        inputs: vec![format!("s3://{bucket}/in/")],
        reader: Default::default(),
        output: output.clone(),
        vocab_size: 400,
        min_frequency: 1,
        max_bytes,
        max_word_bytes: 0,
    };
    let all = train_tokenizer(&config(0), false).expect("train on everything");
    // Less text than the first input holds: it alone is read.
    let limit = sizes[0] / 4;
    let some = train_tokenizer(&config(limit), false).expect("train on a part");
    assert!(
        some.bytes >= limit && some.bytes < all.bytes,
        "{some:?} {all:?}"
    );
    assert!(some.documents < all.documents, "{some:?} {all:?}");
    let scratch = pipeline::storage::scratch_dir(&format!("tokenizer#{}", output.display()));
    let left: Vec<_> = walk(&scratch);
    assert!(left.is_empty(), "copies left behind: {left:?}");
}

/// The files under `dir` (none when it does not exist).
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `run.stream_inputs`: a clean task reads each input as it arrives, in one GET, with no
/// scratch copy (no staging directory is made), several at once, and writes the bytes the
/// task that fetched copies wrote.
#[test]
fn a_streamed_clean_task_reads_each_input_once_without_copies_and_writes_the_same_bytes() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let scratch = dir.path().join("scratch");
    let inputs = dedup_corpus(dir.path(), 30);
    let bucket = new_bucket(&endpoint, "stream");
    let sizes = upload_inputs(&format!("s3://{bucket}/in"), &inputs);
    let config = |name: &str, out: &str, run_table: &str| {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[input]\npaths = [\"s3://{bucket}/in/\"]\n\n[output]\ndir = \"{out}\"\n\n[run]\nbatch_size = 64\n{run_table}\n\n[dedup]\nexact = true\n\n[dedup.minhash]\nenabled = true\n"
            ),
        )
        .expect("config");
        config.display().to_string()
    };
    let streaming = "stream_inputs = true\ninputs_at_once = 2";
    // Tasks writing to the bucket: the requests and the packs.
    let task = |name: &str, run_table: &str| {
        let out = format!("s3://{bucket}/{name}");
        let config = config(name, &out, run_table);
        run(
            &[
                "clean", &config, "--task", "0", "--tasks", "1", "--stage", "clean",
            ],
            &scratch,
        );
        out
    };
    let fetched = task("fetched", "");
    let streamed = task("streamed", streaming);
    let traffic = traffic(&streamed, "clean", 0, 1);
    assert_eq!(traffic.get_requests, inputs.len() as u64, "{traffic:?}");
    assert_eq!(
        traffic.input_bytes_read,
        sizes.iter().sum::<u64>(),
        "{traffic:?}"
    );
    assert_eq!(traffic.head_requests, 1, "{traffic:?}");
    // (The kept pack holds the inputs' done records, with their timings.)
    for pack in [
        "work/dedup/keys-task-00000-of-00001.bin",
        "work/dedup/sigs-task-00000-of-00001.bin",
    ] {
        let read = |out: &str| {
            RemoteObject::parse(&format!("{out}/{pack}"))
                .and_then(|o| o.read_all())
                .expect("pack")
        };
        assert!(read(&streamed) == read(&fetched), "{pack} differs");
    }
    // One-process runs writing to a local directory, where the staging directory stays
    // (its copies removed): made when fetching, never when streaming; the same outputs.
    let local = |name: &str, run_table: &str| {
        let out = dir.path().join(name);
        let config = config(name, &out.display().to_string(), run_table);
        run(&["clean", &config], &scratch);
        out
    };
    let (fetched, streamed) = (
        local("fetched-local", ""),
        local("streamed-local", streaming),
    );
    assert!(
        fetched.join("work/inputs").is_dir(),
        "fetched copies are staged there"
    );
    assert!(
        !streamed.join("work/inputs").exists(),
        "a streaming run staged inputs"
    );
    let kept = |out: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(out.join("kept"))
            .expect("kept")
            .map(|e| e.expect("entry").path())
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read(p).expect("read"))
            .collect::<Vec<_>>()
    };
    assert!(!kept(&fetched).is_empty());
    assert!(kept(&streamed) == kept(&fetched), "kept documents differ");

    // A stream whose GET fails is an I/O error to its reader, and the failure is kept for
    // the run, which fails the task instead of counting a damaged input.
    let missing = RemoteObject::parse(&format!("s3://{bucket}/in/not-there.jsonl")).expect("url");
    let mut stream = missing.open_stream().expect("stream");
    let failure = stream.failure();
    let mut sink = Vec::new();
    assert!(std::io::Read::read_to_end(&mut stream, &mut sink).is_err());
    let error = format!("{:#}", failure.take().expect("the failure is kept"));
    assert!(error.contains("not-there.jsonl"), "{error}");
}
