//! Review API (reviewers and admins): list a project's submitted responses, read one with its
//! versions, accept, reject with a comment, or edit.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use sqlx::PgPool;

use crate::http::auth::{ApiUser, Reviewers};
use crate::http::error::AppError;
use crate::http::pagination::page_limit;
use crate::store::projects;
use crate::store::responses::SubmitBody;
use crate::store::review::{self, Decision, ReviewStatus};

/// Routes under `/api`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/{id}/responses", web::get().to(list))
        .route("/responses/{id}", web::get().to(get))
        .route("/responses/{id}/accept", web::post().to(accept))
        .route("/responses/{id}/reject", web::post().to(reject))
        .route("/responses/{id}/edit", web::post().to(edit));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// pending (default), accepted, rejected or all.
    status: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
    /// One annotator's responses only (by user name).
    annotator: Option<String>,
}

async fn list(
    _: ApiUser<Reviewers>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let status = match query.status.as_deref().unwrap_or("pending") {
        "all" => None,
        s => Some(ReviewStatus::parse(s).map_err(AppError::Validation)?),
    };
    let limit = page_limit(query.limit)?;
    let filter = review::ReviewFilter {
        status,
        annotator: query.annotator.as_deref(),
    };
    let items = review::list(&pool, &project, &filter, query.after.unwrap_or(0), limit).await?;
    Ok(HttpResponse::Ok().json(items))
}

async fn get(
    _: ApiUser<Reviewers>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let (project_id, item, versions) = review::get(&pool, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "project_id": project_id, "response": item, "versions": versions,
    })))
}

async fn apply(
    reviewer: &crate::store::accounts::User,
    pool: &PgPool,
    response_id: i64,
    decision: impl FnOnce(&projects::Project) -> Result<Decision, String>,
) -> Result<HttpResponse, AppError> {
    let (project_id, _, _) = review::get(pool, response_id).await?;
    let project = projects::get(pool, project_id).await?;
    let decision = decision(&project).map_err(AppError::Validation)?;
    let item = review::decide(pool, reviewer, &project, response_id, decision).await?;
    Ok(HttpResponse::Ok().json(item))
}

async fn accept(
    ApiUser { user, .. }: ApiUser<Reviewers>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    apply(&user, &pool, path.into_inner(), |_| Ok(Decision::Accept)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    comment: String,
}

async fn reject(
    ApiUser { user, .. }: ApiUser<Reviewers>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Json<RejectBody>,
) -> Result<HttpResponse, AppError> {
    apply(&user, &pool, path.into_inner(), |_| {
        Decision::reject(&body.comment)
    })
    .await
}

async fn edit(
    ApiUser { user, .. }: ApiUser<Reviewers>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Json<SubmitBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    apply(&user, &pool, path.into_inner(), |p| {
        review::parse_edit(body, p)
    })
    .await
}
