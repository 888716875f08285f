//! Quality API: agreement and the checkpoint ranking (reviewers and admins), gold items
//! (admins).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use sqlx::PgPool;

use crate::domain::Overlap;
use crate::http::auth::{Admins, ApiUser, Reviewers};
use crate::http::error::AppError;
use crate::store::audit::{self, Action, Actor, Event};
use crate::store::projects;
use crate::store::quality::{self, GoldMark};

/// Routes under `/api`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/{id}/agreement", web::get().to(agreement))
        .route("/projects/{id}/checkpoints", web::get().to(checkpoints))
        .route("/projects/{id}/gold", web::put().to(mark_gold));
}

async fn agreement(
    _: ApiUser<Reviewers>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(quality::agreement(&pool, &project).await?))
}

async fn checkpoints(
    _: ApiUser<Reviewers>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(quality::checkpoints(&pool, &project).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoldBody {
    items: Vec<GoldMark>,
    /// How many annotators answer each gold item (default 100: everyone, up to 100).
    #[serde(default)]
    overlap: Option<i64>,
}

async fn mark_gold(
    ApiUser { user: admin, .. }: ApiUser<Admins>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Json<GoldBody>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let body = body.into_inner();
    if body.items.is_empty() || body.items.len() > 10_000 {
        return Err(AppError::Validation("items: 1 to 10000 gold marks".into()));
    }
    let overlap = Overlap::parse(body.overlap.unwrap_or(100)).map_err(AppError::Validation)?;
    let marked = quality::mark_gold(&pool, &project, &body.items, overlap.get()).await?;
    let ids: Vec<&str> = body.items.iter().take(100).map(|m| m.id.as_str()).collect();
    let event = Event::new(Action::ProjectGold)
        .project(project.id)
        .target(&project.name)
        .details(serde_json::json!({"marked": marked, "items": ids, "overlap": overlap.get()}));
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"marked": marked})))
}
