//! Ranking k answers in preference projects against PostgreSQL: k = 2..9 per item at
//! import, ranks checked per answer shown (ties allowed), idempotent submits, the export as
//! the ranking and as every implied pair exactly once (decided pairs with their rank gap,
//! tied ones in the ties file), and Kendall's tau-b on the agreement report.

use std::collections::BTreeSet;

use labeler::cli::ExportFormat;
use labeler::domain::Role;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, rejected_lines, spawn_app};
use crate::pages::{browser, signed_in};

/// One ranking item `q{i}` per entry of `ks`, with `k` candidates `answer {i}.{j}` from
/// checkpoint `step-{j}`.
pub fn ranking_items(ks: &[usize]) -> String {
    ks.iter()
        .enumerate()
        .map(|(i, &k)| {
            let candidates: Vec<Value> = (0..k)
                .map(|j| json!({"content": format!("answer {i}.{j}"), "model": "jl", "checkpoint": format!("step-{j}")}))
                .collect();
            json!({"id": format!("q{i}"), "prompt": format!("Question {i}?"), "candidates": candidates})
                .to_string()
                + "\n"
        })
        .collect()
}

/// The admin `root` and a ranking project `order` with `items` imported.
pub async fn ranking_project(app: &TestApp, overlap: i64, items: String) -> (TestUser, i64) {
    let admin = app.add_user("root", Role::Admin).await;
    let project = app
        .create_project_from(
            &admin,
            &json!({"name": "order", "kind": "preference", "overlap": overlap, "ranking": true}),
        )
        .await;
    let r = app.import(&admin, project, items).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    (admin, project)
}

/// The candidate index behind each answer shown (from its text `answer i.j`).
fn candidate_indexes(task: &Value) -> Vec<i64> {
    task["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .map(|a| {
            let text = a["content"].as_str().expect("content");
            text.rsplit('.')
                .next()
                .and_then(|j| j.parse().ok())
                .expect("index")
        })
        .collect()
}

async fn jsonl(app: &TestApp, admin: &TestUser, project: i64, part: &str) -> Vec<Value> {
    let r = app
        .get(
            admin,
            &format!("/api/projects/{project}/export?part={part}"),
        )
        .await;
    assert_eq!(r.status(), 200, "{part}");
    r.text()
        .await
        .expect("text")
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect()
}

#[tokio::test]
async fn ranking_projects_take_k_answers_and_check_ranks_per_answer_shown() {
    let app = spawn_app().await;
    let admin = app.add_user("root", Role::Admin).await;
    // Ranking belongs to preference projects.
    let r = app
        .post_json(
            &admin,
            "/api/projects",
            &json!({"name": "x", "kind": "sft", "overlap": 1, "ranking": true}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let project = app
        .create_project_from(
            &admin,
            &json!({"name": "order", "kind": "preference", "overlap": 1, "ranking": true}),
        )
        .await;
    // Ten answers are too many to rank (line 2), one too few (line 3).
    let r = app
        .import(&admin, project, ranking_items(&[4, 10, 1]))
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(rejected_lines(&body), vec![2, 3]);
    assert!(body.to_string().contains("at most 9"), "{body}");
    assert_eq!(
        app.import(&admin, project, ranking_items(&[4, 9]))
            .await
            .status(),
        201
    );

    // Every answer is shown, labelled A..D, in a random order.
    let ann = app.add_user("ann", Role::Annotator).await;
    let task = app.next(&ann, project).await.expect("task");
    let labels: Vec<&str> = task["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .map(|a| a["label"].as_str().expect("label"))
        .collect();
    assert_eq!(labels, ["A", "B", "C", "D"]);
    let mut seen = candidate_indexes(&task);
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3]);
    let id = task["assignment_id"].as_i64().expect("id");

    for (body, needle) in [
        (json!({"choice": "a"}), "ranking"),
        (json!({"ranking": [1, 2, 3]}), "3 ranks for 4 answers"),
        (json!({"ranking": [1, 2, 5, 1]}), "ranking[2]"),
        (
            json!({"ranking": [1, 2, 3, 4], "strength": "much"}),
            "not \"choice\"",
        ),
    ] {
        let r = app.submit(&ann, id, &body, Some("bad")).await;
        assert_eq!(r.status(), 400, "{body}");
        let err: Value = r.json().await.expect("json");
        assert!(
            err["error"].as_str().unwrap_or_default().contains(needle),
            "{body}: {err}"
        );
    }
    let good = json!({"ranking": [2, 1, 3, 1], "rationale": "B and D are both right"});
    let first: Value = app
        .submit(&ann, id, &good, Some("rank-1"))
        .await
        .json()
        .await
        .expect("json");
    let again = app.submit(&ann, id, &good, Some("rank-1")).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.expect("json"), first);
    let stored: Vec<Vec<i16>> = sqlx::query_scalar("SELECT ranking FROM responses")
        .fetch_all(&app.pool)
        .await
        .expect("rows");
    assert_eq!(stored, vec![vec![2, 1, 3, 1]]);
}

