//! Rating projects over the API against PostgreSQL: aspects at creation, one-answer imports
//! (bad rows named by line), thumbs and 1-5 scores checked against the project's aspects,
//! idempotent submits, review edits, agreement on thumbs, and the unpaired export (JSONL and
//! Parquet) in TRL's shape.

use arrow_array::{Array, BooleanArray, StringArray};
use labeler::cli::ExportFormat;
use labeler::domain::Role;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, rejected_lines, spawn_app};

/// JSONL with `n` rating items `r0..`, each one answer from `step-300`.
pub fn rating_items(n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({
                "id": format!("r{i}"),
                "prompt": [{"role": "user", "content": format!("Explain {i}.")}],
                "candidates": [{"content": format!("answer {i}"), "model": "jl-small",
                                "checkpoint": "step-300"}],
                "meta": {"topic": "numbers"},
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// The admin `root` and a rating project `thumbs` with aspects helpfulness and correctness.
pub async fn rating_project(app: &TestApp, overlap: i64, items: usize) -> (TestUser, i64) {
    let admin = app.add_user("root", Role::Admin).await;
    let body = json!({
        "name": "thumbs", "kind": "rating", "overlap": overlap,
        "aspects": [
            {"name": "helpfulness", "guideline": "5: fully answers the question"},
            {"name": "correctness", "guideline": "1: wrong, 5: every fact right"},
        ],
    });
    let project = app.create_project_from(&admin, &body).await;
    assert_eq!(
        app.import(&admin, project, rating_items(items))
            .await
            .status(),
        201
    );
    (admin, project)
}

async fn error_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("json");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn rating_projects_check_aspects_and_import_one_answer_per_item() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    // Aspects belong to rating projects, and are checked.
    let r = app
        .post_json(
            &admin,
            "/api/projects",
            &json!({"name": "p", "kind": "preference", "overlap": 1,
                    "aspects": [{"name": "helpfulness"}]}),
        )
        .await;
    assert_eq!(error_of(r).await.0, 400);
    let r = app
        .post_json(
            &admin,
            "/api/projects",
            &json!({"name": "r", "kind": "rating", "overlap": 1,
                    "aspects": [{"name": "a b"}]}),
        )
        .await;
    let (status, message) = error_of(r).await;
    assert_eq!(status, 400);
    assert!(message.contains("aspects[0]"), "{message}");

    let project = app
        .create_project_from(
            &admin,
            &json!({"name": "thumbs", "kind": "rating", "overlap": 1}),
        )
        .await;
    // Line 2 has two answers, line 3 none: both named, nothing imported.
    let rows = [
        json!({"id": "ok", "prompt": "Hi?", "candidates": [{"content": "Hello."}]}),
        json!({"id": "two", "prompt": "Hi?", "candidates": [{"content": "a"}, {"content": "b"}]}),
        json!({"id": "none", "prompt": "Hi?"}),
    ];
    let jsonl: String = rows.iter().map(|r| r.to_string() + "\n").collect();
    let r = app.import(&admin, project, jsonl).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(rejected_lines(&body), vec![2, 3]);
    assert!(body.to_string().contains("exactly 1 candidate"), "{body}");
    let ann = app.add_user("ann", Role::Annotator).await;
    assert!(app.next(&ann, project).await.is_none());
}

#[tokio::test]
async fn rating_submit_checks_thumbs_and_scores_and_is_idempotent() {
    // Arrange
    let app = spawn_app().await;
    let (_, project) = rating_project(&app, 1, 2).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let task = app.next(&ann, project).await.expect("task");
    assert_eq!(task["kind"], "rating");
    let answers = task["answers"].as_array().expect("answers");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["content"], "answer 0");
    assert!(!task.to_string().contains("step-300"), "provenance hidden");
    let id = task["assignment_id"].as_i64().expect("id");

    // Act / Assert: the wrong shapes are refused, with the field named.
    for (body, needle) in [
        (
            json!({"scores": {"helpfulness": 3}}),
            "missing field \"label\"",
        ),
        (
            json!({"label": true, "scores": {"helpfulness": 6}}),
            "scores.helpfulness",
        ),
        (
            json!({"label": true, "scores": {"tone": 3}}),
            "one of: helpfulness, correctness",
        ),
        (json!({"choice": "a"}), "rating item"),
        (json!({"label": true, "rationale": "x"}), "comment"),
    ] {
        let (status, message) = error_of(app.submit(&ann, id, &body, None).await).await;
        assert_eq!(status, 400, "{body}");
        assert!(message.contains(needle), "{body}: {message}");
    }
    let good = json!({"label": true, "scores": {"helpfulness": 4}, "comment": " clear ",
                      "time_spent_ms": 1200});
    let first = app.submit(&ann, id, &good, Some("key-1")).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    // A double click: the same reply, one response.
    let again = app.submit(&ann, id, &good, Some("key-1")).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.expect("json"), first);
    let stored: (i64, bool, Value, String) =
        sqlx::query_as("SELECT count(*) OVER (), label, scores, comment FROM responses")
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(stored, (1, true, json!({"helpfulness": 4}), "clear".into()));
    // Another tab's submit with its own key is told the answer is in.
    let other = app.submit(&ann, id, &good, Some("key-2")).await;
    assert_eq!(other.status(), 409);
}

