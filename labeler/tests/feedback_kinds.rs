//! Rating and ranking projects beside the older kinds: exact overlap under 100 concurrent
//! annotators, the dashboard's sections for each, and rankings in the checkpoint ranking.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use labeler::domain::{Role, Username};
use labeler::store::accounts;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, spawn_app};
use crate::pages::{browser, signed_in};
use crate::ranking::ranking_items;
use crate::rating::rating_project;

/// `n` annotators `a0..`, made quickly: one password hash shared, a token each.
async fn annotators(app: &TestApp, n: usize) -> Vec<TestUser> {
    let first = app.add_user("a0", Role::Annotator).await;
    sqlx::query(
        "INSERT INTO users (username, password_hash, role) \
         SELECT 'a' || g, password_hash, 'annotator' FROM users, generate_series(1, $1) g \
         WHERE username = 'a0'",
    )
    .bind(n as i32 - 1)
    .execute(&app.pool)
    .await
    .expect("users");
    let mut users = vec![first];
    for i in 1..n {
        let name = format!("a{i}");
        let username = Username::parse(&name).expect("name");
        let token = accounts::create_token(&app.pool, &username, "test")
            .await
            .expect("token");
        users.push(TestUser { id: 0, name, token });
    }
    users
}

/// Answers until nothing is left; the items answered.
async fn answer_all(app: &TestApp, user: &TestUser, project: i64) -> Vec<i64> {
    let mut done = Vec::new();
    while let Some(task) = app.next(user, project).await {
        let k = task["answers"].as_array().map_or(0, Vec::len);
        let body = if task["kind"] == "rating" {
            json!({"label": user.name.len().is_multiple_of(2), "scores": {"helpfulness": 3}})
        } else {
            json!({"ranking": (1..=k as i64).collect::<Vec<_>>()})
        };
        let id = task["assignment_id"].as_i64().expect("id");
        let r = app
            .submit(user, id, &body, Some(&format!("{}-{id}", user.name)))
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        done.push(task["item_id"].as_i64().expect("item"));
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rating_and_ranking_items_keep_exact_overlap_under_100_concurrent_annotators() {
    // Arrange: 40 rating items and 20 ranking items (4 answers), overlap 3 each.
    let app = spawn_app().await;
    let (admin, rating) = rating_project(&app, 3, 40).await;
    let ranking = app
        .create_project_from(
            &admin,
            &json!({"name": "order", "kind": "preference", "overlap": 3, "ranking": true}),
        )
        .await;
    assert_eq!(
        app.import(&admin, ranking, ranking_items(&[4; 20]))
            .await
            .status(),
        201
    );
    let users = annotators(&app, 100).await;

    // Act: everyone at once, on both projects.
    let app = Arc::new(app);
    let mut handles = Vec::new();
    for user in users {
        let app = app.clone();
        handles.push(tokio::spawn(async move {
            let mut done = answer_all(&app, &user, rating).await;
            done.extend(answer_all(&app, &user, ranking).await);
            (user.name, done)
        }));
    }
    let mut per_item: HashMap<i64, HashSet<String>> = HashMap::new();
    for h in handles {
        let (name, done) = h.await.expect("annotator");
        for item in done {
            assert!(
                per_item.entry(item).or_default().insert(name.clone()),
                "{name} twice on {item}"
            );
        }
    }

    // Assert: every item exactly 3 distinct annotators, in the answers and the database.
    assert_eq!(per_item.len(), 60);
    assert!(per_item.values().all(|s| s.len() == 3));
    let off: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM items i WHERE i.taken <> 3 \
           OR (SELECT count(*) FROM responses r WHERE r.item_id = i.id) <> 3",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(off, 0);
}

#[tokio::test]
async fn dashboards_show_thumbs_for_ratings_and_tau_and_checkpoints_for_rankings() {
    // Arrange: a rating project with two ratings; a ranking project with one ranking of
    // three checkpoints' answers.
    let app = spawn_app().await;
    let (admin, rating) = rating_project(&app, 1, 2).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    for label in [true, false] {
        let task = app.next(&ann, rating).await.expect("task");
        let id = task["assignment_id"].as_i64().expect("id");
        assert_eq!(
            app.submit(&ann, id, &json!({"label": label}), None)
                .await
                .status(),
            201
        );
    }
    let ranking = app
        .create_project_from(
            &admin,
            &json!({"name": "order", "kind": "preference", "overlap": 1, "ranking": true}),
        )
        .await;
    assert_eq!(
        app.import(&admin, ranking, ranking_items(&[3]))
            .await
            .status(),
        201
    );
    let task = app.next(&ann, ranking).await.expect("task");
    // Rank by checkpoint: step-2 best, then step-1, then step-0.
    let ranks: Vec<i64> = task["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .map(|a| {
            let j: i64 = a["content"]
                .as_str()
                .and_then(|t| t.rsplit('.').next())
                .and_then(|j| j.parse().ok())
                .expect("j");
            3 - j
        })
        .collect();
    let id = task["assignment_id"].as_i64().expect("id");
    assert_eq!(
        app.submit(&ann, id, &json!({"ranking": ranks}), None)
            .await
            .status(),
        201
    );

    // Act
    let client = browser();
    signed_in(&app, &client, "root").await;
    let page = |id: i64| {
        let client = client.clone();
        let url = app.url(&format!("/projects/{id}/dashboard"));
        async move {
            let r = client.get(url).send().await.expect("page");
            assert_eq!(r.status(), 200);
            r.text().await.expect("html")
        }
    };
    let rating_page = page(rating).await;
    let ranking_page = page(ranking).await;
    let report: Value = app
        .get(&admin, &format!("/api/projects/{rating}/agreement"))
        .await
        .json()
        .await
        .expect("json");
    let checkpoints: Value = app
        .get(&admin, &format!("/api/projects/{ranking}/checkpoints"))
        .await
        .json()
        .await
        .expect("json");

    // Assert
    let at = rating_page.find("id=\"thumbs\"").expect("thumbs section");
    let section = &rating_page[at..(at + 2000).min(rating_page.len())];
    assert!(
        section.contains("of all ratings are thumbs up"),
        "{section}"
    );
    assert!(!rating_page.contains("Answer length"));
    assert_eq!(report["thumbs_up_rate"], 0.5);
    assert!(ranking_page.contains("id=\"rank-agreement\""));
    assert_eq!(checkpoints["comparisons"], 3, "{checkpoints}");
    let order: Vec<&str> = checkpoints["checkpoints"]
        .as_array()
        .expect("checkpoints")
        .iter()
        .map(|c| c["checkpoint"].as_str().expect("name"))
        .collect();
    assert_eq!(order, ["step-2", "step-1", "step-0"]);
}

#[tokio::test]
async fn admins_make_rating_and_ranking_projects_and_set_prelabels_with_the_forms() {
    // Arrange
    let app = spawn_app().await;
    app.add_user("root", Role::Admin).await;
    let client = browser();
    let csrf = signed_in(&app, &client, "root").await;
    let create = |fields: Vec<(&'static str, &'static str)>| {
        let mut form = vec![("csrf_token", csrf.clone())];
        form.extend(fields.into_iter().map(|(k, v)| (k, v.to_string())));
        client.post(app.url("/projects")).form(&form).send()
    };

    // Act / Assert: a rating project with two aspects, one per line.
    let r = create(vec![
        ("name", "thumbs"),
        ("kind", "rating"),
        ("overlap", "1"),
        (
            "aspects",
            "helpfulness: 5 = fully answers\r\ncorrectness=1 wrong, 5 right\r\n",
        ),
    ])
    .await
    .expect("post");
    assert_eq!(r.status(), 303);
    let (id, aspects): (i64, Value) =
        sqlx::query_as("SELECT id, aspects FROM projects WHERE name = 'thumbs'")
            .fetch_one(&app.pool)
            .await
            .expect("project");
    assert_eq!(
        aspects,
        json!([{"name": "helpfulness", "guideline": "5 = fully answers"},
               {"name": "correctness", "guideline": "1 wrong, 5 right"}])
    );
    // Aspects on an sft project, ranking on a rating one: refused.
    for fields in [
        vec![
            ("name", "a"),
            ("kind", "sft"),
            ("overlap", "1"),
            ("aspects", "tone: x"),
        ],
        vec![
            ("name", "b"),
            ("kind", "rating"),
            ("overlap", "1"),
            ("ranking", "on"),
        ],
    ] {
        assert_eq!(create(fields).await.expect("post").status(), 400);
    }
    let r = create(vec![
        ("name", "order"),
        ("kind", "preference"),
        ("overlap", "1"),
        ("ranking", "on"),
    ])
    .await
    .expect("post");
    assert_eq!(r.status(), 303);
    let ranking: bool = sqlx::query_scalar("SELECT ranking FROM projects WHERE name = 'order'")
        .fetch_one(&app.pool)
        .await
        .expect("ranking");
    assert!(ranking);

    // Pre-labels from the settings form: CSRF required, then stored.
    let save = |token: String| {
        client
            .post(app.url(&format!("/projects/{id}/settings")))
            .form(&[
                ("csrf_token", token.as_str()),
                ("name", "thumbs"),
                ("guidelines", ""),
                ("prelabels", "hidden"),
            ])
            .send()
    };
    assert_eq!(save("guess".into()).await.expect("post").status(), 403);
    assert_eq!(save(csrf.clone()).await.expect("post").status(), 303);
    let mode: Option<String> = sqlx::query_scalar("SELECT prelabels FROM projects WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("mode");
    assert_eq!(mode.as_deref(), Some("hidden"));
    let page = client
        .get(app.url(&format!("/projects/{id}/settings")))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("<option value=\"hidden\" selected>"),
        "the menu shows the mode"
    );
}
