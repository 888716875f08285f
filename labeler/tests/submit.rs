//! Submitting: idempotency keys, drafts, and 4xx (never 500) on bad input.

use labeler::domain::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, preference_items, sft_items, spawn_app};

async fn setup(kind: &str) -> (TestApp, TestUser, i64) {
    let app = spawn_app().await;
    let items = if kind == "sft" {
        sft_items(3)
    } else {
        preference_items(3)
    };
    let (_, project) = app.project_with_items("p", kind, 1, items).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    (app, ann, project)
}

async fn responses(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM responses")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_retried_submit_stores_one_response() {
    let (app, ann, project) = setup("sft").await;
    let task = app.next(&ann, project).await.expect("task");
    let id = task["assignment_id"].as_i64().expect("id");
    let body = json!({"answer": "The answer.", "time_spent_ms": 1234});

    // A double click: the same key, concurrently, then once more later.
    let (a, b) = tokio::join!(
        app.submit(&ann, id, &body, Some("key-1")),
        app.submit(&ann, id, &body, Some("key-1")),
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (201, 201));
    let a: Value = a.json().await.expect("json");
    let b: Value = b.json().await.expect("json");
    assert_eq!(a, b);
    let c: Value = app
        .submit(&ann, id, &body, Some("key-1"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(a, c);
    assert_eq!(responses(&app).await, 1);

    // Without the key, a second submit is a clear conflict, not a second row.
    let again = app.submit(&ann, id, &body, None).await;
    assert_eq!(again.status(), 409);
    let again = app.submit(&ann, id, &body, Some("key-2")).await;
    assert_eq!(again.status(), 409);
    assert_eq!(responses(&app).await, 1);
}

#[tokio::test]
async fn a_key_reused_on_another_item_replays_the_first_reply() {
    let (app, ann, project) = setup("preference").await;
    let first = app.next(&ann, project).await.expect("task")["assignment_id"]
        .as_i64()
        .expect("id");
    let r = app
        .submit(&ann, first, &json!({"choice": "a"}), Some("same"))
        .await;
    assert_eq!(r.status(), 201);
    let stored: Value = r.json().await.expect("json");
    let second = app.next(&ann, project).await.expect("task")["assignment_id"]
        .as_i64()
        .expect("id");
    assert_ne!(first, second);

    let r = app
        .submit(&ann, second, &json!({"choice": "b"}), Some("same"))
        .await;

    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.expect("json"), stored);
    assert_eq!(responses(&app).await, 1, "the second item is still open");
    let r = app
        .submit(&ann, second, &json!({"choice": "b"}), Some("other"))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(responses(&app).await, 2);
}

#[tokio::test]
async fn a_required_rationale_is_enforced() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let body =
        json!({"name": "why", "kind": "preference", "overlap": 1, "rationale_required": true});
    let project = app.create_project_from(&admin, &body).await;
    assert_eq!(
        app.import(&admin, project, preference_items(1))
            .await
            .status(),
        201
    );
    let id = app.next(&ann, project).await.expect("task")["assignment_id"]
        .as_i64()
        .expect("id");

    let bare = app.submit(&ann, id, &json!({"choice": "a"}), None).await;
    let blank = app
        .submit(&ann, id, &json!({"choice": "a", "rationale": "  "}), None)
        .await;
    let explained = app
        .submit(
            &ann,
            id,
            &json!({"choice": "a", "rationale": "A is correct; B is not."}),
            None,
        )
        .await;

    assert_eq!(bare.status(), 400);
    assert!(
        bare.text()
            .await
            .expect("text")
            .contains("requires a rationale")
    );
    assert_eq!(blank.status(), 400);
    assert_eq!(explained.status(), 201);
    assert_eq!(responses(&app).await, 1);
}

