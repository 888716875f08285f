//! Quality API: agreement and the checkpoint ranking (reviewers and admins), gold items and
//! model pre-labels (admins), and a pre-label for the annotator who holds the item.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use sqlx::PgPool;

use crate::domain::Overlap;
use crate::http::auth::{Admins, ApiUser, Reviewers};
use crate::http::error::AppError;
use crate::store::audit::{self, Action, Actor, Event};
use crate::store::quality::{self, GoldMark};
use crate::store::{prelabels, projects};

/// Routes under `/api`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/{id}/agreement", web::get().to(agreement))
        .route("/projects/{id}/checkpoints", web::get().to(checkpoints))
        .route("/projects/{id}/gold", web::put().to(mark_gold))
        .route("/projects/{id}/prelabels", web::put().to(post_prelabels))
        .route("/assignments/{id}/suggestion", web::get().to(suggestion));
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrelabelBody {
    /// What made the suggestions: a reward model or checkpoint name.
    source: String,
    items: Vec<prelabels::PrelabelMark>,
}

/// `PUT /api/projects/{id}/prelabels`: a model's suggestions for items (replacing earlier
/// ones of any source; posting the same body twice changes nothing).
async fn post_prelabels(
    ApiUser { user: admin, .. }: ApiUser<Admins>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Json<PrelabelBody>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let body = body.into_inner();
    if body.items.is_empty() || body.items.len() > 10_000 {
        return Err(AppError::Validation("items: 1 to 10000 suggestions".into()));
    }
    let stored = prelabels::post(&pool, &project, body.source.trim(), &body.items).await?;
    let event = Event::new(Action::ProjectPrelabels)
        .project(project.id)
        .target(&project.name)
        .details(serde_json::json!({"source": body.source.trim(), "items": stored}));
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"stored": stored})))
}

/// `GET /api/assignments/{id}/suggestion`: the model's suggestion for the caller's item when
/// the project shows it now (200), or nothing (204).
async fn suggestion(
    ApiUser { user, .. }: ApiUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    Ok(
        match prelabels::for_assignment(&pool, path.into_inner(), &user).await? {
            Some(s) => HttpResponse::Ok().json(s),
            None => HttpResponse::NoContent().finish(),
        },
    )
}
