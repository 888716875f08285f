//! Start-up: migrations, health check, settings.

use labeler::Settings;
use sqlx::Connection;

use crate::helpers::{settings, spawn_app};

#[tokio::test]
async fn health_check_reaches_the_database() {
    // Arrange
    let app = spawn_app().await;
    // Act
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("request");
    // Assert
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"status": "ok", "database": "ok"}));
}

#[tokio::test]
async fn start_up_records_migrations() {
    let app = spawn_app().await;
    let mut conn = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("connect");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .expect("migrations table exists after start-up");
    assert_eq!(applied, labeler::MIGRATOR.iter().count() as i64);
}

#[tokio::test]
async fn unreachable_database_fails_start_up_with_a_hint() {
    let mut s = settings("postgres://nobody@127.0.0.1:1/none");
    s.database.max_connections = 1;
    s.database.acquire_timeout_secs = 1;
    let err = labeler::Application::build(s)
        .await
        .expect_err("no server on port 1");
    assert!(format!("{err:#}").contains("scripts/pg start"), "{err:#}");
}

#[test]
fn settings_reject_unknown_fields_and_apply_env() {
    let text = "[server]\nhost = \"h\"\nport = 1\nprot = 2\n[database]\n";
    let err = toml::from_str::<Settings>(text).expect_err("typo must fail");
    assert!(err.to_string().contains("prot"), "{err}");

    let mut s = settings("postgres://x@localhost/db");
    s.apply_env(|k| match k {
        "LABELER_PORT" => Some("9999".into()),
        _ => None,
    })
    .expect("env");
    assert_eq!(s.server.port, 9999);
    let err = s
        .apply_env(|k| (k == "LABELER_PORT").then(|| "http".into()))
        .expect_err("bad port");
    assert!(err.to_string().contains("LABELER_PORT"), "{err}");
}
