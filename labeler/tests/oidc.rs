//! Single sign-on against a real OpenID Connect provider: panva's certified `oidc-provider`
//! (npm, installed in `tests/oidc/` by `scripts/setup`) run by node on 127.0.0.1, with its
//! development login and consent pages. Through a cookie-keeping HTTP client and through
//! Chromium: a new identity becomes a user with the role its claim maps to, signs in again as
//! the same user, and cannot take over a local account's name; a forged or replayed answer is
//! refused; the cross-site return without the session cookie is reloaded from this site.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use labeler::domain::Role;
use labeler::oidc::OidcSettings;
use secrecy::SecretString;

use crate::browser::{shoot, wait_for_text};
use crate::helpers::{TestApp, spawn_app_with};
use crate::webdriver::{Browser, chromium_for_test};

const CLIENT_ID: &str = "labeler";
const CLIENT_SECRET: &str = "a client secret: with odd characters / + %";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The provider's script, when node and the npm package are installed.
fn provider_script(test: &str) -> Option<std::path::PathBuf> {
    let dir = testkit::process::workspace_root().join("labeler/tests/oidc");
    let installed = dir.join("node_modules/oidc-provider/package.json").exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !installed {
        let why = "no node, or no oidc-provider in labeler/tests/oidc/node_modules \
                   (scripts/setup installs them: npm ci --prefix labeler/tests/oidc)";
        let ci = std::env::var("CI").is_ok_and(|v| matches!(v.as_str(), "true" | "1"));
        assert!(
            !ci,
            "{test}: {why}; CI=true, so this is a failure, not a skip"
        );
        eprintln!("{test}: skipped: {why}");
        return None;
    }
    Some(dir.join("provider.mjs"))
}

/// The running provider; stopped when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    /// Starts node on a free port and waits until the discovery document answers. The port
    /// is free when chosen but another test may bind it before node does: a provider that
    /// exits at start is started again on another port. Its stderr goes to a file, quoted
    /// when it does not come up.
    async fn start_ready(script: &std::path::Path, app_port: u16) -> Provider {
        let redirect = format!("http://127.0.0.1:{app_port}/login/oidc/callback");
        let log_dir = tempfile::tempdir().expect("tempdir");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let log = log_dir.path().join(format!("provider-{attempt}.log"));
            let stderr = std::fs::File::create(&log).expect("provider log");
            let child = Command::new("node")
                .arg(script)
                .args([&port.to_string(), CLIENT_ID, CLIENT_SECRET, &redirect])
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start node");
            let mut provider = Provider {
                child,
                issuer: format!("http://127.0.0.1:{port}"),
            };
            let url = format!("{}/.well-known/openid-configuration", provider.issuer);
            // Generous: node loads the package from disk while the other tests run too.
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                if reqwest::get(&url)
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    return provider;
                }
                let exited = provider.child.try_wait().ok().flatten();
                let why = std::fs::read_to_string(&log).unwrap_or_default();
                match exited {
                    Some(status) if attempt < 5 => {
                        eprintln!("the provider exited ({status}) on port {port}, retrying: {why}");
                        break;
                    }
                    Some(status) => panic!("the provider exited ({status}): {why}"),
                    None if Instant::now() > deadline => {
                        panic!("the provider did not answer within 90 s: {why}")
                    }
                    None => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A labeler configured for the provider, and the provider, running.
async fn app_with_provider(test: &str) -> Option<(TestApp, Provider)> {
    let script = provider_script(test)?;
    let app_port = free_port();
    let provider = Provider::start_ready(&script, app_port).await;
    let issuer = provider.issuer.clone();
    let app = spawn_app_with(|s| {
        s.server.port = app_port;
        s.oidc = Some(OidcSettings {
            issuer,
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            redirect_url: format!("http://127.0.0.1:{app_port}/login/oidc/callback"),
            scopes: vec!["openid".into(), "profile".into()],
            username_claim: "preferred_username".into(),
            role_claim: Some("labeler_role".into()),
            admin_values: vec!["admin".into()],
            reviewer_values: vec!["reviewer".into()],
            label: "Test SSO".into(),
        });
    })
    .await;
    Some((app, provider))
}

/// The `action` of the first form of `html`, and its hidden fields.
fn form_of(html: &str) -> (String, Vec<(String, String)>) {
    let start = html.find("<form").expect("a form");
    let form = &html[start..];
    let attr = |tag: &str, name: &str| {
        let marker = format!("{name}=\"");
        tag.find(&marker).map(|i| {
            tag[i + marker.len()..]
                .split('"')
                .next()
                .unwrap_or_default()
                .replace("&amp;", "&")
        })
    };
    let action = attr(form, "action").expect("action");
    let end = form.find("</form>").unwrap_or(form.len());
    let hidden = form[..end]
        .split("<input")
        .skip(1)
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| Some((attr(tag, "name")?, attr(tag, "value")?)))
        .collect();
    (action, hidden)
}

