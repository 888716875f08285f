//! Imports: good files go in whole, bad files go nowhere and say which lines are wrong.

use labeler::domain::Role;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestUser, preference_items, rejected_lines, sft_items, spawn_app, spawn_app_with,
};

async fn item_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn good_files_import_whole() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let sft = app.create_project(&admin, "sft", "sft", 2).await;
    let pref = app.create_project(&admin, "pref", "preference", 1).await;

    let multi_turn = json!({"prompt": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "and?"}], "draft": "a model draft", "meta": {"src": "x"}});
    let body = format!("{}\n{}", sft_items(3), multi_turn);
    let response = app.import(&admin, sft, body).await;
    assert_eq!(response.status(), 201);
    let summary: Value = response.json().await.expect("json");
    assert_eq!(summary["items"], 4);
    let response = app.import(&admin, pref, preference_items(5)).await;
    assert_eq!(response.status(), 201);
    assert_eq!(item_count(&app).await, 9);

    let (prompt, draft, overlap): (Value, Option<String>, i32) = sqlx::query_as(
        "SELECT prompt, draft, overlap FROM items WHERE project_id = $1 AND draft IS NOT NULL",
    )
    .bind(sft)
    .fetch_one(&app.pool)
    .await
    .expect("row");
    assert_eq!(prompt.as_array().map(Vec::len), Some(3));
    assert_eq!(draft.as_deref(), Some("a model draft"));
    assert_eq!(overlap, 2);
}

#[tokio::test]
async fn bad_rows_are_reported_by_line_and_nothing_is_imported() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let sft = app.create_project(&admin, "sft", "sft", 1).await;
    let pref = app.create_project(&admin, "pref", "preference", 1).await;

    let body = [
        r#"{"id": "a", "prompt": "fine"}"#,
        r#"{"id": "b", "prompt": 42}"#,
        r#"not json"#,
        r#""#,
        r#"{"id": "a", "prompt": "duplicate id"}"#,
        r#"{"id": "c", "prompt": [{"role": "assistant", "content": "ends with assistant"}]}"#,
        r#"{"id": "d", "prompt": "x", "promtp": "typo"}"#,
        r#"{"id": "e", "prompt": "   "}"#,
        r#"{"id": "f", "prompt": "x", "candidates": [{"content": "a"}, {"content": "b"}]}"#,
    ]
    .join("\n");
    let response = app.import(&admin, sft, body).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    let lines = rejected_lines(&body);
    assert_eq!(lines, [2, 3, 5, 6, 7, 8, 9], "{body}");
    assert!(
        body["rows"][2]["message"]
            .as_str()
            .expect("msg")
            .contains("line 1"),
        "{body}"
    );
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("nothing was imported")
    );
    assert_eq!(item_count(&app).await, 0);

    // Preference rows need two candidates.
    let one = json!({"prompt": "x", "candidates": [{"content": "only"}]}).to_string();
    let response = app
        .import(&admin, pref, format!("{}{one}\n", preference_items(2)))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["rows"][0]["line"], 3);
    assert_eq!(item_count(&app).await, 0);

    // Ids already in the project are rejected with their lines; the new ones do not go in.
    assert_eq!(app.import(&admin, sft, sft_items(2)).await.status(), 201);
    let response = app.import(&admin, sft, sft_items(4)).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(item_count(&app).await, 2);

    // An empty file and an unknown project.
    assert_eq!(app.import(&admin, sft, "\n\n".into()).await.status(), 400);
    assert_eq!(app.import(&admin, 999, sft_items(1)).await.status(), 404);
}

/// A Parquet file with the rows of `jsonl`, its schema inferred (nested lists and structs).
fn to_parquet(jsonl: &str) -> Vec<u8> {
    use std::io::Cursor;
    let (schema, _) =
        arrow_json::reader::infer_json_schema_from_seekable(Cursor::new(jsonl.as_bytes()), None)
            .expect("schema");
    let schema = std::sync::Arc::new(schema);
    let reader = arrow_json::ReaderBuilder::new(schema.clone())
        .build(Cursor::new(jsonl.as_bytes()))
        .expect("reader");
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).expect("writer");
    for batch in reader {
        writer.write(&batch.expect("batch")).expect("write");
    }
    writer.close().expect("close");
    out
}

