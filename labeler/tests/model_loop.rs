//! The model in the loop: the trainer pages through prompts and posts candidates; posting the
//! same items again creates nothing.

use labeler::domain::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, preference_items, rejected_lines, sft_items, spawn_app};

async fn item_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

/// Every page of a project's prompts, following the cursor; (external ids, pages).
async fn all_prompts(
    app: &TestApp,
    user: &TestUser,
    project: i64,
    limit: i64,
) -> (Vec<Value>, usize) {
    let mut prompts = Vec::new();
    let mut pages = 0;
    let mut after = 0;
    loop {
        let response = app
            .get(
                user,
                &format!("/api/projects/{project}/prompts?after={after}&limit={limit}"),
            )
            .await;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.expect("json");
        pages += 1;
        prompts.extend(page["prompts"].as_array().expect("prompts").iter().cloned());
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => return (prompts, pages),
        }
    }
}

/// A comparison item as `trainer generate-candidates` posts it.
fn candidate_item(id: &str, question: &str) -> Value {
    let sampling = |seed: u64| json!({"temperature": 0.8, "top_p": 0.95, "seed": seed});
    json!({
        "id": id,
        "prompt": [{"role": "user", "content": question}],
        "candidates": [
            {"content": format!("first answer to {question}"), "model": "tiny",
             "checkpoint": "tiny/step-40@abc123", "sampling": sampling(1)},
            {"content": format!("second answer to {question}"), "model": "tiny",
             "checkpoint": "tiny/step-40@abc123", "sampling": sampling(2)},
        ],
        "meta": {"source_item": 7},
    })
}

#[tokio::test]
async fn prompts_come_in_pages_to_admins_only() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let pref = app.create_project(&admin, "pref", "preference", 1).await;
    let sft = app.create_project(&admin, "sft", "sft", 1).await;
    assert_eq!(
        app.import(&admin, pref, preference_items(5)).await.status(),
        201
    );
    assert_eq!(app.import(&admin, sft, sft_items(7)).await.status(), 201);

    // Act: pages of 2, and a page size that divides the count exactly.
    let (prompts, pages) = all_prompts(&app, &admin, pref, 2).await;
    let (exact, exact_pages) = all_prompts(&app, &admin, pref, 5).await;
    let (sft_prompts, _) = all_prompts(&app, &admin, sft, 1000).await;

    // Assert
    let ids: Vec<&str> = prompts
        .iter()
        .map(|p| p["external_id"].as_str().expect("external id"))
        .collect();
    assert_eq!(ids, ["q0", "q1", "q2", "q3", "q4"]);
    assert_eq!(pages, 3);
    assert_eq!(exact.len(), 5);
    assert_eq!(
        exact_pages, 2,
        "a full last page is followed by an empty one"
    );
    assert_eq!(
        prompts[3]["prompt"],
        json!([{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "Explain 3."}])
    );
    assert!(
        prompts
            .windows(2)
            .all(|w| w[0]["item_id"].as_i64() < w[1]["item_id"].as_i64())
    );
    // With the candidates' text in stored order (what a pre-label's winner indexes).
    assert_eq!(
        prompts[3]["candidates"],
        json!(["old answer 3", "new answer 3"])
    );
    // Any kind of project: SFT prompts, as messages, and only this project's items.
    assert_eq!(sft_prompts.len(), 7);
    assert_eq!(sft_prompts[0]["candidates"], json!([]));
    assert_eq!(
        sft_prompts[0]["prompt"],
        json!([{"role": "user", "content": "Question 0?"}])
    );

    // Who may read them, and bad queries.
    let path = format!("/api/projects/{pref}/prompts");
    let anonymous = app
        .client
        .get(app.url(&path))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
    let forged = app
        .client
        .get(app.url(&path))
        .bearer_auth("jlt_not-a-token")
        .send()
        .await
        .expect("request");
    assert_eq!(forged.status(), 401);
    assert_eq!(app.get(&ann, &path).await.status(), 403);
    for bad in ["?limit=0", "?limit=1001", "?after=x", "?cursor=3"] {
        let response = app.get(&admin, &format!("{path}{bad}")).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    assert_eq!(
        app.get(&admin, "/api/projects/999/prompts").await.status(),
        404
    );
}