#[tokio::test]
async fn a_ranking_exports_whole_and_as_every_implied_pair_exactly_once() {
    // Arrange: one item of five answers, ranked with a tie.
    let app = spawn_app().await;
    let (admin, project) = ranking_project(&app, 1, ranking_items(&[5])).await;
    let ann = app.add_user("ann", Role::Annotator).await;
    let task = app.next(&ann, project).await.expect("task");
    let shown = candidate_indexes(&task);
    let ranks = [1i64, 2, 2, 3, 5];
    let id = task["assignment_id"].as_i64().expect("id");
    let r = app.submit(&ann, id, &json!({"ranking": ranks}), None).await;
    assert_eq!(r.status(), 201);
    // Stored dense: 5 became 4.
    let rank_of = |candidate: i64| {
        let pos = shown.iter().position(|&c| c == candidate).expect("shown");
        [1, 2, 2, 3, 4][pos]
    };

    // Act
    let pairs = jsonl(&app, &admin, project, "pairs").await;
    let ties = jsonl(&app, &admin, project, "ties").await;
    let rankings = jsonl(&app, &admin, project, "rankings").await;

    // Assert: 10 pairs of 5 answers, each once; one of them tied.
    assert_eq!((pairs.len(), ties.len()), (9, 1));
    let mut unordered = BTreeSet::new();
    for p in &pairs {
        let w = p["meta"]["chosen_candidate"]["index"].as_i64().expect("w");
        let l = p["meta"]["rejected_candidate"]["index"]
            .as_i64()
            .expect("l");
        assert!(rank_of(w) < rank_of(l), "{p}");
        assert_eq!(p["meta"]["rank_gap"], json!(rank_of(l) - rank_of(w)));
        assert_eq!(
            p["chosen"],
            json!([{"role": "assistant", "content": format!("answer 0.{w}")}])
        );
        assert!(unordered.insert((w.min(l), w.max(l))), "twice: {p}");
    }
    let t = &ties[0];
    assert_eq!(t["label"], "tie");
    assert_eq!(t["meta"]["rank_gap"], 0);
    let a = t["meta"]["candidates"][0]["index"].as_i64().expect("a");
    let b = t["meta"]["candidates"][1]["index"].as_i64().expect("b");
    assert_eq!(rank_of(a), rank_of(b));
    assert!(unordered.insert((a.min(b), a.max(b))));
    assert_eq!(unordered.len(), 10);
    let ids: BTreeSet<&str> = pairs
        .iter()
        .chain(&ties)
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 10, "pair ids are unique");

    assert_eq!(rankings.len(), 1);
    assert_eq!(rankings[0]["ranks"], json!([1, 2, 2, 3, 4]));
    assert_eq!(rankings[0]["completions"].as_array().map(Vec::len), Some(5));
    assert_eq!(rankings[0]["meta"]["ranking"]["shown_order"], json!(shown));

    // Parquet: the three parts, the same counts.
    let dir = tempfile::tempdir().expect("tempdir");
    let files = labeler::cli::export_project(&app.pool, "order", dir.path(), ExportFormat::Parquet)
        .await
        .expect("export");
    let rows = |name: &str| {
        let file = files
            .iter()
            .find(|f| f.to_string_lossy().ends_with(name))
            .expect("file");
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).expect("open"))
            .expect("parquet")
            .build()
            .expect("reader")
            .map(|b| b.expect("batch").num_rows())
            .sum::<usize>()
    };
    assert_eq!(
        (
            rows("order-pairs.parquet"),
            rows("order-ties.parquet"),
            rows("order-rankings.parquet")
        ),
        (9, 1, 1)
    );
}

