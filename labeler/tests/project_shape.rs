//! A project's shape changed after creation (admins, API and settings page): a rating
//! project's aspects grow, are reordered and have their guideline lines edited while ratings
//! exist, but an aspect a stored rating scored is neither removed nor renamed (409 naming it,
//! nothing changed); a preference project's ranking changes only before the first response.

use std::time::Duration;

use labeler::domain::{Aspect, Aspects, Role};
use labeler::store::projects::{self, SettingsChange};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, spawn_app};
use crate::pages::{browser, signed_in};
use crate::project_settings::{page, post_form};
use crate::ranking::ranking_items;
use crate::rating::rating_project;

/// `PATCH /api/admin/projects/{project}` with `body` as `user`: the status and the JSON reply.
async fn patch(app: &TestApp, user: &TestUser, project: i64, body: Value) -> (u16, Value) {
    let r = app
        .client
        .patch(app.url(&format!("/api/admin/projects/{project}")))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .expect("patch");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `user` takes the next item of `project` and rates it with `scores`; returns the response id.
async fn rate(app: &TestApp, user: &TestUser, project: i64, scores: Value) -> i64 {
    let task = app.next(user, project).await.expect("task");
    let id = task["assignment_id"].as_i64().expect("id");
    let r = app
        .submit(user, id, &json!({"label": true, "scores": scores}), None)
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    r.json::<Value>().await.expect("json")["response_id"]
        .as_i64()
        .expect("response id")
}

async fn stored_aspects(app: &TestApp, project: i64) -> (String, Value) {
    sqlx::query_as("SELECT name, aspects FROM projects WHERE id = $1")
        .bind(project)
        .fetch_one(&app.pool)
        .await
        .expect("project")
}

#[tokio::test]
async fn aspects_grow_and_their_lines_change_after_ratings_exist() {
    // Arrange: one rating in, scoring helpfulness.
    let app = spawn_app().await;
    let (admin, project) = rating_project(&app, 1, 2).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    rate(&app, &ann, project, json!({"helpfulness": 4})).await;
    let aspects = json!([
        {"name": "correctness", "guideline": "1: wrong, 5: every fact right"},
        {"name": "helpfulness", "guideline": "5: answers it, and briefly"},
        {"name": "tone", "guideline": "5: polite"},
    ]);

    // Act: reordered, a line edited, one added.
    let (status, body) = patch(&app, &admin, project, json!({"aspects": aspects})).await;

    // Assert: stored and audited; the next rating scores the new aspect.
    assert_eq!((status, &body["aspects"]), (200, &aspects), "{body}");
    assert_eq!(stored_aspects(&app, project).await.1, aspects);
    let id = rate(&app, &ann, project, json!({"tone": 5, "helpfulness": 3})).await;
    let scores: Value = sqlx::query_scalar("SELECT scores FROM responses WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("scores");
    assert_eq!(scores, json!({"helpfulness": 3, "tone": 5}));
    let details: Value = sqlx::query_scalar(
        "SELECT details FROM audit_log WHERE action = 'project.update' AND project_id = $1",
    )
    .bind(project)
    .fetch_one(&app.pool)
    .await
    .expect("audit row");
    assert_eq!(details, json!({"aspects": aspects}));
}

#[tokio::test]
async fn a_scored_aspect_is_neither_removed_nor_renamed_and_an_unscored_one_goes() {
    // Arrange: two ratings score helpfulness; none scores correctness.
    let app = spawn_app().await;
    let (admin, project) = rating_project(&app, 1, 2).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    for _ in 0..2 {
        rate(&app, &ann, project, json!({"helpfulness": 4})).await;
    }
    let before = stored_aspects(&app, project).await;
    let correctness = json!({"name": "correctness", "guideline": "1: wrong"});

    // Act / Assert: removed, or renamed (the rest of the request with it), refused.
    for aspects in [
        json!([correctness]),
        json!([{"name": "usefulness", "guideline": "5: fully answers the question"},
               correctness]),
    ] {
        let body = json!({"name": "thumbs-2", "aspects": aspects});
        let (status, reply) = patch(&app, &admin, project, body).await;
        assert_eq!(status, 409, "{reply}");
        let message = reply["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("helpfulness (scored by 2 response(s))"),
            "{message}"
        );
        assert_eq!(stored_aspects(&app, project).await, before);
    }
    // An aspect nobody scored goes.
    let kept = json!([{"name": "helpfulness", "guideline": "5: fully answers the question"}]);
    let (status, reply) = patch(&app, &admin, project, json!({"aspects": kept})).await;
    assert_eq!((status, &reply["aspects"]), (200, &kept), "{reply}");
    // Checked as at creation; on a project of another kind, refused.
    let (status, _) = patch(&app, &admin, project, json!({"aspects": [{"name": "a b"}]})).await;
    assert_eq!(status, 400);
    let sft = app.create_project(&admin, "chat", "sft", 1).await;
    let (status, reply) = patch(&app, &admin, sft, json!({"aspects": kept})).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("rating projects")
    );
    // Leads' settings are the admins' business.
    let rev = app.add_user("rev", Role::Reviewer).await;
    for body in [json!({"aspects": []}), json!({"ranking": true})] {
        assert_eq!(patch(&app, &rev, project, body).await.0, 403);
    }
    assert_eq!(stored_aspects(&app, project).await.1, kept);
}

#[tokio::test]
async fn a_submit_during_an_aspect_change_waits_and_is_checked_against_the_new_aspects() {
    // Arrange: correctness (scored by nobody) is being removed, not yet committed.
    let app = spawn_app().await;
    let (_, project) = rating_project(&app, 1, 1).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let task = app.next(&ann, project).await.expect("task");
    let id = task["assignment_id"].as_i64().expect("id");
    let tx = removing_correctness(&app, project).await;

    // Act: a rating of correctness sent meanwhile.
    let body = json!({"label": true, "scores": {"correctness": 3}});
    let submit = app.submit(&ann, id, &body, None);
    tokio::pin!(submit);
    let early = tokio::time::timeout(Duration::from_millis(300), &mut submit).await;
    assert!(early.is_err(), "the submit waits for the change to commit");
    tx.commit().await.expect("commit");
    let r = submit.await;

    // Assert: refused against the aspects as they are now; nothing stored.
    assert_eq!(r.status(), 400);
    let message = r.text().await.expect("body");
    assert!(message.contains("scores.correctness"), "{message}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM responses")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0);
}

