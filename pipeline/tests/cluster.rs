//! The pipeline on object storage and split into tasks: s3:// inputs and outputs against the
//! project's S3-compatible server (`scripts/s3 start`), and `--task i --tasks N` runs, give the
//! bytes of the one-process local run.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use pipeline::clean::{run, run_task};
use pipeline::config::PipelineConfig;
use pipeline::readers::{InputConfig, ReaderOptions};
use pipeline::shard::TaskSlice;
use pipeline::storage;
use pipeline::tokenize::pretrain::{TokenizeOptions, TrainTokenizerOptions};
use pipeline::tokenize::remote::tokenize_anywhere;

use crate::helpers::{corpus, good_english, trained_tokenizer, warc};

/// The S3 endpoint, or `None` (with the reason printed) when the server is not running;
/// under CI a missing server is a failure.
pub(crate) fn s3_endpoint() -> Option<String> {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true but AWS_ENDPOINT_URL is not set: start the server with scripts/s3 start"
            )
        }
        Err(_) => {
            eprintln!("skipped: AWS_ENDPOINT_URL is not set (eval \"$(scripts/s3 start)\")");
            None
        }
    }
}

/// Creates a fresh bucket (the S3 API call object_store does not make) and returns its name.
pub(crate) fn new_bucket(endpoint: &str, label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let bucket = format!("jielong-{label}-{}-{nanos}", std::process::id());
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stream = std::net::TcpStream::connect(&host).expect("connect to the S3 server");
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send CreateBucket");
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .expect("read CreateBucket");
    assert!(reply.starts_with("HTTP/1.1 200"), "CreateBucket: {reply}");
    bucket
}

