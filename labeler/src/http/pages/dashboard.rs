//! The dashboard of a project (reviewers and admins): progress, throughput per annotator per
//! day, time per item, queue health, agreement and the checkpoint ranking, as server-rendered
//! SVG charts (see `stats::charts`) with the headline numbers next to them; annotators who
//! answer too fast flagged, and the items skipped with their reasons.

use actix_web::{HttpResponse, web};
use minijinja::{Value, context};
use sqlx::PgPool;

use super::templates::{Templates, html, user_ctx};
use crate::http::auth::{PageUser, Reviewers};
use crate::http::error::AppError;
use crate::state::AppState;
use crate::stats::charts;
use crate::store::progress::{progress, queue_health, skips, throughput};
use crate::store::{projects, quality};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/{id}/dashboard", web::get().to(dashboard));
}

fn svg(s: String) -> Value {
    Value::from_safe_string(s)
}

async fn dashboard(
    page: PageUser<Reviewers>,
    pool: web::Data<PgPool>,
    state: web::Data<AppState>,
    templates: web::Data<Templates>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let progress = progress(&pool, &project).await?;
    let health = queue_health(&pool, &project).await?;
    let (days, users, counts) = throughput(&pool, &project).await?;
    let agreement = quality::agreement(&pool, &project).await?;
    let ranking = quality::checkpoints(&pool, &project).await?;
    let skipped = skips(&pool, &project, 100).await?;
    // Annotators answering faster than anyone can read: median seconds per item under the
    // configured threshold.
    let threshold = state.fast_annotator_seconds;
    let fast: Vec<Value> = agreement
        .annotators
        .iter()
        .filter_map(|a| {
            let secs = a.median_time_ms? / 1000.0;
            (secs < threshold).then(|| {
                context! { annotator => a.annotator.clone(), seconds => secs, responses => a.responses }
            })
        })
        .collect();

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
    let thumbs_svg = charts::bars(
        "Share of thumbs up, per annotator",
        &per_annotator(|a| a.thumbs_up_rate),
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
            progress, health, agreement, ranking, skipped, fast, threshold,
            charts => context! {
                progress => svg(progress_svg), throughput => svg(throughput_svg),
                health => svg(health_svg), time => svg(time_svg), kappa => svg(kappa_svg),
                gold => svg(gold_svg), bias => svg(bias_svg), thumbs => svg(thumbs_svg),
                length => length_svg.map(svg), ranking => svg(ranking_svg),
            },
        },
    )?;
    Ok(html(body))
}
