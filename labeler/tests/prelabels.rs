//! Model pre-labels against PostgreSQL: posted by admins (all or none, idempotent), shown to
//! the annotator holding the item before (`shown`) or only after answering (`hidden`), and
//! compared with the humans' verdicts as a human-vs-model kappa.

use labeler::domain::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, preference_items, spawn_app};
use crate::pages::{browser, signed_in};
use crate::rating::rating_project;

async fn set_mode(app: &TestApp, admin: &TestUser, project: i64, mode: &str) {
    let r = app
        .client
        .patch(app.url(&format!("/api/admin/projects/{project}")))
        .bearer_auth(&admin.token)
        .json(&json!({"prelabels": mode}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

async fn suggestion(app: &TestApp, user: &TestUser, assignment: i64) -> Option<Value> {
    let r = app
        .get(user, &format!("/api/assignments/{assignment}/suggestion"))
        .await;
    match r.status().as_u16() {
        200 => Some(r.json().await.expect("json")),
        204 => None,
        other => panic!("suggestion: {other}"),
    }
}

#[tokio::test]
async fn prelabels_are_hidden_until_answered_or_shown_and_compared_with_humans() {
    // Arrange: a rating project, overlap 2; the model says r0 up, r1 down.
    let app = spawn_app().await;
    let (admin, project) = rating_project(&app, 2, 2).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let bob = app.add_user("bob", Role::Annotator).await;
    let path = format!("/api/projects/{project}/prelabels");
    let body = json!({"source": "rm-300", "items": [{"id": "r0", "label": true}, {"id": "r1", "label": false}]});
    assert_eq!(app.put_json(&ann, &path, &body).await.status(), 403);
    for bad in [
        json!({"source": "rm", "items": [{"id": "r0", "winner": 0}]}),
        json!({"source": "rm", "items": [{"id": "r0", "label": true}, {"id": "nope", "label": true}]}),
    ] {
        let r = app.put_json(&admin, &path, &bad).await;
        assert_eq!(r.status(), 400);
        let err: Value = r.json().await.expect("json");
        assert!(
            err["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("items["),
            "{err}"
        );
    }
    // Posted twice: the same two rows (the refused posts stored nothing).
    for _ in 0..2 {
        let r = app.put_json(&admin, &path, &body).await;
        assert_eq!(r.status(), 200);
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM prelabels")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(rows, 2);

    // Act / Assert: hidden until answered; then the suggestion.
    set_mode(&app, &admin, project, "hidden").await;
    let task = app.next(&ann, project).await.expect("task");
    let first = task["assignment_id"].as_i64().expect("id");
    assert_eq!(suggestion(&app, &ann, first).await, None);
    assert_eq!(suggestion(&app, &bob, first).await, None, "not bob's item");
    let label = task["external_id"] == "r0";
    assert_eq!(
        app.submit(&ann, first, &json!({"label": true}), None)
            .await
            .status(),
        201
    );
    let after = suggestion(&app, &ann, first)
        .await
        .expect("after answering");
    assert_eq!(after["source"], "rm-300");
    assert_eq!(after["label"], json!(label));
    // Shown: before answering.
    set_mode(&app, &admin, project, "shown").await;
    let task = app.next(&bob, project).await.expect("task");
    let id = task["assignment_id"].as_i64().expect("id");
    assert!(suggestion(&app, &bob, id).await.is_some());
    set_mode(&app, &admin, project, "off").await;
    assert_eq!(suggestion(&app, &bob, id).await, None);

    // Humans: ann up, up; bob up on r0, down on r1 (ann already answered one item).
    let say = |user: &str, item: &str| user == "ann" || item == "r0";
    assert_eq!(
        app.submit(
            &bob,
            id,
            &json!({"label": say("bob", task["external_id"].as_str().unwrap_or_default())}),
            None
        )
        .await
        .status(),
        201
    );
    for user in [&ann, &bob] {
        while let Some(task) = app.next(user, project).await {
            let id = task["assignment_id"].as_i64().expect("id");
            let label = say(&user.name, task["external_id"].as_str().unwrap_or_default());
            assert_eq!(
                app.submit(user, id, &json!({"label": label}), None)
                    .await
                    .status(),
                201
            );
        }
    }
    let report: Value = app
        .get(&admin, &format!("/api/projects/{project}/agreement"))
        .await
        .json()
        .await
        .expect("json");
    // Pairs (human, model): r0 (up, up) twice, r1 (up, down) and (down, down): p_o 0.75,
    // p_e 0.75 * 0.5 + 0.25 * 0.5 = 0.5, kappa 0.5.
    assert_eq!(
        report["model"],
        json!({"compared": 4, "agreement": 0.75, "kappa": 0.5})
    );
    let client = browser();
    signed_in(&app, &client, "root").await;
    let page = client
        .get(app.url(&format!("/projects/{project}/agreement")))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Human vs model kappa"));
}

#[tokio::test]
async fn a_preference_prelabel_names_the_winner_by_the_label_shown() {
    let app = spawn_app().await;
    let (admin, project) = app
        .project_with_items("duel", "preference", 1, preference_items(1))
        .await;
    let r = app
        .put_json(
            &admin,
            &format!("/api/projects/{project}/prelabels"),
            &json!({"source": "ckpt-200", "items": [{"id": "q0", "winner": 1}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    set_mode(&app, &admin, project, "shown").await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let task = app.next(&ann, project).await.expect("task");
    // Candidate 1 is "new answer 0"; its label is where it was shown.
    let pos = task["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .position(|a| a["content"] == "new answer 0")
        .expect("shown");
    let id = task["assignment_id"].as_i64().expect("id");
    let s = suggestion(&app, &ann, id).await.expect("shown mode");
    assert_eq!(s["winner"], ["A", "B"][pos]);
}
