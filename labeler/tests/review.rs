//! Review: accept, reject with a comment (the item goes back to the pool, overlap stays
//! exact), edit (a new version; the original kept); accepted-only export; the review page.

use labeler::domain::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, preference_items, sft_items, spawn_app};
use crate::pages::{browser, csrf_of, signed_in};

async fn answer_all(app: &TestApp, user: &TestUser, project: i64, answer: &str) -> usize {
    let mut n = 0;
    while let Some(task) = app.next(user, project).await {
        let id = task["assignment_id"].as_i64().expect("id");
        let body =
            json!({"answer": format!("{answer} {}", task["external_id"].as_str().unwrap_or(""))});
        assert_eq!(app.submit(user, id, &body, None).await.status(), 201);
        n += 1;
    }
    n
}

async fn responses(app: &TestApp, user: &TestUser, project: i64, status: &str) -> Vec<Value> {
    let r = app
        .get(
            user,
            &format!("/api/projects/{project}/responses?status={status}"),
        )
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

async fn export_sft(
    app: &TestApp,
    admin: &TestUser,
    project: i64,
    accepted_only: bool,
) -> Vec<Value> {
    let r = app
        .get(
            admin,
            &format!("/api/projects/{project}/export?part=sft&accepted_only={accepted_only}"),
        )
        .await;
    assert_eq!(r.status(), 200);
    r.text()
        .await
        .expect("text")
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl"))
        .collect()
}

/// `POST /api/responses/{response}/{action}` (accept, reject, edit) as `user`.
async fn decide(
    app: &TestApp,
    user: &TestUser,
    response: i64,
    action: &str,
    body: Value,
) -> reqwest::Response {
    let path = format!("/api/responses/{response}/{action}");
    app.post_json(user, &path, &body).await
}

#[tokio::test]
async fn accept_reject_edit_round_trip_keeps_versions_and_reassigns() {
    // Arrange: three answers by ann.
    let app = spawn_app().await;
    let (admin, project) = app.project_with_items("chat", "sft", 1, sft_items(3)).await;
    let rev = app.add_user("rev", Role::Reviewer).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let bob = app.add_user("bob", Role::Annotator).await;
    assert_eq!(answer_all(&app, &ann, project, "ann says").await, 3);
    let pending = responses(&app, &rev, project, "pending").await;
    assert_eq!(pending.len(), 3);
    let ids: Vec<i64> = pending
        .iter()
        .map(|r| r["response_id"].as_i64().expect("id"))
        .collect();

    // Act
    let r = decide(&app, &rev, ids[0], "accept", json!({})).await;
    assert_eq!(r.status(), 200);
    let r = decide(&app, &rev, ids[1], "edit", json!({"answer": "fixed"})).await;
    assert_eq!(r.status(), 200);
    let edited: Value = r.json().await.expect("json");
    let r = decide(
        &app,
        &rev,
        ids[2],
        "reject",
        json!({"comment": "off topic"}),
    )
    .await;
    assert_eq!(r.status(), 200);

    // Assert: the edit is version 2, the original kept as version 1 by its author.
    assert_eq!(
        (edited["version"].clone(), edited["answer"].clone()),
        (json!(2), json!("fixed"))
    );
    assert_eq!(edited["review_status"], "accepted");
    let one: Value = app
        .get(&rev, &format!("/api/responses/{}", ids[1]))
        .await
        .json()
        .await
        .expect("json");
    let versions: Vec<(i64, String, String)> = one["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap_or(0),
                v["answer"].as_str().unwrap_or("").to_string(),
                v["author"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            (1, "ann says p1".to_string(), "ann".to_string()),
            (2, "fixed".to_string(), "rev".to_string())
        ]
    );
    // A second edit is version 3; versions 1 and 2 stay.
    let r = decide(
        &app,
        &admin,
        ids[1],
        "edit",
        json!({"answer": "fixed again"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let one: Value = app
        .get(&rev, &format!("/api/responses/{}", ids[1]))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(one["versions"].as_array().map(Vec::len), Some(3));
    assert_eq!(one["response"]["version"], 3);

    // The rejected item is back in the pool: not for ann, but for bob; the slot count is exact.
    assert!(app.next(&ann, project).await.is_none());
    let task = app.next(&bob, project).await.expect("the rejected item");
    assert_eq!(task["external_id"], "p2");
    let taken: Vec<(String, i32, i32)> =
        sqlx::query_as("SELECT external_id, taken, overlap FROM items ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("items");
    assert!(taken.iter().all(|(_, t, o)| t == o), "{taken:?}");
    let id = task["assignment_id"].as_i64().expect("id");
    assert_eq!(
        app.submit(&bob, id, &json!({"answer": "bob says"}), None)
            .await
            .status(),
        201
    );
    assert!(app.next(&bob, project).await.is_none());
    let rejected = responses(&app, &rev, project, "rejected").await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["review_comment"], "off topic");
    // A rejected response stays rejected.
    let r = decide(&app, &rev, ids[2], "accept", json!({})).await;
    assert_eq!(r.status(), 409);

    // Export: rejected never; accepted-only leaves out bob's unreviewed answer.
    let all = export_sft(&app, &admin, project, false).await;
    let answers: Vec<&str> = all
        .iter()
        .map(|r| r["messages"][1]["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(answers, ["ann says p0", "fixed again", "bob says"]);
    let accepted = export_sft(&app, &admin, project, true).await;
    assert_eq!(accepted.len(), 2);
    assert!(
        accepted
            .iter()
            .all(|r| r["meta"]["review"]["status"] == "accepted")
    );
    assert_eq!(accepted[1]["meta"]["review"]["version"], 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let files = labeler::cli::export_project_with(
        &app.pool,
        "chat",
        dir.path(),
        labeler::cli::ExportFormat::Jsonl,
        true,
    )
    .await
    .expect("export");
    assert_eq!(
        std::fs::read_to_string(&files[0])
            .expect("read")
            .lines()
            .count(),
        2
    );

    // Every decision is in the audit log under the reviewer's name.
    let log: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor, action FROM audit_log WHERE action LIKE 'review.%' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("log");
    let expected = [
        ("rev", "review.accept"),
        ("rev", "review.edit"),
        ("rev", "review.reject"),
        ("root", "review.edit"),
    ];
    assert_eq!(
        log.iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect::<Vec<_>>(),
        expected
    );
}

#[tokio::test]
async fn review_needs_the_role_and_a_comment() {
    let app = spawn_app().await;
    let (admin, project) = app
        .project_with_items("duel", "preference", 2, preference_items(1))
        .await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let task = app.next(&ann, project).await.expect("task");
    let id = task["assignment_id"].as_i64().expect("id");
    assert_eq!(
        app.submit(&ann, id, &json!({"choice": "a"}), None)
            .await
            .status(),
        201
    );
    let list = app
        .get(&ann, &format!("/api/projects/{project}/responses"))
        .await;
    assert_eq!(list.status(), 403);
    let pending = responses(&app, &admin, project, "pending").await;
    let rid = pending[0]["response_id"].as_i64().expect("id");
    let r = decide(&app, &ann, rid, "accept", json!({})).await;
    assert_eq!(r.status(), 403);
    let r = decide(&app, &admin, rid, "reject", json!({"comment": "  "})).await;
    assert_eq!(r.status(), 400);
    // An edit is checked like a submit: a preference edit needs a choice.
    let r = decide(&app, &admin, rid, "edit", json!({"answer": "x"})).await;
    assert_eq!(r.status(), 400);
    let r = decide(&app, &admin, rid, "edit", json!({"choice": "tie"})).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        (body["choice"].clone(), body["version"].clone()),
        (json!("tie"), json!(2))
    );
    let r = app.get(&admin, "/api/projects/999/responses").await;
    assert_eq!(r.status(), 404);
    let r = app
        .get(
            &admin,
            &format!("/api/projects/{project}/responses?status=maybe"),
        )
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn review_page_lists_escapes_and_decides_with_csrf() {
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("chat", "sft", 1, sft_items(2)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    app.add_user("rev", Role::Reviewer).await;
    let task = app.next(&ann, project).await.expect("task");
    let id = task["assignment_id"].as_i64().expect("id");
    let xss = json!({"answer": "<script>alert(1)</script>"});
    assert_eq!(app.submit(&ann, id, &xss, None).await.status(), 201);

    let client = browser();
    signed_in(&app, &client, "rev").await;
    let page = client
        .get(app.url(&format!("/projects/{project}/review")))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
    assert!(!html.contains("<script>alert(1)"));
    let csrf = csrf_of(&html);
    let rid: i64 = sqlx::query_scalar("SELECT id FROM responses")
        .fetch_one(&app.pool)
        .await
        .expect("id");
    let url = app.url(&format!("/projects/{project}/review/{rid}"));
    let r = client
        .post(&url)
        .form(&[("csrf_token", "wrong"), ("decision", "accept")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let r = client
        .post(&url)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("decision", "edit"),
            ("answer", "clean answer"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    let (answer, status, version): (String, String, i32) =
        sqlx::query_as("SELECT answer, review_status, version FROM responses")
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(
        (answer.as_str(), status.as_str(), version),
        ("clean answer", "accepted", 2)
    );

    // Annotators do not get the page.
    let client = browser();
    signed_in(&app, &client, "ann").await;
    let page = client
        .get(app.url(&format!("/projects/{project}/review")))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 403);
}
