//! Pages over plain HTTP: a form without its CSRF field is refused like a forged one,
//! refusals and missing pages are HTML pages (the API keeps JSON), and `HEAD` answers like
//! `GET` without a body.

use std::io::{Read, Write};

use labeler::domain::Role;

use crate::helpers::{PASSWORD, sft_items, spawn_app};
use crate::pages::{browser, signed_in};

#[tokio::test]
async fn a_form_without_its_csrf_field_is_refused_like_a_forged_one() {
    // Arrange
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("p", "sft", 1, sft_items(1)).await;
    let client = browser();
    let csrf = signed_in(&app, &client, "root").await;
    let post = |path: String, form: Vec<(&'static str, String)>| {
        let request = client.post(app.url(&path)).form(&form);
        async move { request.send().await.expect("post") }
    };
    let project_form = |csrf: Option<&str>| {
        let mut form = vec![
            ("name", "q".to_string()),
            ("kind", "sft".into()),
            ("overlap", "1".into()),
        ];
        form.extend(csrf.map(|t| ("csrf_token", t.to_string())));
        form
    };

    // Act + Assert: no token at all is the same 403 as a wrong one, on every kind of form.
    for (path, form) in [
        ("/projects".to_string(), project_form(None)),
        (
            format!("/projects/{project}/review/1"),
            vec![("decision", "accept".into())],
        ),
        ("/logout".to_string(), vec![]),
    ] {
        let r = post(path.clone(), form).await;
        assert_eq!(r.status(), 403, "{path}");
        let body = r.text().await.expect("body");
        assert!(
            body.contains("missing or wrong CSRF token"),
            "{path}: {body}"
        );
        assert!(!body.contains("missing field"), "{path}: {body}");
    }
    let wrong = post("/projects".into(), project_form(Some("0123"))).await;
    assert_eq!(wrong.status(), 403);
    // The token is checked before the other fields: a forged post lacking them is forged.
    let forged = post("/projects".into(), vec![("csrf_token", "0123".into())]).await;
    assert_eq!(forged.status(), 403);
    // A genuine post that lacks a field hears which.
    let genuine = post("/projects".into(), vec![("csrf_token", csrf.clone())]).await;
    assert_eq!(genuine.status(), 400);
    assert!(
        genuine
            .text()
            .await
            .expect("body")
            .contains("missing field")
    );
    assert_eq!(
        post("/projects".into(), project_form(Some(&csrf)))
            .await
            .status(),
        303
    );
    // The sign-in form too.
    let fresh = browser();
    fresh
        .get(app.url("/login"))
        .send()
        .await
        .expect("login page");
    let r = fresh
        .post(app.url("/login"))
        .form(&[("username", "root"), ("password", PASSWORD)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn refusals_on_pages_are_html_pages_and_the_api_keeps_json() {
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("p", "sft", 1, sft_items(1)).await;
    app.add_user("ann", Role::Annotator).await;
    let client = browser();
    signed_in(&app, &client, "ann").await;

    for (path, status, message) in [
        (
            format!("/projects/{project}/review"),
            403,
            "reviewers and admins only",
        ),
        (
            format!("/projects/{project}/dashboard"),
            403,
            "reviewers and admins only",
        ),
        ("/projects/999/annotate".to_string(), 404, "no project 999"),
        ("/no/such/page".to_string(), 404, "no such page"),
    ] {
        let r = client.get(app.url(&path)).send().await.expect("page");
        assert_eq!(r.status(), status, "{path}");
        let kind = r.headers()["content-type"]
            .to_str()
            .expect("type")
            .to_string();
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        assert!(
            r.headers().contains_key("content-security-policy"),
            "{path}"
        );
        let html = r.text().await.expect("html");
        assert!(html.contains("<!doctype html>"), "{path}: {html}");
        assert!(
            html.contains(&format!("<h1 class=\"error-title\">{status} ")),
            "{path}: {html}"
        );
        assert!(html.contains(message), "{path}: {html}");
        assert!(!html.contains("{\"error\""), "{path}: {html}");
    }
    // A message is text on the page, never markup.
    let r = client
        .get(app.url("/projects/%3Cb%3E/annotate"))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 404);
    let html = r.text().await.expect("html");
    assert!(!html.contains("<b>"), "{html}");

    // The API answers the same refusal in JSON.
    let r = client
        .get(app.url(&format!("/api/projects/{project}/agreement")))
        .send()
        .await
        .expect("api");
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({"error": "reviewers and admins only"})
    );
    let r = client
        .get(app.url("/api/no/such"))
        .send()
        .await
        .expect("api");
    assert_eq!(r.status(), 404);
    assert!(r.json::<serde_json::Value>().await.is_ok());
}

/// One request on a raw connection, to see exactly what is on the wire: (head, body bytes).
fn raw_request(app: &str, method: &str, path: &str, cookie: Option<&str>) -> (String, Vec<u8>) {
    let address = app.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{cookie}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read");
    let end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head")
        + 4;
    (
        String::from_utf8_lossy(&reply[..end]).to_string(),
        reply[end..].to_vec(),
    )
}

/// A header of a raw reply head, by lower-case name.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        (n.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
    })
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let app = spawn_app().await;
    app.add_user("ann", Role::Annotator).await;
    // The session cookie of a signed-in browser, for `/`.
    let cookie = crate::sessions::sign_in(&app, "ann").await.cookie;

    let cases = [
        ("/", Some(cookie.as_str())),
        ("/", None),
        ("/login", None),
        ("/static/app.css", None),
        ("/static/annotate.js", None),
        ("/healthz", None),
    ];
    for (path, cookie) in cases {
        let (get, get_body, head, head_body) = tokio::task::spawn_blocking({
            let (address, path) = (app.address.clone(), path.to_string());
            let cookie = cookie.map(str::to_string);
            move || {
                let (get, get_body) = raw_request(&address, "GET", &path, cookie.as_deref());
                let (head, head_body) = raw_request(&address, "HEAD", &path, cookie.as_deref());
                (get, get_body, head, head_body)
            }
        })
        .await
        .expect("requests");
        let status = |h: &str| h.lines().next().unwrap_or_default().to_string();
        assert_eq!(status(&head), status(&get), "{path} ({cookie:?})");
        assert!(!status(&head).contains("404"), "{path}: {head}");
        assert!(head_body.is_empty(), "{path}: HEAD sent a body");
        for name in [
            "content-type",
            "location",
            "cache-control",
            "content-security-policy",
        ] {
            assert_eq!(header(&head, name), header(&get, name), "{path}: {name}");
        }
        if status(&get).contains("200") {
            assert!(!get_body.is_empty(), "{path}");
            if let Some(length) = header(&head, "content-length") {
                assert_eq!(
                    length,
                    header(&get, "content-length").expect("length"),
                    "{path}"
                );
            }
        }
    }
}
