//! A real headless Chromium: signing out ends the session (the cookie copied before is refused
//! when put back, in the browser and from elsewhere), and two tabs on one item (the second
//! tab's submit says the item is answered, keeps its text for copying and moves on).

use labeler::domain::Role;
use serde_json::Value;

use crate::browser::{wait_for, wait_for_text};
use crate::helpers::{PASSWORD, TestApp, sft_items, spawn_app};
use crate::webdriver::{Browser, CONTROL, ENTER, chromium_for_test};

/// Signs `name` in through the login form.
pub async fn sign_in(b: &Browser, app: &TestApp, name: &str) {
    b.goto(&app.url("/login")).await;
    b.type_into("input[name=username]", name).await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.click("#sign-in").await;
    b.find("table.projects").await;
}

/// The browser's session cookie.
async fn session_cookie(b: &Browser) -> Value {
    b.cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "labeler_session")
        .expect("a labeler_session cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sign_out_ends_the_session_and_a_replayed_cookie_is_refused() {
    let Some((chrome, driver)) =
        chromium_for_test("chromium_sign_out_ends_the_session_and_a_replayed_cookie_is_refused")
    else {
        return;
    };
    // Arrange: ann is signed in; someone copies her cookie.
    let app = spawn_app().await;
    app.add_user("ann", Role::Annotator).await;
    let b = Browser::start(chrome, driver).await;
    sign_in(&b, &app, "ann").await;
    let copied = session_cookie(&b).await;
    assert!(copied["expiry"].as_u64().is_some(), "no expiry: {copied}");
    assert_eq!(copied["httpOnly"], true, "{copied}");
    let header = format!(
        "labeler_session={}",
        copied["value"].as_str().expect("value")
    );

    // Act: she signs out with the button.
    b.click("header.top nav form button").await;
    b.find("input[name=username]").await;

    // Assert: the copy, put back into the browser, leads to the sign-in page...
    b.add_cookie(&copied).await;
    b.goto(&app.url("/")).await;
    b.find("input[name=username]").await;
    assert!(b.url().await.ends_with("/login"), "{}", b.url().await);
    // ...and sent from elsewhere, to a page and to the API, is refused.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = client
        .get(app.url("/"))
        .header("cookie", &header)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/login");
    let api = client
        .get(app.url("/api/me"))
        .header("cookie", &header)
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), 401);
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_two_tabs_on_one_item_keep_the_late_tabs_text_and_move_on() {
    let Some((chrome, driver)) =
        chromium_for_test("chromium_two_tabs_on_one_item_keep_the_late_tabs_text_and_move_on")
    else {
        return;
    };
    // Arrange: ann opens the same project in two tabs; both show the first item.
    let app = spawn_app().await;
    let (_, project) = app
        .project_with_items("write", "sft", 1, sft_items(3))
        .await;
    app.add_user("ann", Role::Annotator).await;
    let b = Browser::start(chrome, driver).await;
    sign_in(&b, &app, "ann").await;
    let annotate = app.url(&format!("/projects/{project}/annotate"));
    let tab_1 = b.current_tab().await;
    b.goto(&annotate).await;
    wait_for_text(&b, "#conversation .content", "Question 0?").await;
    let tab_2 = b.new_tab().await;
    b.switch_to(&tab_2).await;
    b.goto(&annotate).await;
    wait_for_text(&b, "#conversation .content", "Question 0?").await;
    let late = "Typed in the second tab, and lost before this fix.";
    b.type_into("#answer", late).await;

    // Act: the first tab submits, then the second.
    b.switch_to(&tab_1).await;
    b.type_into("#answer", "Typed in the first tab.").await;
    b.chord(&[CONTROL, ENTER]).await;
    wait_for(
        &app,
        "SELECT answer FROM responses",
        "Typed in the first tab.",
    )
    .await;
    wait_for_text(&b, "#conversation .content", "Question 1?").await;
    b.switch_to(&tab_2).await;
    b.click("#submit").await;

    // Assert: the second tab says so plainly, shows its text for copying, and moved on.
    wait_for_text(&b, "#status", "Already submitted in another tab").await;
    assert!(
        b.text("#unsaved-why")
            .await
            .starts_with("Already submitted in another tab"),
        "{}",
        b.text("#unsaved-why").await
    );
    assert_eq!(b.property("#unsaved-text", "value").await, late);
    wait_for_text(&b, "#conversation .content", "Question 1?").await;
    assert_eq!(b.property("#answer", "value").await, "");
    // The text stays while the annotator works on: the next submit is stored as usual.
    b.type_into("#answer", "Answered in the second tab.").await;
    b.click("#submit").await;
    wait_for(
        &app,
        "SELECT string_agg(answer, '|' ORDER BY id) FROM responses",
        "Typed in the first tab.|Answered in the second tab.",
    )
    .await;
    wait_for_text(&b, "#conversation .content", "Question 2?").await;
    assert_eq!(b.property("#unsaved-text", "value").await, late);
    b.quit().await;
}
