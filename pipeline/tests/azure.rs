//! `az://` paths against Azurite, Microsoft's Azure Storage emulator (`scripts/azure start`):
//! object_store's Azure client, the same code paths as `s3://` (listing with globs, ranged
//! reads, block uploads, conditional creates), give the local bytes.

use std::path::Path;

use pipeline::clean::run;
use pipeline::storage::{self, RemoteObject};

use crate::cluster::{clean_config, files, remote_files, upload_inputs, write_corpus};
use crate::cluster_dedup::{assert_same, dedup_config, dedup_corpus, outputs, run_split};

/// A fresh prefix in the emulator's `jielong` container, or `None` (with the reason printed)
/// when the emulator is not set up; under `CI=true` that is a failure.
fn azure_prefix(label: &str) -> Option<String> {
    match std::env::var("AZURITE_BLOB_STORAGE_URL") {
        Ok(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            Some(format!(
                "az://jielong/{label}-{}-{nanos}",
                std::process::id()
            ))
        }
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true but AZURITE_BLOB_STORAGE_URL is not set: start it with scripts/azure start"
            )
        }
        Err(_) => {
            eprintln!(
                "skipped: AZURITE_BLOB_STORAGE_URL is not set (eval \"$(scripts/azure start)\")"
            );
            None
        }
    }
}

#[test]
fn clean_over_az_gives_the_local_bytes_and_markers_are_created_once() {
    let Some(prefix) = azure_prefix("clean") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = write_corpus(dir.path());
    upload_inputs(&format!("{prefix}/in"), &inputs);
    let local_out = dir.path().join("local");
    let local_inputs: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    run(
        &clean_config(
            dir.path(),
            &local_inputs,
            &local_out.display().to_string(),
            true,
        ),
        false,
    )
    .expect("local run");
    // One object by name, the others by a glob.
    let remote_inputs = vec![
        format!("{prefix}/in/corpus.jsonl"),
        format!("{prefix}/in/more.jsonl"),
        format!("{prefix}/in/*.warc.gz"),
    ];
    let out_url = format!("{prefix}/clean");
    run(
        &clean_config(dir.path(), &remote_inputs, &out_url, true),
        false,
    )
    .expect("az run");
    let expected = files(&local_out);
    assert!(
        expected.keys().any(|k| k.starts_with("kept/")),
        "{expected:?}"
    );
    assert_eq!(
        remote_files(&out_url, &expected, &dir.path().join("fetched")),
        expected
    );
    let marker = format!("{out_url}/tasks/clean-00000-of-00002.json");
    storage::write_marker(Path::new(&marker), b"{}").expect("first claim");
    let second = storage::write_marker(Path::new(&marker), b"{}").expect_err("second claim");
    assert!(
        format!("{second:#}").contains("already exists"),
        "{second:#}"
    );
    // A download in ranged parts (several at once) gives the object's bytes.
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let object = RemoteObject::parse(&format!("{prefix}/parts.bin")).expect("url");
    object.put(bytes.clone()).expect("upload");
    let local = dir.path().join("parts.bin");
    let (size, requests) = object
        .download_in_parts(&local, 64 << 10, 3)
        .expect("download");
    assert_eq!((size, requests), (300_000, 5));
    assert!(std::fs::read(&local).expect("read") == bytes);
}

#[test]
fn split_dedup_over_az_gives_the_local_bytes() {
    let Some(prefix) = azure_prefix("dedup") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = dedup_corpus(dir.path(), 40);
    let local_out = dir.path().join("local");
    run(&dedup_config(dir.path(), &inputs, &local_out), false).expect("local run");
    let expected = outputs(&local_out);
    let out_url = format!("{prefix}/clean");
    run_split(&dedup_config(dir.path(), &inputs, Path::new(&out_url)), 3);
    let got = remote_files(&out_url, &expected, &dir.path().join("fetched"));
    assert_same(&got, &expected, "3 tasks over az");
}