#[tokio::test]
async fn parquet_uploads_follow_the_same_rules() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let pref = app.create_project(&admin, "pref", "preference", 1).await;
    let post = |body: Vec<u8>| {
        app.client
            .post(app.url(&format!("/api/projects/{pref}/items")))
            .bearer_auth(&admin.token)
            .header("content-type", "application/vnd.apache.parquet")
            .body(body)
            .send()
    };
    let one_candidate = json!({"id": "bad", "prompt": [{"role": "user", "content": "x"}],
        "candidates": [{"content": "only", "checkpoint": "c", "model": "m", "sampling": {"temperature": 1.0}}]});
    let bad = format!("{}{one_candidate}\n", preference_items(2));
    let r = post(to_parquet(&bad)).await.expect("post");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["rows"][0]["line"], 3, "{body}");
    assert_eq!(item_count(&app).await, 0);

    let r = post(to_parquet(&preference_items(50))).await.expect("post");
    assert_eq!(r.status(), 201);
    assert_eq!(item_count(&app).await, 50);
    let (prompt, candidates): (Value, Value) =
        sqlx::query_as("SELECT prompt, candidates FROM items WHERE external_id = 'q7'")
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(prompt[1]["content"], "Explain 7.");
    assert_eq!(candidates[1]["checkpoint"], "step-200");
    assert_eq!(candidates[1]["sampling"]["temperature"], 0.7);

    // Not Parquet after all: a truncated file is a clear 400.
    let mut broken = to_parquet(&preference_items(2));
    broken.truncate(40);
    let r = post(broken).await.expect("post");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn oversized_uploads_are_refused() {
    let app = spawn_app_with(|s| s.labeling.max_import_bytes = 1000).await;
    let admin = app.add_user("root", Role::Admin).await;
    let sft = app.create_project(&admin, "sft", "sft", 1).await;
    let response = app.import(&admin, sft, sft_items(100)).await;
    assert_eq!(response.status(), 413);
    assert_eq!(item_count(&app).await, 0);
}

#[tokio::test]
async fn twenty_thousand_items_import_quickly() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let pref = app.create_project(&admin, "pref", "preference", 1).await;
    let body = preference_items(20_000);
    let started = std::time::Instant::now();
    let response = app.import(&admin, pref, body).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 201);
    assert_eq!(item_count(&app).await, 20_000);
    // Generous for an unoptimised build on a loaded machine; release does 100k in seconds.
    assert!(elapsed.as_secs() < 30, "{elapsed:?}");
}

