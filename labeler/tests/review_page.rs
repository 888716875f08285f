//! The review page's reading aids: a filter by annotator, bulk accept of a selection (safe to
//! post twice), and decisions that come back to the same list at the same place.

use labeler::domain::Role;
use serde_json::json;

use crate::helpers::{TestApp, TestUser, sft_items, spawn_app};
use crate::pages::{browser, csrf_of, signed_in};

/// `user` answers `n` items of `project`.
async fn answer(app: &TestApp, user: &TestUser, project: i64, n: usize) {
    for _ in 0..n {
        let task = app.next(user, project).await.expect("task");
        let id = task["assignment_id"].as_i64().expect("id");
        let body = json!({"answer": format!("by {}", user.name)});
        assert_eq!(app.submit(user, id, &body, None).await.status(), 201);
    }
}

async fn response_ids(app: &TestApp, user: &str) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT r.id FROM responses r JOIN users u ON u.id = r.user_id \
         WHERE u.username = $1 ORDER BY r.id",
    )
    .bind(user)
    .fetch_all(&app.pool)
    .await
    .expect("ids")
}

#[tokio::test]
async fn reviewers_filter_by_annotator_and_accept_a_selection_once() {
    // Arrange: ann and bob answer 3 items each (overlap 2).
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("chat", "sft", 2, sft_items(3)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let bob = app.add_user("bob", Role::Annotator).await;
    app.add_user("rev", Role::Reviewer).await;
    answer(&app, &ann, project, 3).await;
    answer(&app, &bob, project, 3).await;
    let client = browser();
    signed_in(&app, &client, "rev").await;

    // The filter: only bob's.
    let html = client
        .get(app.url(&format!(
            "/projects/{project}/review?status=pending&annotator=bob"
        )))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert_eq!(
        html.matches(r#"<span class="annotator">bob</span>"#)
            .count(),
        3
    );
    assert!(
        !html.contains(r#"<span class="annotator">ann</span>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<option value="ann">ann</option>"#),
        "{html}"
    );
    let csrf = csrf_of(&html);

    // Act: accept two of bob's, posted twice.
    let bobs = response_ids(&app, "bob").await;
    let (one, two) = (format!("r{}", bobs[0]), format!("r{}", bobs[1]));
    let form = [
        ("csrf_token", csrf.as_str()),
        ("status", "pending"),
        ("annotator", "bob"),
        (one.as_str(), "on"),
        (two.as_str(), "on"),
    ];
    let url = app.url(&format!("/projects/{project}/review/accept"));
    for _ in 0..2 {
        let r = client.post(&url).form(&form).send().await.expect("post");
        assert_eq!(r.status(), 303);
        assert_eq!(
            r.headers()["location"],
            format!("/projects/{project}/review?status=pending&annotator=bob").as_str()
        );
    }

    // Assert: those two accepted, once each in the audit log; nothing else touched.
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT review_status FROM responses ORDER BY user_id, id")
            .fetch_all(&app.pool)
            .await
            .expect("statuses");
    assert_eq!(
        statuses,
        [
            "pending", "pending", "pending", "accepted", "accepted", "pending"
        ]
    );
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'review.accept'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(audited, 2);
    // Without the token, or with nothing selected: refused.
    let r = client
        .post(&url)
        .form(&[("csrf_token", "x"), (one.as_str(), "on")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let r = client
        .post(&url)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_decision_returns_to_the_same_list_at_the_next_response() {
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("chat", "sft", 1, sft_items(3)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    app.add_user("rev", Role::Reviewer).await;
    answer(&app, &ann, project, 3).await;
    let client = browser();
    signed_in(&app, &client, "rev").await;
    let html = client
        .get(app.url(&format!(
            "/projects/{project}/review?status=pending&annotator=ann"
        )))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let ids = response_ids(&app, "ann").await;
    // The first response's forms carry the place: the list and the response after it.
    let first = &html[html
        .find(&format!(r#"id="response-{}""#, ids[0]))
        .expect("first")..];
    let first = &first[..first.find("</section>").expect("end")];
    assert!(
        first.contains(&format!(r#"name="anchor" value="{}""#, ids[1])),
        "{first}"
    );

    // Act: reject it through the page's form fields.
    let r = client
        .post(app.url(&format!("/projects/{project}/review/{}", ids[0])))
        .form(&[
            ("csrf_token", csrf_of(&html).as_str()),
            ("decision", "reject"),
            ("comment", "off topic"),
            ("status", "pending"),
            ("annotator", "ann"),
            ("anchor", &ids[1].to_string()),
        ])
        .send()
        .await
        .expect("post");

    // Assert
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!(
            "/projects/{project}/review?status=pending&annotator=ann#response-{}",
            ids[1]
        )
        .as_str()
    );
    // A forged place cannot redirect elsewhere: only checked parts make the URL.
    let r = client
        .post(app.url(&format!("/projects/{project}/review/{}", ids[1])))
        .form(&[
            ("csrf_token", csrf_of(&html).as_str()),
            ("decision", "accept"),
            ("status", "//evil.example"),
            ("annotator", "a\"b"),
            ("anchor", "x"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.headers()["location"],
        format!("/projects/{project}/review?status=pending").as_str()
    );
}
