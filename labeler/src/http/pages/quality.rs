//! Agreement and the checkpoint ranking as readable pages (reviewers and admins): the same
//! figures as `GET /api/projects/{id}/agreement` and `.../checkpoints`, in tables with what
//! each number means beside it.

use actix_web::{HttpResponse, web};
use minijinja::context;
use sqlx::PgPool;

use super::templates::{Templates, html, user_ctx};
use crate::http::auth::{PageUser, Reviewers};
use crate::http::error::AppError;
use crate::store::{projects, quality};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/{id}/agreement", web::get().to(agreement))
        .route("/projects/{id}/checkpoints", web::get().to(checkpoints));
}

/// A rough reading of a kappa or alpha (Landis and Koch's bands, merged).
fn reading(value: Option<f64>) -> &'static str {
    match value {
        None => "undefined (no overlap, or one label only)",
        Some(v) if v > 0.8 => "strong agreement",
        Some(v) if v > 0.6 => "substantial agreement",
        Some(v) if v > 0.4 => "moderate agreement",
        Some(v) if v > 0.2 => "fair agreement: the guidelines may need work",
        Some(_) => "slight or no agreement: the guidelines or the task need work",
    }
}

async fn agreement(
    page: PageUser<Reviewers>,
    pool: web::Data<PgPool>,
    templates: web::Data<Templates>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let report = quality::agreement(&pool, &project).await?;
    let readings = context! {
        fleiss => reading(report.fleiss_kappa),
        alpha => reading(report.krippendorff_alpha),
        cohen => reading(report.mean_cohen_kappa),
    };
    let body = templates.render(
        "agreement.html",
        context! {
            csrf => page.csrf, user => user_ctx(&page.user), project, report, readings,
        },
    )?;
    Ok(html(body))
}

async fn checkpoints(
    page: PageUser<Reviewers>,
    pool: web::Data<PgPool>,
    templates: web::Data<Templates>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let ranking = quality::checkpoints(&pool, &project).await?;
    let body = templates.render(
        "checkpoints.html",
        context! { csrf => page.csrf, user => user_ctx(&page.user), project, ranking },
    )?;
    Ok(html(body))
}
