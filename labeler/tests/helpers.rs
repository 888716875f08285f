//! `spawn_app`: a fresh database and an `Application` on port 0.

use std::str::FromStr;

use labeler::{Application, Settings};
use secrecy::SecretString;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

pub struct TestApp {
    pub address: String,
    pub database_url: String,
    pub client: reqwest::Client,
}

pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: run the tests through `scripts/test`, which starts the \
             project's PostgreSQL cluster, or point DATABASE_URL at a server you own"
        )
    })
}

/// A new, empty database on the test server; returns its URL.
pub async fn create_database() -> String {
    let url = server_url();
    let options = PgConnectOptions::from_str(&url).expect("DATABASE_URL parses");
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .expect("connect to the maintenance database");
    conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("create test database");
    // Replace the database path of the URL, keeping host/port/user query parameters.
    let (base, query) = url
        .split_once('?')
        .map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

pub fn settings(database_url: &str) -> Settings {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/labeler.toml"
    ))
    .expect("read configs/labeler.toml");
    let mut settings: Settings = toml::from_str(&text).expect("parse configs/labeler.toml");
    settings.server.port = 0;
    settings.database.url = Some(SecretString::from(database_url.to_string()));
    settings
}

pub async fn spawn_app() -> TestApp {
    let database_url = create_database().await;
    let app = Application::build(settings(&database_url))
        .await
        .expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        database_url,
        client: reqwest::Client::new(),
    }
}
