//! The dashboard of a project (reviewers and admins): progress, throughput per annotator per
//! day, time per item, queue health, agreement and the checkpoint ranking, as server-rendered
//! SVG charts (see `charts`) with the headline numbers next to them.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use minijinja::{Value, context};
use serde::Serialize;
use sqlx::PgPool;

use crate::auth::PageUser;
use crate::charts;
use crate::error::AppError;
use crate::pages::{Templates, html, user_ctx};
use crate::projects::{self, Project};
use crate::quality;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/{id}/dashboard", web::get().to(dashboard));
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Progress {
    pub done: i64,
    pub in_progress: i64,
    pub remaining: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct QueueHealth {
    /// Leases held now.
    pub live_leases: i64,
    /// Leases past their expiry that the reclaimer has not returned yet.
    pub overdue_leases: i64,
    /// Leases that expired (abandoned) in the last 24 hours, and ever.
    pub expired_24h: i64,
    pub expired_total: i64,
    pub median_time_ms: Option<f64>,
}

/// Items with all their (non-rejected) responses; started but not done; not started.
pub async fn progress(pool: &PgPool, project: &Project) -> Result<Progress, AppError> {
    Ok(sqlx::query_as::<_, Progress>(
        "WITH s AS (SELECT i.taken, i.overlap, \
             (SELECT count(*) FROM responses r WHERE r.item_id = i.id \
                AND r.review_status <> 'rejected') AS answered \
           FROM items i WHERE i.project_id = $1) \
         SELECT count(*) FILTER (WHERE answered >= overlap) AS done, \
                count(*) FILTER (WHERE answered < overlap AND taken > 0) AS in_progress, \
                count(*) FILTER (WHERE answered < overlap AND taken = 0) AS remaining \
         FROM s",
    )
    .bind(project.id)
    .fetch_one(pool)
    .await?)
}

pub async fn queue_health(pool: &PgPool, project: &Project) -> Result<QueueHealth, AppError> {
    Ok(sqlx::query_as::<_, QueueHealth>(
        "SELECT \
           count(*) FILTER (WHERE status = 'leased' AND expires_at >= now()) AS live_leases, \
           count(*) FILTER (WHERE status = 'leased' AND expires_at < now()) AS overdue_leases, \
           count(*) FILTER (WHERE status = 'expired' AND finished_at > now() - interval '1 day') \
             AS expired_24h, \
           count(*) FILTER (WHERE status = 'expired') AS expired_total, \
           (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY time_spent_ms) FROM responses \
              WHERE project_id = $1 AND time_spent_ms IS NOT NULL) AS median_time_ms \
         FROM assignments WHERE project_id = $1",
    )
    .bind(project.id)
    .fetch_one(pool)
    .await?)
}

/// Responses per annotator per day over the last 14 days: (days, annotators, counts[day][annotator]).
pub async fn throughput(
    pool: &PgPool,
    project: &Project,
) -> Result<(Vec<String>, Vec<String>, Vec<Vec<f64>>), AppError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), u.username, count(*) \
         FROM responses r JOIN users u ON u.id = r.user_id \
         WHERE r.project_id = $1 AND r.created_at > now() - interval '14 days' \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(project.id)
    .fetch_all(pool)
    .await?;
    let mut days: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    days.dedup();
    let mut users: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
    users.sort();
    users.dedup();
    let index: BTreeMap<&str, usize> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.as_str(), i))
        .collect();
    let mut counts = vec![vec![0.0; users.len()]; days.len()];
    let day_index: BTreeMap<&str, usize> = days
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_str(), i))
        .collect();
    for (day, user, n) in &rows {
        counts[day_index[day.as_str()]][index[user.as_str()]] = *n as f64;
    }
    Ok((days, users, counts))
}

fn svg(s: String) -> Value {
    Value::from_safe_string(s)
}

async fn dashboard(
    page: PageUser,
    pool: web::Data<PgPool>,
    templates: web::Data<Templates>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    if !page.user.can_review() {
        return Err(AppError::Forbidden("reviewers and admins only".into()));
    }
    let project = projects::get(&pool, path.into_inner()).await?;
    let progress = progress(&pool, &project).await?;
    let health = queue_health(&pool, &project).await?;
    let (days, users, counts) = throughput(&pool, &project).await?;
    let agreement = quality::agreement(&pool, &project).await?;
    let ranking = quality::checkpoints(&pool, &project).await?;

    let progress_svg = charts::stacked(
        "Items: done, in progress, remaining",
        &["done".into(), "in progress".into(), "remaining".into()],
        &[(
            project.name.clone(),
            vec![
                progress.done as f64,
                progress.in_progress as f64,
                progress.remaining as f64,
            ],
        )],
    );
    let throughput_svg = charts::stacked(
        "Responses per annotator per day",
        &users,
        &days.iter().cloned().zip(counts).collect::<Vec<_>>(),
    );
    let health_svg = charts::bars(
        "Queue health",
        &[
            ("live leases".into(), health.live_leases as f64),
            ("overdue leases".into(), health.overdue_leases as f64),
            ("expired (24 h)".into(), health.expired_24h as f64),
            ("expired (all)".into(), health.expired_total as f64),
        ],
        None,
    );
    let per_annotator = |f: fn(&quality::AnnotatorQuality) -> Option<f64>| {
        agreement
            .annotators
            .iter()
            .filter_map(|a| f(a).map(|v| (a.annotator.clone(), v)))
            .collect::<Vec<_>>()
    };
    let time_svg = charts::bars(
        "Median seconds per item, per annotator",
        &per_annotator(|a| a.median_time_ms.map(|ms| ms / 1000.0)),
        None,
    );
    let kappa_svg = charts::bars(
        "Mean Cohen's kappa with the others, per annotator",
        &per_annotator(|a| a.mean_kappa.map(|k| k.max(0.0))),
        Some(1.0),
    );
    let gold_svg = charts::bars(
        "Gold accuracy, per annotator",
        &per_annotator(|a| a.gold.as_ref().and_then(|g| g.accuracy)),
        Some(1.0),
    );
    let bias_svg = charts::bars(
        "Left answer wins (0.5 = no position bias), per annotator",
        &per_annotator(|a| a.position_bias.as_ref().and_then(|b| b.left_win_rate)),
        Some(1.0),
    );
    let length_svg = agreement.answer_chars.as_ref().map(|d| {
        let rows: Vec<(String, f64)> = d
            .histogram
            .iter()
            .map(|(lo, hi, n)| (format!("{lo:.0}-{hi:.0}"), *n as f64))
            .collect();
        charts::bars("Answer length (characters)", &rows, None)
    });
    let ranking_svg = charts::intervals(
        "Bradley-Terry score with 95% interval",
        &ranking
            .checkpoints
            .iter()
            .map(|c| (c.checkpoint.clone(), c.score, c.ci_low, c.ci_high))
            .collect::<Vec<_>>(),
    );
    let body = templates.render(
        "dashboard.html",
        context! {
            csrf => page.csrf, user => user_ctx(&page.user), project,
            progress, health, agreement, ranking,
            charts => context! {
                progress => svg(progress_svg), throughput => svg(throughput_svg),
                health => svg(health_svg), time => svg(time_svg), kappa => svg(kappa_svg),
                gold => svg(gold_svg), bias => svg(bias_svg),
                length => length_svg.map(svg), ranking => svg(ranking_svg),
            },
        },
    )?;
    Ok(html(body))
}
