//! Accounts, API tokens and role checks.

use labeler::domain::{Role, Username};
use labeler::store::accounts;
use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app, spawn_app_with};

#[tokio::test]
async fn users_are_added_listed_and_disabled() {
    let app = spawn_app().await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let root = app.add_user("root", Role::Admin).await;

    let users = accounts::list_users(&app.pool).await.expect("list");
    let names: Vec<_> = users
        .iter()
        .map(|u| (u.username.as_str(), u.role.as_str()))
        .collect();
    assert_eq!(names, [("ann", "annotator"), ("root", "admin")]);
    // Hashes are argon2, never the password.
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE username = 'ann'")
        .fetch_one(&app.pool)
        .await
        .expect("hash");
    assert!(
        hash.starts_with("$argon2id$") && !hash.contains(PASSWORD),
        "{hash}"
    );
    assert!(
        accounts::authenticate(&app.pool, "ann", PASSWORD)
            .await
            .expect("auth")
            .is_some()
    );
    assert!(
        accounts::authenticate(&app.pool, "ann", "wrong password")
            .await
            .expect("auth")
            .is_none()
    );

    // A token works until its user is disabled: at once through the admin API, although the
    // server has just remembered the token.
    assert_eq!(app.get(&ann, "/api/me").await.status(), 200);
    let r = app
        .client
        .patch(app.url("/api/admin/users/ann"))
        .bearer_auth(&root.token)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .expect("disable through the API");
    assert_eq!(r.status(), 204);
    assert_eq!(app.get(&ann, "/api/me").await.status(), 401);
    let name = Username::parse("ann").expect("name");
    accounts::set_disabled(&app.pool, &name, true)
        .await
        .expect("disable");
    assert!(
        accounts::authenticate(&app.pool, "ann", PASSWORD)
            .await
            .expect("auth")
            .is_none()
    );
    let missing = Username::parse("nobody").expect("name");
    assert!(
        accounts::set_disabled(&app.pool, &missing, true)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tokens_are_stored_hashed_and_checked() {
    let app = spawn_app().await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_sha256 FROM api_tokens")
        .fetch_one(&app.pool)
        .await
        .expect("token row");
    assert_eq!(stored.len(), 32);
    assert!(
        !ann.token
            .as_bytes()
            .windows(8)
            .any(|w| stored.windows(8).any(|s| s == w))
    );

    let me: serde_json::Value = app.get(&ann, "/api/me").await.json().await.expect("json");
    assert_eq!(me["username"], "ann");
    let no_auth = app
        .client
        .get(app.url("/api/me"))
        .send()
        .await
        .expect("request");
    assert_eq!(no_auth.status(), 401);
    let forged = app
        .client
        .get(app.url("/api/me"))
        .bearer_auth("jlt_0000")
        .send()
        .await
        .expect("request");
    assert_eq!(forged.status(), 401);
}

#[tokio::test]
async fn annotators_cannot_use_admin_routes() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let project = app.create_project(&admin, "p", "sft", 1).await;

    let create = app
        .post_json(
            &ann,
            "/api/projects",
            &json!({"name": "x", "kind": "sft", "overlap": 1}),
        )
        .await;
    assert_eq!(create.status(), 403);
    let import = app
        .import(&ann, project, crate::helpers::sft_items(1))
        .await;
    assert_eq!(import.status(), 403);
    let export = app
        .get(&ann, &format!("/api/projects/{project}/export"))
        .await;
    assert_eq!(export.status(), 403);

    // An annotator cannot read or answer another annotator's assignment.
    let bob = app.add_user("bob", Role::Annotator).await;
    assert_eq!(
        app.import(&admin, project, crate::helpers::sft_items(1))
            .await
            .status(),
        201
    );
    let task = app.next(&ann, project).await.expect("task");
    let id = task["assignment_id"].as_i64().expect("id");
    assert_eq!(
        app.get(&bob, &format!("/api/assignments/{id}"))
            .await
            .status(),
        404
    );
    let stolen = app.submit(&bob, id, &json!({"answer": "mine"}), None).await;
    assert_eq!(stolen.status(), 404);
}

#[tokio::test]
async fn a_user_disabled_elsewhere_loses_their_token_within_the_cache_time() {
    let app = spawn_app_with(|s| s.labeling.token_cache_seconds = 1).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    assert_eq!(app.get(&ann, "/api/me").await.status(), 200);
    // As `labeler user disable` does: straight in the database, the server is not told.
    let name = Username::parse("ann").expect("name");
    accounts::set_disabled(&app.pool, &name, true)
        .await
        .expect("disable");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.get(&ann, "/api/me").await.status(), 401);
}