#[tokio::test]
async fn posting_candidates_twice_creates_each_item_once() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let project = app.create_project(&admin, "duel", "preference", 1).await;
    let path = format!("/api/projects/{project}/candidates");
    let first = json!({"source": "trainer generate-candidates", "items": [
        candidate_item("7@tiny/step-40@abc123", "Why?"),
        candidate_item("8@tiny/step-40@abc123", "How?"),
    ]});

    // Act
    let r1 = app.post_json(&admin, &path, &first).await;
    let r1_status = r1.status();
    let r1: Value = r1.json().await.expect("json");
    let again = json!({"items": [
        candidate_item("7@tiny/step-40@abc123", "Why?"),
        candidate_item("8@tiny/step-40@abc123", "How?"),
        candidate_item("9@tiny/step-40@abc123", "When?"),
    ]});
    let r2: Value = app
        .post_json(&admin, &path, &again)
        .await
        .json()
        .await
        .expect("json");
    let r3: Value = app
        .post_json(&admin, &path, &first)
        .await
        .json()
        .await
        .expect("json");

    // Assert
    assert_eq!(r1_status, 200);
    assert_eq!(r1["created"], 2, "{r1}");
    assert_eq!(r1["skipped"], 0);
    assert!(r1["import_id"].is_i64());
    assert_eq!(r2["created"], 1, "{r2}");
    assert_eq!(
        r2["skipped_ids"],
        json!(["7@tiny/step-40@abc123", "8@tiny/step-40@abc123"])
    );
    assert_eq!(r3["created"], 0, "{r3}");
    assert_eq!(r3["skipped"], 2);
    assert!(r3["import_id"].is_null(), "no import recorded for nothing");
    assert_eq!(item_count(&app).await, 3);
    let source: String = sqlx::query_scalar("SELECT source_name FROM imports ORDER BY id LIMIT 1")
        .fetch_one(&app.pool)
        .await
        .expect("import");
    assert_eq!(source, "trainer generate-candidates");

    // The annotator gets a comparison of the two answers, without their provenance; the
    // provenance is stored for the export.
    let task = app.next(&ann, project).await.expect("a task");
    assert_eq!(task["kind"], "preference");
    assert_eq!(task["external_id"], "7@tiny/step-40@abc123");
    let mut shown: Vec<&str> = task["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .map(|a| a["content"].as_str().expect("content"))
        .collect();
    shown.sort_unstable();
    assert_eq!(shown, ["first answer to Why?", "second answer to Why?"]);
    assert!(
        task["answers"][0].get("checkpoint").is_none() && task["answers"][0].get("model").is_none(),
        "{task}"
    );
    let candidates: Value = sqlx::query_scalar(
        "SELECT candidates FROM items WHERE external_id = '7@tiny/step-40@abc123'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("row");
    assert_eq!(candidates[1]["checkpoint"], "tiny/step-40@abc123");
    assert_eq!(candidates[1]["model"], "tiny");
    assert_eq!(candidates[1]["sampling"]["seed"], 2);
}

#[tokio::test]
async fn bad_candidate_posts_are_refused_whole() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let pref = app.create_project(&admin, "duel", "preference", 1).await;
    let sft = app.create_project(&admin, "chat", "sft", 1).await;
    let good = json!({"items": [candidate_item("a@c", "Why?")]});

    // Not a preference or rating project.
    let response = app
        .post_json(&admin, &format!("/api/projects/{sft}/candidates"), &good)
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("preference or rating project"),
        "{body}"
    );

    // Rows without an id, without provenance, repeated, or with one candidate: each named by
    // position, and nothing goes in.
    let path = format!("/api/projects/{pref}/candidates");
    let mut no_id = candidate_item("x", "No id?");
    no_id.as_object_mut().expect("object").remove("id");
    let mut no_checkpoint = candidate_item("b@c", "Whose?");
    no_checkpoint["candidates"][1]
        .as_object_mut()
        .expect("object")
        .remove("checkpoint");
    let mut one = candidate_item("d@c", "Alone?");
    one["candidates"].as_array_mut().expect("array").truncate(1);
    let body = json!({"items": [
        candidate_item("a@c", "Why?"), no_id, no_checkpoint, candidate_item("a@c", "Again?"), one,
    ]});
    let response = app.post_json(&admin, &path, &body).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    let lines = rejected_lines(&body);
    assert_eq!(lines, [2, 3, 4, 5], "{body}");
    assert!(
        body["rows"][1]["message"]
            .as_str()
            .expect("message")
            .contains("checkpoint")
    );
    assert_eq!(item_count(&app).await, 0);

    // Empty, unknown fields, annotators, no token, unknown project.
    assert_eq!(
        app.post_json(&admin, &path, &json!({"items": []}))
            .await
            .status(),
        400
    );
    let typo = json!({"items": [candidate_item("a@c", "Why?")], "sourc": "x"});
    assert_eq!(app.post_json(&admin, &path, &typo).await.status(), 400);
    assert_eq!(app.post_json(&ann, &path, &good).await.status(), 403);
    let anonymous = app
        .client
        .post(app.url(&path))
        .json(&good)
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        app.post_json(&admin, "/api/projects/999/candidates", &good)
            .await
            .status(),
        404
    );
    assert_eq!(item_count(&app).await, 0);
}

#[tokio::test]
async fn a_rating_project_takes_one_answer_per_item() {
    // Arrange: single answers as `generate-candidates --k 1` posts them.
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let rate = app.create_project(&admin, "thumbs", "rating", 1).await;
    let path = format!("/api/projects/{rate}/candidates");
    let single = |id: &str, question: &str| {
        let mut item = candidate_item(id, question);
        item["candidates"]
            .as_array_mut()
            .expect("array")
            .truncate(1);
        item
    };
    let body = json!({"source": "trainer generate-candidates",
                      "items": [single("a@c", "Why?"), single("b@c", "How?")]});

    // Act
    let first: Value = app
        .post_json(&admin, &path, &body)
        .await
        .json()
        .await
        .expect("json");
    let again: Value = app
        .post_json(&admin, &path, &body)
        .await
        .json()
        .await
        .expect("json");
    let pair = json!({"items": [candidate_item("c@c", "Two?")]});
    let refused = app.post_json(&admin, &path, &pair).await;

    // Assert
    assert_eq!(
        (first["created"].as_i64(), first["skipped"].as_i64()),
        (Some(2), Some(0)),
        "{first}"
    );
    assert_eq!(
        (again["created"].as_i64(), again["skipped"].as_i64()),
        (Some(0), Some(2)),
        "{again}"
    );
    assert_eq!(refused.status(), 400);
    let refused: Value = refused.json().await.expect("json");
    assert!(
        refused["rows"][0]["message"]
            .as_str()
            .expect("message")
            .contains("exactly 1 candidate"),
        "{refused}"
    );
    let (prompts, _) = all_prompts(&app, &admin, rate, 1000).await;
    let answers: Vec<&Value> = prompts.iter().map(|p| &p["candidates"]).collect();
    assert_eq!(
        answers,
        [
            &json!(["first answer to Why?"]),
            &json!(["first answer to How?"])
        ]
    );
}
