//! Browser pages over HTTP: sign-in, sessions, CSRF, roles, escaping, security headers.

use labeler::domain::Role;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, sft_items, spawn_app, spawn_app_with};

/// A cookie-keeping client, like a browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        // Under the server's 5 s keep-alive (see `helpers::api_client`).
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("client")
}

/// The CSRF token of a rendered page.
pub fn csrf_of(html: &str) -> String {
    let start = html
        .find(r#"name="csrf-token" content=""#)
        .expect("csrf meta")
        + 27;
    html[start..].split('"').next().expect("token").to_string()
}

/// Signs `name` in through the login form with `client` (its reply is the sign-in's).
pub async fn sign_in(
    app: &TestApp,
    client: &reqwest::Client,
    name: &str,
    password: &str,
) -> reqwest::Response {
    let page = client
        .get(app.url("/login"))
        .send()
        .await
        .expect("login page");
    let csrf = csrf_of(&page.text().await.expect("html"));
    client
        .post(app.url("/login"))
        .form(&[
            ("username", name),
            ("password", password),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .expect("login")
}

/// Signs in and returns the session's CSRF token.
pub async fn signed_in(app: &TestApp, client: &reqwest::Client, name: &str) -> String {
    let r = sign_in(app, client, name, PASSWORD).await;
    assert_eq!(r.status(), 303);
    let index = client.get(app.url("/")).send().await.expect("index");
    assert_eq!(index.status(), 200);
    csrf_of(&index.text().await.expect("html"))
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_session_and_pages_need_it() {
    let app = spawn_app().await;
    app.add_user("ann", Role::Annotator).await;
    let client = browser();
    let r = client.get(app.url("/")).send().await.expect("index");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");

    let wrong = sign_in(&app, &client, "ann", "not the password").await;
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong
            .text()
            .await
            .expect("html")
            .contains("Wrong user name or password")
    );
    let ok = sign_in(&app, &client, "ann", PASSWORD).await;
    assert_eq!(ok.status(), 303);
    let cookie = ok.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let index = client.get(app.url("/")).send().await.expect("index");
    assert_eq!(index.status(), 200);
    let csp = index.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    // The cookie alone is the session; tampered, it is none.
    let replayed = browser()
        .get(app.url("/"))
        .header("cookie", cookie.split(';').next().expect("pair"))
        .send()
        .await
        .expect("index");
    assert_eq!(replayed.status(), 200);
    let forged = browser()
        .get(app.url("/"))
        .header(
            "cookie",
            cookie
                .split(';')
                .next()
                .expect("pair")
                .replace("%22user_id%22%3A%221", "%22user_id%22%3A%222"),
        )
        .send()
        .await
        .expect("index");
    assert_eq!(forged.status(), 303);
}

#[tokio::test]
async fn forms_and_session_api_calls_need_the_csrf_token() {
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("p", "sft", 1, sft_items(2)).await;
    app.add_user("ann", Role::Annotator).await;
    let client = browser();
    let csrf = signed_in(&app, &client, "root").await;

    let create = |token: &str| {
        client
            .post(app.url("/projects"))
            .form(&[
                ("csrf_token", token),
                ("name", "q"),
                ("kind", "sft"),
                ("overlap", "1"),
            ])
            .send()
    };
    assert_eq!(create("").await.expect("post").status(), 403);
    assert_eq!(create("0123").await.expect("post").status(), 403);
    assert_eq!(create(&csrf).await.expect("post").status(), 303);

    let next = format!("/api/projects/{project}/next");
    let no_header = client.post(app.url(&next)).send().await.expect("post");
    assert_eq!(no_header.status(), 403);
    let with_header = client
        .post(app.url(&next))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("post");
    assert_eq!(with_header.status(), 200);
    // Sign-in itself needs the token of the login page.
    let fresh = browser();
    let r = fresh
        .post(app.url("/login"))
        .form(&[
            ("username", "root"),
            ("password", PASSWORD),
            ("csrf_token", "guess"),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 403);
    // Signing out needs it too.
    let out = client
        .post(app.url("/logout"))
        .form(&[("csrf_token", "nope")])
        .send()
        .await
        .expect("post");
    assert_eq!(out.status(), 403);
    let out = client
        .post(app.url("/logout"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(out.status(), 303);
    assert_eq!(
        client.get(app.url("/")).send().await.expect("get").status(),
        303
    );
}

#[tokio::test]
async fn annotators_get_no_admin_tools_or_rights() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    app.add_user("ann", Role::Annotator).await;
    app.create_project(&admin, "p", "sft", 1).await;
    let client = browser();
    let csrf = signed_in(&app, &client, "ann").await;
    let index = client
        .get(app.url("/"))
        .send()
        .await
        .expect("index")
        .text()
        .await
        .expect("html");
    assert!(
        index.contains("Annotate") && !index.contains("New project") && !index.contains("Export")
    );
    let r = client
        .post(app.url("/projects"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "q"),
            ("kind", "sft"),
            ("overlap", "1"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let export = client
        .get(app.url("/api/projects/1/export"))
        .send()
        .await
        .expect("get");
    assert_eq!(export.status(), 403);
}

/// Signs `ann` in and reads `project`'s annotate and guidelines pages: (path, html).
async fn annotator_pages(app: &TestApp, project: i64) -> Vec<(String, String)> {
    let client = browser();
    signed_in(app, &client, "ann").await;
    let mut pages = Vec::new();
    for path in [
        format!("/projects/{project}/annotate"),
        format!("/projects/{project}/guidelines"),
    ] {
        let html = client
            .get(app.url(&path))
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("html");
        pages.push((path, html));
    }
    pages
}

#[tokio::test]
async fn user_text_is_rendered_inert() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    app.add_user("ann", Role::Annotator).await;
    let payload = r#"<script>alert(1)</script><img src=x onerror=alert(2)>"#;
    let body = json!({"name": "x", "kind": "preference", "overlap": 1, "guidelines": payload});
    let project = app.create_project_from(&admin, &body).await;
    let row = json!({"prompt": payload, "candidates": [{"content": payload}, {"content": "</script><script>alert(3)</script>"}]});
    assert_eq!(
        app.import(&admin, project, row.to_string()).await.status(),
        201
    );

    for (path, html) in annotator_pages(&app, project).await {
        assert!(!html.contains("<script>alert"), "{path}: {html}");
        assert!(!html.contains("<img src=x"), "{path}: {html}");
        assert!(!html.contains("</script><script>"), "{path}: {html}");
        assert!(
            html.contains("&lt;img src=x") || html.contains(r"\u003cimg src=x"),
            "{path}: {html}"
        );
    }
}

#[tokio::test]
async fn markdown_guidelines_render_as_sanitized_html() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    app.add_user("ann", Role::Annotator).await;
    let guidelines = "## How to judge\n\n- facts first\n- then *style*\n\n\
                      [Rubric](https://example.org/r) · [trap](javascript:alert(1))\n\n\
                      <script>alert(2)</script>\n";
    let body = json!({"name": "md", "kind": "sft", "overlap": 1, "guidelines": guidelines});
    let project = app.create_project_from(&admin, &body).await;
    assert_eq!(
        app.import(&admin, project, sft_items(1)).await.status(),
        201
    );
    for (path, html) in annotator_pages(&app, project).await {
        assert!(html.contains("<h2>How to judge</h2>"), "{path}: {html}");
        assert!(
            html.contains("<li>then <em>style</em></li>"),
            "{path}: {html}"
        );
        assert!(
            html.contains(r#"href="https://example.org/r""#),
            "{path}: {html}"
        );
        assert!(!html.contains("javascript:"), "{path}: {html}");
        assert!(!html.contains("<script>alert"), "{path}: {html}");
        assert!(html.contains("&lt;script&gt;alert(2)"), "{path}: {html}");
    }
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_refused() {
    let app = spawn_app_with(|s| s.labeling.login_max_failures = 3).await;
    app.add_user("ann", Role::Annotator).await;
    let client = browser();
    for _ in 0..3 {
        assert_eq!(
            sign_in(&app, &client, "ann", "guessing-wrong")
                .await
                .status(),
            401
        );
    }
    // Even the right password is refused for a while now.
    assert_eq!(sign_in(&app, &client, "ann", PASSWORD).await.status(), 429);
}

#[tokio::test]
async fn disabling_a_user_ends_their_browser_session() {
    let app = spawn_app().await;
    app.add_user("ann", Role::Annotator).await;
    let client = browser();
    signed_in(&app, &client, "ann").await;
    let name = labeler::domain::Username::parse("ann").expect("name");
    labeler::store::accounts::set_disabled(&app.pool, &name, true)
        .await
        .expect("disable");
    let r = client.get(app.url("/")).send().await.expect("index");
    assert_eq!(r.status(), 303);
    assert_eq!(sign_in(&app, &client, "ann", PASSWORD).await.status(), 401);
}
