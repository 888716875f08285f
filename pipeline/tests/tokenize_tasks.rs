//! Split `pipeline tokenize`: tasks, then the finish, give the one-process dataset for any
//! number of tasks, with and without a shuffle, locally and over `s3://`.

use std::path::{Path, PathBuf};

use pipeline::readers::InputConfig;
use pipeline::shard::TaskSlice;
use pipeline::tokenize::pretrain::{ShuffleOptions, TokenizeOptions};
use pipeline::tokenize::shuffle::shards_task;
use pipeline::tokenize::tasks::tokenize_task;

use crate::cluster_dedup::{assert_same, dedup_corpus, outputs};

/// The options these tests tokenize with: 3,000-token shards, a 20% validation split,
/// parts of one input each (so several tasks write shards), an optional shuffle of
/// `buckets`.
fn split_options(tokenizer: PathBuf, output: PathBuf, buckets: Option<usize>) -> TokenizeOptions {
    TokenizeOptions {
        tokenizer,
        output,
        train: None,
        max_shard_tokens: 3_000,
        overwrite: false,
        validation_fraction: 0.2,
        split_seed: 7,
        shuffle: buckets.map(|buckets| ShuffleOptions { buckets, seed: 3 }),
        batch_size: 16,
        max_piece_bytes: 100_000,
        part_bytes: 1,
    }
}

/// The tasks of a split run of `n`, last index first: tokenize, then with a shuffle shards.
fn run_tasks(input: &InputConfig, options: &TokenizeOptions, n: usize) -> anyhow::Result<()> {
    for task in (0..n).rev() {
        tokenize_task(input, options, TaskSlice::new(task, n)?)?;
    }
    if options.shuffle.is_some() {
        for task in (0..n).rev() {
            shards_task(input, options, TaskSlice::new(task, n)?)?;
        }
    }
    Ok(())
}

#[test]
fn tokenize_tasks_give_the_one_process_dataset_for_1_3_and_8_tasks() {
    use pipeline::readers::ReaderOptions;
    use pipeline::tokenize::pretrain::tokenize;
    use pipeline::tokenize::tasks::tokenize_finish;
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = dedup_corpus(dir.path(), 60);
    let tokenizer = crate::helpers::trained_tokenizer(dir.path(), Path::new(&inputs[0]));
    let input = InputConfig {
        paths: inputs[..inputs.len() - 2].to_vec(),
        reader: ReaderOptions::default(),
    };
    for shuffle in [None, Some(4)] {
        let options = |output: PathBuf| split_options(tokenizer.clone(), output, shuffle);
        let local = dir.path().join(format!("local-{shuffle:?}"));
        let summary = tokenize(&input, &options(local.clone()), false).expect("local");
        let expected = outputs(&local);
        assert!(expected.keys().filter(|k| k.ends_with(".arrow")).count() > 2);
        // Parts of one input each (`part_bytes = 1`), or with a shuffle one per bucket: the
        // tasks (or the shards tasks) write their own.
        let last = if shuffle.is_some() { 3 } else { 2 };
        assert!(
            expected.contains_key("train/shard-00000-00000.arrow")
                && expected.contains_key(&format!("train/shard-{last:05}-00000.arrow")),
            "{:?}",
            expected.keys()
        );
        for n in [1, 3, 8] {
            let out = dir.path().join(format!("split-{n}-{shuffle:?}"));
            run_tasks(&input, &options(out.clone()), n).expect("tasks");
            let split = tokenize_finish(&input, &options(out.clone()), n).expect("finish");
            assert_same(&outputs(&out), &expected, &format!("tokenize, {n} tasks"));
            assert_eq!(
                (split.tokens, split.documents, split.input_bytes),
                (summary.tokens, summary.documents, summary.input_bytes)
            );
            assert!(!out.join("work").exists(), "the work files are removed");
            if n == 3 {
                // Run again (or after a finish stopped while removing the work files, here
                // one put back): the dataset is written, so only the work files go.
                std::fs::create_dir_all(out.join("work")).expect("mkdir");
                std::fs::write(out.join("work/encoded-00001.bin"), b"left").expect("write");
                let again = tokenize_finish(&input, &options(out.clone()), n).expect("again");
                assert_eq!(again.tokens, split.tokens);
                assert!(!out.join("work").exists(), "the work files are removed");
                assert_same(&outputs(&out), &expected, "a finish run twice");
            }
        }
    }
    // The finish step names the tasks that have not run; with a shuffle, so do the shards
    // tasks, and the finish names the shards tasks that have not run.
    for shuffle in [None, Some(4)] {
        let out = dir.path().join(format!("partial-{shuffle:?}"));
        let options = split_options(tokenizer.clone(), out.clone(), shuffle);
        let slice = |i| TaskSlice::new(i, 3).expect("slice");
        tokenize_task(&input, &options, slice(1)).expect("task");
        let err = tokenize_finish(&input, &options, 3).expect_err("missing tasks");
        let err = format!("{err:#}");
        assert!(err.contains("tokenize tasks [0, 2] of 3"), "{err}");
        if shuffle.is_some() {
            let err = shards_task(&input, &options, slice(0)).expect_err("early shards");
            let err = format!("{err:#}");
            assert!(err.contains("tokenize tasks [0, 2] of 3"), "{err}");
            for i in [0, 2] {
                tokenize_task(&input, &options, slice(i)).expect("task");
            }
            shards_task(&input, &options, slice(2)).expect("shards");
            let err = tokenize_finish(&input, &options, 3).expect_err("missing shards");
            let err = format!("{err:#}");
            assert!(err.contains("shards tasks [0, 1] of 3"), "{err}");
        }
    }
}