/// Signs `login` in at the provider from the labeler's `/login/oidc`, with a cookie-keeping
/// client that follows redirects (the provider's and the labeler's); the last page.
async fn sso_over_http(
    app: &TestApp,
    provider: &Provider,
    client: &reqwest::Client,
    login: &str,
) -> (u16, String) {
    let page = client
        .get(app.url("/login/oidc"))
        .send()
        .await
        .expect("start");
    let mut html = page.text().await.expect("html");
    // The provider's login page, then its consent page (when asked), then back.
    for step in 0..2 {
        if !html.contains("<form") || html.contains("csrf-token") {
            break;
        }
        let (action, mut fields) = form_of(&html);
        if step == 0 && html.contains("name=\"login\"") {
            fields.push(("login".into(), login.into()));
            fields.push(("password".into(), "anything".into()));
        }
        let url = if action.starts_with("http") {
            action
        } else {
            format!("{}{action}", provider.issuer)
        };
        let r = client.post(url).form(&fields).send().await.expect("post");
        let status = r.status().as_u16();
        html = r.text().await.expect("html");
        if status != 200 {
            return (status, html);
        }
    }
    (200, html)
}

fn following_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client")
}

#[tokio::test]
async fn a_new_identity_becomes_a_user_with_its_claimed_role_and_signs_in_again_as_it() {
    let Some((app, provider)) = app_with_provider(
        "a_new_identity_becomes_a_user_with_its_claimed_role_and_signs_in_again_as_it",
    )
    .await
    else {
        return;
    };
    app.add_user("root", Role::Admin).await;

    // Act: rita (role claim "reviewer") signs in twice, in two browsers.
    let (status, index) = sso_over_http(&app, &provider, &following_client(), "rita").await;
    let (status2, index2) = sso_over_http(&app, &provider, &following_client(), "rita").await;

    // Assert
    assert_eq!((status, status2), (200, 200), "{index}");
    assert!(index.contains("rita (reviewer)"), "{index}");
    assert!(index2.contains("rita (reviewer)"), "{index2}");
    let users: Vec<(String, String)> =
        sqlx::query_as("SELECT username, role FROM users ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("users");
    assert_eq!(
        users,
        [
            ("root".to_string(), "admin".to_string()),
            ("rita".to_string(), "reviewer".to_string())
        ]
    );
    let identity: (String, String) = sqlx::query_as("SELECT issuer, subject FROM oidc_identities")
        .fetch_one(&app.pool)
        .await
        .expect("identity");
    assert_eq!(identity, (provider.issuer.clone(), "rita".to_string()));
    let added: String = sqlx::query_scalar(
        "SELECT actor FROM audit_log WHERE action = 'user.add' AND target = 'rita'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("audit");
    assert_eq!(added, format!("oidc:{}", provider.issuer));
    // Local accounts still sign in with a password, and the login page offers both.
    let login = app
        .client
        .get(app.url("/login"))
        .send()
        .await
        .expect("login")
        .text()
        .await
        .expect("html");
    assert!(
        login
            .contains(r#"<a class="button" id="sso" href="/login/oidc">Sign in with Test SSO</a>"#)
    );
    assert!(login.contains(r#"name="password""#));
}

#[tokio::test]
async fn an_identity_cannot_take_over_a_local_accounts_name_and_forged_answers_are_refused() {
    let Some((app, provider)) = app_with_provider(
        "an_identity_cannot_take_over_a_local_accounts_name_and_forged_answers_are_refused",
    )
    .await
    else {
        return;
    };
    // "lead" is a local annotator; the provider's "lead" claims admin.
    app.add_user("lead", Role::Annotator).await;

    let (status, page) = sso_over_http(&app, &provider, &following_client(), "lead").await;
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("the user name lead belongs to another labeler account"),
        "{page}"
    );
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE username = 'lead'")
        .fetch_one(&app.pool)
        .await
        .expect("role");
    assert_eq!(role, "annotator", "the local account is untouched");

    // A callback this browser did not start (no session state): reloaded once from this
    // site (where the session cookie would come along), then refused.
    let client = following_client();
    let bounce = client
        .get(app.url("/login/oidc/callback?code=stolen&state=forged"))
        .send()
        .await
        .expect("callback");
    assert_eq!(bounce.status(), 200);
    let html = bounce.text().await.expect("html");
    assert!(
        html.contains(
            r#"content="0;url=&#x2f;login&#x2f;oidc&#x2f;callback?code=stolen&amp;state=forged&amp;bounced=1""#
        ),
        "{html}"
    );
    let again = client
        .get(app.url("/login/oidc/callback?code=stolen&state=forged&bounced=1"))
        .send()
        .await
        .expect("callback");
    assert_eq!(again.status(), 400);
    let html = again.text().await.expect("html");
    assert!(html.contains("was not started here"), "{html}");
    // A state that is not this sign-in's.
    let client = following_client();
    let start = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = start
        .get(app.url("/login/oidc"))
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .expect("ascii")
            .starts_with(&format!("{}/auth?", provider.issuer))
    );
    let r = start
        .get(app.url("/login/oidc/callback?code=x&state=not-mine"))
        .send()
        .await
        .expect("callback");
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("html").contains("(state)"));
    // The provider's own refusal is shown.
    let r = client
        .get(app.url("/login/oidc/callback?error=access_denied&error_description=nope&bounced=1"))
        .send()
        .await
        .expect("callback");
    assert_eq!(r.status(), 401);
    assert!(r.text().await.expect("html").contains("failed: nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_with_the_oidc_provider() {
    let Some((chrome, driver)) = chromium_for_test("chromium_signs_in_with_the_oidc_provider")
    else {
        return;
    };
    let Some((app, _provider)) =
        app_with_provider("chromium_signs_in_with_the_oidc_provider").await
    else {
        return;
    };
    let b = Browser::start(chrome, driver).await;

    // Act: the labeler's button, the provider's login and consent pages, and back.
    b.goto(&app.url("/login")).await;
    b.find("#sso").await;
    shoot(&b, "login-sso.png").await;
    b.click("#sso").await;
    b.type_into("input[name=login]", "lead").await;
    b.type_into("input[name=password]", "any password").await;
    b.click("button[type=submit]").await;
    // The consent page (its button), unless the provider skips it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if b.url().await.starts_with(&app.address) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never came back: {}",
            b.url().await
        );
        if b.url().await.contains("/interaction/") {
            b.click("button[type=submit]").await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Assert: signed in as lead, an admin by the role claim.
    b.find("table.projects").await;
    wait_for_text(&b, ".who", "lead (admin)").await;
    b.quit().await;
}
