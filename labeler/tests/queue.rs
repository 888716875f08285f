//! Assignment under concurrency: overlap N exactly met, nobody gets an item twice, leases
//! expire and return to the pool.

use std::collections::{HashMap, HashSet};

use labeler::domain::Role;
use serde_json::json;

use crate::helpers::{TestApp, TestUser, preference_items, sft_items, spawn_app};

/// Works until the queue is empty; returns the item ids it answered.
async fn annotate_all(app: &TestApp, user: &TestUser, project: i64) -> Vec<i64> {
    let mut done = Vec::new();
    while let Some(task) = app.next(user, project).await {
        let assignment = task["assignment_id"].as_i64().expect("assignment id");
        let body = if task["kind"] == "sft" {
            json!({"answer": format!("answer by {}", user.name)})
        } else {
            json!({"choice": "a"})
        };
        let response = app.submit(user, assignment, &body, None).await;
        assert_eq!(
            response.status(),
            201,
            "{}",
            response.text().await.unwrap_or_default()
        );
        done.push(task["item_id"].as_i64().expect("item id"));
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_annotators_meet_overlap_exactly() {
    let app = spawn_app().await;
    let (_, project) = app
        .project_with_items("race", "preference", 3, preference_items(40))
        .await;
    let mut users = Vec::new();
    for i in 0..20 {
        users.push(app.add_user(&format!("a{i}"), Role::Annotator).await);
    }

    let app = std::sync::Arc::new(app);
    let mut handles = Vec::new();
    for user in users.clone() {
        let app = app.clone();
        handles.push(tokio::spawn(async move {
            let done = annotate_all(&app, &user, project).await;
            (user.name, done)
        }));
    }
    let mut per_item: HashMap<i64, HashSet<String>> = HashMap::new();
    let mut submitted = 0;
    for h in handles {
        let (name, done) = h.await.expect("annotator task");
        for item in done {
            submitted += 1;
            assert!(
                per_item.entry(item).or_default().insert(name.clone()),
                "{name} got {item} twice"
            );
        }
    }
    // Every item answered by exactly 3 distinct annotators; every accepted submit stored.
    assert_eq!(per_item.len(), 40);
    assert!(per_item.values().all(|s| s.len() == 3));
    assert_eq!(submitted, 120);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM responses")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(rows, 120);
    let over: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM items i WHERE i.taken <> i.overlap \
           OR (SELECT count(*) FROM responses r WHERE r.item_id = i.id) <> 3",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(over, 0);
    // The order shown is randomised per annotator and recorded.
    let orders: Vec<Vec<i16>> =
        sqlx::query_scalar("SELECT DISTINCT shown FROM responses ORDER BY shown")
            .fetch_all(&app.pool)
            .await
            .expect("orders");
    assert_eq!(orders, [vec![0, 1], vec![1, 0]]);
}

#[tokio::test]
async fn leases_are_capped_resumed_and_never_repeat_an_item() {
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("p", "sft", 1, sft_items(5)).await;
    let ann = app.add_user("ann", Role::Annotator).await;

    // Asking again without submitting returns the same lease (a reload).
    let first = app.next(&ann, project).await.expect("task");
    let again = app.next(&ann, project).await.expect("task");
    assert_eq!(first["assignment_id"], again["assignment_id"]);
    // The prefetch asks for another one; a third is refused (max two held).
    let a1 = first["assignment_id"].as_i64().expect("id");
    let second = app
        .post(&ann, &format!("/api/projects/{project}/next?exclude={a1}"))
        .await;
    assert_eq!(second.status(), 200);
    let second: serde_json::Value = second.json().await.expect("json");
    assert_ne!(second["item_id"], first["item_id"]);
    let a2 = second["assignment_id"].as_i64().expect("id");
    let third = app
        .post(
            &ann,
            &format!("/api/projects/{project}/next?exclude={a1},{a2}"),
        )
        .await;
    assert_eq!(third.status(), 409);

    // A skipped item never comes back to the same annotator.
    let skip = app.post(&ann, &format!("/api/assignments/{a1}/skip")).await;
    assert_eq!(skip.status(), 204);
    let done = {
        let mut seen = vec![second["item_id"].as_i64().expect("id")];
        let r = app.submit(&ann, a2, &json!({"answer": "x"}), None).await;
        assert_eq!(r.status(), 201);
        while let Some(t) = app.next(&ann, project).await {
            let id = t["assignment_id"].as_i64().expect("id");
            assert_eq!(
                app.submit(&ann, id, &json!({"answer": "x"}), None)
                    .await
                    .status(),
                201
            );
            seen.push(t["item_id"].as_i64().expect("id"));
        }
        seen
    };
    assert_eq!(done.len(), 4);
    assert!(!done.contains(&first["item_id"].as_i64().expect("id")));
}

#[tokio::test]
async fn expired_leases_return_to_the_pool() {
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("p", "sft", 1, sft_items(1)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let bob = app.add_user("bob", Role::Annotator).await;

    let task = app
        .next(&ann, project)
        .await
        .expect("ann leases the only item");
    assert!(
        app.next(&bob, project).await.is_none(),
        "the item is full while leased"
    );

    // Ann walks away; her lease runs out.
    sqlx::query("UPDATE assignments SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .expect("expire");
    let bobs = app
        .next(&bob, project)
        .await
        .expect("the item returned to the pool");
    assert_eq!(bobs["item_id"], task["item_id"]);

    // Ann's late submit cannot overfill the item.
    let late = app
        .submit(
            &ann,
            task["assignment_id"].as_i64().expect("id"),
            &json!({"answer": "late"}),
            None,
        )
        .await;
    assert_eq!(late.status(), 409);
    let ok = app
        .submit(
            &bob,
            bobs["assignment_id"].as_i64().expect("id"),
            &json!({"answer": "on time"}),
            None,
        )
        .await;
    assert_eq!(ok.status(), 201);
    let taken: i32 = sqlx::query_scalar("SELECT taken FROM items")
        .fetch_one(&app.pool)
        .await
        .expect("taken");
    assert_eq!(taken, 1);
}

#[tokio::test]
async fn the_database_refuses_more_than_overlap() {
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("p", "sft", 1, sft_items(1)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let bob = app.add_user("bob", Role::Annotator).await;
    app.next(&ann, project).await.expect("task");
    // Bypassing the queue: a second live assignment on a full item violates the CHECK.
    let err = sqlx::query(
        "INSERT INTO assignments (item_id, project_id, user_id, status, expires_at) \
         SELECT id, project_id, $1, 'leased', now() + interval '1 minute' FROM items",
    )
    .bind(bob.id)
    .execute(&app.pool)
    .await
    .expect_err("over N");
    assert!(
        err.to_string().contains("items_taken_within_overlap"),
        "{err}"
    );
    // And the same annotator twice violates the unique key.
    let err = sqlx::query(
        "INSERT INTO assignments (item_id, project_id, user_id, status, expires_at) \
         SELECT id, project_id, $1, 'skipped', now() FROM items",
    )
    .bind(ann.id)
    .execute(&app.pool)
    .await
    .expect_err("twice");
    assert!(
        err.to_string().contains("assignments_item_id_user_id_key"),
        "{err}"
    );
}

#[tokio::test]
async fn an_open_page_renews_its_lease() {
    let app = spawn_app().await;
    let (_, project) = app.project_with_items("p", "sft", 1, sft_items(1)).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let bob = app.add_user("bob", Role::Annotator).await;
    let task = app.next(&ann, project).await.expect("task");
    let id = task["assignment_id"].as_i64().expect("id");
    let renew = |user: &TestUser| {
        app.client
            .post(app.url(&format!("/api/assignments/{id}/renew")))
            .bearer_auth(&user.token)
            .send()
    };
    sqlx::query("UPDATE assignments SET expires_at = now() + interval '5 seconds'")
        .execute(&app.pool)
        .await
        .expect("shorten");
    let r = renew(&ann).await.expect("renew");
    assert_eq!(r.status(), 200);
    let left: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - now())::float8 FROM assignments",
    )
    .fetch_one(&app.pool)
    .await
    .expect("expiry");
    assert!(left > 60.0, "renewed to the full lease, {left} s left");
    // Somebody else's lease is not theirs to renew.
    assert_eq!(renew(&bob).await.expect("renew").status(), 404);

    // Renewing an expired lease revives it while the item has room ...
    sqlx::query("UPDATE assignments SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .expect("expire");
    labeler::store::queue::reclaim_expired(&app.pool, None)
        .await
        .expect("reclaim");
    assert_eq!(renew(&ann).await.expect("renew").status(), 200);
    assert!(
        app.next(&bob, project).await.is_none(),
        "the revived lease holds the slot"
    );
    // ... and is refused once someone else has filled it.
    sqlx::query("UPDATE assignments SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .expect("expire");
    app.next(&bob, project)
        .await
        .expect("bob gets the returned item");
    assert_eq!(renew(&ann).await.expect("renew").status(), 409);
}
