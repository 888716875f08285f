//! Agreement and the checkpoint ranking as HTML pages: the API's numbers in readable tables,
//! escaped, for reviewers and admins only.

use labeler::domain::Role;
use serde_json::{Value, json};

use crate::helpers::spawn_app;
use crate::pages::{browser, signed_in};

#[tokio::test]
async fn agreement_and_checkpoint_pages_show_the_apis_numbers_to_reviewers() {
    // Arrange: two annotators judge the same 4 items (overlap 2); one checkpoint has markup
    // in its name.
    let app = spawn_app().await;
    let items: String = (0..4)
        .map(|i| {
            json!({"id": format!("q{i}"), "prompt": "Which?", "candidates": [
                {"content": format!("a{i}"), "model": "m", "checkpoint": "<b>old</b>"},
                {"content": format!("b{i}"), "model": "m", "checkpoint": "step-2"}]})
            .to_string()
                + "\n"
        })
        .collect();
    let (admin, project) = app.project_with_items("duel", "preference", 2, items).await;
    for name in ["ann", "bob"] {
        let user = app.add_user(name, Role::Annotator).await;
        while let Some(task) = app.next(&user, project).await {
            let id = task["assignment_id"].as_i64().expect("id");
            // Both always pick the step-2 answer, wherever it is shown.
            let left_is_new = task["answers"][0]["content"]
                .as_str()
                .is_some_and(|c| c.starts_with('b'));
            let body =
                json!({"choice": if left_is_new { "a" } else { "b" }, "time_spent_ms": 4000});
            assert_eq!(app.submit(&user, id, &body, None).await.status(), 201);
        }
    }
    app.add_user("rev", Role::Reviewer).await;
    let api: Value = app
        .get(&admin, &format!("/api/projects/{project}/agreement"))
        .await
        .json()
        .await
        .expect("json");
    let client = browser();
    signed_in(&app, &client, "rev").await;

    // Act
    let get = |path: String| {
        let client = client.clone();
        let url = app.url(&path);
        async move {
            let r = client.get(url).send().await.expect("page");
            (r.status().as_u16(), r.text().await.expect("html"))
        }
    };
    let (status, agreement) = get(format!("/projects/{project}/agreement")).await;
    let (status2, ranking) = get(format!("/projects/{project}/checkpoints")).await;

    // Assert
    assert_eq!((status, status2), (200, 200));
    assert_eq!(api["overlapping_items"], 4);
    assert!(
        agreement.contains("4 items have two or more"),
        "{agreement}"
    );
    assert!(
        agreement.contains("<td>ann · bob</td><td>4</td><td>1.00</td><td>n/a</td>"),
        "{agreement}"
    );
    assert!(agreement.contains("<td>ann</td><td>4</td>"), "{agreement}");
    let ranks = &ranking[ranking.find(r#"id="ranking""#).expect("table")..];
    let step2 = ranks.find("<td>step-2</td>").expect("step-2");
    let old = ranks
        .find("<td>&lt;b&gt;old&lt;&#x2f;b&gt;</td>")
        .expect("old, escaped");
    assert!(step2 < old, "step-2 ranks first: {ranks}");
    assert!(!ranking.contains("<b>old"));
    // The dashboard links to the pages.
    let (_, dashboard) = get(format!("/projects/{project}/dashboard")).await;
    assert!(dashboard.contains(&format!(r#"href="/projects/{project}/agreement""#)));

    // Annotators do not get them.
    let annotator = browser();
    signed_in(&app, &annotator, "ann").await;
    let r = annotator
        .get(app.url(&format!("/projects/{project}/agreement")))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 403);
}
