//! Users, roles and API tokens managed in the browser by admins: plain forms with the CSRF
//! token, admins only; a double-posted "add user" or "create token" form acts once; a new
//! token is shown once; role changes, disabling and revocation apply at once.

use crate::helpers::{PASSWORD, TestApp, spawn_app};
use crate::pages::{browser, sign_in, signed_in};
use labeler::domain::Role;

/// The value of the first `name="{field}"` hidden input of `html`.
fn field(html: &str, field: &str) -> String {
    let marker = format!(r#"name="{field}" value=""#);
    let start = html.find(&marker).expect("field") + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

async fn users_page(app: &TestApp, client: &reqwest::Client) -> String {
    let r = client
        .get(app.url("/admin/users"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    r.text().await.expect("html")
}

async fn post(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    client
        .post(app.url(path))
        .form(fields)
        .send()
        .await
        .expect("post")
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().expect("ascii").to_string()
}

#[tokio::test]
async fn admins_add_users_and_change_roles_in_the_browser() {
    // Arrange
    let app = spawn_app().await;
    app.add_user("root", Role::Admin).await;
    let admin = browser();
    let csrf = signed_in(&app, &admin, "root").await;
    let html = users_page(&app, &admin).await;
    let nonce = field(&html, "nonce");
    let form = [
        ("csrf_token", csrf.as_str()),
        ("nonce", nonce.as_str()),
        ("username", "newbie"),
        ("role", "annotator"),
        ("password", PASSWORD),
    ];

    // Act: the form posted twice (a double click).
    let first = post(&app, &admin, "/admin/users", &form).await;
    let second = post(&app, &admin, "/admin/users", &form).await;

    // Assert: one user; the second post says it was already sent.
    assert_eq!(location(&first), "/admin/users?done=added");
    assert_eq!(location(&second), "/admin/users?done=again");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE username = 'newbie'")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(n, 1);
    let newbie = browser();
    assert_eq!(
        sign_in(&app, &newbie, "newbie", PASSWORD).await.status(),
        303
    );
    let index = newbie.get(app.url("/")).send().await.expect("get");
    assert!(!index.text().await.expect("html").contains("Review</a>"));
    // Annotators may not open or post the page.
    let r = newbie
        .get(app.url("/admin/users"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403);

    // A role change applies to the open session at once.
    let r = post(
        &app,
        &admin,
        "/admin/users/newbie/role",
        &[("csrf_token", csrf.as_str()), ("role", "reviewer")],
    )
    .await;
    assert_eq!(location(&r), "/admin/users?done=role");
    let index = newbie.get(app.url("/")).send().await.expect("get");
    let index = index.text().await.expect("html");
    assert!(index.contains("newbie (reviewer)"), "{index}");
    let who: String = sqlx::query_scalar("SELECT role FROM users WHERE username = 'newbie'")
        .fetch_one(&app.pool)
        .await
        .expect("role");
    assert_eq!(who, "reviewer");
    let r = newbie
        .get(app.url("/admin/users"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403, "reviewers are not admins");
    // Without the CSRF token: refused; an admin may not demote or disable themselves.
    let r = post(
        &app,
        &admin,
        "/admin/users/newbie/role",
        &[("role", "admin")],
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = post(
        &app,
        &admin,
        "/admin/users/root/role",
        &[("csrf_token", csrf.as_str()), ("role", "annotator")],
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post(
        &app,
        &admin,
        "/admin/users/root/disabled",
        &[("csrf_token", csrf.as_str()), ("disabled", "true")],
    )
    .await;
    assert_eq!(r.status(), 400);
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE target = 'newbie' ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("audit");
    assert_eq!(actions, ["user.add", "user.role"]);
}

#[tokio::test]
async fn tokens_are_made_once_shown_once_and_revoked_at_once() {
    let app = spawn_app().await;
    app.add_user("root", Role::Admin).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let admin = browser();
    let csrf = signed_in(&app, &admin, "root").await;
    let nonce = field(&users_page(&app, &admin).await, "nonce");
    let form = [
        ("csrf_token", csrf.as_str()),
        ("nonce", nonce.as_str()),
        ("name", "trainer <gpu>"),
    ];

    // Act: create (twice: a double click).
    let first = post(&app, &admin, "/admin/users/ann/tokens", &form).await;
    assert_eq!(first.status(), 200);
    let html = first.text().await.expect("html");
    let second = post(&app, &admin, "/admin/users/ann/tokens", &form).await;
    assert_eq!(location(&second), "/admin/users?done=again");

    // Assert: one new token (beside the test's own), shown in the reply, working.
    let marker = r#"id="token-value" readonly value=""#;
    let start = html.find(marker).expect("the new token") + marker.len();
    let token = html[start..].split('"').next().expect("token").to_string();
    assert!(token.starts_with("jlt_"), "{html}");
    assert!(html.contains("trainer &lt;gpu&gt;"), "{html}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE name = 'trainer <gpu>'")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(n, 1);
    let me = |token: String| {
        let client = app.client.clone();
        let url = app.url("/api/me");
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("me")
                .status()
                .as_u16()
        }
    };
    assert_eq!(me(token.clone()).await, 200);
    // The list never shows a token again.
    let page = users_page(&app, &admin).await;
    assert!(!page.contains(&token));

    // Revoke: refused at once (the server's token cache forgets the user).
    let id: i64 = sqlx::query_scalar("SELECT id FROM api_tokens WHERE name = 'trainer <gpu>'")
        .fetch_one(&app.pool)
        .await
        .expect("id");
    let r = post(
        &app,
        &admin,
        &format!("/admin/tokens/{id}/revoke"),
        &[("csrf_token", csrf.as_str())],
    )
    .await;
    assert_eq!(location(&r), "/admin/users?done=revoked");
    assert_eq!(me(token).await, 401);
    assert_eq!(
        me(ann.token.clone()).await,
        200,
        "the other token still works"
    );

    // Disabling in the page stops the user's tokens at once too.
    let r = post(
        &app,
        &admin,
        "/admin/users/ann/disabled",
        &[("csrf_token", csrf.as_str()), ("disabled", "true")],
    )
    .await;
    assert_eq!(location(&r), "/admin/users?done=disabled");
    assert_eq!(me(ann.token.clone()).await, 401);
}