/// Every file under `dir` (relative path -> bytes), without the work files and the parts of
/// a summary that depend on timing.
pub(crate) fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let path = entry.expect("entry").path();
            let rel = path
                .strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string();
            if rel == "work" || rel == "tasks" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if !rel.ends_with("summary.json") && !rel.ends_with("config.json") {
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

/// Uploads each of `inputs` under `prefix` (a URL) by its file name; their sizes in the order
/// of their names, the order a listing of the prefix gives.
pub(crate) fn upload_inputs(prefix: &str, inputs: &[impl AsRef<Path>]) -> Vec<u64> {
    let mut sizes = BTreeMap::new();
    for path in inputs {
        let path = path.as_ref();
        let name = path.file_name().expect("name").to_string_lossy();
        storage::RemoteObject::parse(&format!("{prefix}/{name}"))
            .and_then(|o| o.upload(path))
            .expect("upload input");
        sizes.insert(
            name.into_owned(),
            std::fs::metadata(path).expect("size").len(),
        );
    }
    sizes.into_values().collect()
}

/// Downloads every object under `url` that `local` has, into a map like `files`.
pub(crate) fn remote_files(
    url: &str,
    like: &BTreeMap<String, Vec<u8>>,
    scratch: &Path,
) -> BTreeMap<String, Vec<u8>> {
    like.keys()
        .map(|rel| {
            let path = PathBuf::from(format!("{url}/{rel}"));
            let local = storage::fetch_input(&path, &scratch.join(rel.replace('/', "_")))
                .unwrap_or_else(|e| panic!("fetching {rel}: {e:#}"));
            (rel.clone(), std::fs::read(local).expect("read"))
        })
        .collect()
}

pub(crate) fn write_corpus(dir: &Path) -> Vec<PathBuf> {
    let (jsonl, _) = corpus(dir, 24);
    let mut lines = String::new();
    for i in 0..5 {
        lines.push_str(
            &serde_json::json!({"id": format!("b-{i}"), "text": good_english(40 + i)}).to_string(),
        );
        lines.push('\n');
    }
    let second = dir.join("more.jsonl");
    std::fs::write(&second, lines).expect("write");
    let warc_copy = dir.join("cc.warc.gz");
    std::fs::copy(warc("cc-whirlwind.warc.gz"), &warc_copy).expect("copy warc");
    vec![jsonl, second, warc_copy]
}

pub(crate) fn clean_config(
    dir: &Path,
    inputs: &[String],
    out: &str,
    dedup: bool,
) -> PipelineConfig {
    let text = format!(
        "[input]\npaths = {inputs:?}\n\n[output]\ndir = \"{out}\"\n\n[run]\nbatch_size = 4\n\n[dedup]\nexact = {dedup}\n\n[dedup.minhash]\nenabled = {dedup}\n"
    );
    let path = dir.join(format!(
        "clean-{}.toml",
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    ));
    std::fs::write(&path, text).expect("write config");
    PipelineConfig::load(&path).expect("config loads")
}

#[test]
fn clean_and_tokenize_over_s3_give_the_local_bytes() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let scratch = dir.path().join("scratch");
    let inputs = write_corpus(dir.path());
    let bucket = new_bucket(&endpoint, "clean");
    let input_dir = dir.path().join("upload");
    std::fs::create_dir_all(&input_dir).expect("mkdir");
    for input in &inputs {
        std::fs::copy(input, input_dir.join(input.file_name().expect("name"))).expect("copy");
    }
    storage::upload_dir(&input_dir, &format!("s3://{bucket}/in"), &[], &[]).expect("upload inputs");

    // Clean, dedup on: local paths vs s3:// inputs (one object, a glob) and an s3:// output.
    let local_out = dir.path().join("local");
    let local_inputs: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    let local = clean_config(
        dir.path(),
        &local_inputs,
        &local_out.display().to_string(),
        true,
    );
    run(&local, false).expect("local run");
    let remote_inputs = vec![
        format!("s3://{bucket}/in/corpus.jsonl"),
        format!("s3://{bucket}/in/more.jsonl"),
        format!("s3://{bucket}/in/*.warc.gz"),
    ];
    let out_url = format!("s3://{bucket}/clean");
    let mut remote = clean_config(dir.path(), &remote_inputs, &out_url, true);
    // Its three inputs fetched ahead and processed at once (fetched copies handed to helper
    // threads), the local run's one at a time.
    remote.run.inputs_at_once = 3;
    run(&remote, false).expect("s3 run");
    let expected = files(&local_out);
    assert!(
        expected.keys().any(|k| k.starts_with("kept/")),
        "{:?}",
        expected.keys()
    );
    assert_eq!(remote_files(&out_url, &expected, &scratch), expected);
    assert!(storage::exists(Path::new(&format!("{out_url}/summary.json"))).expect("head"));
    // A done marker is created once: a second task with the same index cannot claim it.
    let marker = PathBuf::from(format!("{out_url}/tasks/clean-00000-of-00002.json"));
    storage::write_marker(&marker, b"{}").expect("first claim");
    let second = storage::write_marker(&marker, b"{}").expect_err("second claim");
    assert!(
        format!("{second:#}").contains("already exists"),
        "{second:#}"
    );

    // Tokenize the kept documents: s3:// kept files, tokenizer and dataset vs local ones.
    let tokenizer = trained_tokenizer(dir.path(), &inputs[0]);
    std::fs::copy(&tokenizer, input_dir.join("tokenizer.json")).expect("copy");
    storage::upload_dir(&input_dir, &format!("s3://{bucket}/tok"), &[], &[]).expect("upload");
    let options = |tokenizer: PathBuf, output: PathBuf| TokenizeOptions {
        tokenizer,
        output,
        train: None,
        max_shard_tokens: 2_000,
        overwrite: false,
        validation_fraction: 0.2,
        split_seed: 7,
        shuffle: None,
        batch_size: 8,
        max_piece_bytes: 100_000,
        part_bytes: 1,
    };
    let input = |paths: Vec<String>| InputConfig {
        paths,
        reader: ReaderOptions::default(),
    };
    let local_ds = dir.path().join("dataset");
    tokenize_anywhere(
        &input(vec![format!("{}/kept/*.jsonl.zst", local_out.display())]),
        &options(tokenizer.clone(), local_ds.clone()),
        false,
    )
    .expect("local tokenize");
    let ds_url = format!("s3://{bucket}/dataset");
    tokenize_anywhere(
        &input(vec![format!("{out_url}/kept/")]),
        &options(
            PathBuf::from(format!("s3://{bucket}/tok/tokenizer.json")),
            PathBuf::from(&ds_url),
        ),
        false,
    )
    .expect("s3 tokenize");
    let shards: BTreeMap<String, Vec<u8>> = files(&local_ds)
        .into_iter()
        .filter(|(k, _)| k.ends_with(".arrow") || k.ends_with("tokenizer.json"))
        .collect();
    assert!(
        shards.keys().any(|k| k.ends_with(".arrow")),
        "{:?}",
        shards.keys()
    );
    assert_eq!(remote_files(&ds_url, &shards, &scratch), shards);
    assert!(storage::exists(Path::new(&format!("{ds_url}/train/manifest.json"))).expect("head"));

    // With [tokenize.train] the tokenizer is trained first: on s3://, from the staged kept
    // files, and uploaded to its s3:// path; the same tokenizer and shards as locally.
    let train = |tokenizer: PathBuf, output: PathBuf| TokenizeOptions {
        train: Some(TrainTokenizerOptions {
            vocab_size: 400,
            min_frequency: 2,
            max_bytes: 1 << 30,
            max_word_bytes: 100_000_000,
        }),
        ..options(tokenizer, output)
    };
    let (local_tok, local_ds) = (dir.path().join("trained.json"), dir.path().join("trained"));
    tokenize_anywhere(
        &input(vec![format!("{}/kept/*.jsonl.zst", local_out.display())]),
        &train(local_tok.clone(), local_ds.clone()),
        false,
    )
    .expect("local train and tokenize");
    let (tok_url, ds_url) = (
        format!("s3://{bucket}/trained/tokenizer.json"),
        format!("s3://{bucket}/trained/dataset"),
    );
    tokenize_anywhere(
        &input(vec![format!("{out_url}/kept/")]),
        &train(PathBuf::from(&tok_url), PathBuf::from(&ds_url)),
        false,
    )
    .expect("s3 train and tokenize");
    let trained = storage::read_small(Path::new(&tok_url)).expect("the uploaded tokenizer");
    assert_eq!(trained, std::fs::read(&local_tok).expect("local tokenizer"));
    let shards: BTreeMap<String, Vec<u8>> = files(&local_ds)
        .into_iter()
        .filter(|(k, _)| k.ends_with(".arrow") || k.ends_with("tokenizer.json"))
        .collect();
    assert!(shards.keys().any(|k| k.ends_with(".arrow")));
    assert_eq!(
        remote_files(&ds_url, &shards, &scratch.join("trained")),
        shards
    );
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let Some(_) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = clean_config(
        dir.path(),
        &["s3://no-such-bucket-jielong/x/*.jsonl".into()],
        &dir.path().join("o").display().to_string(),
        false,
    );
    let err = run(&config, false).expect_err("no bucket");
    assert!(
        format!("{err:#}").contains("no-such-bucket-jielong"),
        "{err:#}"
    );
}