/// Starts removing the aspect correctness from `project` (leaving helpfulness); the open
/// transaction holds the project's row lock until it commits.
async fn removing_correctness(
    app: &TestApp,
    project: i64,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let kept = Aspect {
        name: "helpfulness".into(),
        guideline: String::new(),
    };
    let change = SettingsChange {
        aspects: Some(Aspects::parse(vec![kept]).expect("aspects")),
        ..SettingsChange::default()
    };
    let mut tx = app.pool.begin().await.expect("begin");
    projects::update(&mut tx, project, &change)
        .await
        .expect("update");
    tx
}

#[tokio::test]
async fn a_review_edit_during_an_aspect_change_waits_and_is_checked_against_the_new_aspects() {
    // Arrange: a rating of helpfulness; correctness is being removed, not yet committed.
    let app = spawn_app().await;
    let (admin, project) = rating_project(&app, 1, 1).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let response = rate(&app, &ann, project, json!({"helpfulness": 4})).await;
    let tx = removing_correctness(&app, project).await;

    // Act: the reviewer's edit scores correctness meanwhile.
    let body = json!({"label": true, "scores": {"correctness": 2}});
    let path = format!("/api/responses/{response}/edit");
    let edit = app.post_json(&admin, &path, &body);
    tokio::pin!(edit);
    let early = tokio::time::timeout(Duration::from_millis(300), &mut edit).await;
    assert!(early.is_err(), "the edit waits for the change to commit");
    tx.commit().await.expect("commit");
    let r = edit.await;

    // Assert: refused; the rating is as the annotator left it.
    assert_eq!(r.status(), 400);
    let message = r.text().await.expect("body");
    assert!(message.contains("scores.correctness"), "{message}");
    let scores: Value = sqlx::query_scalar("SELECT scores FROM responses WHERE id = $1")
        .bind(response)
        .fetch_one(&app.pool)
        .await
        .expect("scores");
    assert_eq!(scores, json!({"helpfulness": 4}));
}

