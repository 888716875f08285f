//! Label quality of a project, from its non-rejected responses: agreement (Cohen's kappa per
//! pair, Fleiss' kappa, Krippendorff's alpha), position bias, gold-item accuracy, SFT answer
//! length and time distributions, and the Bradley-Terry ranking of the checkpoints that made
//! the candidates. Also marking gold items.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgPool;
use sqlx::types::Json;

use crate::domain::{Candidate, ProjectKind};
use crate::stats::agreement::{self, Label, PairAgreement, quantile};
use crate::stats::rank_correlation::{self, ItemRanking};
use crate::stats::ranking::{self, CheckpointScore, Comparison};
use crate::store::StoreError;
use crate::store::projects::Project;

/// A distribution of non-negative values: quantiles and a histogram of 10 equal bins.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Distribution {
    pub count: usize,
    pub p10: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub max: Option<f64>,
    /// `[low, high, count]` per bin.
    pub histogram: Vec<(f64, f64, usize)>,
}

impl Distribution {
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let max = values.last().copied();
        let mut histogram = Vec::new();
        if let Some(max) = max.filter(|m| *m > 0.0) {
            let width = max / 10.0;
            histogram = (0..10)
                .map(|b| (b as f64 * width, (b + 1) as f64 * width, 0))
                .collect();
            for v in &values {
                let b = ((v / width) as usize).min(9);
                histogram[b].2 += 1;
            }
        }
        Self {
            count: values.len(),
            p10: quantile(&values, 0.1),
            p50: quantile(&values, 0.5),
            p90: quantile(&values, 0.9),
            max,
            histogram,
        }
    }
}

/// Left answer wins among decisive (A or B) verdicts; 0.5 means no position bias.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PositionBias {
    pub decisive: usize,
    pub left_wins: usize,
    pub left_win_rate: Option<f64>,
}

