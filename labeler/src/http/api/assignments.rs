//! The annotator's side of the API: take the next item (a lease), read it, keep the lease
//! alive, skip it (with an optional reason), autosave a draft, submit (idempotent with an
//! `Idempotency-Key`), undo the last submit; their own progress and rejected answers.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use sqlx::PgPool;

use crate::http::auth::ApiUser;
use crate::http::error::AppError;
use crate::state::AppState;
use crate::store::annotator;
use crate::store::queue::{self, LeasePolicy};
use crate::store::responses::{self, IdempotencyKey, SubmitBody};

/// Routes under `/api`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/{id}/next", web::post().to(next_task))
        .route("/assignments/{id}", web::get().to(get_task))
        .route("/assignments/{id}/renew", web::post().to(renew))
        .route("/assignments/{id}/skip", web::post().to(skip))
        .route("/assignments/{id}/draft", web::put().to(save_draft))
        .route("/assignments/{id}/submit", web::post().to(submit))
        .route("/projects/{id}/mine", web::get().to(mine))
        .route("/projects/{id}/undo", web::post().to(undo));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NextQuery {
    /// Comma-separated assignment ids the caller already holds (the prefetch asks for an
    /// item other than the one on screen).
    #[serde(default)]
    exclude: Option<String>,
}

fn parse_ids(s: &str) -> Result<Vec<i64>, AppError> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .take(16)
        .map(|p| {
            p.trim()
                .parse()
                .map_err(|_| AppError::Validation(format!("exclude: {p:?} is not an id")))
        })
        .collect()
}

async fn next_task(
    ApiUser { user, .. }: ApiUser,
    state: web::Data<AppState>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, AppError> {
    let exclude = parse_ids(query.exclude.as_deref().unwrap_or(""))?;
    match queue::next(&pool, state.lease, path.into_inner(), &user, &exclude).await? {
        Some(task) => Ok(HttpResponse::Ok().json(task)),
        None => Ok(HttpResponse::NoContent().finish()),
    }
}

async fn get_task(
    ApiUser { user, .. }: ApiUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let task = queue::task(&pool, path.into_inner(), user.id).await?;
    Ok(HttpResponse::Ok().json(task))
}

async fn renew(
    ApiUser { user, .. }: ApiUser,
    state: web::Data<AppState>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let policy: LeasePolicy = state.lease;
    let expires_at = queue::renew(&pool, policy, path.into_inner(), &user).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"expires_at": expires_at})))
}

/// The optional body of a skip.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SkipBody {
    /// Why (kept for the project's leads); blank means none.
    #[serde(default)]
    reason: Option<String>,
}

/// Longest skip reason, in characters.
const MAX_SKIP_REASON: usize = 1000;

async fn skip(
    ApiUser { user, .. }: ApiUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    // No body (the old form of the call) is a skip without a reason.
    let body: SkipBody = if body.iter().all(u8::is_ascii_whitespace) {
        SkipBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AppError::Validation(format!("invalid JSON body: {e}")))?
    };
    let reason = body
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if let Some(reason) = reason {
        if reason.chars().count() > MAX_SKIP_REASON {
            return Err(AppError::Validation(format!(
                "reason is longer than {MAX_SKIP_REASON} characters"
            )));
        }
        crate::domain::check_text(reason)
            .map_err(|e| AppError::Validation(format!("reason: {e}")))?;
    }
    queue::skip(&pool, path.into_inner(), &user, reason).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/projects/{id}/mine`: the caller's progress and their answers sent back.
async fn mine(
    ApiUser { user, .. }: ApiUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = crate::store::projects::get(&pool, path.into_inner()).await?;
    let progress = annotator::progress(&pool, project.id, &user).await?;
    let rejected = annotator::rejections(&pool, project.id, &user, 50).await?;
    let undo = annotator::undoable(&pool, project.id, &user).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "progress": progress, "rejected": rejected, "undo": undo,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UndoBody {
    /// The assignment whose answer to take back: the caller's last in the project (as
    /// `GET .../mine` names it in `undo`), so a repeated call cannot take back two.
    assignment_id: i64,
}

/// `POST /api/projects/{id}/undo`: takes back the caller's last answer in the project (while
/// not reviewed or exported) and answers with its task again, the answer as its draft.
async fn undo(
    ApiUser { user, .. }: ApiUser,
    state: web::Data<AppState>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Json<UndoBody>,
) -> Result<HttpResponse, AppError> {
    let assignment = body.assignment_id;
    annotator::undo(
        &pool,
        path.into_inner(),
        &user,
        assignment,
        state.lease.lease_seconds,
    )
    .await?;
    let task = queue::task(&pool, assignment, user.id).await?;
    Ok(HttpResponse::Ok().json(task))
}
async fn save_draft(
    ApiUser { user, .. }: ApiUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, AppError> {
    responses::save_draft(&pool, path.into_inner(), &user, &body).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn submit(
    ApiUser { user, .. }: ApiUser,
    req: HttpRequest,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Json<SubmitBody>,
) -> Result<HttpResponse, AppError> {
    let key = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| AppError::Validation("Idempotency-Key is not ASCII".into()))
                .and_then(|s| IdempotencyKey::parse(s).map_err(AppError::Validation))?,
        ),
    };
    let (code, reply) =
        responses::submit(&pool, path.into_inner(), &user, body.into_inner(), key).await?;
    let status = actix_web::http::StatusCode::from_u16(code).map_err(AppError::unexpected)?;
    Ok(HttpResponse::build(status).json(reply))
}