#[tokio::test]
async fn a_late_submit_revives_its_lease_while_the_item_has_room() {
    let (app, ann, project) = setup("sft").await;
    let id = app.next(&ann, project).await.expect("task")["assignment_id"]
        .as_i64()
        .expect("id");
    sqlx::query("UPDATE assignments SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .expect("expire");
    labeler::store::queue::reclaim_expired(&app.pool, None)
        .await
        .expect("reclaim");

    let r = app
        .submit(&ann, id, &json!({"answer": "Late but fine."}), Some("late"))
        .await;

    assert_eq!(r.status(), 201);
    assert_eq!(responses(&app).await, 1);
    let taken: i64 = sqlx::query_scalar("SELECT sum(taken) FROM items")
        .fetch_one(&app.pool)
        .await
        .expect("taken");
    assert_eq!(taken, 1);
}

#[tokio::test]
async fn drafts_autosave_and_come_back_on_reload() {
    let (app, ann, project) = setup("sft").await;
    let task = app.next(&ann, project).await.expect("task");
    assert_eq!(task["saved_draft"], Value::Null);
    let id = task["assignment_id"].as_i64().expect("id");
    let put = |body: Value| {
        app.client
            .put(app.url(&format!("/api/assignments/{id}/draft")))
            .bearer_auth(&ann.token)
            .json(&body)
            .send()
    };
    assert_eq!(
        put(json!({"answer": "half"})).await.expect("put").status(),
        204
    );
    assert_eq!(
        put(json!({"answer": "half done"}))
            .await
            .expect("put")
            .status(),
        204
    );
    assert_eq!(
        put(json!("not an object")).await.expect("put").status(),
        400
    );

    // A reload (next again, or the assignment itself) restores the latest draft.
    let reloaded = app.next(&ann, project).await.expect("task");
    assert_eq!(reloaded["assignment_id"], id);
    assert_eq!(reloaded["saved_draft"], json!({"answer": "half done"}));
    let direct: Value = app
        .get(&ann, &format!("/api/assignments/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(direct["saved_draft"]["answer"], "half done");

    // Submitting clears it.
    assert_eq!(
        app.submit(&ann, id, &json!({"answer": "done"}), None)
            .await
            .status(),
        201
    );
    let drafts: i64 = sqlx::query_scalar("SELECT count(*) FROM drafts")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(drafts, 0);
}

#[tokio::test]
async fn bad_api_input_gets_a_clear_4xx() {
    let (app, ann, project) = setup("preference").await;
    let task = app.next(&ann, project).await.expect("task");
    let id = task["assignment_id"].as_i64().expect("id");
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"choice": 1}), 400, "invalid"),
        (json!({"choice": "c"}), 400, "unknown variant"),
        (json!({}), 400, "missing field"),
        (json!({"answer": "text"}), 400, "preference item"),
        (
            json!({"choice": "tie", "strength": "much"}),
            400,
            "strength",
        ),
        (json!({"choice": "a", "extra": true}), 400, "unknown field"),
        (json!([1, 2]), 400, "invalid"),
    ];
    for (body, status, needle) in cases {
        let r = app.submit(&ann, id, &body, None).await;
        assert_eq!(r.status().as_u16(), status, "{body}");
        let text = r.text().await.expect("text");
        assert!(text.contains(needle), "{body} -> {text}");
    }
    // Not JSON at all, and the wrong content type.
    let raw = |body: &'static str, ctype: &'static str| {
        app.client
            .post(app.url(&format!("/api/assignments/{id}/submit")))
            .bearer_auth(&ann.token)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    assert_eq!(raw("{", "application/json").await.expect("r").status(), 400);
    assert_eq!(
        raw("choice=a", "text/plain").await.expect("r").status(),
        400
    );
    // Oversized bodies.
    let huge = json!({"choice": "a", "rationale": "x".repeat(2 * 1024 * 1024)});
    assert_eq!(app.submit(&ann, id, &huge, None).await.status(), 413);
    // Unknown ids and malformed paths.
    assert_eq!(
        app.submit(&ann, 987_654, &json!({"choice": "a"}), None)
            .await
            .status(),
        404
    );
    assert_eq!(app.get(&ann, "/api/assignments/abc").await.status(), 404);
    assert_eq!(
        app.post(&ann, "/api/projects/424242/next").await.status(),
        404
    );
    assert_eq!(
        app.post(&ann, &format!("/api/projects/{project}/next?exclude=x"))
            .await
            .status(),
        400
    );
    assert_eq!(app.get(&ann, "/api/nothing-here").await.status(), 404);
    // A bad idempotency key.
    let r = app
        .submit(&ann, id, &json!({"choice": "a"}), Some(&"k".repeat(200)))
        .await;
    assert_eq!(r.status(), 400);
    // Nothing was stored by any of that; a good submit still works.
    assert_eq!(responses(&app).await, 0);
    let ok = app
        .submit(
            &ann,
            id,
            &json!({"choice": "b", "strength": "slightly"}),
            None,
        )
        .await;
    assert_eq!(ok.status(), 201);
}