impl PositionBias {
    fn new(decisive: usize, left_wins: usize) -> Self {
        Self {
            decisive,
            left_wins,
            left_win_rate: (decisive > 0).then(|| left_wins as f64 / decisive as f64),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GoldAccuracy {
    /// Gold answers given (gold items where the gold candidate was among the two shown).
    pub answered: usize,
    pub correct: usize,
    pub accuracy: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnnotatorQuality {
    pub annotator: String,
    pub responses: usize,
    /// Mean Cohen's kappa over the pairs this annotator is in.
    pub mean_kappa: Option<f64>,
    pub position_bias: Option<PositionBias>,
    pub gold: Option<GoldAccuracy>,
    pub median_time_ms: Option<f64>,
    /// SFT: median answer length in characters.
    pub median_answer_chars: Option<f64>,
    /// Rating: the share of thumbs up this annotator gave (far from the others': too lenient
    /// or too strict).
    pub thumbs_up_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgreementReport {
    pub project_id: i64,
    pub kind: ProjectKind,
    pub responses: usize,
    /// Items with two or more responses: the ones agreement is computed over.
    pub overlapping_items: usize,
    pub fleiss_kappa: Option<f64>,
    pub krippendorff_alpha: Option<f64>,
    pub mean_cohen_kappa: Option<f64>,
    pub pairs: Vec<PairAgreement>,
    pub position_bias: Option<PositionBias>,
    pub gold: Option<GoldAccuracy>,
    /// Rating: the share of thumbs up over all ratings.
    pub thumbs_up_rate: Option<f64>,
    pub answer_chars: Option<Distribution>,
    pub time_spent_ms: Distribution,
    pub annotators: Vec<AnnotatorQuality>,
    /// Ranking projects: how alike annotators order the same answers.
    pub ranking: Option<RankAgreement>,
    /// Human verdicts against the model's pre-labels, where items have one.
    pub model: Option<crate::store::prelabels::ModelAgreement>,
}

/// Agreement of rankings: Kendall's tau-b (ties allowed) of every pair of annotators on
/// every item both ranked, by candidate (the shown order is random per annotator).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RankAgreement {
    pub compared_pairs: usize,
    pub mean_kendall_tau_b: Option<f64>,
}

async fn rank_agreement(pool: &PgPool, project: &Project) -> Result<RankAgreement, StoreError> {
    let rows: Vec<(i64, String, Vec<i16>, Vec<i16>)> = sqlx::query_as(
        "SELECT r.item_id, u.username, r.ranking, r.shown FROM responses r \
         JOIN users u ON u.id = r.user_id \
         WHERE r.project_id = $1 AND r.ranking IS NOT NULL AND r.review_status <> 'rejected'",
    )
    .bind(project.id)
    .fetch_all(pool)
    .await?;
    let rankings: Vec<ItemRanking> = rows
        .into_iter()
        .map(|(item, annotator, ranks, shown)| ItemRanking {
            item,
            annotator,
            rank_of: shown.into_iter().zip(ranks).collect(),
        })
        .collect();
    let (compared_pairs, mean_kendall_tau_b) = rank_correlation::mean_pairwise_tau(&rankings);
    Ok(RankAgreement {
        compared_pairs,
        mean_kendall_tau_b,
    })
}

type ResponseRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Vec<i16>,
    Option<i16>,
    Option<i64>,
);

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    quantile(&values, 0.5)
}

/// The category a verdict puts an item in, comparable across annotators whatever order they
/// saw the answers in: the winning candidate's index, or `tie` / `both_bad`.
fn category(choice: &str, shown: &[i16]) -> Option<String> {
    match (choice, shown) {
        ("a", [l, _]) => Some(format!("candidate {l}")),
        ("b", [_, r]) => Some(format!("candidate {r}")),
        // Rating: thumbs up or down on the one answer.
        ("tie" | "both_bad" | "up" | "down", _) => Some(choice.to_string()),
        _ => None,
    }
}

pub async fn agreement(pool: &PgPool, project: &Project) -> Result<AgreementReport, StoreError> {
    let rows: Vec<ResponseRow> = sqlx::query_as(
        "SELECT r.item_id, u.username, \
                COALESCE(r.choice, CASE WHEN r.label THEN 'up' WHEN NOT r.label THEN 'down' END), \
                r.answer, r.shown, i.gold_winner, \
                r.time_spent_ms \
         FROM responses r JOIN users u ON u.id = r.user_id JOIN items i ON i.id = r.item_id \
         WHERE r.project_id = $1 AND r.review_status <> 'rejected' ORDER BY r.id",
    )
    .bind(project.id)
    .fetch_all(pool)
    .await?;
    let mut labels = Vec::new();
    let mut per_user: BTreeMap<String, UserTally> = BTreeMap::new();
    for (item, user, choice, answer, shown, gold, time) in &rows {
        let t = per_user.entry(user.clone()).or_default();
        t.responses += 1;
        if let Some(ms) = time {
            t.times.push(*ms as f64);
        }
        if let Some(a) = answer {
            t.chars.push(a.chars().count() as f64);
        }
        let Some(choice) = choice else { continue };
        if let Some(category) = category(choice, shown) {
            labels.push(Label {
                item: *item,
                annotator: user.clone(),
                category,
            });
        }
        if matches!(choice.as_str(), "up" | "down") {
            t.thumbs += 1;
            t.ups += usize::from(choice == "up");
        }
        if matches!(choice.as_str(), "a" | "b") {
            t.decisive += 1;
            t.left_wins += usize::from(choice == "a");
        }
        if let Some(g) = gold
            && shown.contains(g)
            && project.kind == ProjectKind::Preference
        {
            t.gold_answered += 1;
            let winner = match (choice.as_str(), shown.as_slice()) {
                ("a", [l, _]) => Some(*l),
                ("b", [_, r]) => Some(*r),
                _ => None,
            };
            t.gold_correct += usize::from(winner == Some(*g));
        }
    }
    // Ratings' and rankings' gold answers are judged in the database.
    if project.kind == ProjectKind::Rating || project.ranking {
        for (user, answered, correct) in gold_of_ratings_and_rankings(pool, project).await? {
            let t = per_user.entry(user).or_default();
            t.gold_answered += answered as usize;
            t.gold_correct += correct as usize;
        }
    }
    let pairs = agreement::pairwise(&labels);
    let preference = project.kind == ProjectKind::Preference;
    let annotators = per_user
        .iter()
        .map(|(name, t)| AnnotatorQuality {
            annotator: name.clone(),
            responses: t.responses,
            mean_kappa: mean(
                pairs
                    .iter()
                    .filter(|p| p.annotators.contains(name))
                    .filter_map(|p| p.kappa),
            ),
            position_bias: preference.then(|| PositionBias::new(t.decisive, t.left_wins)),
            gold: (t.gold_answered > 0).then(|| gold(t.gold_answered, t.gold_correct)),
            median_time_ms: median(t.times.clone()),
            median_answer_chars: (project.kind == ProjectKind::Sft)
                .then(|| median(t.chars.clone()))
                .flatten(),
            thumbs_up_rate: (t.thumbs > 0).then(|| t.ups as f64 / t.thumbs as f64),
        })
        .collect::<Vec<_>>();
    let sum = |f: fn(&UserTally) -> usize| per_user.values().map(f).sum::<usize>();
    let gold_answered = sum(|t| t.gold_answered);
    let ranking = match project.ranking {
        true => Some(rank_agreement(pool, project).await?),
        false => None,
    };
    Ok(AgreementReport {
        project_id: project.id,
        kind: project.kind,
        responses: rows.len(),
        overlapping_items: agreement::overlapping_items(&labels),
        fleiss_kappa: agreement::fleiss_kappa(&labels),
        krippendorff_alpha: agreement::krippendorff_alpha(&labels),
        mean_cohen_kappa: mean(pairs.iter().filter_map(|p| p.kappa)),
        pairs,
        position_bias: preference
            .then(|| PositionBias::new(sum(|t| t.decisive), sum(|t| t.left_wins))),
        gold: (gold_answered > 0).then(|| gold(gold_answered, sum(|t| t.gold_correct))),
        thumbs_up_rate: (sum(|t| t.thumbs) > 0)
            .then(|| sum(|t| t.ups) as f64 / sum(|t| t.thumbs) as f64),
        answer_chars: (project.kind == ProjectKind::Sft)
            .then(|| Distribution::of(per_user.values().flat_map(|t| t.chars.clone()).collect())),
        time_spent_ms: Distribution::of(per_user.values().flat_map(|t| t.times.clone()).collect()),
        annotators,
        ranking,
        model: crate::store::prelabels::human_vs_model(pool, project).await?,
    })
}

fn gold(answered: usize, correct: usize) -> GoldAccuracy {
    GoldAccuracy {
        answered,
        correct,
        accuracy: (answered > 0).then(|| correct as f64 / answered as f64),
    }
}

#[derive(Debug, Default)]
struct UserTally {
    responses: usize,
    decisive: usize,
    left_wins: usize,
    gold_answered: usize,
    gold_correct: usize,
    /// Rating: thumbs given, and how many up.
    thumbs: usize,
    ups: usize,
    times: Vec<f64>,
    chars: Vec<f64>,
}

/// The comparisons between checkpoints in a preference project's labels: pairs whose two
/// shown candidates name different checkpoints; ties count half, both-bad is left out (it
/// says nothing about which is better). A ranking counts as every pair it implies.
pub async fn comparisons(pool: &PgPool, project: &Project) -> Result<Vec<Comparison>, StoreError> {
    type Row = (
        Option<String>,
        Vec<i16>,
        Json<Vec<Candidate>>,
        Option<Vec<i16>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT r.choice, r.shown, i.candidates, r.ranking FROM responses r \
         JOIN items i ON i.id = r.item_id \
         WHERE r.project_id = $1 AND (r.choice IS NOT NULL OR r.ranking IS NOT NULL) \
           AND r.review_status <> 'rejected' \
         ORDER BY r.id",
    )
    .bind(project.id)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for (choice, shown, candidates, ranks) in rows {
        let ckpt = |i: i16| {
            candidates
                .0
                .get(i as usize)
                .and_then(|c| c.checkpoint.clone())
        };
        if let Some(ranks) = ranks {
            for pair in crate::domain::Ranking::from_stored(ranks).pairs() {
                let (Some(&b), Some(&w)) = (shown.get(pair.better), shown.get(pair.worse)) else {
                    continue;
                };
                if let (Some(left), Some(right)) = (ckpt(b), ckpt(w))
                    && left != right
                {
                    let outcome = if pair.gap == 0 { 0.5 } else { 1.0 };
                    out.push(Comparison {
                        left,
                        right,
                        outcome,
                    });
                }
            }
            continue;
        }
        let Some(choice) = choice else { continue };
        let [l, r] = shown.as_slice() else { continue };
        let (Some(left), Some(right)) = (ckpt(*l), ckpt(*r)) else {
            continue;
        };
        let outcome = match choice.as_str() {
            "a" => 1.0,
            "b" => 0.0,
            "tie" => 0.5,
            _ => continue,
        };
        if left != right {
            out.push(Comparison {
                left,
                right,
                outcome,
            });
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointRanking {
    pub project_id: i64,
    pub comparisons: usize,
    pub checkpoints: Vec<CheckpointScore>,
}

pub async fn checkpoints(
    pool: &PgPool,
    project: &Project,
) -> Result<CheckpointRanking, StoreError> {
    let comparisons = comparisons(pool, project).await?;
    let n = comparisons.len();
    let checkpoints = tokio::task::spawn_blocking(move || ranking::rank(&comparisons))
        .await
        .map_err(StoreError::unexpected)?;
    Ok(CheckpointRanking {
        project_id: project.id,
        comparisons: n,
        checkpoints,
    })
}

/// One gold mark: the item (by its external id) and the candidate that should win (in a
/// ranking: be ranked first, ties with it allowed), or for a rating item the thumb it should
/// get (`label`; stored as `gold_winner` 1 for up, 0 for down).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldMark {
    pub id: String,
    #[serde(default)]
    pub winner: Option<i16>,
    #[serde(default)]
    pub label: Option<bool>,
}

impl GoldMark {
    /// The `gold_winner` value for a project of `kind`.
    fn stored(&self, i: usize, kind: ProjectKind) -> Result<i16, StoreError> {
        let wrong = |what: &str| StoreError::Invalid(format!("items[{i}]: {what}"));
        match (kind, self.winner, self.label) {
            (ProjectKind::Rating, None, Some(label)) => Ok(i16::from(label)),
            (ProjectKind::Rating, _, _) => Err(wrong(
                "a rating gold mark has \"label\" (true or false), not \"winner\"",
            )),
            (_, Some(winner), None) => Ok(winner),
            _ => Err(wrong(
                "a preference gold mark has \"winner\" (a candidate index), not \"label\"",
            )),
        }
    }
}

/// Gold answers of ratings (the thumb expected) and rankings (the gold candidate ranked
/// first, ties allowed), per annotator: (answered, correct).
async fn gold_of_ratings_and_rankings(
    pool: &PgPool,
    project: &Project,
) -> Result<Vec<(String, i64, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT u.username, count(*), count(*) FILTER (WHERE \
           CASE WHEN r.label IS NOT NULL THEN r.label = (i.gold_winner = 1) \
                ELSE r.ranking[array_position(r.shown, i.gold_winner)] \
                     = (SELECT min(x) FROM unnest(r.ranking) x) END) \
         FROM responses r JOIN users u ON u.id = r.user_id JOIN items i ON i.id = r.item_id \
         WHERE r.project_id = $1 AND r.review_status <> 'rejected' AND i.gold_winner IS NOT NULL \
           AND (r.label IS NOT NULL OR r.ranking IS NOT NULL) \
         GROUP BY u.username",
    )
    .bind(project.id)
    .fetch_all(pool)
    .await?)
}

/// Marks items of a preference project as gold, and raises their overlap to `overlap` so
/// that many annotators can be checked on each. Returns how many items were marked; an
/// unknown id or a winner out of range is a validation error and marks nothing.
pub async fn mark_gold(
    pool: &PgPool,
    project: &Project,
    marks: &[GoldMark],
    overlap: i32,
) -> Result<usize, StoreError> {
    if project.kind == ProjectKind::Sft {
        return Err(StoreError::Invalid(
            "gold items belong to preference and rating projects".into(),
        ));
    }
    let mut tx = pool.begin().await?;
    for (i, m) in marks.iter().enumerate() {
        let winner = m.stored(i, project.kind)?;
        // A rating's one candidate is index 0; its gold is the thumb (0 or 1).
        let candidates = if project.kind == ProjectKind::Rating {
            "2"
        } else {
            "jsonb_array_length(candidates)"
        };
        let n = sqlx::query(&format!(
            "UPDATE items SET gold_winner = $3, overlap = GREATEST(overlap, $4) \
             WHERE project_id = $1 AND external_id = $2 \
               AND $3 < {candidates} AND $3 >= 0"
        ))
        .bind(project.id)
        .bind(&m.id)
        .bind(winner)
        .bind(overlap)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Invalid(format!(
                "items[{i}]: no item {:?} in this project with a candidate {winner}",
                m.id
            )));
        }
    }
    tx.commit().await?;
    Ok(marks.len())
}
