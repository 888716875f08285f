//! A real headless Chromium on a rating project's annotation page, keyboard only: thumbs
//! (`y`/`n`), aspect scores (`a` moves the focus, digits score it), the comment box (keys
//! type text there), submit with Enter, and undo with `u`.

use labeler::domain::Role;
use serde_json::json;

use crate::browser::{shoot, wait_for, wait_for_text};
use crate::browser_sessions::sign_in;
use crate::helpers::spawn_app;
use crate::rating::rating_project;
use crate::webdriver::{Browser, ENTER, ESCAPE, chromium_for_test};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_rates_with_thumbs_scores_and_comment_by_keyboard_alone() {
    let Some((chrome, driver)) =
        chromium_for_test("chromium_rates_with_thumbs_scores_and_comment_by_keyboard_alone")
    else {
        return;
    };
    // Arrange: two answers to rate, aspects helpfulness and correctness.
    let app = spawn_app().await;
    let (_, project) = rating_project(&app, 1, 2).await;
    app.add_user("ann", Role::Annotator).await;
    let b = Browser::start(chrome, driver).await;
    sign_in(&b, &app, "ann").await;
    b.goto(&app.url(&format!("/projects/{project}/annotate")))
        .await;
    wait_for_text(&b, "#progress", "2 of 2 left in this project, 0 done today").await;
    let first = b.text("#answer-a").await;
    assert!(first.starts_with("answer "), "{first}");
    assert_eq!(b.text("#aspect-focus").await, "helpfulness");

    // Enter without a thumb says what is missing.
    b.chord(&[ENTER]).await;
    wait_for_text(&b, "#status", "Thumbs up (y) or down (n) first").await;

    // Act: y, helpfulness 3, `a`, correctness 5, then a comment where y, 1 and a are text.
    b.chord(&["y"]).await;
    b.chord(&["3"]).await;
    b.chord(&["a"]).await;
    assert_eq!(b.text("#aspect-focus").await, "correctness");
    b.chord(&["5"]).await;
    b.chord(&["c"]).await;
    for key in ["y", "1", "a"] {
        b.chord(&[key]).await;
    }
    assert_eq!(b.property("#comment", "value").await, json!("y1a"));
    assert_eq!(
        b.property("input[name='score-correctness'][value='5']", "checked")
            .await,
        json!(true),
        "1 typed in the comment did not change a score"
    );
    shoot(&b, "annotate-rating.png").await;
    b.chord(&[ESCAPE]).await;
    b.chord(&[ENTER]).await;

    // Assert: stored as typed.
    wait_for(
        &app,
        "SELECT label::text || '/' || (scores->>'helpfulness') || '/' || \
                (scores->>'correctness') || '/' || comment FROM responses",
        "true/3/5/y1a",
    )
    .await;
    wait_for_text(&b, "#progress", "1 of 2 left in this project, 1 done today").await;
    let second = b.text("#answer-a").await;
    assert_ne!(second, first);
    assert_eq!(
        b.property("input[name='score-helpfulness'][value='3']", "checked")
            .await,
        json!(false),
        "the next item starts blank"
    );

    // The second: thumbs down, no scores; then `u` brings it back with its answer.
    b.chord(&["n"]).await;
    b.chord(&[ENTER]).await;
    wait_for(
        &app,
        "SELECT string_agg(label::text, ',' ORDER BY id) FROM responses",
        "true,false",
    )
    .await;
    wait_for_text(
        &b,
        "#done",
        "Nothing left for you in this project. Thank you!",
    )
    .await;
    b.chord(&["u"]).await;
    wait_for_text(&b, "#answer-a", &second).await;
    wait_for(&app, "SELECT count(*)::text FROM responses", "1").await;
    assert_eq!(
        b.property("input[name='label'][value='down']", "checked")
            .await,
        json!(true)
    );
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_a_hidden_prelabel_only_after_the_answer() {
    let Some((chrome, driver)) =
        chromium_for_test("chromium_shows_a_hidden_prelabel_only_after_the_answer")
    else {
        return;
    };
    // Arrange: the model says thumbs down on both items; hidden until answered.
    let app = spawn_app().await;
    let (admin, project) = rating_project(&app, 1, 2).await;
    let r = app
        .put_json(
            &admin,
            &format!("/api/projects/{project}/prelabels"),
            &json!({"source": "rm-300", "items": [{"id": "r0", "label": false}, {"id": "r1", "label": false}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .patch(app.url(&format!("/api/admin/projects/{project}")))
        .bearer_auth(&admin.token)
        .json(&json!({"prelabels": "hidden"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    app.add_user("ann", Role::Annotator).await;
    let b = Browser::start(chrome, driver).await;
    sign_in(&b, &app, "ann").await;
    b.goto(&app.url(&format!("/projects/{project}/annotate")))
        .await;
    wait_for_text(&b, "#progress", "2 of 2 left in this project, 0 done today").await;
    assert_eq!(
        b.execute("return document.getElementById('suggestion').hidden;")
            .await,
        json!(true)
    );

    // Act: thumbs up and submit, keyboard only.
    b.chord(&["y"]).await;
    b.chord(&[ENTER]).await;

    // Assert: the model's view comes with the confirmation, not before.
    wait_for_text(
        &b,
        "#flash-text",
        "Submitted. Your answer is saved. Model suggestion (rm-300): thumbs down.",
    )
    .await;
    assert_eq!(
        b.execute("return document.getElementById('suggestion').hidden;")
            .await,
        json!(true)
    );
    b.quit().await;
}
