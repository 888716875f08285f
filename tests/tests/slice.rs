//! The slice that exists so far: a dataset written through the `format` contract is inspected
//! and verified by the `pipeline` binary; the `labeler` binary migrates and serves on the
//! real PostgreSQL server; the `trainer` binary computes on libtorch.

use std::collections::BTreeMap;

use format::{DatasetKind, PretrainDoc, ShardWriter, TokenizerSpec};
use jielong_tests::{TestDatabase, run_bin, serve};

fn tiny_dataset(root: &std::path::Path) -> std::path::PathBuf {
    let tokenizer = root.join("tok.json");
    std::fs::write(&tokenizer, "{}").expect("tokenizer");
    let dir = root.join("data");
    let spec = TokenizerSpec {
        path: tokenizer,
        vocab_size: 512,
        special_tokens: BTreeMap::from([("eos".to_string(), 0)]),
    };
    let mut writer = ShardWriter::builder(&dir, DatasetKind::Pretrain, spec)
        .max_shard_tokens(64)
        .build()
        .expect("writer");
    for i in 0..40u32 {
        let tokens: Vec<u32> = (1..=10)
            .map(|j| (i * 10 + j) % 511 + 1)
            .chain([0])
            .collect();
        writer
            .write(PretrainDoc {
                doc_id: &format!("d{i}"),
                source: "test",
                tokens: &tokens,
            })
            .expect("write");
    }
    writer.finish().expect("finish");
    dir
}

#[test]
fn pipeline_inspects_and_verifies_a_dataset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tiny_dataset(tmp.path());
    let out = run_bin(
        "pipeline",
        &["inspect", "--verify", dir.to_str().expect("utf8")],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("kind       pretrain"), "{stdout}");
    assert!(stdout.contains("7 shards, 40 rows, 440 tokens"), "{stdout}");
    assert!(stdout.contains("verified"), "{stdout}");
    assert!(stdout.contains("d0 [test] 11 tokens: [2 3 4"), "{stdout}");

    // A corrupted shard: non-zero exit and the file named on stderr.
    let shard = dir.join("shard-00003.arrow");
    let mut bytes = std::fs::read(&shard).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&shard, bytes).expect("write");
    let out = run_bin(
        "pipeline",
        &["inspect", "--verify", dir.to_str().expect("utf8")],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("shard-00003.arrow") && stderr.contains("sha256"),
        "{stderr}"
    );
}

#[test]
fn trainer_reports_its_runtime() {
    let out = run_bin("trainer", &["info", "--device", "cpu"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("smoke test     : ok"));
}

#[test]
fn labeler_binary_migrates_and_serves() {
    let database = TestDatabase::create_blocking();
    let out = run_bin("labeler", &["migrate"], &[("DATABASE_URL", &database.url)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("database is up to date"));

    let server = serve(&database.url);
    let body = get_json(&format!("{}/healthz", server.address));
    assert_eq!(body["status"], "ok", "{body}");
}

/// GET a JSON body from a synchronous test.
fn get_json(url: &str) -> serde_json::Value {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        reqwest::get(url)
            .await
            .expect("GET")
            .json()
            .await
            .expect("json body")
    })
}
