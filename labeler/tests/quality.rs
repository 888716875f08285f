//! Agreement, gold items and the Bradley-Terry ranking: the statistics against values
//! computed by hand, then the same example through the API.

use labeler::domain::Role;
use labeler::stats::agreement::{self, Label};
use labeler::stats::ranking::{self, Comparison};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, preference_items, spawn_app};

/// The fixed example: 4 items, 3 annotators, 2 categories.
///
/// | item | r1 | r2 | r3 |
/// | ---- | -- | -- | -- |
/// | 1    | x  | x  | x  |
/// | 2    | x  | x  | y  |
/// | 3    | y  | y  | y  |
/// | 4    | x  | y  | y  |
const TABLE: [[&str; 3]; 4] = [
    ["x", "x", "x"],
    ["x", "x", "y"],
    ["y", "y", "y"],
    ["x", "y", "y"],
];

fn labels() -> Vec<Label> {
    let mut out = Vec::new();
    for (item, row) in TABLE.iter().enumerate() {
        for (r, c) in row.iter().enumerate() {
            out.push(Label {
                item: item as i64 + 1,
                annotator: format!("r{}", r + 1),
                category: c.to_string(),
            });
        }
    }
    out
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn kappa_and_alpha_match_the_hand_computation() {
    let labels = labels();
    // Cohen, r1 vs r2: r1 = x x y x, r2 = x x y y. They agree on items 1-3: p_o = 3/4.
    // r1 says x 3/4 of the time, r2 1/2: p_e = 3/4 * 1/2 + 1/4 * 1/2 = 1/2.
    // kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2.
    let pairs = agreement::pairwise(&labels);
    let r1r2 = pairs
        .iter()
        .find(|p| p.annotators == ["r1".to_string(), "r2".to_string()])
        .expect("pair");
    assert_eq!(r1r2.items, 4);
    assert!(
        close(r1r2.observed, 0.75) && close(r1r2.kappa, 0.5),
        "{r1r2:?}"
    );
    // r1 vs r3: r3 = x y y y. Agree on items 1 and 3: p_o = 1/2; r3 says x 1/4:
    // p_e = 3/4 * 1/4 + 1/4 * 3/4 = 3/8; kappa = (1/2 - 3/8) / (5/8) = 1/5.
    let r1r3 = pairs
        .iter()
        .find(|p| p.annotators == ["r1".to_string(), "r3".to_string()])
        .expect("pair");
    assert!(close(r1r3.kappa, 0.2), "{r1r3:?}");

    // Fleiss, n = 3 per item. Counts (x, y): (3,0) (2,1) (0,3) (1,2).
    // P_i = (sum n_ij^2 - 3) / 6: 1, 1/3, 1, 1/3; P = 2/3.
    // p_x = 6/12 = p_y: P_e = 1/2. kappa = (2/3 - 1/2) / (1/2) = 1/3.
    assert!(close(agreement::fleiss_kappa(&labels), 1.0 / 3.0));

    // Krippendorff's alpha (nominal). Coincidences, each unit's ordered pairs / (m_u - 1 = 2):
    // item 1: x-x 6/2 = 3; item 2: x-x 2/2 = 1, x-y 1, y-x 1; item 3: y-y 3;
    // item 4: y-y 1, x-y 1, y-x 1. So o_xx = 4, o_yy = 4, o_xy = o_yx = 2; n_x = n_y = 6,
    // n = 12. alpha = 1 - (n - 1) * (o_xy + o_yx) / (n_x n_y + n_y n_x)
    //              = 1 - 11 * 4 / 72 = 7/18.
    assert!(close(agreement::krippendorff_alpha(&labels), 7.0 / 18.0));

    // Perfect agreement: kappa 1; everyone always says the same one thing: undefined.
    let same: Vec<Label> = labels
        .iter()
        .map(|l| Label {
            category: "x".into(),
            ..l.clone()
        })
        .collect();
    assert_eq!(agreement::fleiss_kappa(&same), None);
    assert_eq!(agreement::krippendorff_alpha(&same), None);
}

#[test]
fn bradley_terry_recovers_three_checkpoints_from_a_known_win_matrix() {
    // True strengths 4 : 2 : 1, so P(A>B) = 2/3, P(B>C) = 2/3, P(A>C) = 4/5; the win matrix
    // holds exactly those rates (listed with the weaker side on the left half the time).
    let mut comparisons = Vec::new();
    let mut add = |a: &str, b: &str, a_wins: usize, b_wins: usize| {
        for k in 0..a_wins + b_wins {
            let a_won = k < a_wins;
            let (left, right, outcome) = if k % 2 == 0 {
                (a, b, if a_won { 1.0 } else { 0.0 })
            } else {
                (b, a, if a_won { 0.0 } else { 1.0 })
            };
            comparisons.push(Comparison {
                left: left.into(),
                right: right.into(),
                outcome,
            });
        }
    };
    add("ckpt-b", "ckpt-a", 20, 40);
    add("ckpt-b", "ckpt-c", 40, 20);
    add("ckpt-a", "ckpt-c", 48, 12);
    let ranking = ranking::rank(&comparisons);
    let order: Vec<&str> = ranking.iter().map(|c| c.checkpoint.as_str()).collect();
    assert_eq!(order, ["ckpt-a", "ckpt-b", "ckpt-c"]);
    let s: Vec<f64> = ranking.iter().map(|c| c.score).collect();
    // ln 2 between neighbours (a little less: the prior of one tie per pair shrinks).
    assert!((s[0] - s[1] - 2f64.ln()).abs() < 0.1, "{s:?}");
    assert!((s[1] - s[2] - 2f64.ln()).abs() < 0.1, "{s:?}");
    for c in &ranking {
        assert!(c.ci_low <= c.score && c.score <= c.ci_high, "{c:?}");
    }
    assert!(ranking[0].ci_low > ranking[2].ci_high, "{ranking:?}");
    assert!(ranking[0].p_above_next.is_some_and(|p| p > 0.9));
    assert_eq!(ranking[2].p_above_next, None);
    assert_eq!(ranking[0].comparisons, 120);
    assert!((ranking[0].wins - 88.0).abs() < 1e-9);
    // Fixed seed: the same labels give the same intervals.
    assert_eq!(ranking::rank(&comparisons), ranking);

    // Ties count half: only ties leaves two checkpoints level.
    let ties = vec![
        Comparison {
            left: "x".into(),
            right: "y".into(),
            outcome: 0.5
        };
        10
    ];
    let r = ranking::rank(&ties);
    assert!((r[0].score - r[1].score).abs() < 1e-9 && (r[0].wins - 5.0).abs() < 1e-9);
}

/// Answers the next item for `user`, choosing the candidate of `checkpoint`'s content
/// prefix ("old" = candidate 0, "new" = candidate 1); returns whether the left one won.
async fn choose(
    app: &TestApp,
    user: &TestUser,
    project: i64,
    pick: impl Fn(&str) -> &'static str,
) -> bool {
    let task = app.next(user, project).await.expect("task");
    let want = pick(task["external_id"].as_str().expect("id"));
    let left = task["answers"][0]["content"]
        .as_str()
        .expect("content")
        .starts_with(want);
    let choice = if left { "a" } else { "b" };
    let id = task["assignment_id"].as_i64().expect("id");
    let body = json!({"choice": choice, "time_spent_ms": 1000});
    assert_eq!(app.submit(user, id, &body, None).await.status(), 201);
    left
}

#[tokio::test]
async fn agreement_gold_and_ranking_through_the_api() {
    // Arrange: the fixed example as preference labels; x = candidate 0 ("old", step-100)
    // wins, y = candidate 1 ("new", step-200) wins.
    let app = spawn_app().await;
    let (admin, project) = app
        .project_with_items("duel", "preference", 3, preference_items(4))
        .await;
    let mut left_wins = 0;
    for (r, name) in ["r1", "r2", "r3"].into_iter().enumerate() {
        let user = app.add_user(name, Role::Annotator).await;
        for _ in 0..4 {
            let pick = move |id: &str| {
                let item: usize = id.trim_start_matches('q').parse().expect("q<n>");
                if TABLE[item][r] == "x" { "old" } else { "new" }
            };
            left_wins += usize::from(choose(&app, &user, project, pick).await);
        }
    }
    // Gold: q0 should be won by candidate 0, q3 by candidate 1.
    let r = app
        .put_json(
            &admin,
            &format!("/api/projects/{project}/gold"),
            &json!({"items": [{"id": "q0", "winner": 0}, {"id": "q3", "winner": 1}]}),
        )
        .await;
    assert_eq!(r.status(), 200);

    // Act
    let report: Value = app
        .get(&admin, &format!("/api/projects/{project}/agreement"))
        .await
        .json()
        .await
        .expect("json");

    // Assert
    assert_eq!(report["overlapping_items"], 4);
    let f = |v: &Value| v.as_f64().expect("number");
    assert!(
        (f(&report["fleiss_kappa"]) - 1.0 / 3.0).abs() < 1e-9,
        "{report}"
    );
    assert!((f(&report["krippendorff_alpha"]) - 7.0 / 18.0).abs() < 1e-9);
    let r1r2 = report["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .find(|p| p["annotators"] == json!(["r1", "r2"]))
        .expect("pair");
    assert!((f(&r1r2["kappa"]) - 0.5).abs() < 1e-9);
    assert_eq!(report["position_bias"]["decisive"], 12);
    assert_eq!(report["position_bias"]["left_wins"], left_wins);
    // Gold accuracy: r1 said x on q3 (wrong), r2 and r3 got both.
    assert_eq!(
        (
            report["gold"]["answered"].clone(),
            report["gold"]["correct"].clone()
        ),
        (json!(6), json!(5))
    );
    let accuracy: Vec<f64> = report["annotators"]
        .as_array()
        .expect("annotators")
        .iter()
        .map(|a| f(&a["gold"]["accuracy"]))
        .collect();
    assert_eq!(accuracy, [0.5, 1.0, 1.0]);
    assert_eq!(report["annotators"][0]["median_time_ms"], 1000.0);
    assert_eq!(report["time_spent_ms"]["count"], 12);

    // The ranking: 6 wins each way between step-100 and step-200.
    let ranking: Value = app
        .get(&admin, &format!("/api/projects/{project}/checkpoints"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ranking["comparisons"], 12);
    let cps = ranking["checkpoints"].as_array().expect("checkpoints");
    assert_eq!(cps.len(), 2);
    assert!((f(&cps[0]["score"]) - f(&cps[1]["score"])).abs() < 1e-6);

    // Roles: annotators see neither; gold is for admins.
    let ann = app.add_user("ann", Role::Annotator).await;
    let rev = app.add_user("rev", Role::Reviewer).await;
    assert_eq!(
        app.get(&ann, &format!("/api/projects/{project}/agreement"))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.get(&ann, &format!("/api/projects/{project}/checkpoints"))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.get(&rev, &format!("/api/projects/{project}/agreement"))
            .await
            .status(),
        200
    );
    let r = app
        .put_json(
            &rev,
            &format!("/api/projects/{project}/gold"),
            &json!({"items": [{"id": "q1", "winner": 0}]}),
        )
        .await;
    assert_eq!(r.status(), 403);
    // A winner that is not a candidate: 400, nothing marked.
    let r = app
        .put_json(
            &admin,
            &format!("/api/projects/{project}/gold"),
            &json!({"items": [{"id": "q1", "winner": 0}, {"id": "q2", "winner": 5}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let gold: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE gold_winner IS NOT NULL")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(gold, 2);
}

#[tokio::test]
async fn gold_items_are_mixed_in_at_the_configured_rate() {
    let app = spawn_app().await;
    let (admin, project) = app
        .project_with_items("duel", "preference", 1, preference_items(3))
        .await;
    let r = app
        .put_json(
            &admin,
            &format!("/api/projects/{project}/gold"),
            &json!({"items": [{"id": "q2", "winner": 1}], "overlap": 5}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let set_rate = |rate: f64| {
        app.client
            .patch(app.url(&format!("/api/admin/projects/{project}")))
            .bearer_auth(&admin.token)
            .json(&json!({"gold_rate": rate}))
            .send()
    };
    assert_eq!(set_rate(1.5).await.expect("patch").status(), 400);
    // Rate 1: the gold item comes first although it was imported last.
    assert_eq!(set_rate(1.0).await.expect("patch").status(), 200);
    let ann = app.add_user("ann", Role::Annotator).await;
    let task = app.next(&ann, project).await.expect("task");
    assert_eq!(task["external_id"], "q2");
    // Rate 0: items in order; with gold left over only when the rest is done.
    assert_eq!(set_rate(0.0).await.expect("patch").status(), 200);
    let bob = app.add_user("bob", Role::Annotator).await;
    let task = app.next(&bob, project).await.expect("task");
    assert_eq!(task["external_id"], "q0");
    // Gold overlap 5: several annotators get the same gold item.
    let (overlap, taken): (i32, i32) =
        sqlx::query_as("SELECT overlap, taken FROM items WHERE external_id = 'q2'")
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!((overlap, taken), (5, 1));
}
