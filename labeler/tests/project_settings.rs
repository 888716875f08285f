//! Projects managed in the browser (admins): edit, archive (hidden from annotators, still
//! exported), delete while nothing was answered (otherwise refused: archive instead). Forms
//! need the CSRF token and the admin role, and each is safe to post twice.

use labeler::domain::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, sft_items, spawn_app};
use crate::pages::{browser, signed_in};

/// Posts `fields` (with the CSRF token) to `path` with `client`; returns the status.
pub async fn post_form(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    csrf: &str,
    fields: &[(&str, &str)],
) -> u16 {
    let mut form: Vec<(&str, &str)> = vec![("csrf_token", csrf)];
    form.extend_from_slice(fields);
    client
        .post(app.url(path))
        .form(&form)
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

pub async fn page(app: &TestApp, client: &reqwest::Client, path: &str) -> (u16, String) {
    let r = client.get(app.url(path)).send().await.expect("get");
    (r.status().as_u16(), r.text().await.expect("html"))
}

#[tokio::test]
async fn an_archived_project_is_hidden_from_annotators_and_still_exported() {
    // Arrange: one answer in, so the project can only be archived.
    let app = spawn_app().await;
    let (admin, project) = app.project_with_items("chat", "sft", 1, sft_items(3)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let task = app.next(&ann, project).await.expect("task");
    let id = task["assignment_id"].as_i64().expect("id");
    assert_eq!(
        app.submit(&ann, id, &json!({"answer": "kept"}), None)
            .await
            .status(),
        201
    );
    let lead = browser();
    let csrf = signed_in(&app, &lead, "root").await;
    let settings = format!("/projects/{project}/settings");
    let (status, html) = page(&app, &lead, &settings).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("1 answer(s), so it cannot be deleted"),
        "{html}"
    );

    // Act: archive (twice: a double click).
    let archive = format!("/projects/{project}/archive");
    for _ in 0..2 {
        assert_eq!(
            post_form(&app, &lead, &archive, &csrf, &[("archived", "true")]).await,
            303
        );
    }

    // Assert: annotators neither see it nor get its items.
    let annotator = browser();
    signed_in(&app, &annotator, "ann").await;
    let (_, index) = page(&app, &annotator, "/").await;
    assert!(!index.contains("chat"), "{index}");
    let (status, _) = page(&app, &annotator, &format!("/projects/{project}/annotate")).await;
    assert_eq!(status, 404);
    let next = app
        .post(&ann, &format!("/api/projects/{project}/next"))
        .await;
    assert_eq!(next.status(), 404);
    let listed: Vec<Value> = app
        .get(&ann, "/api/projects")
        .await
        .json()
        .await
        .expect("json");
    assert!(listed.is_empty(), "{listed:?}");
    // Leads still see it (marked), and export it.
    let (_, index) = page(&app, &lead, "/").await;
    assert!(
        index.contains(r#"chat <span class="tag">archived</span>"#),
        "{index}"
    );
    let export = app
        .get(&admin, &format!("/api/projects/{project}/export?part=sft"))
        .await;
    assert_eq!(export.status(), 200);
    assert!(export.text().await.expect("export").contains("kept"));
    // Deleting it is refused (it has an answer).
    let delete = format!("/projects/{project}/delete");
    assert_eq!(
        post_form(&app, &lead, &delete, &csrf, &[("confirm", "chat")]).await,
        409
    );

    // Back from the archive: the annotator gets items again.
    assert_eq!(
        post_form(&app, &lead, &archive, &csrf, &[("archived", "false")]).await,
        303
    );
    assert!(app.next(&ann, project).await.is_some());
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE action LIKE 'project.%archive' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("audit");
    assert_eq!(
        actions,
        ["project.archive", "project.archive", "project.unarchive"]
    );
}

#[tokio::test]
async fn a_project_nobody_answered_is_deleted_once_its_name_is_typed() {
    let app = spawn_app().await;
    let (admin, project) = app
        .project_with_items("draft", "sft", 1, sft_items(2))
        .await;
    let ann = app.add_user("ann", Role::Annotator).await;
    app.next(&ann, project)
        .await
        .expect("a lease (not an answer)");
    let lead = browser();
    let csrf = signed_in(&app, &lead, "root").await;
    let delete = format!("/projects/{project}/delete");

    // The name must be typed.
    assert_eq!(
        post_form(&app, &lead, &delete, &csrf, &[("confirm", "draf")]).await,
        400
    );
    // Act (twice: a double click).
    for _ in 0..2 {
        assert_eq!(
            post_form(&app, &lead, &delete, &csrf, &[("confirm", "draft")]).await,
            303
        );
    }

    // Assert: gone from lists and pages, its items and leases too; the name is free again.
    let (_, index) = page(&app, &lead, "/").await;
    assert!(!index.contains(">draft<"), "{index}");
    let (status, _) = page(&app, &lead, &format!("/projects/{project}/settings")).await;
    assert_eq!(status, 404);
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM assignments)",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(left, 0);
    app.create_project(&admin, "draft", "sft", 1).await;
    let deleted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'project.delete' AND target = 'draft'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("audit");
    assert_eq!(deleted, 1);
}

#[tokio::test]
async fn project_settings_are_edited_by_admins_with_the_csrf_token_only() {
    let app = spawn_app().await;
    let (admin, project) = app.project_with_items("chat", "sft", 1, sft_items(1)).await;
    app.create_project(&admin, "taken", "sft", 1).await;
    app.add_user("rev", Role::Reviewer).await;
    let lead = browser();
    let csrf = signed_in(&app, &lead, "root").await;
    let settings = format!("/projects/{project}/settings");
    let fields = [
        ("name", "chat-v2"),
        ("guidelines", "# Be <brief>"),
        ("rationale_required", "on"),
    ];

    // Refused: no token, a reviewer, a name in use.
    assert_eq!(post_form(&app, &lead, &settings, "", &fields).await, 403);
    let reviewer = browser();
    let rev_csrf = signed_in(&app, &reviewer, "rev").await;
    assert_eq!(
        post_form(&app, &reviewer, &settings, &rev_csrf, &fields).await,
        403
    );
    let (status, _) = page(&app, &reviewer, &settings).await;
    assert_eq!(status, 403);
    let taken = [("name", "taken"), ("guidelines", "")];
    assert_eq!(post_form(&app, &lead, &settings, &csrf, &taken).await, 409);

    // Act
    assert_eq!(post_form(&app, &lead, &settings, &csrf, &fields).await, 303);

    // Assert
    let (_, html) = page(&app, &lead, &format!("{settings}?saved=settings")).await;
    assert!(html.contains(r#"value="chat-v2""#), "{html}");
    assert!(html.contains("# Be &lt;brief&gt;"), "{html}");
    assert!(html.contains("Saved."), "{html}");
    let row: (String, String, bool) =
        sqlx::query_as("SELECT name, guidelines, rationale_required FROM projects WHERE id = $1")
            .bind(project)
            .fetch_one(&app.pool)
            .await
            .expect("project");
    assert_eq!(row, ("chat-v2".into(), "# Be <brief>".into(), true));
}

#[tokio::test]
async fn the_admin_api_archives_and_brings_back_too() {
    let app = spawn_app().await;
    let (admin, project) = app.project_with_items("chat", "sft", 1, sft_items(1)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let patch = |archived: bool| {
        app.client
            .patch(app.url(&format!("/api/admin/projects/{project}")))
            .bearer_auth(&admin.token)
            .json(&json!({"archived": archived}))
            .send()
    };

    let r = patch(true).await.expect("patch");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["archived"], true);
    assert_eq!(
        app.post(&ann, &format!("/api/projects/{project}/next"))
            .await
            .status(),
        404
    );
    let r = patch(false).await.expect("patch");
    assert_eq!(r.json::<Value>().await.expect("json")["archived"], false);
    assert!(app.next(&ann, project).await.is_some());
    let forbidden = app
        .client
        .patch(app.url(&format!("/api/admin/projects/{project}")))
        .bearer_auth(&ann.token)
        .json(&json!({"archived": true}))
        .send()
        .await
        .expect("patch");
    assert_eq!(forbidden.status(), 403);
}