#[tokio::test]
async fn nul_characters_are_refused_not_crashed_on() {
    let (app, ann, project) = setup("sft").await;
    let admin = TestUser {
        id: 0,
        name: "root".into(),
        token: labeler::store::accounts::create_token(
            &app.pool,
            &labeler::domain::Username::parse("root").expect("name"),
            "t",
        )
        .await
        .expect("token"),
    };
    let rows = [
        json!({"prompt": "nul \u{0} inside"}).to_string(),
        json!({"prompt": "fine", "meta": {"k": "v\u{0}"}}).to_string(),
        json!({"id": "a\u{0}", "prompt": "fine"}).to_string(),
    ]
    .join("\n");
    let r = app.import(&admin, project, rows).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(3), "{body}");

    let task = app.next(&ann, project).await.expect("task");
    let id = task["assignment_id"].as_i64().expect("id");
    let r = app
        .submit(&ann, id, &json!({"answer": "bad \u{0}"}), None)
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .put_json(
            &ann,
            &format!("/api/assignments/{id}/draft"),
            &json!({"answer": "bad \u{0}"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .post_json(
            &admin,
            "/api/projects",
            &json!({"name": "g", "kind": "sft", "overlap": 1, "guidelines": "\u{0}"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let user = labeler::store::accounts::authenticate(&app.pool, "ann\u{0}", "x")
        .await
        .expect("no error");
    assert!(user.is_none());
    assert_eq!(responses(&app).await, 0);
}

/// Two tabs of one annotator show the same item; the second tab's submit, with its own key,
/// hears that the item is answered (every time it retries), not "still in progress", and the
/// first tab's retry still replays its reply.
#[tokio::test]
async fn a_submit_from_a_second_tab_says_the_item_is_already_submitted() {
    // Arrange: both tabs load the item.
    let (app, ann, project) = setup("sft").await;
    let tab_1 = app.next(&ann, project).await.expect("task");
    let tab_2 = app.next(&ann, project).await.expect("task");
    assert_eq!(tab_1["assignment_id"], tab_2["assignment_id"]);
    let id = tab_1["assignment_id"].as_i64().expect("id");
    let first = app
        .submit(&ann, id, &json!({"answer": "From tab one."}), Some("tab-1"))
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");

    // Act + Assert: tab 2 submits, and retries, with its own key.
    for _ in 0..2 {
        let second = app
            .submit(&ann, id, &json!({"answer": "From tab two."}), Some("tab-2"))
            .await;
        assert_eq!(second.status(), 409);
        let body: Value = second.json().await.expect("json");
        assert_eq!(body["code"], "already_submitted", "{body}");
        let message = body["error"].as_str().expect("message");
        assert!(
            message.contains("already submitted in another tab"),
            "{message}"
        );
        assert!(!message.contains("in progress"), "{message}");
    }
    let without_key = app
        .submit(&ann, id, &json!({"answer": "From tab two."}), None)
        .await;
    assert_eq!(without_key.status(), 409);
    assert_eq!(
        without_key.json::<Value>().await.expect("json")["code"],
        "already_submitted"
    );
    let retry = app
        .submit(&ann, id, &json!({"answer": "From tab one."}), Some("tab-1"))
        .await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.json::<Value>().await.expect("json"), first);
    assert_eq!(responses(&app).await, 1);
    let answer: String = sqlx::query_scalar("SELECT answer FROM responses")
        .fetch_one(&app.pool)
        .await
        .expect("answer");
    assert_eq!(answer, "From tab one.");
}
