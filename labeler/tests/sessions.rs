//! Sessions end on the server: a cookie copied before sign-out, a password change or a
//! disabling is refused afterwards, and so is one idle or open too long; the cookie itself
//! expires, and is `Secure` when the server is reached over HTTPS.

use std::time::Duration;

use labeler::domain::{Password, Role, Username};
use labeler::store::accounts;

use crate::helpers::{PASSWORD, TestApp, spawn_app, spawn_app_with};
use crate::pages::{browser, csrf_of};

/// A browser's signed-in session, as its cookie: what someone who copied it would hold.
pub struct CopiedSession {
    /// `labeler_session=...`, ready for a `Cookie` header.
    pub cookie: String,
    /// The whole `Set-Cookie` of the sign-in, attributes included.
    pub set_cookie: String,
    pub csrf: String,
}

/// Signs `name` in with `password` through the login form and copies the session cookie.
async fn sign_in_with(app: &TestApp, name: &str, password: &str) -> CopiedSession {
    let r = crate::pages::sign_in(app, &browser(), name, password).await;
    assert_eq!(r.status(), 303, "sign-in of {name}");
    let set_cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    let cookie = set_cookie.split(';').next().expect("pair").to_string();
    let index = replay(app, &cookie, "/").await;
    assert_eq!(index.status(), 200);
    let csrf = csrf_of(&index.text().await.expect("html"));
    CopiedSession {
        cookie,
        set_cookie,
        csrf,
    }
}

pub async fn sign_in(app: &TestApp, name: &str) -> CopiedSession {
    sign_in_with(app, name, PASSWORD).await
}

/// GET `path` with nothing but `cookie`, from a client that never saw it set.
async fn replay(app: &TestApp, cookie: &str, path: &str) -> reqwest::Response {
    browser()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .expect("request")
}

/// Whether `cookie` still opens pages (200) and the API (200); a dead one is sent to the
/// sign-in page and refused by the API with 401.
async fn assert_refused(app: &TestApp, cookie: &str, why: &str) {
    let page = replay(app, cookie, "/").await;
    assert_eq!(page.status(), 303, "{why}: page");
    assert_eq!(page.headers()["location"], "/login", "{why}");
    let api = replay(app, cookie, "/api/me").await;
    assert_eq!(api.status(), 401, "{why}: API");
}

async fn assert_live(app: &TestApp, cookie: &str, why: &str) {
    assert_eq!(replay(app, cookie, "/").await.status(), 200, "{why}: page");
    assert_eq!(
        replay(app, cookie, "/api/me").await.status(),
        200,
        "{why}: API"
    );
}

#[tokio::test]
async fn a_cookie_copied_before_sign_out_is_refused_after_it() {
    // Arrange
    let app = spawn_app().await;
    app.add_user("ann", Role::Annotator).await;
    let kept = sign_in(&app, "ann").await;
    let other_browser = sign_in(&app, "ann").await;

    // Act: sign out with the session's own form.
    let out = browser()
        .post(app.url("/logout"))
        .header("cookie", &kept.cookie)
        .form(&[("csrf_token", kept.csrf.as_str())])
        .send()
        .await
        .expect("sign out");
    assert_eq!(out.status(), 303);

    // Assert: the copy is worthless; the user's other browser is still signed in.
    assert_refused(&app, &kept.cookie, "after sign-out").await;
    assert_live(&app, &other_browser.cookie, "another browser's session").await;
}

#[tokio::test]
async fn a_password_change_ends_every_session_of_the_user() {
    let app = spawn_app().await;
    app.add_user("ann", Role::Annotator).await;
    app.add_user("bob", Role::Annotator).await;
    let first = sign_in(&app, "ann").await;
    let second = sign_in(&app, "ann").await;
    let bobs = sign_in(&app, "bob").await;

    let password = Password::parse("a brand new passphrase".into()).expect("password");
    labeler::cli::user_set_password(&app.pool, "ann", password)
        .await
        .expect("set password");

    assert_refused(&app, &first.cookie, "first session after a password change").await;
    assert_refused(
        &app,
        &second.cookie,
        "second session after a password change",
    )
    .await;
    assert_live(&app, &bobs.cookie, "another user's session").await;
    let fresh = sign_in_with(&app, "ann", "a brand new passphrase").await;
    assert_live(&app, &fresh.cookie, "a sign-in with the new password").await;
    let action: String =
        sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .expect("audit");
    assert_eq!(action, "user.password");
}

