//! `spawn_app`: a fresh database and an `Application` on port 0, plus typed helpers for the
//! API calls the tests make.

use labeler::domain::{Password, Role, Username};
use labeler::store::accounts;
use labeler::{Application, Settings};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::db::TestDatabase;
use testkit::process::workspace_root;

pub struct TestApp {
    pub address: String,
    pub database_url: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
}

/// A user of the test app with an API token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub name: String,
    pub token: String,
}

pub const PASSWORD: &str = "correct horse battery";

pub fn settings(database_url: &str) -> Settings {
    let text = std::fs::read_to_string(workspace_root().join("configs/labeler.toml"))
        .expect("read configs/labeler.toml");
    let mut settings: Settings = toml::from_str(&text).expect("parse configs/labeler.toml");
    settings.server.port = 0;
    settings.database.url = Some(SecretString::from(database_url.to_string()));
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with settings changed by `edit` first.
pub async fn spawn_app_with(edit: impl FnOnce(&mut Settings)) -> TestApp {
    let database_url = TestDatabase::create().await.url;
    let mut s = settings(&database_url);
    edit(&mut s);
    let app = Application::build(s).await.expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let pool = PgPool::connect(&database_url)
        .await
        .expect("connect test db");
    TestApp {
        address,
        database_url,
        client: api_client(),
        pool,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Adds a user with password [`PASSWORD`] and an API token.
    pub async fn add_user(&self, name: &str, role: Role) -> TestUser {
        let username = Username::parse(name).expect("name");
        let password = Password::parse(PASSWORD.into()).expect("password");
        let id = accounts::add_user(&self.pool, &username, &password, role)
            .await
            .expect("add user");
        let token = accounts::create_token(&self.pool, &username, "test")
            .await
            .expect("token");
        TestUser {
            id,
            name: name.into(),
            token,
        }
    }

    /// Creates a project through the API as `admin`; returns its id.
    pub async fn create_project(
        &self,
        admin: &TestUser,
        name: &str,
        kind: &str,
        overlap: i64,
    ) -> i64 {
        let body =
            json!({"name": name, "kind": kind, "overlap": overlap, "guidelines": "Be kind."});
        self.create_project_from(admin, &body).await
    }

    /// Creates a project from a full `POST /api/projects` body; returns its id.
    pub async fn create_project_from(&self, admin: &TestUser, body: &Value) -> i64 {
        let response = self.post_json(admin, "/api/projects", body).await;
        assert_eq!(response.status(), 201, "create project");
        let body: Value = response.json().await.expect("json");
        body["id"].as_i64().expect("project id")
    }

    /// The arrangement most tests start from: the admin `root` (added first, so user ids
    /// stay as the tests expect), a project `name` of `kind` with `overlap` made through the
    /// API, and `items` (JSONL) imported into it. Returns the admin and the project id.
    pub async fn project_with_items(
        &self,
        name: &str,
        kind: &str,
        overlap: i64,
        items: String,
    ) -> (TestUser, i64) {
        let admin = self.add_user("root", Role::Admin).await;
        let project = self.create_project(&admin, name, kind, overlap).await;
        assert_eq!(self.import(&admin, project, items).await.status(), 201);
        (admin, project)
    }

    pub async fn post_json(&self, user: &TestUser, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&user.token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// A POST without a body (renew, skip, next with a query).
    pub async fn post(&self, user: &TestUser, path: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("request")
    }

    pub async fn put_json(&self, user: &TestUser, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .bearer_auth(&user.token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, user: &TestUser, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("request")
    }

    pub async fn import(&self, admin: &TestUser, project: i64, jsonl: String) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/projects/{project}/items")))
            .bearer_auth(&admin.token)
            .header("content-type", "application/x-ndjson")
            .body(jsonl)
            .send()
            .await
            .expect("request")
    }

    /// The next task for `user`, or `None` on 204.
    pub async fn next(&self, user: &TestUser, project: i64) -> Option<Value> {
        let response = self
            .client
            .post(self.url(&format!("/api/projects/{project}/next")))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("request");
        match response.status().as_u16() {
            200 => Some(response.json().await.expect("json")),
            204 => None,
            other => panic!(
                "next: {other} {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }

    pub async fn submit(
        &self,
        user: &TestUser,
        assignment: i64,
        body: &Value,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(&format!("/api/assignments/{assignment}/submit")))
            .bearer_auth(&user.token)
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("request")
    }
}

/// The line numbers of the rows a refused upload lists (`{"rows": [{"line", ...}]}`).
pub fn rejected_lines(body: &Value) -> Vec<i64> {
    body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["line"].as_i64().expect("line"))
        .collect()
}

/// JSONL with `n` SFT prompts `p0..`.
pub fn sft_items(n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({"id": format!("p{i}"), "prompt": format!("Question {i}?")}).to_string() + "\n"
        })
        .collect()
}

/// JSONL with `n` preference prompts, each with two candidates from two checkpoints.
pub fn preference_items(n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({
                "id": format!("q{i}"),
                "prompt": [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": format!("Explain {i}.")}],
                "candidates": [
                    {"content": format!("old answer {i}"), "model": "jl-small", "checkpoint": "step-100",
                     "sampling": {"temperature": 0.7}},
                    {"content": format!("new answer {i}"), "model": "jl-small", "checkpoint": "step-200",
                     "sampling": {"temperature": 0.7}},
                ],
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// The API client of the tests. A pooled connection idle longer than the server's keep-alive
/// (actix's 5 s) is closed by the server, and a request sent on it as it closes fails with
/// an incomplete message (a browser test's session can leave it idle that long): connections
/// idle for 2 s are dropped by the client first.
pub fn api_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("client")
}
