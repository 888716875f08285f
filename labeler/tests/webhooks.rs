//! Webhooks end to end: a small HTTP receiver in the test gets signed `item.completed` and
//! `export.created` events, the signature verifies with the project's secret and not with
//! another, a receiver that is down at first gets the event once it is up, and the setting
//! is checked, hidden and audit-logged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use labeler::domain::Role;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::helpers::{TestApp, TestUser, sft_items, spawn_app_with};

/// One request the receiver got: lower-case header names, the raw body.
#[derive(Debug)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A minimal HTTP/1.1 server on `listener`: answers every request 200 and hands it over.
fn receiver(listener: TcpListener) -> mpsc::UnboundedReceiver<Received> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = socket.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "connection closed before the headers ended");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let headers: HashMap<String, String> = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let length: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .expect("content-length");
                while buf.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.expect("read body");
                    assert!(n > 0, "connection closed inside the body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = buf[head_end..head_end + length].to_vec();
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await
                    .expect("write");
                let _ = socket.shutdown().await;
                let _ = tx.send(Received { headers, body });
            });
        }
    });
    rx
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("an event within 20 s")
        .expect("receiver running")
}

/// HMAC-SHA256 over `<timestamp>.<body>`, as the README tells receivers to compute it.
fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// An app whose deliverer polls and retries fast.
async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.webhooks.poll_interval_ms = 50;
        s.webhooks.backoff_base_ms = 200;
        s.webhooks.backoff_max_secs = 1;
        s.webhooks.timeout_secs = 2;
    })
    .await
}

async fn patch(app: &TestApp, user: &TestUser, project: i64, body: &Value) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/api/admin/projects/{project}")))
        .bearer_auth(&user.token)
        .json(body)
        .send()
        .await
        .expect("request")
}

/// Leases the next item for `user` and answers it.
async fn answer(app: &TestApp, user: &TestUser, project: i64) -> String {
    let task = app.next(user, project).await.expect("a task");
    let id = task["assignment_id"].as_i64().expect("assignment id");
    let response = app
        .submit(user, id, &json!({"answer": "Because."}), None)
        .await;
    assert_eq!(response.status(), 201);
    task["external_id"]
        .as_str()
        .expect("external id")
        .to_string()
}

