//! The annotator's own view through the API: progress ("left in the project, done today"),
//! undo of the last submit (while not reviewed or exported; safe to repeat), skip with a
//! reason, and their rejected answers with the reviewer's comment.

use labeler::domain::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, sft_items, spawn_app};

async fn mine(app: &TestApp, user: &TestUser, project: i64) -> Value {
    let r = app
        .get(user, &format!("/api/projects/{project}/mine"))
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

async fn undo(app: &TestApp, user: &TestUser, project: i64, assignment: i64) -> reqwest::Response {
    app.post_json(
        user,
        &format!("/api/projects/{project}/undo"),
        &json!({"assignment_id": assignment}),
    )
    .await
}

/// Leases and answers the next item; returns its assignment id.
async fn answer_next(app: &TestApp, user: &TestUser, project: i64, answer: &str) -> i64 {
    let task = app.next(user, project).await.expect("a task");
    let id = task["assignment_id"].as_i64().expect("id");
    let r = app.submit(user, id, &json!({"answer": answer}), None).await;
    assert_eq!(r.status(), 201);
    id
}

#[tokio::test]
async fn progress_counts_items_left_and_answers_today() {
    // Arrange: 3 items, overlap 1.
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("p", "sft", 1, sft_items(3)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let before = mine(&app, &ann, project).await;
    assert_eq!(
        before["progress"],
        json!({"items": 3, "left": 3, "done_today": 0, "done_total": 0})
    );
    assert_eq!(before["undo"], Value::Null);

    // Act
    answer_next(&app, &ann, project, "one").await;
    answer_next(&app, &ann, project, "two").await;

    // Assert
    let after = mine(&app, &ann, project).await;
    assert_eq!(
        after["progress"],
        json!({"items": 3, "left": 1, "done_today": 2, "done_total": 2})
    );
}

#[tokio::test]
async fn undo_takes_back_the_last_answer_once_and_the_item_can_be_answered_again() {
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("p", "sft", 1, sft_items(3)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let first = answer_next(&app, &ann, project, "first").await;
    let second = answer_next(&app, &ann, project, "second").await;
    assert_eq!(mine(&app, &ann, project).await["undo"], second);

    // Only the last answer: the first is refused.
    let r = undo(&app, &ann, project, first).await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("only your last answer"),
        "{body}"
    );

    // Act: undo the second, twice (a double click).
    let r = undo(&app, &ann, project, second).await;
    assert_eq!(r.status(), 200);
    let task: Value = r.json().await.expect("json");
    let again = undo(&app, &ann, project, second).await;
    assert_eq!(again.status(), 200, "a repeated undo answers as done");

    // Assert: the answer is the draft, the response is gone, one answer left.
    assert_eq!(task["assignment_id"], second);
    assert_eq!(task["saved_draft"], json!({"answer": "second"}));
    let answers: Vec<String> = sqlx::query_scalar("SELECT answer FROM responses ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .expect("responses");
    assert_eq!(answers, ["first"]);
    let status: String = sqlx::query_scalar("SELECT status FROM assignments WHERE id = $1")
        .bind(second)
        .fetch_one(&app.pool)
        .await
        .expect("status");
    assert_eq!(status, "leased");
    // The first answer is now the last one, and may be undone in turn.
    assert_eq!(mine(&app, &ann, project).await["undo"], first);
    // The item is answered again, with the same assignment.
    let r = app
        .submit(&ann, second, &json!({"answer": "second, better"}), None)
        .await;
    assert_eq!(r.status(), 201);
    let taken: Vec<i32> = sqlx::query_scalar("SELECT taken FROM items ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .expect("taken");
    assert!(taken.iter().all(|&t| t <= 1), "{taken:?}");
}

#[tokio::test]
async fn undo_is_refused_once_reviewed_or_exported() {
    let app = spawn_app().await;
    let (admin, project) = app.project_with_items("p", "sft", 1, sft_items(3)).await;
    let ann = app.add_user("ann", Role::Annotator).await;

    // Reviewed: accepted.
    let a = answer_next(&app, &ann, project, "reviewed").await;
    let response: i64 = sqlx::query_scalar("SELECT id FROM responses WHERE assignment_id = $1")
        .bind(a)
        .fetch_one(&app.pool)
        .await
        .expect("response");
    let r = app
        .post(&admin, &format!("/api/responses/{response}/accept"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(mine(&app, &ann, project).await["undo"], Value::Null);
    let r = undo(&app, &ann, project, a).await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"].as_str().expect("error").contains("accepted"),
        "{body}"
    );

    // Exported: an export taken after the submit.
    let b = answer_next(&app, &ann, project, "exported").await;
    assert_eq!(mine(&app, &ann, project).await["undo"], b);
    let r = app
        .get(&admin, &format!("/api/projects/{project}/export?part=sft"))
        .await;
    assert_eq!(r.status(), 200);
    r.text().await.expect("export");
    let r = undo(&app, &ann, project, b).await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"].as_str().expect("error").contains("export"),
        "{body}"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM responses")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(n, 2, "nothing was undone");

    // Someone else's assignment is not found.
    let other = app.add_user("other", Role::Annotator).await;
    assert_eq!(undo(&app, &other, project, b).await.status(), 404);
}

#[tokio::test]
async fn a_skip_keeps_its_optional_reason() {
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("p", "sft", 1, sft_items(3)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let t1 = app.next(&ann, project).await.expect("task")["assignment_id"]
        .as_i64()
        .expect("id");
    let next = app
        .post(&ann, &format!("/api/projects/{project}/next?exclude={t1}"))
        .await;
    let t2 = next.json::<Value>().await.expect("task")["assignment_id"]
        .as_i64()
        .expect("id");

    // Act: one with a reason, one without a body (as before), one reason too long.
    let long = "x".repeat(1001);
    let r = app
        .post_json(
            &ann,
            &format!("/api/assignments/{t1}/skip"),
            &json!({"reason": long}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .post_json(
            &ann,
            &format!("/api/assignments/{t1}/skip"),
            &json!({"reason": "  prompt is not English  "}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = app.post(&ann, &format!("/api/assignments/{t2}/skip")).await;
    assert_eq!(r.status(), 204);

    // Assert
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, skip_reason FROM assignments ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("rows");
    assert_eq!(
        rows,
        [
            (
                "skipped".to_string(),
                Some("prompt is not English".to_string())
            ),
            ("skipped".to_string(), None)
        ]
    );
}

#[tokio::test]
async fn rejected_answers_come_back_to_their_annotator_with_the_comment() {
    let app = spawn_app().await;
    let (admin, project) = app.project_with_items("p", "sft", 1, sft_items(2)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let a = answer_next(&app, &ann, project, "a lazy answer").await;
    let response: i64 = sqlx::query_scalar("SELECT id FROM responses WHERE assignment_id = $1")
        .bind(a)
        .fetch_one(&app.pool)
        .await
        .expect("response");

    // Act
    let r = app
        .post_json(
            &admin,
            &format!("/api/responses/{response}/reject"),
            &json!({"comment": "Too short: explain why."}),
        )
        .await;
    assert_eq!(r.status(), 200);

    // Assert: the annotator sees it, another annotator does not.
    let got = mine(&app, &ann, project).await;
    let rejected = got["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["question"], "Question 0?");
    assert_eq!(rejected[0]["submitted"], "a lazy answer");
    assert_eq!(rejected[0]["comment"], "Too short: explain why.");
    assert_eq!(rejected[0]["reviewer"], "root");
    let other = app.add_user("other", Role::Annotator).await;
    assert_eq!(mine(&app, &other, project).await["rejected"], json!([]));
}

#[tokio::test]
async fn an_export_from_the_command_line_also_ends_undo() {
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("chat", "sft", 1, sft_items(2)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let a = answer_next(&app, &ann, project, "in the file").await;
    let dir = tempfile::tempdir().expect("dir");

    // Act
    labeler::cli::export_project(
        &app.pool,
        "chat",
        dir.path(),
        labeler::cli::ExportFormat::Jsonl,
    )
    .await
    .expect("export");

    // Assert: audited like an API export, and the answer stays.
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE action = 'project.export' AND actor LIKE 'cli%'",
    )
    .fetch_all(&app.pool)
    .await
    .expect("audit");
    assert_eq!(actions, ["project.export"]);
    assert_eq!(mine(&app, &ann, project).await["undo"], Value::Null);
    assert_eq!(undo(&app, &ann, project, a).await.status(), 409);
}
