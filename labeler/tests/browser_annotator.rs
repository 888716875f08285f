//! A real headless Chromium on the annotation page: the progress line, the "Submitted"
//! confirmation that stays on the next item, undo of the last submit, skip with a reason,
//! messages that go when they no longer apply, and the keyboard rules of the rationale box
//! (keys type text there; Ctrl+Enter submits, Esc leaves it; `r` focuses it without typing).

use std::time::{Duration, Instant};

use labeler::domain::Role;
use serde_json::json;

use crate::browser::{shoot, wait_for, wait_for_text};
use crate::browser_sessions::sign_in;
use crate::helpers::{preference_items, spawn_app};
use crate::webdriver::{ALT, Browser, CONTROL, ENTER, ESCAPE, chromium_for_test};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_progress_submitted_undo_skip_reason_and_the_rationale_keys() {
    let Some((chrome, driver)) =
        chromium_for_test("chromium_progress_submitted_undo_skip_reason_and_the_rationale_keys")
    else {
        return;
    };
    // Arrange: three comparisons, overlap 1.
    let app = spawn_app().await;
    let (_, pref) = app
        .project_with_items("judge", "preference", 1, preference_items(3))
        .await;
    app.add_user("ann", Role::Annotator).await;
    let b = Browser::start(chrome, driver).await;
    sign_in(&b, &app, "ann").await;
    b.goto(&app.url(&format!("/projects/{pref}/annotate")))
        .await;
    wait_for_text(&b, "#progress", "3 of 3 left in this project, 0 done today").await;
    let first = b.text("#conversation .turn.user .content").await;

    // A stale message goes once fixed: Enter without a choice, then a choice.
    b.chord(&[ENTER]).await;
    wait_for_text(&b, "#status", "Choose 1-4 first").await;
    b.chord(&["2"]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.text("#status").await == "Choose 1-4 first" {
        assert!(
            Instant::now() < deadline,
            "the message stayed after the choice"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The rationale box: `r` focuses it and types nothing; there 1, q and k are text (no
    // choice, no strength, no skip); Esc leaves it and the keys are shortcuts again.
    b.chord(&["r"]).await;
    for key in ["1", "q", "k"] {
        b.chord(&[key]).await;
    }
    assert_eq!(b.property("#rationale", "value").await, json!("1qk"));
    assert_eq!(
        b.property("input[name=choice][value=b]", "checked").await,
        json!(true),
        "1 typed in the box did not choose A"
    );
    assert_eq!(
        b.property("input[name=strength][value=slightly]", "checked")
            .await,
        json!(false)
    );
    assert_eq!(b.text("#conversation .turn.user .content").await, first);
    b.chord(&[ESCAPE]).await;
    b.chord(&["w"]).await;
    assert_eq!(
        b.property("input[name=strength][value=much]", "checked")
            .await,
        json!(true)
    );
    // Ctrl+Enter from inside the box submits.
    b.chord(&["r"]).await;
    b.chord(&[CONTROL, ENTER]).await;
    wait_for(
        &app,
        "SELECT choice || '/' || strength || '/' || rationale FROM responses",
        "b/much/1qk",
    )
    .await;

    // Act: the next item is on screen, and the confirmation with it.
    wait_for_text(&b, "#progress", "2 of 3 left in this project, 1 done today").await;
    let second = b.text("#conversation .turn.user .content").await;
    assert_ne!(second, first);
    assert_eq!(
        b.text("#flash-text").await,
        "Submitted. Your answer is saved."
    );
    assert_eq!(b.property("#flash", "hidden").await, json!(false));
    assert_eq!(b.property("#undo", "hidden").await, json!(false));
    shoot(&b, "annotate-submitted-undo.png").await;

    // Undo (Alt+U, or the button): the first item is back with its answer in place, and the
    // response is gone.
    b.chord(&[ALT, "u"]).await;
    wait_for_text(&b, "#conversation .turn.user .content", &first).await;
    wait_for(&app, "SELECT count(*)::text FROM responses", "0").await;
    assert_eq!(b.property("#rationale", "value").await, json!("1qk"));
    assert_eq!(
        b.property("input[name=choice][value=b]", "checked").await,
        json!(true)
    );
    assert!(b.text("#flash-text").await.starts_with("Undone"));
    wait_for_text(&b, "#progress", "3 of 3 left in this project, 0 done today").await;

    // Submitted again (A this time), then the item that was on screen comes back.
    b.chord(&["1"]).await;
    b.chord(&[ENTER]).await;
    wait_for(&app, "SELECT string_agg(choice, ',') FROM responses", "a").await;
    wait_for_text(&b, "#conversation .turn.user .content", &second).await;

    // Skip with a reason.
    b.type_into("#skip-reason", "the two answers are identical")
        .await;
    b.click("#skip").await;
    wait_for(
        &app,
        "SELECT skip_reason FROM assignments WHERE status = 'skipped'",
        "the two answers are identical",
    )
    .await;
    wait_for_text(
        &b,
        "#flash-text",
        "Skipped (reason kept for the project's leads).",
    )
    .await;
    assert_eq!(b.property("#skip-reason", "value").await, json!(""));
    b.quit().await;
}