async fn count_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn signed_events_arrive_for_a_completed_item_and_an_export() {
    // Arrange: overlap 2, a receiver, a webhook with a secret the server makes.
    let app = app().await;
    let (admin, project) = app.project_with_items("chat", "sft", 2, sft_items(2)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let bob = app.add_user("bob", Role::Annotator).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/hooks?token=abc",
        listener.local_addr().expect("addr")
    );
    let mut events = receiver(listener);
    let response = patch(&app, &admin, project, &json!({"webhook_url": url})).await;
    assert_eq!(response.status(), 200);
    let set: Value = response.json().await.expect("json");
    let secret = set["webhook_secret"]
        .as_str()
        .expect("the generated secret, shown once")
        .to_string();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );
    assert_eq!(set["webhook"]["url"], url.as_str());
    assert_eq!(
        set["webhook"]["secret_hint"],
        format!("…{}", &secret[secret.len() - 4..])
    );

    // Act 1: the first answer leaves the item one short; the second completes it.
    let first = answer(&app, &ann, project).await;
    assert_eq!(count_events(&app).await, 0, "an item one answer short");
    assert_eq!(answer(&app, &bob, project).await, first);
    let completed = next_event(&mut events).await;

    // Assert 1: headers, signature and body.
    assert_eq!(completed.header("content-type"), "application/json");
    assert_eq!(completed.header("x-jielong-event"), "item.completed");
    let timestamp = completed.header("x-jielong-timestamp");
    let sent_at: i64 = timestamp.parse().expect("unix seconds");
    assert!((chrono::Utc::now().timestamp() - sent_at).abs() < 60);
    let signature = completed.header("x-jielong-signature");
    assert_eq!(
        signature,
        expected_signature(&secret, timestamp, &completed.body)
    );
    assert_ne!(
        signature,
        expected_signature("whsec_not-the-secret-at-all", timestamp, &completed.body),
        "a wrong secret must not verify"
    );
    assert!(labeler::store::webhooks::verify(
        secret.as_bytes(),
        sent_at,
        &completed.body,
        signature
    ));
    assert!(!labeler::store::webhooks::verify(
        secret.as_bytes(),
        sent_at + 1,
        &completed.body,
        signature
    ));
    let body = completed.json();
    assert_eq!(body["event"], "item.completed");
    assert_eq!(body["id"], completed.header("x-jielong-delivery"));
    assert_eq!(body["project"], json!({"id": project, "name": "chat"}));
    assert_eq!(body["item"]["external_id"], first.as_str());
    assert_eq!(body["item"]["responses"], 2);
    assert!(
        body["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );

    // Act 2: an export.
    let export = app
        .get(&admin, &format!("/api/projects/{project}/export"))
        .await;
    assert_eq!(export.status(), 200);
    let exported = next_event(&mut events).await;

    // Assert 2
    let timestamp = exported.header("x-jielong-timestamp");
    assert_eq!(
        exported.header("x-jielong-signature"),
        expected_signature(&secret, timestamp, &exported.body)
    );
    let body = exported.json();
    assert_eq!(body["event"], "export.created");
    assert_eq!(body["project"]["name"], "chat");
    assert_eq!(
        body["export"],
        json!({"part": "sft", "format": "jsonl", "accepted_only": false, "by": "root"})
    );
    assert_ne!(body["id"], completed.json()["id"]);

    // Both are marked delivered; the secret is never shown again in full.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let delivered: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_events WHERE delivered_at IS NOT NULL \
               AND last_status = 200",
        )
        .fetch_one(&app.pool)
        .await
        .expect("count");
        if delivered == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{delivered} of 2 marked delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = app
        .get(&admin, &format!("/api/admin/projects/{project}/webhook"))
        .await
        .text()
        .await
        .expect("text");
    assert!(!status.contains(&secret), "{status}");
    let status: Value = serde_json::from_str(&status).expect("json");
    assert_eq!(status["recent"].as_array().map(Vec::len), Some(2));
    let projects = app
        .get(&ann, "/api/projects")
        .await
        .text()
        .await
        .expect("text");
    assert!(
        !projects.contains("hooks"),
        "annotators see no webhook: {projects}"
    );
    let again = patch(&app, &admin, project, &json!({"guidelines": "Be brief."})).await;
    let again: Value = again.json().await.expect("json");
    assert!(again.get("webhook_secret").is_none(), "{again}");
    assert_eq!(again["webhook"]["url"], url.as_str());
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_event_once_it_is_up() {
    // Arrange: a port nobody listens on yet, and a secret of our own.
    let app = app().await;
    let (admin, project) = app.project_with_items("chat", "sft", 1, sft_items(1)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let secret = "our-own-secret-0123456789";
    let response = patch(
        &app,
        &admin,
        project,
        &json!({"webhook_url": format!("http://127.0.0.1:{port}/"), "webhook_secret": secret}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let set: Value = response.json().await.expect("json");
    assert!(
        set.get("webhook_secret").is_none(),
        "our secret is not echoed"
    );

    // Act: the item completes while the receiver is down; the submit does not notice.
    let started = Instant::now();
    answer(&app, &ann, project).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(15);
    let delivery_id = loop {
        let row: Option<(String, i32, Option<String>)> = sqlx::query_as(
            "SELECT delivery_id::text, attempts, last_error FROM webhook_events \
             WHERE delivered_at IS NULL",
        )
        .fetch_optional(&app.pool)
        .await
        .expect("query");
        if let Some((id, attempts, Some(error))) = &row
            && *attempts >= 2
        {
            assert!(error.contains("error sending request"), "{error}");
            break id.clone();
        }
        assert!(Instant::now() < deadline, "no failed attempts: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the port again");
    let mut events = receiver(listener);
    let event = next_event(&mut events).await;

    // Assert: the same delivery id, signed with our secret.
    assert_eq!(event.header("x-jielong-delivery"), delivery_id);
    assert_eq!(
        event.header("x-jielong-signature"),
        expected_signature(secret, event.header("x-jielong-timestamp"), &event.body)
    );
    assert_eq!(event.json()["event"], "item.completed");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (attempts, delivered): (i32, bool) =
            sqlx::query_as("SELECT attempts, delivered_at IS NOT NULL FROM webhook_events")
                .fetch_one(&app.pool)
                .await
                .expect("query");
        if delivered {
            // At least one failed attempt, then the one that arrived. (The attempt that
            // succeeds may be the one already in flight when the port opened, so 2 is enough.)
            assert!(attempts >= 2, "{attempts}");
            break;
        }
        assert!(Instant::now() < deadline, "not marked delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_last_two_answers_at_once_complete_an_item_exactly_once() {
    // Arrange: overlap 2; both annotators lease the same items.
    let app = app().await;
    let (admin, project) = app.project_with_items("chat", "sft", 2, sft_items(6)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let bob = app.add_user("bob", Role::Annotator).await;
    let response = patch(
        &app,
        &admin,
        project,
        &json!({"webhook_url": "http://127.0.0.1:9/nobody-listens"}),
    )
    .await;
    assert_eq!(response.status(), 200);

    // Act: each item's two answers are submitted concurrently.
    for _ in 0..6 {
        let a = app.next(&ann, project).await.expect("task");
        let b = app.next(&bob, project).await.expect("task");
        assert_eq!(a["item_id"], b["item_id"]);
        let body = json!({"answer": "Yes."});
        let (ra, rb) = tokio::join!(
            app.submit(&ann, a["assignment_id"].as_i64().expect("id"), &body, None),
            app.submit(&bob, b["assignment_id"].as_i64().expect("id"), &body, None),
        );
        assert_eq!((ra.status().as_u16(), rb.status().as_u16()), (201, 201));
    }

    // Assert
    let per_item: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT (payload->'item'->>'id')::bigint, count(*) FROM webhook_events \
         WHERE event = 'item.completed' GROUP BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .expect("query");
    assert_eq!(per_item.len(), 6, "{per_item:?}");
    assert!(per_item.iter().all(|(_, n)| *n == 1), "{per_item:?}");
}

#[tokio::test]
async fn webhook_settings_are_checked_audited_and_removable() {
    let app = app().await;
    let (admin, project) = app.project_with_items("chat", "sft", 1, sft_items(2)).await;
    let rev = app.add_user("rev", Role::Reviewer).await;
    let ann = app.add_user("ann", Role::Annotator).await;

    for bad in [
        json!({"webhook_url": "ftp://example.com/"}),
        json!({"webhook_url": "https://user:pw@example.com/"}),
        json!({"webhook_url": "http://127.0.0.1:9/", "webhook_secret": "short"}),
        json!({"webhook_secret": "long enough but no webhook"}),
        json!({"webhook_url": null, "webhook_secret": "0123456789abcdef"}),
    ] {
        let response = patch(&app, &admin, project, &bad).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    let hook = json!({"webhook_url": "http://127.0.0.1:9/"});
    assert_eq!(patch(&app, &rev, project, &hook).await.status(), 403);

    // Without a webhook, nothing goes to the outbox.
    answer(&app, &ann, project).await;
    assert_eq!(count_events(&app).await, 0);

    // Set (secret made), rotate, replace, remove: each audit-logged without the secret.
    let set: Value = patch(
        &app,
        &admin,
        project,
        &json!({"webhook_url": "http://127.0.0.1:9/x?token=t0ps3cret"}),
    )
    .await
    .json()
    .await
    .expect("json");
    let first = set["webhook_secret"].as_str().expect("made").to_string();
    let rotated: Value = patch(
        &app,
        &admin,
        project,
        &json!({"rotate_webhook_secret": true}),
    )
    .await
    .json()
    .await
    .expect("json");
    let second = rotated["webhook_secret"].as_str().expect("made again");
    assert_ne!(first, second);
    let own = json!({"webhook_secret": "a-secret-of-our-own"});
    assert_eq!(patch(&app, &admin, project, &own).await.status(), 200);
    let stored: Option<String> =
        sqlx::query_scalar("SELECT webhook_secret FROM projects WHERE id = $1")
            .bind(project)
            .fetch_one(&app.pool)
            .await
            .expect("query");
    assert_eq!(stored.as_deref(), Some("a-secret-of-our-own"));
    let removed: Value = patch(&app, &admin, project, &json!({"webhook_url": null}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(removed["webhook"], Value::Null);
    answer(&app, &ann, project).await;
    assert_eq!(count_events(&app).await, 0, "no webhook, no events");

    let log = app
        .get(&admin, &format!("/api/admin/audit?project={project}"))
        .await
        .text()
        .await
        .expect("text");
    for secret in [first.as_str(), second, "a-secret-of-our-own", "t0ps3cret"] {
        assert!(!log.contains(secret), "the audit log holds {secret}: {log}");
    }
    let log: Vec<Value> = serde_json::from_str(&log).expect("json");
    let hooks: Vec<&Value> = log
        .iter()
        .filter(|e| e["action"] == "project.webhook")
        .map(|e| &e["details"])
        .collect();
    assert_eq!(
        hooks,
        [
            &json!({"removed": true}),
            &json!({"url": "http://127.0.0.1:9/x", "secret": "set"}),
            &json!({"url": "http://127.0.0.1:9/x", "secret": "generated"}),
            &json!({"url": "http://127.0.0.1:9/x", "secret": "generated"}),
        ]
    );
    assert!(log.iter().all(|e| e["actor"] == "root"));
}
