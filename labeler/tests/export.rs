//! The whole path for both kinds: import -> annotate -> submit -> export, in the shapes of
//! ARCHITECTURE.md.

use arrow_array::{Array, ListArray, StringArray, StructArray};
use labeler::cli::ExportFormat;
use labeler::domain::Role;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, preference_items, spawn_app};

async fn export(app: &TestApp, admin: &TestUser, project: i64, part: &str) -> Vec<Value> {
    let r = app
        .get(
            admin,
            &format!("/api/projects/{project}/export?part={part}"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .expect("header")
            .contains(&format!("-{part}.jsonl"))
    );
    r.text()
        .await
        .expect("text")
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl line"))
        .collect()
}

#[tokio::test]
async fn sft_annotate_submit_export() {
    let app = spawn_app().await;
    let row = json!({"id": "t1", "prompt": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <script>"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"}],
        "draft": "5", "meta": {"source": "seed"}});
    let (admin, project) = app
        .project_with_items("chat", "sft", 1, row.to_string())
        .await;
    let ann = app.add_user("ann", Role::Annotator).await;

    let task = app.next(&ann, project).await.expect("task");
    assert_eq!(task["model_draft"], "5");
    assert_eq!(task["prompt"].as_array().map(Vec::len), Some(4));
    let id = task["assignment_id"].as_i64().expect("id");
    let r = app
        .submit(
            &ann,
            id,
            &json!({"answer": "4", "time_spent_ms": 5000}),
            Some("k"),
        )
        .await;
    assert_eq!(r.status(), 201);

    let rows = export(&app, &admin, project, "sft").await;
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["id"], "chat/t1/ann");
    assert_eq!(r["messages"].as_array().map(Vec::len), Some(5));
    assert_eq!(
        r["messages"][4],
        json!({"role": "assistant", "content": "4"})
    );
    assert_eq!(r["messages"][1]["content"], "Hi <script>");
    assert_eq!(r["meta"]["annotator"], "ann");
    assert_eq!(r["meta"]["task"], "sft");
    assert_eq!(r["meta"]["item_meta"]["source"], "seed");
    assert_eq!(r["meta"]["time_spent_ms"], 5000);
    assert!(r["meta"]["time"].as_str().is_some_and(|t| t.contains('T')));
    let dir = tempfile::tempdir().expect("tempdir");
    let files = labeler::cli::export_project(&app.pool, "chat", dir.path(), ExportFormat::Parquet)
        .await
        .expect("export");
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&files[0]).expect("open"))
            .expect("parquet")
            .build()
            .expect("reader");
    let batch = reader.map(|b| b.expect("batch")).next().expect("one batch");
    assert_eq!(batch.num_rows(), 1);
    let messages = batch.column_by_name("messages").expect("messages");
    let messages = messages.as_any().downcast_ref::<ListArray>().expect("list");
    assert_eq!(messages.value_length(0), 5);
    // The download button's Parquet is the same file.
    let r = app
        .get(
            &admin,
            &format!("/api/projects/{project}/export?part=sft&format=parquet"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.expect("body");
    assert_eq!(&bytes[..4], b"PAR1");
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("parquet")
        .build()
        .expect("reader");
    assert_eq!(
        reader.map(|b| b.expect("batch").num_rows()).sum::<usize>(),
        1
    );
    let bad = app
        .get(
            &admin,
            &format!("/api/projects/{project}/export?format=xml"),
        )
        .await;
    assert_eq!(bad.status(), 400);
    // A preference part of an sft project is a 400, not an empty file.
    let bad = app
        .get(
            &admin,
            &format!("/api/projects/{project}/export?part=pairs"),
        )
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn preference_annotate_submit_export_with_ties_apart() {
    let app = spawn_app().await;
    let (admin, project) = app
        .project_with_items("duel", "preference", 1, preference_items(4))
        .await;
    let ann = app.add_user("ann", Role::Annotator).await;

    let verdicts = [
        json!({"choice": "a", "strength": "much", "rationale": "clearer"}),
        json!({"choice": "b"}),
        json!({"choice": "tie"}),
        json!({"choice": "both_bad"}),
    ];
    let mut winners = Vec::new();
    for v in &verdicts {
        let task = app.next(&ann, project).await.expect("task");
        let shown = task["answers"].as_array().expect("answers").clone();
        assert_eq!(shown.len(), 2);
        assert_eq!(
            (shown[0]["label"].clone(), shown[1]["label"].clone()),
            (json!("A"), json!("B"))
        );
        // Provenance is not shown to annotators.
        assert!(!task.to_string().contains("step-100"));
        let pick = if v["choice"] == "b" { 1 } else { 0 };
        winners.push(shown[pick]["content"].clone());
        let id = task["assignment_id"].as_i64().expect("id");
        assert_eq!(app.submit(&ann, id, v, None).await.status(), 201);
    }
    assert!(app.next(&ann, project).await.is_none());

    let pairs = export(&app, &admin, project, "pairs").await;
    assert_eq!(pairs.len(), 2);
    for (p, winner) in pairs.iter().zip(&winners) {
        assert_eq!(
            p["chosen"],
            json!([{"role": "assistant", "content": winner}])
        );
        assert_ne!(p["chosen"], p["rejected"]);
        assert_eq!(p["prompt"].as_array().map(Vec::len), Some(2));
        let chosen = &p["meta"]["chosen_candidate"];
        let expected = if winner.as_str().expect("s").starts_with("new") {
            "step-200"
        } else {
            "step-100"
        };
        assert_eq!(chosen["checkpoint"], expected, "{p}");
        assert_eq!(chosen["sampling"]["temperature"], 0.7);
        assert_eq!(p["meta"]["shown_order"].as_array().map(Vec::len), Some(2));
    }
    assert_eq!(pairs[0]["meta"]["strength"], "much");
    assert_eq!(pairs[0]["meta"]["rationale"], "clearer");

    let ties = export(&app, &admin, project, "ties").await;
    let labels: Vec<_> = ties.iter().map(|t| t["label"].clone()).collect();
    assert_eq!(labels, [json!("tie"), json!("both_bad")]);
    assert_eq!(ties[0]["candidates"].as_array().map(Vec::len), Some(2));

    // The CLI writes the same records.
    let dir = tempfile::tempdir().expect("tempdir");
    let files = labeler::cli::export_project(&app.pool, "duel", dir.path(), ExportFormat::Jsonl)
        .await
        .expect("export");
    assert_eq!(files.len(), 2);
    let written = std::fs::read_to_string(&files[0]).expect("read");
    assert_eq!(written.lines().count(), 2);

    // And as Parquet: the same records, conversations as list<struct<role, content>>.
    let files = labeler::cli::export_project(&app.pool, "duel", dir.path(), ExportFormat::Parquet)
        .await
        .expect("export");
    let pairs_file = std::fs::File::open(&files[0]).expect("open");
    let reader = ParquetRecordBatchReaderBuilder::try_new(pairs_file)
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<_> = reader.map(|b| b.expect("batch")).collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    let batch = &batches[0];
    let names: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "prompt", "chosen", "rejected", "meta"]);
    let ids = batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8");
    assert_eq!(ids.value(0), pairs[0]["id"].as_str().expect("id"));
    let chosen = batch
        .column(2)
        .as_any()
        .downcast_ref::<ListArray>()
        .expect("list");
    let first = chosen.value(0);
    let first = first
        .as_any()
        .downcast_ref::<StructArray>()
        .expect("struct");
    let content = first
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8");
    assert_eq!(content.value(0), winners[0].as_str().expect("winner"));
    let meta = batch
        .column(4)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8");
    let meta: Value = serde_json::from_str(meta.value(0)).expect("meta json");
    assert_eq!(meta["strength"], "much");
    let ties_file = std::fs::File::open(&files[1]).expect("open");
    let ties_rows: usize = ParquetRecordBatchReaderBuilder::try_new(ties_file)
        .expect("parquet")
        .build()
        .expect("reader")
        .map(|b| b.expect("batch").num_rows())
        .sum();
    assert_eq!(ties_rows, 2);
}
