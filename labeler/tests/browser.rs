//! A real headless Chromium drives the pages: an annotator signs in, answers, compares with
//! the keyboard and reloads mid-task, and the export holds exactly what was typed; an admin
//! uploads a file; a reviewer accepts and rejects on the review page and reads the dashboard.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use labeler::domain::Role;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TestUser, preference_items, sft_items, spawn_app};
use crate::webdriver::{Browser, CONTROL, ENTER, chromium_for_test};

/// Polls `sql` (one scalar text column) until it returns `want`. No row and a NULL both mean
/// "not yet" (a draft saved before its rationale was typed has no rationale).
pub async fn wait_for(app: &TestApp, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: Option<String> = sqlx::query_scalar::<_, Option<String>>(sql)
            .fetch_optional(&app.pool)
            .await
            .expect("query")
            .flatten();
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
/// A relative `dir` is taken from the workspace root, where the README's command runs, not
/// from the crate directory cargo runs tests in.
pub async fn shoot(b: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("LABELER_SCREENSHOTS") {
        // At run time, like helpers::settings: a build reused from another clone must not
        // write into that clone.
        let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
        let root = Path::new(&crate_dir).join("..");
        b.screenshot(&root.join(dir).join(name)).await;
    }
}

/// Waits up to 10 s for the text of `css` to be `want`.
pub async fn wait_for_text(b: &Browser, css: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = b.text(css).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{css}: got {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One part of a project's export through the API, as records keyed by the item's id; all
/// of them the annotator `ann`'s.
async fn export(
    app: &TestApp,
    admin: &TestUser,
    project: i64,
    part: &str,
) -> BTreeMap<String, Value> {
    let response = app
        .get(
            admin,
            &format!("/api/projects/{project}/export?part={part}"),
        )
        .await;
    assert_eq!(response.status(), 200, "export {part}");
    let text = response.text().await.expect("export body");
    let mut records = BTreeMap::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(record["meta"]["annotator"], "ann", "{record}");
        let item = record["meta"]["item"].as_str().expect("item").to_string();
        assert!(
            records.insert(item, record).is_none(),
            "{part}: an item twice"
        );
    }
    records
}

/// A one-message assistant turn, as exports write answers.
fn assistant(content: &str) -> Value {
    json!([{"role": "assistant", "content": content}])
}

/// The annotator's whole path in a real browser: sign in through the form, answer two
/// instructions (one of them reloaded before autosave ran), make three preference choices
/// with the keys and a fourth with a rationale across a reload; the export then holds exactly
/// those labels, each choice naming the answer that was on the chosen side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_annotator_session_exports_exactly_its_labels() {
    let Some((chrome, driver)) =
        chromium_for_test("chromium_annotator_session_exports_exactly_its_labels")
    else {
        return;
    };
    // Arrange
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    app.add_user("ann", Role::Annotator).await;
    let sft = app.create_project(&admin, "instructions", "sft", 1).await;
    let pref = app.create_project(&admin, "compare", "preference", 1).await;
    assert_eq!(app.import(&admin, sft, sft_items(2)).await.status(), 201);
    assert_eq!(
        app.import(&admin, pref, preference_items(4)).await.status(),
        201
    );
    let b = Browser::start(chrome, driver).await;

    // Act: sign in through the login page.
    b.goto(&app.url("/login")).await;
    b.find("input[name=username]").await;
    shoot(&b, "login.png").await;
    b.type_into("input[name=username]", "ann").await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.click("#sign-in").await;
    b.find("table.projects").await;
    assert_eq!(b.text(".who").await, "ann (annotator)");

    // SFT: an answer submitted with Ctrl+Enter.
    b.goto(&app.url(&format!("/projects/{sft}/annotate"))).await;
    wait_for_text(&b, "#conversation .content", "Question 0?").await;
    b.type_into("#answer", "Zero is the additive identity.")
        .await;
    b.chord(&[CONTROL, ENTER]).await;
    // The next one is typed and reloaded at once, before autosave's pause has passed.
    wait_for_text(&b, "#conversation .content", "Question 1?").await;
    let draft = "One is the multiplicative identity.";
    b.type_into("#answer", draft).await;
    b.refresh().await;
    wait_for_text(&b, "#conversation .content", "Question 1?").await;
    assert_eq!(
        b.property("#answer", "value").await,
        draft,
        "SFT draft lost on reload"
    );
    b.chord(&[CONTROL, ENTER]).await;
    b.find("#done").await;

    // Preference: 1 = A better, 2 = B better, 3 = tie; q/w = slightly/much; Enter submits.
    // Which candidate is A is random per annotator, so the sides are read off the page.
    b.goto(&app.url(&format!("/projects/{pref}/annotate")))
        .await;
    let mut sides = Vec::new();
    for (i, keys) in [&["1", "w"][..], &["2", "q"], &["3"]]
        .into_iter()
        .enumerate()
    {
        wait_for_text(&b, "#conversation .user .content", &format!("Explain {i}.")).await;
        let shown = (b.text("#answer-a").await, b.text("#answer-b").await);
        let mut both = [shown.0.clone(), shown.1.clone()];
        both.sort();
        assert_eq!(both, [format!("new answer {i}"), format!("old answer {i}")]);
        sides.push(shown);
        for key in keys {
            b.chord(&[key]).await;
        }
        b.chord(&[ENTER]).await;
    }
    // The fourth: both bad, with a rationale; autosaved, then the page is reloaded.
    wait_for_text(&b, "#conversation .user .content", "Explain 3.").await;
    let shown = (b.text("#answer-a").await, b.text("#answer-b").await);
    b.chord(&["4"]).await;
    b.chord(&["r"]).await;
    let rationale = "Neither explains anything.";
    b.type_into("#rationale", rationale).await;
    wait_for(&app, "SELECT body->>'rationale' FROM drafts", rationale).await;
    b.refresh().await;
    wait_for_text(&b, "#conversation .user .content", "Explain 3.").await;
    assert_eq!(b.property("#rationale", "value").await, rationale);
    assert_eq!(
        b.property("input[name=choice][value=both_bad]", "checked")
            .await,
        true,
        "choice lost on reload"
    );
    assert_eq!(
        (b.text("#answer-a").await, b.text("#answer-b").await),
        shown,
        "the sides swapped on reload"
    );
    shoot(&b, "annotate-draft-restored.png").await;
    b.chord(&[ENTER]).await;
    b.find("#done").await;
    b.quit().await;

    // Assert: the export holds exactly these labels.
    let answers = export(&app, &admin, sft, "sft").await;
    let messages = |q: &str, a: &str| json!([{"role": "user", "content": q}, {"role": "assistant", "content": a}]);
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(
        answers["p0"]["messages"],
        messages("Question 0?", "Zero is the additive identity.")
    );
    assert_eq!(answers["p1"]["messages"], messages("Question 1?", draft));

    let pairs = export(&app, &admin, pref, "pairs").await;
    assert_eq!(pairs.keys().collect::<Vec<_>>(), ["q0", "q1"], "{pairs:?}");
    let (a0, b0) = &sides[0];
    assert_eq!(pairs["q0"]["chosen"], assistant(a0));
    assert_eq!(pairs["q0"]["rejected"], assistant(b0));
    assert_eq!(pairs["q0"]["meta"]["strength"], "much");
    let (a1, b1) = &sides[1];
    assert_eq!(pairs["q1"]["chosen"], assistant(b1));
    assert_eq!(pairs["q1"]["rejected"], assistant(a1));
    assert_eq!(pairs["q1"]["meta"]["strength"], "slightly");

    let ties = export(&app, &admin, pref, "ties").await;
    assert_eq!(ties.keys().collect::<Vec<_>>(), ["q2", "q3"], "{ties:?}");
    let (a2, b2) = &sides[2];
    assert_eq!(ties["q2"]["label"], "tie");
    assert_eq!(
        ties["q2"]["candidates"],
        json!([assistant(a2), assistant(b2)])
    );
    assert_eq!(ties["q3"]["label"], "both_bad");
    assert_eq!(
        ties["q3"]["candidates"],
        json!([assistant(&shown.0), assistant(&shown.1)])
    );
    assert_eq!(ties["q3"]["meta"]["rationale"], rationale);
    let drafts: i64 = sqlx::query_scalar("SELECT count(*) FROM drafts")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(drafts, 0, "a submit leaves no draft behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_annotates_with_the_keyboard() {
    let Some((chrome, driver)) = chromium_for_test("chromium_annotates_with_the_keyboard") else {
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
    let pair: Value = serde_json::from_str(pairs.trim()).expect("one pair");
    assert_eq!(pair["chosen"][0]["content"], right);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_admin_uploads_a_jsonl_file() {
    let Some((chrome, driver)) = chromium_for_test("chromium_admin_uploads_a_jsonl_file") else {
        return;
    };
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    let project = app.create_project(&admin, "write", "sft", 2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("prompts.jsonl");
    std::fs::write(&good, sft_items(3)).expect("write");
    let bad = dir.path().join("broken.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"fine\"}\n{\"prompt\": 7}\n").expect("write");

    let b = Browser::start(chrome, driver).await;
    b.goto(&app.url("/login")).await;
    b.type_into("input[name=username]", "root").await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.click("#sign-in").await;
    b.find("table.projects").await;

    // The import page: the format and a sample beside the file picker.
    b.click(&format!(
        "a.import-link[href=\"/projects/{project}/import\"]"
    ))
    .await;
    assert!(b.text("#sample").await.contains("\"prompt\""));
    // A bad file: the preview lists the refused line, and the import stays off.
    b.type_into("#import-file", &bad.display().to_string())
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b
        .text("#preview-summary")
        .await
        .contains("1 refused line(s)")
    {
        assert!(Instant::now() < deadline, "no preview");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = b.text("#preview-errors li").await;
    assert!(error.starts_with("line 2: not a valid item"), "{error}");
    assert_eq!(b.property("#import-button", "disabled").await, json!(true));
    // A good one: counts and the first rows, then one click imports.
    b.type_into("#import-file", &good.display().to_string())
        .await;
    wait_for_text(
        &b,
        "#preview-summary",
        "3 row(s) read · 3 item(s) to import · 3 with an id · 0 with a draft",
    )
    .await;
    assert_eq!(
        b.text("#preview-rows tbody tr:first-child td:nth-child(3)")
            .await,
        "Question 0?"
    );
    shoot(&b, "import.png").await;
    b.click("#import-button").await;
    wait_for_text(
        &b,
        "#import-status",
        "Imported 3 item(s) from prompts.jsonl.",
    )
    .await;
    b.goto(&app.url("/")).await;
    shoot(&b, "projects.png").await;
    b.quit().await;
    let items: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(items, 3);
}

/// Preference verdicts from three annotators (overlap 2) for the review and dashboard test:
/// `(annotator, choice, strength, seconds)`, in the order they are submitted.
const VERDICTS: &[(&str, &str, Option<&str>, i64)] = &[
    ("ann", "a", Some("much"), 14),
    ("ann", "b", None, 22),
    ("ann", "a", Some("slightly"), 9),
    ("ann", "tie", None, 31),
    ("ann", "b", Some("much"), 12),
    ("ann", "a", None, 18),
    ("bob", "a", Some("much"), 25),
    ("bob", "a", None, 40),
    ("bob", "b", Some("slightly"), 33),
    ("bob", "both_bad", None, 51),
    ("cy", "b", Some("much"), 8),
    ("cy", "a", None, 11),
    ("cy", "b", None, 7),
    ("cy", "a", Some("slightly"), 10),
];

/// A lead's pages in a real browser: a reviewer signs in through the form, accepts one
/// response and rejects another with a comment through the review page's forms (the
/// database and the rejected tab show both), then opens the dashboard and finds every chart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reviewer_reviews_and_reads_the_dashboard() {
    let Some((chrome, driver)) =
        chromium_for_test("chromium_reviewer_reviews_and_reads_the_dashboard")
    else {
        return;
    };
    // Arrange: a preference project with verdicts from three annotators, one lease open.
    let app = spawn_app().await;
    let (admin, project) = app
        .project_with_items("duel", "preference", 2, preference_items(8))
        .await;
    app.add_user("rev", Role::Reviewer).await;
    let mut annotators = BTreeMap::new();
    for name in ["ann", "bob", "cy"] {
        annotators.insert(name, app.add_user(name, Role::Annotator).await);
    }
    for &(name, choice, strength, seconds) in VERDICTS {
        let user = &annotators[name];
        let task = app.next(user, project).await.expect("a task");
        let id = task["assignment_id"].as_i64().expect("id");
        let body = json!({"choice": choice, "strength": strength, "time_spent_ms": seconds * 1000,
                          "rationale": (choice == "both_bad").then_some("Both miss the point.")});
        assert_eq!(app.submit(user, id, &body, None).await.status(), 201);
    }
    app.next(&annotators["ann"], project)
        .await
        .expect("a lease left open");
    let first: Vec<i64> = sqlx::query_scalar("SELECT id FROM responses ORDER BY id LIMIT 2")
        .fetch_all(&app.pool)
        .await
        .expect("ids");
    let (rejected, accepted) = (first[0], first[1]);
    // Two gold items (the newer checkpoint's answer should win), for the gold chart.
    let gold = app
        .put_json(
            &admin,
            &format!("/api/projects/{project}/gold"),
            &json!({"items": [{"id": "q2", "winner": 1}, {"id": "q4", "winner": 1}]}),
        )
        .await;
    assert_eq!(gold.status(), 200);

    let b = Browser::start(chrome, driver).await;
    b.goto(&app.url("/login")).await;
    b.type_into("input[name=username]", "rev").await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.click("#sign-in").await;
    b.find("table.projects").await;

    // Act 1: review: reject the first response with a comment, accept the second.
    b.goto(&app.url(&format!("/projects/{project}/review")))
        .await;
    let comment = "Too quick: please read both answers in full.";
    b.type_into(
        &format!("#response-{rejected} .decisions > form:nth-of-type(2) input[name=comment]"),
        comment,
    )
    .await;
    shoot(&b, "review.png").await;
    b.click(&format!(
        "#response-{rejected} .decisions > form:nth-of-type(2) button"
    ))
    .await;
    let status = |id: i64| {
        format!(
            "SELECT review_status || ':' || coalesce(review_comment, '') FROM responses WHERE id = {id}"
        )
    };
    wait_for(&app, &status(rejected), &format!("rejected:{comment}")).await;
    // The form posts, then the page comes back to the pending tab.
    b.click(&format!(
        "#response-{accepted} .decisions > form:nth-of-type(1) button"
    ))
    .await;
    wait_for(&app, &status(accepted), "accepted:").await;

    // Assert 1: the tabs show where each went; the reviewer is named.
    b.goto(&app.url(&format!("/projects/{project}/review?status=rejected")))
        .await;
    assert_eq!(
        b.text(&format!("#response-{rejected} .comment")).await,
        format!("Reviewer: {comment}")
    );
    b.goto(&app.url(&format!("/projects/{project}/review?status=accepted")))
        .await;
    b.find(&format!("#response-{accepted}")).await;
    let reviewer: String = sqlx::query_scalar(
        "SELECT string_agg(DISTINCT u.username, ',') FROM responses r \
         JOIN users u ON u.id = r.reviewed_by",
    )
    .fetch_one(&app.pool)
    .await
    .expect("reviewer");
    assert_eq!(reviewer, "rev");

    // Act 2: the dashboard, in a window tall enough for the whole page.
    b.resize(1280, 1220).await;
    b.goto(&app.url(&format!("/projects/{project}/dashboard")))
        .await;

    // Assert 2: every chart is drawn; the numbers agree with what was done.
    let sections = b
        .property(".charts", "childElementCount")
        .await
        .as_u64()
        .expect("a count");
    assert!(sections >= 8, "{sections} charts");
    for i in 1..=sections {
        b.find(&format!(".charts > .chart:nth-child({i}) svg"))
            .await;
    }
    let progress = b.text(".charts > .chart:nth-child(1) .note").await;
    // 14 verdicts over 8 items with overlap 2: q0-q5 full, q6 and q7 one short; the
    // rejection takes q0 back to one short, and gold items q2 and q4 stay open for more
    // annotators (marking raises their overlap).
    assert_eq!(progress, "3 done · 5 in progress · 0 remaining");
    shoot(&b, "dashboard.png").await;
    // The agreement and checkpoint pages the dashboard links to.
    b.click(&format!("a[href=\"/projects/{project}/agreement\"]"))
        .await;
    b.find("table#pairs").await;
    shoot(&b, "agreement.png").await;
    b.click(&format!("a[href=\"/projects/{project}/checkpoints\"]"))
        .await;
    b.find("table#ranking").await;
    shoot(&b, "checkpoints.png").await;
    b.quit().await;
}