#[test]
fn tokenize_tasks_over_s3_give_the_local_dataset() {
    use pipeline::readers::ReaderOptions;
    use pipeline::storage::RemoteObject;
    use pipeline::tokenize::pretrain::tokenize;
    use pipeline::tokenize::tasks::tokenize_finish;
    let Some(endpoint) = crate::cluster::s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = dedup_corpus(dir.path(), 40);
    let tokenizer = crate::helpers::trained_tokenizer(dir.path(), Path::new(&inputs[0]));
    let bucket = crate::cluster::new_bucket(&endpoint, "toktasks");
    // The same inputs, local and in the bucket (same file names: the same source labels).
    let local_paths = inputs[..inputs.len() - 2].to_vec();
    let mut remote_paths = Vec::new();
    for path in &local_paths {
        let name = Path::new(path).file_name().expect("name").to_string_lossy();
        let url = format!("s3://{bucket}/in/{name}");
        RemoteObject::parse(&url)
            .and_then(|o| o.upload(Path::new(path)))
            .expect("upload input");
        remote_paths.push(url);
    }
    let tokenizer_url = format!("s3://{bucket}/tokenizer.json");
    RemoteObject::parse(&tokenizer_url)
        .and_then(|o| o.upload(&tokenizer))
        .expect("upload tokenizer");
    let input = |paths: &[String]| InputConfig {
        paths: paths.to_vec(),
        reader: ReaderOptions::default(),
    };
    // With a shuffle (the shards tasks write the shards) and without (the tasks write theirs).
    for shuffle in [Some(4), None] {
        let options =
            |tokenizer: PathBuf, output: PathBuf| split_options(tokenizer, output, shuffle);
        let local = dir.path().join(format!("local-{shuffle:?}"));
        tokenize(
            &input(&local_paths),
            &options(tokenizer.clone(), local.clone()),
            false,
        )
        .expect("local");
        let expected = outputs(&local);
        assert!(expected.keys().filter(|k| k.ends_with(".arrow")).count() > 2);
        for n in [1, 3] {
            let out = format!("s3://{bucket}/dataset-{n}-{}", shuffle.is_some());
            let remote = options(PathBuf::from(&tokenizer_url), PathBuf::from(&out));
            run_tasks(&input(&remote_paths), &remote, n).expect("tasks");
            let pack = format!("{out}/work/shuffle-task-00000-of-{n:05}.bin");
            assert_eq!(
                pipeline::storage::exists(Path::new(&pack)).expect("head"),
                shuffle.is_some(),
                "with a shuffle the tasks' packs are in the bucket"
            );
            assert!(
                pipeline::storage::exists(Path::new(&format!("{out}/work/encoded-00000.bin")))
                    .expect("head"),
                "the tasks' encoded files are in the bucket"
            );
            tokenize_finish(&input(&remote_paths), &remote, n).expect("finish");
            // Fetched into a local tree, the dataset is the local run's, manifests included.
            let fetched = dir.path().join(format!("fetched-{n}-{shuffle:?}"));
            for (rel, bytes) in crate::cluster::remote_files(&out, &expected, &dir.path().join("f"))
            {
                let path = fetched.join(&rel);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(path, bytes).expect("write");
            }
            assert_same(
                &outputs(&fetched),
                &expected,
                &format!("tokenize over s3, {n} tasks"),
            );
            assert!(
                !pipeline::storage::exists(Path::new(&format!("{out}/work/encoded-00000.bin")))
                    .expect("head"),
                "finish removes the encoded files"
            );
            assert!(
                !pipeline::storage::exists(Path::new(&pack)).expect("head"),
                "and the packs"
            );
        }
    }
}

/// The tasks (with a shuffle the shards tasks) write into the dataset directory before the
/// finish: an existing dataset is refused unless `overwrite`, and with it the finish leaves
/// only the shards the tasks wrote (an earlier run's extra shard removed) and the same
/// dataset.
#[test]
fn split_tokenize_refuses_an_existing_dataset_unless_overwrite_and_leaves_no_stale_shard() {
    use pipeline::readers::ReaderOptions;
    use pipeline::tokenize::tasks::tokenize_finish;
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = dedup_corpus(dir.path(), 20);
    let tokenizer = crate::helpers::trained_tokenizer(dir.path(), Path::new(&inputs[0]));
    let input = InputConfig {
        paths: inputs[..3].to_vec(),
        reader: ReaderOptions::default(),
    };
    for shuffle in [None, Some(3)] {
        let out = dir.path().join(format!("dataset-{shuffle:?}"));
        let options = |overwrite: bool| TokenizeOptions {
            overwrite,
            ..split_options(tokenizer.clone(), out.clone(), shuffle)
        };
        let split = |options: &TokenizeOptions| -> anyhow::Result<()> {
            run_tasks(&input, options, 2)?;
            tokenize_finish(&input, options, 2).map(drop)
        };
        split(&options(false)).expect("first run");
        let first = outputs(&out);
        std::fs::remove_dir_all(out.join("tasks")).expect("markers");
        let refused = split(&options(false)).expect_err("an existing dataset");
        assert!(format!("{refused:#}").contains("overwrite"), "{refused:#}");
        let stale = out.join("train/shard-00099-00000.arrow");
        std::fs::write(&stale, b"an earlier run's").expect("write");
        std::fs::remove_dir_all(out.join("tasks")).ok();
        split(&options(true)).expect("overwrite");
        assert!(!stale.exists(), "a shard no task wrote is removed");
        assert_same(
            &outputs(&out),
            &first,
            &format!("rewritten, shuffle {shuffle:?}"),
        );
    }
}