#[tokio::test]
async fn ranking_changes_only_before_the_first_response() {
    // Arrange: a preference project comparing two of three answers; a lease is open.
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let project = app.create_project(&admin, "order", "preference", 1).await;
    assert_eq!(
        app.import(&admin, project, ranking_items(&[3, 3]))
            .await
            .status(),
        201
    );
    let ann = app.add_user("ann", Role::Annotator).await;
    let pair = app.next(&ann, project).await.expect("task");
    assert_eq!(pair["answers"].as_array().map(Vec::len), Some(2));

    // Act: rank instead.
    let (status, reply) = patch(&app, &admin, project, json!({"ranking": true})).await;

    // Assert: the pair's lease is gone; the next task ranks all three answers.
    assert_eq!((status, &reply["ranking"]), (200, &json!(true)), "{reply}");
    let old = pair["assignment_id"].as_i64().expect("id");
    let r = app.submit(&ann, old, &json!({"choice": "a"}), None).await;
    assert_eq!(r.status(), 404);
    let task = app.next(&ann, project).await.expect("task");
    assert_eq!(task["answers"].as_array().map(Vec::len), Some(3));
    let id = task["assignment_id"].as_i64().expect("id");
    let r = app
        .submit(&ann, id, &json!({"ranking": [1, 2, 3]}), None)
        .await;
    assert_eq!(r.status(), 201);
    // With a response in, the mode stays.
    let (status, reply) = patch(&app, &admin, project, json!({"ranking": false})).await;
    assert_eq!(status, 409, "{reply}");
    let message = reply["error"].as_str().unwrap_or_default();
    assert!(message.contains("has 1 response(s)"), "{message}");
    // Sending the mode it has is no change, and is fine.
    assert_eq!(
        patch(&app, &admin, project, json!({"ranking": true}))
            .await
            .0,
        200
    );
    // Only preference projects rank.
    let sft = app.create_project(&admin, "chat", "sft", 1).await;
    assert_eq!(
        patch(&app, &admin, sft, json!({"ranking": true})).await.0,
        400
    );
    let ranking: Vec<bool> = sqlx::query_scalar("SELECT ranking FROM projects ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .expect("projects");
    assert_eq!(ranking, [true, false]);
}

#[tokio::test]
async fn the_settings_form_edits_aspects_and_ranking_and_shows_the_refusal() {
    // Arrange: a rated project and the lead's browser.
    let app = spawn_app().await;
    let (admin, project) = rating_project(&app, 1, 2).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    rate(&app, &ann, project, json!({"helpfulness": 2})).await;
    let lead = browser();
    let csrf = signed_in(&app, &lead, "root").await;
    let settings = format!("/projects/{project}/settings");
    let (_, html) = page(&app, &lead, &settings).await;
    assert!(
        html.contains("helpfulness: 5: fully answers the question\ncorrectness: 1: wrong"),
        "{html}"
    );
    let form =
        |aspects: &'static str| [("name", "thumbs"), ("guidelines", ""), ("aspects", aspects)];

    // Act: a line edited and one added; then helpfulness left out.
    let grown = "helpfulness: 5 = <complete>\ncorrectness: 1: wrong\ntone";
    let saved = post_form(&app, &lead, &settings, &csrf, &form(grown)).await;
    let mut fields = vec![("csrf_token", csrf.as_str())];
    fields.extend_from_slice(&form("correctness"));
    let refused = lead
        .post(app.url(&settings))
        .form(&fields)
        .send()
        .await
        .expect("post");

    // Assert
    assert_eq!((saved, refused.status().as_u16()), (303, 409));
    let refusal = refused.text().await.expect("body");
    assert!(
        refusal.contains("helpfulness (scored by 1 response(s))"),
        "{refusal}"
    );
    let (_, html) = page(&app, &lead, &settings).await;
    assert!(
        html.contains("helpfulness: 5 = &lt;complete&gt;\ncorrectness"),
        "{html}"
    );
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT a->>'name' FROM projects, jsonb_array_elements(aspects) a WHERE id = $1",
    )
    .bind(project)
    .fetch_all(&app.pool)
    .await
    .expect("aspects");
    assert_eq!(names, ["helpfulness", "correctness", "tone"]);

    // A preference project nobody answered: the ranking checkbox, on then off.
    let order = app.create_project(&admin, "order", "preference", 1).await;
    let settings = format!("/projects/{order}/settings");
    let (_, html) = page(&app, &lead, &settings).await;
    assert!(html.contains(r#"name="ranking" value="on">"#), "{html}");
    let mut ranking = Vec::new();
    for checked in [true, false] {
        let mut fields = vec![("name", "order"), ("ranking_shown", "on")];
        if checked {
            fields.push(("ranking", "on"));
        }
        assert_eq!(post_form(&app, &lead, &settings, &csrf, &fields).await, 303);
        let now: bool = sqlx::query_scalar("SELECT ranking FROM projects WHERE id = $1")
            .bind(order)
            .fetch_one(&app.pool)
            .await
            .expect("ranking");
        ranking.push(now);
    }
    assert_eq!(ranking, [true, false]);
}
