//! A real headless Chromium ranking three answers with the keyboard alone: digits rank the
//! answer in focus and move on, `i`/`j` move the focus, equal digits tie, Enter submits.

use labeler::domain::Role;
use serde_json::json;

use crate::browser::{shoot, wait_for, wait_for_text};
use crate::browser_sessions::sign_in;
use crate::helpers::spawn_app;
use crate::ranking::{ranking_items, ranking_project};
use crate::webdriver::{Browser, ENTER, chromium_for_test};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_ranks_k_answers_with_ties_by_keyboard_alone() {
    let Some((chrome, driver)) =
        chromium_for_test("chromium_ranks_k_answers_with_ties_by_keyboard_alone")
    else {
        return;
    };
    // Arrange
    let app = spawn_app().await;
    let (_, project) = ranking_project(&app, 1, ranking_items(&[3])).await;
    app.add_user("ann", Role::Annotator).await;
    let b = Browser::start(chrome, driver).await;
    sign_in(&b, &app, "ann").await;
    b.goto(&app.url(&format!("/projects/{project}/annotate")))
        .await;
    b.find("#ranked-answers li.ranked.focus").await;

    // Enter before every answer has a rank says so.
    b.chord(&[ENTER]).await;
    wait_for_text(&b, "#status", "Rank every answer first (1 = best)").await;

    // Act: 2, 1, 1 (a tie), then back up one (`i`) and make it 3.
    for key in ["2", "1", "1", "i", "3"] {
        b.chord(&[key]).await;
    }
    let ranks = b
        .execute(
            "return Array.from(document.querySelectorAll('#ranked-answers select')).map(s => s.value);",
        )
        .await;
    assert_eq!(ranks, json!(["2", "3", "1"]));
    shoot(&b, "annotate-ranking.png").await;
    b.chord(&[ENTER]).await;

    // Assert
    wait_for(
        &app,
        "SELECT array_to_string(ranking, ',') FROM responses",
        "2,3,1",
    )
    .await;
    wait_for_text(
        &b,
        "#done",
        "Nothing left for you in this project. Thank you!",
    )
    .await;
    b.quit().await;
}