#[tokio::test]
async fn a_disabled_user_enabled_again_does_not_get_old_sessions_back() {
    let app = spawn_app().await;
    app.add_user("ann", Role::Annotator).await;
    let session = sign_in(&app, "ann").await;
    let name = Username::parse("ann").expect("name");

    accounts::set_disabled(&app.pool, &name, true)
        .await
        .expect("disable");
    accounts::set_disabled(&app.pool, &name, false)
        .await
        .expect("enable");

    assert_refused(&app, &session.cookie, "after disable and enable").await;
    let fresh = sign_in(&app, "ann").await;
    assert_live(&app, &fresh.cookie, "a new sign-in").await;
}

#[tokio::test]
async fn sessions_end_after_the_idle_timeout() {
    let app = spawn_app_with(|s| s.sessions.idle_timeout_secs = 3).await;
    app.add_user("ann", Role::Annotator).await;
    let idle = sign_in(&app, "ann").await;
    let busy = sign_in(&app, "ann").await;

    // Each use moves the idle deadline: `busy` stays alive well past the first one, while
    // `idle`, last used when it signed in, runs out.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_live(&app, &busy.cookie, "a session in use").await;
    }

    assert_refused(&app, &idle.cookie, "a session idle past the timeout").await;
}

#[tokio::test]
async fn sessions_end_after_the_absolute_timeout_however_busy() {
    let app = spawn_app().await;
    app.add_user("ann", Role::Annotator).await;
    let old = sign_in(&app, "ann").await;
    let young = sign_in(&app, "ann").await;
    let absolute = crate::helpers::settings(&app.database_url)
        .sessions
        .absolute_timeout_secs;

    // `old` was opened longer ago than the timeout (and used a moment ago).
    sqlx::query(
        "UPDATE sessions SET created_at = now() - make_interval(secs => $1) \
         WHERE created_at = (SELECT min(created_at) FROM sessions)",
    )
    .bind(absolute as f64 + 1.0)
    .execute(&app.pool)
    .await
    .expect("age the session");

    assert_refused(&app, &old.cookie, "a session past the absolute timeout").await;
    assert_live(&app, &young.cookie, "a younger session").await;
}

#[tokio::test]
async fn the_cookie_expires_and_is_secure_when_served_over_https() {
    // Plain HTTP (the configuration's default): an expiry, no `Secure`.
    let app = spawn_app().await;
    app.add_user("ann", Role::Annotator).await;
    let plain = sign_in(&app, "ann").await.set_cookie;
    let absolute = crate::helpers::settings(&app.database_url)
        .sessions
        .absolute_timeout_secs;
    assert!(plain.contains(&format!("Max-Age={absolute}")), "{plain}");
    assert!(!plain.contains("Secure"), "{plain}");

    // Behind a proxy that terminates TLS, or told the site is HTTPS: `Secure`.
    for https in [
        (|s: &mut labeler::Settings| s.server.behind_tls_proxy = true) as fn(&mut _),
        |s: &mut labeler::Settings| s.labeling.secure_cookies = true,
    ] {
        let app = spawn_app_with(https).await;
        app.add_user("ann", Role::Annotator).await;
        let page = app
            .client
            .get(app.url("/login"))
            .send()
            .await
            .expect("login");
        let cookie = page.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .to_string();
        assert!(cookie.contains("Secure"), "{cookie}");
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("Max-Age="), "{cookie}");
    }
}

#[test]
fn session_settings_have_defaults_and_refuse_typos() {
    let base = "[server]\nhost = \"h\"\nport = 1\n[database]\nhost = \"d\"\nport = 5432\n\
                username = \"u\"\npassword = \"\"\ndatabase_name = \"n\"\nrequire_ssl = false\n";
    let s: labeler::Settings = toml::from_str(base).expect("settings");
    assert_eq!(
        (
            s.sessions.idle_timeout_secs,
            s.sessions.absolute_timeout_secs
        ),
        (7200, 43200)
    );
    assert!(!s.server.behind_tls_proxy && !s.secure_cookies());

    let typo = format!("{base}[sessions]\nidle_timout_secs = 5\n");
    let err = toml::from_str::<labeler::Settings>(&typo).expect_err("typo must fail");
    assert!(err.to_string().contains("idle_timout_secs"), "{err}");
}
