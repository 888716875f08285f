//! The dashboard page: charts as inline SVG, every label escaped, reviewers and admins only.

use labeler::domain::Role;
use serde_json::json;

use crate::helpers::spawn_app;
use crate::pages::{browser, signed_in};

#[tokio::test]
async fn dashboard_draws_the_charts_escaped_for_reviewers_only() {
    // Arrange: a checkpoint name with markup, two verdicts, one lease left open.
    let app = spawn_app().await;
    let items: String = (0..3)
        .map(|i| {
            json!({"id": format!("q{i}"), "prompt": "Which?", "candidates": [
                {"content": format!("a{i}"), "model": "m", "checkpoint": "<b>evil</b>"},
                {"content": format!("b{i}"), "model": "m", "checkpoint": "step-2"}]})
            .to_string()
                + "\n"
        })
        .collect();
    let (_, project) = app.project_with_items("duel", "preference", 1, items).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    app.add_user("rev", Role::Reviewer).await;
    for _ in 0..2 {
        let task = app.next(&ann, project).await.expect("task");
        let id = task["assignment_id"].as_i64().expect("id");
        let body = json!({"choice": "a", "time_spent_ms": 3000});
        assert_eq!(app.submit(&ann, id, &body, None).await.status(), 201);
    }
    app.next(&ann, project).await.expect("a lease left open");

    // Act
    let client = browser();
    signed_in(&app, &client, "rev").await;
    let page = client
        .get(app.url(&format!("/projects/{project}/dashboard")))
        .send()
        .await
        .expect("page");

    // Assert
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.matches("<svg").count() >= 8, "{html}");
    assert!(
        html.contains("2 done · 1 in progress · 0 remaining"),
        "{html}"
    );
    assert!(
        !html.contains("<b>evil"),
        "markup from a checkpoint name leaked"
    );
    assert!(html.contains("&lt;b&gt;evil"));
    assert!(html.contains("Left wins 100"));
    assert!(!html.contains("<script"));

    let client = browser();
    signed_in(&app, &client, "ann").await;
    let page = client
        .get(app.url(&format!("/projects/{project}/dashboard")))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 403);
}