#[tokio::test]
async fn ratings_export_in_the_unpaired_shape_as_jsonl_and_parquet() {
    // Arrange: two items rated, one up and one down.
    let app = spawn_app().await;
    let (admin, project) = rating_project(&app, 1, 2).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    for body in [
        json!({"label": true, "scores": {"helpfulness": 5, "correctness": 4}}),
        json!({"label": false, "comment": "wrong"}),
    ] {
        let task = app.next(&ann, project).await.expect("task");
        let id = task["assignment_id"].as_i64().expect("id");
        assert_eq!(app.submit(&ann, id, &body, None).await.status(), 201);
    }

    // Act
    let r = app
        .get(
            &admin,
            &format!("/api/projects/{project}/export?part=ratings"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let rows: Vec<Value> = r
        .text()
        .await
        .expect("text")
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();

    // Assert
    assert_eq!(rows.len(), 2);
    let up = &rows[0];
    assert_eq!(up["id"], "thumbs/r0/ann");
    assert_eq!(
        up["prompt"],
        json!([{"role": "user", "content": "Explain 0."}])
    );
    assert_eq!(
        up["completion"],
        json!([{"role": "assistant", "content": "answer 0"}])
    );
    assert_eq!(up["label"], true);
    assert_eq!(
        up["meta"]["scores"],
        json!({"helpfulness": 5, "correctness": 4})
    );
    assert_eq!(up["meta"]["candidate"]["checkpoint"], "step-300");
    assert_eq!(up["meta"]["task"], "rating");
    assert_eq!(rows[1]["label"], false);
    assert_eq!(rows[1]["meta"]["comment"], "wrong");
    // Preference parts are not parts of a rating project.
    let bad = app
        .get(
            &admin,
            &format!("/api/projects/{project}/export?part=pairs"),
        )
        .await;
    assert_eq!(bad.status(), 400);

    // The same records as Parquet: label a boolean column, meta as JSON text.
    let dir = tempfile::tempdir().expect("tempdir");
    let files =
        labeler::cli::export_project(&app.pool, "thumbs", dir.path(), ExportFormat::Parquet)
            .await
            .expect("export");
    assert_eq!(files.len(), 1);
    assert!(
        files[0]
            .to_string_lossy()
            .ends_with("thumbs-ratings.parquet")
    );
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&files[0]).expect("open"))
            .expect("parquet")
            .build()
            .expect("reader");
    let batches: Vec<_> = reader.map(|b| b.expect("batch")).collect();
    let batch = &batches[0];
    assert_eq!(batch.num_rows(), 2);
    let labels = batch
        .column_by_name("label")
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
        .expect("label: bool");
    assert!(labels.value(0) && !labels.value(1));
    let meta = batch
        .column_by_name("meta")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .expect("meta: text");
    let meta: Value = serde_json::from_str(meta.value(0)).expect("meta json");
    assert_eq!(meta["scores"]["helpfulness"], 5);
    assert!(
        batch
            .column_by_name("completion")
            .is_some_and(|c| c.len() == 2)
    );
}