#[test]
fn tasks_split_the_inputs_and_give_the_one_process_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = write_corpus(dir.path());
    let paths: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    let whole_out = dir.path().join("whole");
    run(
        &clean_config(dir.path(), &paths, &whole_out.display().to_string(), false),
        false,
    )
    .expect("one process");
    let split_out = dir.path().join("split");
    let split = clean_config(dir.path(), &paths, &split_out.display().to_string(), false);
    // Task 1 first: the split must not depend on which task lists the inputs first.
    for task in [1, 0] {
        let summary =
            run_task(&split, false, Some(TaskSlice::new(task, 2).expect("slice"))).expect("task");
        assert_eq!(summary.inputs, if task == 0 { 2 } else { 1 });
    }
    assert!(split_out.join("tasks/clean-00001-of-00002.json").exists());
    assert_eq!(files(&split_out), files(&whole_out));
    // A finished task is skipped: its outputs are not touched again.
    let kept = split_out.join("kept/part-00001.jsonl.zst");
    std::fs::write(&kept, b"changed").expect("write");
    run_task(&split, false, Some(TaskSlice::new(1, 2).expect("slice"))).expect("rerun");
    assert_eq!(std::fs::read(&kept).expect("read"), b"changed");
    // A config changed between tasks is refused, naming the field.
    let mut changed = split.clone();
    changed.run.batch_size = 7;
    changed.input.reader.max_document_bytes = 12_345;
    let err =
        run_task(&changed, false, Some(TaskSlice::new(1, 2).expect("slice"))).expect_err("changed");
    assert!(
        format!("{err:#}").contains("input.max_document_bytes"),
        "{err:#}"
    );
}

#[test]
fn task_numbers_come_from_flags_slurm_or_kubernetes() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let slice = |t, n, e: &dyn Fn(&str) -> Option<String>| TaskSlice::resolve(t, n, e);
    assert_eq!(slice(None, None, &env(&[])).expect("none"), None);
    assert_eq!(
        slice(Some(2), Some(3), &env(&[])).expect("flags"),
        Some(TaskSlice::new(2, 3).expect("s"))
    );
    let slurm = env(&[
        ("SLURM_ARRAY_TASK_ID", "9"),
        ("SLURM_ARRAY_TASK_MIN", "8"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
    ]);
    assert_eq!(
        slice(None, None, &slurm).expect("slurm"),
        Some(TaskSlice::new(1, 4).expect("s"))
    );
    let piece = env(&[
        ("SLURM_ARRAY_TASK_ID", "2"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
        ("JIELONG_TASK_OFFSET", "6"),
    ]);
    assert_eq!(
        slice(None, Some(9), &piece).expect("piece"),
        Some(TaskSlice::new(8, 9).expect("s"))
    );
    let k8s = env(&[("JOB_COMPLETION_INDEX", "4")]);
    assert_eq!(
        slice(None, Some(5), &k8s).expect("k8s"),
        Some(TaskSlice::new(4, 5).expect("s"))
    );
    assert!(slice(None, None, &k8s).is_err());
    assert!(slice(Some(3), Some(3), &env(&[])).is_err());
    assert!(slice(None, Some(4), &env(&[])).is_err());
}

/// `SLURM_CONF` of the private cluster, or `None` (reason printed); a failure under CI.
pub fn slurm_conf() -> Option<String> {
    match std::env::var("SLURM_CONF") {
        Ok(conf) => Some(conf),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but SLURM_CONF is not set: start the cluster with scripts/slurm start")
        }
        Err(_) => {
            eprintln!("skipped: SLURM_CONF is not set (eval \"$(scripts/slurm start)\", as root)");
            None
        }
    }
}

