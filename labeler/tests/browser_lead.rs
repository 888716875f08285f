//! A real headless Chromium as a lead: an admin adds a user, gives them a role and an API
//! token in the browser, and archives a project, which the new annotator then no longer sees;
//! a reviewer deciding far down the review page stays there.

use labeler::domain::Role;
use serde_json::json;

use crate::browser::{shoot, wait_for_text};
use crate::browser_sessions::sign_in;
use crate::helpers::{PASSWORD, sft_items, spawn_app};
use crate::webdriver::{Browser, chromium_for_test};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_admin_manages_users_tokens_and_archives_a_project() {
    let Some((chrome, driver)) =
        chromium_for_test("chromium_admin_manages_users_tokens_and_archives_a_project")
    else {
        return;
    };
    // Arrange
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("chat", "sft", 1, sft_items(2)).await;
    let b = Browser::start(chrome, driver).await;
    sign_in(&b, &app, "root").await;

    // Act: add a user from the Users page.
    b.click("#users-link").await;
    b.type_into("#add-user input[name=username]", "newbie")
        .await;
    b.type_into("#add-user input[name=password]", PASSWORD)
        .await;
    b.click("#add-user button").await;
    wait_for_text(&b, "#message", "User added.").await;
    // Make them a reviewer.
    b.click("#user-newbie select[name=role] option[value=reviewer]")
        .await;
    b.click("#user-newbie .set-role").await;
    wait_for_text(&b, "#message", "Role changed; it applies at once.").await;
    // A token for them, shown once.
    b.type_into("#user-newbie input[name=name]", "notebook")
        .await;
    b.click("#user-newbie .create-token").await;
    b.find("#new-token").await;
    let token = b.property("#token-value", "value").await;
    let token = token.as_str().expect("token").to_string();
    assert!(token.starts_with("jlt_"), "{token}");
    shoot(&b, "users.png").await;
    let me = app
        .client
        .get(app.url("/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.expect("json");
    assert_eq!(me["username"], "newbie");
    assert_eq!(me["role"], "reviewer");

    // Archive the project from its settings page.
    b.goto(&app.url(&format!("/projects/{project}/settings")))
        .await;
    b.click("#archive").await;
    wait_for_text(
        &b,
        "#message",
        "Archived: annotators no longer see this project.",
    )
    .await;
    shoot(&b, "project-settings.png").await;
    b.quit().await;

    // Assert: an annotator no longer gets its items.
    let ann = app.add_user("ann", Role::Annotator).await;
    let next = app
        .post(&ann, &format!("/api/projects/{project}/next"))
        .await;
    assert_eq!(next.status(), 404);
    let listed = app.get(&ann, "/api/projects").await;
    assert_eq!(
        listed.json::<serde_json::Value>().await.expect("json"),
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_review_page_keeps_its_place_after_a_decision() {
    let Some((chrome, driver)) =
        chromium_for_test("chromium_review_page_keeps_its_place_after_a_decision")
    else {
        return;
    };
    // Arrange: 12 answers, a short window.
    let app = spawn_app().await;
    let (_, project) = app
        .project_with_items("chat", "sft", 1, sft_items(12))
        .await;
    let ann = app.add_user("ann", Role::Annotator).await;
    app.add_user("rev", Role::Reviewer).await;
    while let Some(task) = app.next(&ann, project).await {
        let id = task["assignment_id"].as_i64().expect("id");
        let body = json!({"answer": "an answer"});
        assert_eq!(app.submit(&ann, id, &body, None).await.status(), 201);
    }
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM responses ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .expect("ids");
    let b = Browser::start(chrome, driver).await;
    b.resize(1000, 700).await;
    sign_in(&b, &app, "rev").await;
    b.goto(&app.url(&format!("/projects/{project}/review")))
        .await;

    // Act: accept the ninth (clicking scrolls it into view).
    b.click(&format!("#response-{} .decisions button", ids[8]))
        .await;

    // Assert: the page came back at the tenth, which now stands where the ninth was.
    b.find(&format!("#response-{}", ids[9])).await;
    wait_for_text(&b, "h1 small", "(sft)").await;
    let top = b
        .execute(&format!(
            "return document.getElementById('response-{}').getBoundingClientRect().top",
            ids[9]
        ))
        .await;
    let scrolled = b.execute("return window.scrollY").await;
    assert!(scrolled.as_f64().expect("scrollY") > 500.0, "{scrolled}");
    let top = top.as_f64().expect("top");
    assert!(
        (-5.0..100.0).contains(&top),
        "the next response is at the top: {top}"
    );
    let status: String = sqlx::query_scalar("SELECT review_status FROM responses WHERE id = $1")
        .bind(ids[8])
        .fetch_one(&app.pool)
        .await
        .expect("status");
    assert_eq!(status, "accepted");
    b.quit().await;
}