/// Model-written text with U+FFFD (what a decoder writes for bytes that were not UTF-8) is
/// refused with its line, in JSONL, Parquet and the candidates endpoint, unless the row says
/// `"allow_replacement_char": true`; people's text (the prompt) is not judged by this rule.
#[tokio::test]
async fn model_text_with_a_replacement_character_is_refused_unless_the_row_allows_it() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let sft = app.create_project(&admin, "sft", "sft", 1).await;
    let pref = app.create_project(&admin, "pref", "preference", 1).await;
    let broken = "caf\u{FFFD} au lait";
    let pair = |id: &str, second: &str| {
        json!({"id": id, "prompt": "Order?", "candidates": [
            {"content": "A tea.", "model": "m", "checkpoint": "c"},
            {"content": second, "model": "m", "checkpoint": "c"}]})
    };

    // Preference candidates, JSONL: the bad line is named, nothing goes in.
    let mut allowed = pair("meant", broken);
    allowed["allow_replacement_char"] = json!(true);
    let rows = [
        pair("fine", "A coffee."),
        pair("broken", broken),
        allowed.clone(),
        json!({"id": "prompt-only", "prompt": broken, "candidates": [
            {"content": "x"}, {"content": "y"}]}),
    ];
    let jsonl: String = rows.iter().map(|r| format!("{r}\n")).collect();
    let response = app.import(&admin, pref, jsonl).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(rejected_lines(&body), [2], "{body}");
    let message = body["rows"][0]["message"].as_str().expect("message");
    assert!(
        message.starts_with("candidates[1]: contains U+FFFD"),
        "{message}"
    );
    assert!(message.contains("allow_replacement_char"), "{message}");
    assert_eq!(item_count(&app).await, 0);

    // Without the bad row, the allowed one and the prompt with U+FFFD go in.
    let jsonl = format!("{}\n{allowed}\n{}\n", rows[0], rows[3]);
    assert_eq!(app.import(&admin, pref, jsonl.clone()).await.status(), 201);
    assert_eq!(item_count(&app).await, 3);

    // Parquet rows follow the same rule (row 2 is line 2).
    let other = app.create_project(&admin, "pref2", "preference", 1).await;
    let parquet = to_parquet(&format!("{}\n{}\n", pair("a", "ok"), pair("b", broken)));
    let r = app
        .client
        .post(app.url(&format!("/api/projects/{other}/items")))
        .bearer_auth(&admin.token)
        .body(parquet)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(rejected_lines(&r.json().await.expect("json")), [2]);

    // The model loop's candidates endpoint: the item's position is its line.
    let r = app
        .post_json(
            &admin,
            &format!("/api/projects/{other}/candidates"),
            &json!({"items": [pair("c", "ok"), pair("d", broken)]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(rejected_lines(&r.json().await.expect("json")), [2]);

    // An SFT model draft, likewise.
    let drafts = format!(
        "{}\n{}\n",
        json!({"id": "d1", "prompt": "Hi", "draft": broken}),
        json!({"id": "d2", "prompt": "Hi", "draft": broken, "allow_replacement_char": true}),
    );
    let response = app.import(&admin, sft, drafts).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(rejected_lines(&body), [1], "{body}");
    assert!(
        body["rows"][0]["message"]
            .as_str()
            .expect("message")
            .starts_with("draft: contains U+FFFD"),
        "{body}"
    );
}

/// `POST .../items/preview` as `user`.
async fn preview(app: &TestApp, user: &TestUser, project: i64, body: String) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/projects/{project}/items/preview")))
        .bearer_auth(&user.token)
        .body(body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_preview_checks_like_the_import_and_writes_nothing() {
    // Arrange: p0 is already in the project.
    let app = spawn_app().await;
    let (admin, project) = app.project_with_items("chat", "sft", 1, sft_items(1)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let good = format!(
        "{}\n\n{}\n",
        json!({"id": "n1", "prompt": "First?", "draft": "a draft"}),
        json!({"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Second?"}]})
    );
    let bad = format!(
        "{}\n{}\n{}\n",
        json!({"id": "p0", "prompt": "Again?"}),
        json!({"prompt": "Fine."}),
        json!({"prompt": "Odd", "colour": "red"})
    );

    // Act
    let ok: Value = preview(&app, &admin, project, good)
        .await
        .json()
        .await
        .expect("json");
    let refused = preview(&app, &admin, project, bad).await;
    assert_eq!(refused.status(), 200);
    let refused: Value = refused.json().await.expect("json");

    // Assert
    assert_eq!(ok["rows"], 2);
    assert_eq!(ok["items"], 2);
    assert_eq!(ok["with_id"], 1);
    assert_eq!(ok["with_draft"], 1);
    assert_eq!(ok["errors_total"], 0);
    assert_eq!(ok["first"][0]["prompt"], "First?");
    assert_eq!(ok["first"][1]["line"], 3);
    assert_eq!(ok["first"][1]["turns"], 2);
    assert_eq!(refused["rows"], 3);
    assert_eq!(refused["items"], 0);
    assert_eq!(rejected_lines(&json!({"rows": refused["errors"]})), [3]);
    assert_eq!(refused["errors_total"], 1);
    // The unknown field is found first; with it fixed, the id already there is reported.
    let fixed = format!(
        "{}\n{}\n",
        json!({"id": "p0", "prompt": "Again?"}),
        json!({"prompt": "Fine."})
    );
    let fixed: Value = preview(&app, &admin, project, fixed)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        fixed["errors"],
        json!([{"line": 1, "message": "id \"p0\" is already in project chat"}])
    );
    let items: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(items, 1, "a preview writes nothing");
    assert_eq!(
        preview(&app, &ann, project, String::new()).await.status(),
        403
    );
}
