//! Shards open as they are in pyarrow and polars from the project venv, so users can inspect
//! them with tools they know. The venv is made by `scripts/setup` (found by
//! `testkit::python`).

use format::shard_file_name;

use testkit::python::run_python;

use crate::helpers::{doc_tokens, write_one_sft, write_pretrain};

#[test]
fn pyarrow_and_polars_read_a_pretrain_shard() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = write_pretrain(tmp.path(), "py", 12, 1000, 1 << 20);
    let shard = dir.join(shard_file_name(0));
    let script = r#"
import sys, json
import pyarrow as pa, pyarrow.ipc as ipc, polars as pl
with pa.memory_map(sys.argv[1]) as source:
    table = ipc.open_file(source).read_all()
print(json.dumps({
    "schema": [f"{f.name}:{f.type}" for f in table.schema],
    "doc_ids": table.column("doc_id").to_pylist(),
    "sources": [str(s) for s in table.column("source").to_pylist()],
    "tokens5": table.column("tokens").to_pylist()[5],
    "polars_rows": pl.read_ipc(sys.argv[1]).height,
    "polars_tokens": int(pl.read_ipc(sys.argv[1]).select(pl.col("tokens").list.len().sum()).item()),
}))
"#;
    let out: serde_json::Value =
        serde_json::from_str(&run_python(script, &[&shard])).expect("json");
    assert_eq!(
        out["schema"],
        serde_json::json!([
            "doc_id:string",
            "source:dictionary<values=string, indices=int32, ordered=0>",
            "tokens:list<item: uint16 not null>"
        ])
    );
    let ids: Vec<String> = (0..12).map(|i| format!("doc-{i}")).collect();
    assert_eq!(out["doc_ids"], serde_json::json!(ids));
    assert_eq!(out["sources"][0], "web");
    assert_eq!(out["sources"][1], "books");
    assert_eq!(out["tokens5"], serde_json::json!(doc_tokens(5, 1000)));
    assert_eq!(out["polars_rows"], 12);
    let total: usize = (0..12).map(|i| doc_tokens(i, 1000).len()).sum();
    assert_eq!(out["polars_tokens"], total);
}

#[test]
fn pyarrow_reads_an_sft_shard() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = write_one_sft(
        tmp.path(),
        "sft",
        "e1",
        &[2, 50, 4, 3, 60, 4],
        &[0, 0, 0, 0, 1, 1],
        "labeler:item-1",
    );
    let script = r#"
import sys, json, pyarrow.ipc as ipc
t = ipc.open_file(sys.argv[1]).read_all()
print(json.dumps(t.to_pylist()))
"#;
    let out: serde_json::Value =
        serde_json::from_str(&run_python(script, &[&dir.join(shard_file_name(0))])).expect("json");
    assert_eq!(
        out,
        serde_json::json!([{
            "example_id": "e1",
            "input_ids": [2, 50, 4, 3, 60, 4],
            "loss_mask": [0, 0, 0, 0, 1, 1],
            "source_record": "labeler:item-1"
        }])
    );
}
