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

#[tokio::test]
async fn dashboard_flags_fast_annotators_and_lists_skips_with_their_reasons() {
    // Arrange: `speedy` answers in 1 s, `careful` in 20 s (threshold: 5 s, the default);
    // `careful` skips one item with a reason (markup in it stays text).
    let app = spawn_app().await;
    let (_, project) = app
        .project_with_items("write", "sft", 2, crate::helpers::sft_items(3))
        .await;
    let speedy = app.add_user("speedy", Role::Annotator).await;
    let careful = app.add_user("careful", Role::Annotator).await;
    app.add_user("rev", Role::Reviewer).await;
    for (user, ms) in [(&speedy, 1000), (&careful, 20_000)] {
        for _ in 0..2 {
            let task = app.next(user, project).await.expect("task");
            let id = task["assignment_id"].as_i64().expect("id");
            let body = json!({"answer": "ok", "time_spent_ms": ms});
            assert_eq!(app.submit(user, id, &body, None).await.status(), 201);
        }
    }
    let task = app.next(&careful, project).await.expect("task");
    let id = task["assignment_id"].as_i64().expect("id");
    let r = app
        .post_json(
            &careful,
            &format!("/api/assignments/{id}/skip"),
            &json!({"reason": "<i>needs</i> a chemist"}),
        )
        .await;
    assert_eq!(r.status(), 204);

    // Act
    let client = browser();
    signed_in(&app, &client, "rev").await;
    let html = client
        .get(app.url(&format!("/projects/{project}/dashboard")))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");

    // Assert
    let fast = &html[html.find(r#"id="fast""#).expect("a fast section")..];
    let fast = &fast[..fast.find("</section>").expect("end")];
    assert!(
        fast.contains("<strong>speedy</strong>: 1.0 s per item over 2 answers"),
        "{fast}"
    );
    assert!(!fast.contains("careful"), "{fast}");
    let skips = &html[html.find(r#"id="skips""#).expect("a skips section")..];
    assert!(
        skips.contains(
            "<td>p2</td><td>careful</td><td>&lt;i&gt;needs&lt;&#x2f;i&gt; a chemist</td>"
        ),
        "{skips}"
    );
}