#[tokio::test]
async fn rankings_agree_by_kendall_tau_whatever_the_shown_order() {
    // Arrange: two annotators rank the same three answers in the same order by candidate,
    // whatever order each was shown.
    let app = spawn_app().await;
    let (admin, project) = ranking_project(&app, 2, ranking_items(&[3])).await;
    for name in ["ann", "bob"] {
        let user = app.add_user(name, Role::Annotator).await;
        let task = app.next(&user, project).await.expect("task");
        let ranks: Vec<i64> = candidate_indexes(&task).iter().map(|c| c + 1).collect();
        let id = task["assignment_id"].as_i64().expect("id");
        let r = app
            .submit(&user, id, &json!({"ranking": ranks}), None)
            .await;
        assert_eq!(r.status(), 201);
    }

    // Act
    let report: Value = app
        .get(&admin, &format!("/api/projects/{project}/agreement"))
        .await
        .json()
        .await
        .expect("json");

    // Assert
    assert_eq!(
        report["ranking"],
        json!({"compared_pairs": 1, "mean_kendall_tau_b": 1.0})
    );
    let client = browser();
    signed_in(&app, &client, "root").await;
    let page = client
        .get(app.url(&format!("/projects/{project}/agreement")))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("html");
    assert!(page.contains("Mean Kendall's tau-b"), "the tau row");
}

#[tokio::test]
async fn gold_rankings_score_the_gold_answer_ranked_first_ties_included() {
    // Arrange: two items of three answers; candidate 2 is gold on both.
    let app = spawn_app().await;
    let (admin, project) = ranking_project(&app, 1, ranking_items(&[3, 3])).await;
    let r = app
        .put_json(
            &admin,
            &format!("/api/projects/{project}/gold"),
            &json!({"items": [{"id": "q0", "winner": 2}, {"id": "q1", "winner": 2}],
                    "overlap": 1}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let ann = app.add_user("ann", Role::Annotator).await;
    // q0: candidate 2 tied first (right); q1: candidate 2 last (wrong).
    for _ in 0..2 {
        let task = app.next(&ann, project).await.expect("task");
        let first_item = task["external_id"] == "q0";
        let ranks: Vec<i64> = candidate_indexes(&task)
            .iter()
            .map(|&c| match (first_item, c) {
                (true, 0 | 2) => 1,
                (true, _) => 2,
                (false, 2) => 3,
                (false, c) => c + 1,
            })
            .collect();
        let id = task["assignment_id"].as_i64().expect("id");
        let r = app.submit(&ann, id, &json!({"ranking": ranks}), None).await;
        assert_eq!(r.status(), 201);
    }

    // Act
    let report: Value = app
        .get(&admin, &format!("/api/projects/{project}/agreement"))
        .await
        .json()
        .await
        .expect("json");

    // Assert
    assert_eq!(
        (
            report["gold"]["answered"].clone(),
            report["gold"]["correct"].clone()
        ),
        (json!(2), json!(1))
    );
}