#[tokio::test]
async fn ratings_count_in_agreement_and_reviewers_edit_them() {
    // Arrange: two annotators on two items; they agree on r0 and not on r1.
    let app = spawn_app().await;
    let (admin, project) = rating_project(&app, 2, 2).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let bob = app.add_user("bob", Role::Annotator).await;
    for (user, labels) in [(&ann, [true, true]), (&bob, [true, false])] {
        for _ in 0..2 {
            let task = app.next(user, project).await.expect("task");
            let item = task["external_id"].as_str().expect("id").to_string();
            let label = if item == "r0" { labels[0] } else { labels[1] };
            let id = task["assignment_id"].as_i64().expect("id");
            let r = app.submit(user, id, &json!({"label": label}), None).await;
            assert_eq!(r.status(), 201);
        }
    }

    // Act
    let report: Value = app
        .get(&admin, &format!("/api/projects/{project}/agreement"))
        .await
        .json()
        .await
        .expect("json");

    // Assert: both items overlap; one of two agreements.
    assert_eq!(report["overlapping_items"], 2);
    assert_eq!(report["pairs"].as_array().map(Vec::len), Some(1));
    assert!(report["krippendorff_alpha"].is_number() || report["krippendorff_alpha"].is_null());

    // A reviewer's edit of a rating: a new version, the original kept as version 1.
    let response: i64 = sqlx::query_scalar(
        "SELECT r.id FROM responses r JOIN users u ON u.id = r.user_id \
         JOIN items i ON i.id = r.item_id WHERE u.username = 'bob' AND i.external_id = 'r1'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("response");
    let bad = app
        .post_json(
            &admin,
            &format!("/api/responses/{response}/edit"),
            &json!({"label": true, "scores": {"helpfulness": 0}}),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let r = app
        .post_json(
            &admin,
            &format!("/api/responses/{response}/edit"),
            &json!({"label": true, "scores": {"correctness": 2}, "comment": "fixed"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let versions: Vec<(i32, bool, Option<Value>)> = sqlx::query_as(
        "SELECT version, label, scores FROM response_versions WHERE response_id = $1 \
         ORDER BY version",
    )
    .bind(response)
    .fetch_all(&app.pool)
    .await
    .expect("versions");
    assert_eq!(
        versions,
        vec![
            (1, false, Some(json!({}))),
            (2, true, Some(json!({"correctness": 2})))
        ]
    );
    let shown: Value = app
        .get(&admin, &format!("/api/responses/{response}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shown["response"]["comment"], "fixed");
}

#[tokio::test]
async fn gold_ratings_score_the_thumb_the_annotator_gave() {
    // Arrange: a rating project with r0 gold up and r1 gold down; ann says up to both.
    let app = spawn_app().await;
    let (admin, project) = rating_project(&app, 1, 2).await;
    let gold = format!("/api/projects/{project}/gold");
    let bad = app
        .put_json(
            &admin,
            &gold,
            &json!({"items": [{"id": "r0", "winner": 0}], "overlap": 1}),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let r = app
        .put_json(
            &admin,
            &gold,
            &json!({"items": [{"id": "r0", "label": true}, {"id": "r1", "label": false}],
                    "overlap": 1}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let ann = app.add_user("ann", Role::Annotator).await;
    for _ in 0..2 {
        let task = app.next(&ann, project).await.expect("task");
        let id = task["assignment_id"].as_i64().expect("id");
        let r = app.submit(&ann, id, &json!({"label": true}), None).await;
        assert_eq!(r.status(), 201);
    }

    // Act
    let report: Value = app
        .get(&admin, &format!("/api/projects/{project}/agreement"))
        .await
        .json()
        .await
        .expect("json");

    // Assert: one of two right.
    assert_eq!(report["gold"]["answered"], 2);
    assert_eq!(report["gold"]["correct"], 1);
    assert_eq!(report["annotators"][0]["gold"]["accuracy"], 0.5);
}
