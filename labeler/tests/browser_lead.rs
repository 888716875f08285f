//! A real headless Chromium as a lead: an admin adds a user, gives them a role and an API
//! token in the browser, and archives a project, which the new annotator then no longer sees.

use labeler::domain::Role;
use serde_json::json;

use crate::browser::wait_for_text;
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
