//! A real headless Chromium annotates an SFT item and a preference item with the keyboard.

use std::time::{Duration, Instant};

use labeler::domain::Role;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, spawn_app};
use crate::webdriver::{Browser, CONTROL, ENTER, chromium};

/// Polls `sql` (one scalar text column) until it returns `want`.
async fn wait_for(app: &TestApp, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: Option<String> = sqlx::query_scalar(sql)
            .fetch_optional(&app.pool)
            .await
            .expect("query");
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: got {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With `LABELER_SCREENSHOTS=dir`, saves the page (the README's screenshots come from here).
async fn shoot(b: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("LABELER_SCREENSHOTS") {
        b.screenshot(&std::path::Path::new(&dir).join(name)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_annotates_with_the_keyboard() {
    let Some((chrome, driver)) = chromium() else {
        eprintln!("skipped: no Chromium/chromedriver on this machine");
        return;
    };
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    app.add_user("ann", Role::Annotator).await;
    let sft = app.create_project(&admin, "write", "sft", 1).await;
    let pref = app.create_project(&admin, "judge", "preference", 1).await;
    let prompt = "What does <b>bold</b> do?";
    let rows = format!(
        "{}\n{}",
        json!({"id": "s1", "prompt": prompt}),
        json!({"id": "s2", "prompt": "And italics?"})
    );
    assert_eq!(app.import(&admin, sft, rows).await.status(), 201);
    let row = json!({"id": "p1", "prompt": "Pick one", "candidates": [
        {"content": "first answer", "checkpoint": "c1"}, {"content": "second answer", "checkpoint": "c2"}]});
    assert_eq!(
        app.import(&admin, pref, row.to_string()).await.status(),
        201
    );

    let b = Browser::start(chrome, driver).await;
    b.goto(&app.url("/login")).await;
    b.type_into("input[name=username]", "ann").await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.click("#sign-in").await;
    b.find("table.projects").await;

    // SFT: the prompt shows as text, typing autosaves, Ctrl+Enter submits.
    b.goto(&app.url(&format!("/projects/{sft}/annotate"))).await;
    assert_eq!(b.text("#conversation .content").await, prompt);
    b.type_into("#answer", "It makes text bold.").await;
    shoot(&b, "annotate-sft.png").await;
    wait_for(
        &app,
        "SELECT body->>'answer' FROM drafts",
        "It makes text bold.",
    )
    .await;
    // The second item was prefetched (leased) while the first was on screen.
    wait_for(&app, "SELECT count(*)::text FROM assignments", "2").await;
    b.chord(&[CONTROL, ENTER]).await;
    wait_for(&app, "SELECT answer FROM responses", "It makes text bold.").await;
    assert_eq!(b.text("#conversation .content").await, "And italics?");
    b.type_into("#answer", "Slanted text.").await;
    b.chord(&[CONTROL, ENTER]).await;
    wait_for(
        &app,
        "SELECT string_agg(answer, '|' ORDER BY id) FROM responses",
        "It makes text bold.|Slanted text.",
    )
    .await;
    b.find("#done").await;

    // Preference: 2 = B better, w = much, Enter submits.
    b.goto(&app.url(&format!("/projects/{pref}/annotate")))
        .await;
    let right = b.text("#answer-b").await;
    assert!(right.ends_with("answer"), "{right}");
    b.chord(&["2"]).await;
    b.chord(&["w"]).await;
    shoot(&b, "annotate-preference.png").await;
    b.chord(&[ENTER]).await;
    wait_for(
        &app,
        "SELECT choice || '/' || strength FROM responses WHERE choice IS NOT NULL",
        "b/much",
    )
    .await;
    b.find("#done").await;
    b.quit().await;

    // The export names the candidate that was on the right as chosen.
    let pairs = app
        .get(&admin, &format!("/api/projects/{pref}/export?part=pairs"))
        .await
        .text()
        .await
        .expect("export");
    let pair: serde_json::Value = serde_json::from_str(pairs.trim()).expect("one pair");
    assert_eq!(pair["chosen"][0]["content"], right);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_admin_uploads_a_jsonl_file() {
    let Some((chrome, driver)) = chromium() else {
        eprintln!("skipped: no Chromium/chromedriver on this machine");
        return;
    };
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let project = app.create_project(&admin, "write", "sft", 2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("prompts.jsonl");
    std::fs::write(&good, crate::helpers::sft_items(3)).expect("write");
    let bad = dir.path().join("broken.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"fine\"}\n{\"prompt\": 7}\n").expect("write");

    let b = Browser::start(chrome, driver).await;
    b.goto(&app.url("/login")).await;
    b.type_into("input[name=username]", "root").await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.click("#sign-in").await;
    b.find("table.projects").await;

    let input = format!("input.import-file[data-project=\"{project}\"]");
    b.type_into(&input, &bad.display().to_string()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.text("#import-status").await.contains("line 2") {
        assert!(Instant::now() < deadline, "no error shown");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.type_into(&input, &good.display().to_string()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b
        .text("#import-status")
        .await
        .contains("Imported 3 item(s)")
    {
        assert!(Instant::now() < deadline, "no import");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.goto(&app.url("/")).await;
    shoot(&b, "projects.png").await;
    b.quit().await;
    let items: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(items, 3);
}