#[test]
fn launch_slurm_runs_clean_as_array_jobs_with_the_local_bytes() {
    let Some(_) = slurm_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = write_corpus(dir.path());
    // [tokenize.train]: the tokenizer stage trains it on the kept documents (local paths);
    // [tokenize.shuffle]: the shards stage writes the buckets.
    let config = |name: &str| {
        let text = format!(
            "[input]\npaths = {:?}\n\n[output]\ndir = \"{name}/clean\"\n\n[dedup]\nexact = false\n\n[dedup.minhash]\nenabled = false\n\n[tokenize]\ntokenizer = \"{name}/tokenizer.json\"\noutput = \"{name}/dataset\"\nmax_shard_tokens = 2000\nvalidation_fraction = 0.2\n\n[tokenize.train]\nvocab_size = 400\n\n[tokenize.shuffle]\nseed = 9\nbuckets = 5\n",
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>(),
        );
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write config");
        path
    };
    let local = config("local");
    // The same config with its relative paths made absolute, run in this process.
    let mut loaded = PipelineConfig::load(&local).expect("config");
    loaded.output.dir = dir.path().join("local/clean");
    if let Some(t) = loaded.tokenize.as_mut() {
        t.output = dir.path().join("local/dataset");
        t.tokenizer = dir.path().join("local/tokenizer.json");
    }
    run(&loaded, false).expect("local run");

    // 3 tasks of 1 core, at most 2 at once, arrays of at most 2: two clean pieces, the tokenizer (one
    // task), two tokenize pieces (the kept documents encoded), two shards pieces (the
    // shuffle's buckets written), then finish (the validation split, the manifests).
    let cluster = config("cluster");
    let launched = std::process::Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(dir.path())
        .args(["launch", "slurm"])
        .arg(&cluster)
        .args([
            "--tasks",
            "3",
            "--max-parallel",
            "2",
            "--max-array-size",
            "2",
            "--cpus-per-task",
            "1",
        ])
        .output()
        .expect("run pipeline launch slurm");
    let stdout = String::from_utf8_lossy(&launched.stdout).to_string();
    assert!(
        launched.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&launched.stderr)
    );
    let ids: Vec<String> = stdout
        .trim()
        .strip_prefix("submitted jobs ")
        .expect("job ids")
        .split(' ')
        .map(String::from)
        .collect();
    assert_eq!(ids.len(), 8, "{stdout}");
    let script = std::fs::read_to_string(dir.path().join("slurm-jobs/clean-000.sbatch"))
        .expect("the first clean piece's script");
    assert!(
        script.contains("#SBATCH --cpus-per-task=1\n")
            && script.contains("export RAYON_NUM_THREADS=1\n"),
        "{script}"
    );
    let started = std::time::Instant::now();
    loop {
        let queue = std::process::Command::new("squeue")
            .args(["-h", "-j", &ids.join(",")])
            .output()
            .expect("squeue");
        if String::from_utf8_lossy(&queue.stdout).trim().is_empty() {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 300,
            "jobs {ids:?} still queued"
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let out = dir.path().join("cluster");
    let logs = || {
        std::fs::read_dir(dir.path().join("slurm-jobs/logs"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            })
            .unwrap_or_default()
    };
    assert!(
        out.join("clean/summary.json").exists(),
        "no summary; logs:\n{}",
        logs()
    );
    assert_eq!(
        files(&out.join("clean")),
        files(&dir.path().join("local/clean"))
    );
    let shards = |d: &Path| -> BTreeMap<String, Vec<u8>> {
        files(d)
            .into_iter()
            .filter(|(k, _)| k.ends_with(".arrow"))
            .collect()
    };
    let expected = shards(&dir.path().join("local/dataset"));
    assert!(!expected.is_empty());
    assert_eq!(shards(&out.join("dataset")), expected);
    for split in ["train", "val"] {
        let manifest = |root: &Path| {
            let dataset = format::Dataset::open(root.join("dataset").join(split)).expect("open");
            (dataset.manifest().shards.clone(), dataset.manifest().totals)
        };
        assert_eq!(
            manifest(&out),
            manifest(&dir.path().join("local")),
            "{split}"
        );
    }
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).expect("the tokenizer stage's"),
        std::fs::read(dir.path().join("local/tokenizer.json")).expect("the local run's")
    );
}
