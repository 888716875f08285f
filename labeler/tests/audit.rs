//! The audit log: every admin action leaves a row naming who did what, and no row can be
//! changed or removed afterwards, not even by the table's owner.

use labeler::domain::Role;
use serde_json::{Value, json};

use crate::helpers::{preference_items, spawn_app};

#[tokio::test]
async fn each_admin_action_is_recorded() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let ann = app.add_user("ann", Role::Annotator).await;

    // Act: user management, project settings, import, candidates, export (API) ...
    let r = app
        .post_json(
            &admin,
            "/api/admin/users",
            &json!({"username": "rev", "password": "long enough pw", "role": "reviewer"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let patch = |path: &str, body: Value| {
        app.client
            .patch(app.url(path))
            .bearer_auth(&admin.token)
            .json(&body)
            .send()
    };
    let r = patch("/api/admin/users/ann", json!({"disabled": true}))
        .await
        .expect("patch");
    assert_eq!(r.status(), 204);
    let r = patch("/api/admin/users/ann", json!({"disabled": false}))
        .await
        .expect("patch");
    assert_eq!(r.status(), 204);
    let project = app.create_project(&admin, "duel", "preference", 1).await;
    let r = patch(
        &format!("/api/admin/projects/{project}"),
        json!({"guidelines": "Prefer short answers.", "rationale_required": true}),
    )
    .await
    .expect("patch");
    assert_eq!(r.status(), 200);
    let r = app.import(&admin, project, preference_items(2)).await;
    assert_eq!(r.status(), 201);
    let r = app
        .get(
            &admin,
            &format!("/api/projects/{project}/export?part=pairs"),
        )
        .await;
    assert_eq!(r.status(), 200);
    // ... and the command line.
    labeler::cli::token_create(&app.pool, "rev", "ci")
        .await
        .expect("token");

    // Assert
    let r = app.get(&admin, "/api/admin/audit").await;
    assert_eq!(r.status(), 200);
    let entries: Vec<Value> = r.json().await.expect("json");
    let seen: Vec<(String, String, String)> = entries
        .iter()
        .rev()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or("").to_string(),
                e["action"].as_str().unwrap_or("").to_string(),
                e["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected = [
        ("root", "user.add", "rev"),
        ("root", "user.disable", "ann"),
        ("root", "user.enable", "ann"),
        ("root", "project.create", "duel"),
        ("root", "project.update", "duel"),
        ("root", "project.import", "upload"),
        ("root", "project.export", "pairs"),
    ];
    for (i, (actor, action, target)) in expected.iter().enumerate() {
        assert_eq!(
            (seen[i].0.as_str(), seen[i].1.as_str(), seen[i].2.as_str()),
            (*actor, *action, *target),
            "{seen:?}"
        );
    }
    let last = seen.last().expect("cli entry");
    assert!(last.0.starts_with("cli"), "{last:?}");
    assert_eq!((last.1.as_str(), last.2.as_str()), ("token.create", "rev"));
    let update = &entries[entries.len() - 5];
    assert_eq!(update["details"]["rationale_required"], true);
    assert_eq!(update["project_id"], project);
    // Filtered by project.
    let r = app
        .get(&admin, &format!("/api/admin/audit?project={project}"))
        .await;
    let entries: Vec<Value> = r.json().await.expect("json");
    assert_eq!(entries.len(), 4);

    // Role checks: annotators neither read the log nor manage users.
    assert_eq!(app.get(&ann, "/api/admin/audit").await.status(), 403);
    let r = app
        .post_json(
            &ann,
            "/api/admin/users",
            &json!({"username": "x", "password": "long enough pw", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status(), 403);
    // Bad input is a 400 with a message, not a 500.
    let r = app
        .post_json(
            &admin,
            "/api/admin/users",
            &json!({"username": "x", "password": "long enough pw", "role": "boss"}),
        )
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn the_audit_log_cannot_be_altered() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    app.create_project(&admin, "chat", "sft", 1).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(before, 1);

    // The test connects as the table's owner: the trigger refuses it all the same.
    for sql in [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(sql).execute(&app.pool).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let (count, actor): (i64, String) =
        sqlx::query_as("SELECT count(*), min(actor) FROM audit_log")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!((count, actor.as_str()), (1, "root"));
}
