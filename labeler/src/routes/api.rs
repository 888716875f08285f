//! The JSON API, used by scripts and the trainer (API tokens) and by the pages' JavaScript
//! (session + CSRF header). Every input is parsed into checked types; a bad one is a 4xx.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::stream;
use serde::Deserialize;
use sqlx::PgPool;

use crate::audit::{self, Action, Actor, Event};
use crate::auth::{AdminUser, ApiUser};
use crate::domain::{Overlap, ProjectKind, ProjectName};
use crate::error::AppError;
use crate::export::{self, ExportPart};
use crate::projects::{self, NewProject};
use crate::queue::{self, LeasePolicy};
use crate::responses::{self, IdempotencyKey, SubmitBody};
use crate::{import, model_loop, startup::AppState, webhooks};

pub fn configure(cfg: &mut web::ServiceConfig, max_import_bytes: usize) {
    cfg.service(
        web::scope("/api")
            .route("/me", web::get().to(me))
            .route("/projects", web::get().to(list_projects))
            .route("/projects", web::post().to(create_project))
            .service(
                web::resource("/projects/{id}/items")
                    .app_data(web::PayloadConfig::new(max_import_bytes))
                    .route(web::post().to(import_items)),
            )
            .route("/projects/{id}/prompts", web::get().to(list_prompts))
            .service(
                web::resource("/projects/{id}/candidates")
                    .app_data(
                        web::JsonConfig::default()
                            .limit(max_import_bytes)
                            .error_handler(|e, _| crate::error::json_error(e).into()),
                    )
                    .route(web::post().to(post_candidates)),
            )
            .route("/projects/{id}/next", web::post().to(next_task))
            .route("/projects/{id}/export", web::get().to(export_part))
            .route("/assignments/{id}", web::get().to(get_task))
            .route("/assignments/{id}/renew", web::post().to(renew))
            .route("/assignments/{id}/skip", web::post().to(skip))
            .route("/assignments/{id}/draft", web::put().to(save_draft))
            .route("/assignments/{id}/submit", web::post().to(submit))
            .configure(super::admin::configure)
            .configure(super::review::configure)
            .configure(super::quality::configure),
    );
}

async fn me(ApiUser(user): ApiUser) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "id": user.id, "username": user.username, "role": user.role,
    }))
}

async fn list_projects(_: ApiUser, pool: web::Data<PgPool>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(projects::list_with_progress(&pool).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProject {
    name: String,
    kind: String,
    overlap: i64,
    #[serde(default)]
    guidelines: String,
    #[serde(default)]
    rationale_required: bool,
}

async fn create_project(
    AdminUser(admin): AdminUser,
    pool: web::Data<PgPool>,
    body: web::Json<CreateProject>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    crate::domain::check_text(&body.guidelines)
        .map_err(|e| AppError::Validation(format!("guidelines: {e}")))?;
    let new = NewProject {
        name: ProjectName::parse(&body.name).map_err(AppError::Validation)?,
        kind: ProjectKind::parse(&body.kind).map_err(AppError::Validation)?,
        overlap: Overlap::parse(body.overlap).map_err(AppError::Validation)?,
        guidelines: body.guidelines,
        rationale_required: body.rationale_required,
    };
    let project = projects::create(&pool, &new, Some(admin.id)).await?;
    audit_project_create(&pool, &admin, &project).await?;
    Ok(HttpResponse::Created().json(project))
}

/// Records a new project (API and page).
pub(crate) async fn audit_project_create(
    pool: &PgPool,
    admin: &crate::accounts::User,
    project: &projects::Project,
) -> Result<(), AppError> {
    let event = Event::new(Action::ProjectCreate)
        .project(project.id)
        .target(&project.name)
        .details(serde_json::json!({
            "kind": project.kind.as_str(), "overlap": project.overlap,
            "rationale_required": project.rationale_required,
        }));
    audit::record(pool, &Actor::user(admin), event).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    #[serde(default)]
    source: Option<String>,
}

async fn import_items(
    AdminUser(admin): AdminUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: web::Query<ImportQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let kind = project.kind;
    let items = web::block(move || import::parse_upload(&body, kind))
        .await
        .map_err(AppError::unexpected)?
        .map_err(import::rows_error)?;
    let source = query.into_inner().source.unwrap_or_else(|| "upload".into());
    crate::domain::check_text(&source).map_err(|e| AppError::Validation(format!("source: {e}")))?;
    let summary = import::insert(&pool, &project, &source, &items, Some(admin.id)).await?;
    let event = Event::new(Action::ProjectImport)
        .project(project.id)
        .target(&source)
        .details(serde_json::json!({"import_id": summary.import_id, "items": summary.items}));
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(HttpResponse::Created().json(summary))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptsQuery {
    /// Cursor: the `next_after` of the previous page (an item id); absent for the first.
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

/// The prompts of a project's items, for the trainer to answer (admins: the trainer runs
/// with an admin's token, as it also posts items).
async fn list_prompts(
    _: AdminUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: web::Query<PromptsQuery>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let limit = model_loop::page_limit(query.limit)?;
    let page = model_loop::prompts_page(&pool, &project, query.after.unwrap_or(0), limit).await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidatesBody {
    /// Recorded on the import (e.g. "trainer generate-candidates").
    #[serde(default)]
    source: Option<String>,
    /// Import rows with an `id` and provenance on every candidate.
    items: Vec<serde_json::Value>,
}

async fn post_candidates(
    AdminUser(admin): AdminUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Json<CandidatesBody>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let body = body.into_inner();
    let source = body.source.unwrap_or_else(|| "candidates".into());
    crate::domain::check_text(&source).map_err(|e| AppError::Validation(format!("source: {e}")))?;
    let items = model_loop::check_candidates(&project, body.items)?;
    let summary =
        model_loop::post_candidates(&pool, &project, &source, &items, Some(admin.id)).await?;
    let event = Event::new(Action::ProjectCandidates)
        .project(project.id)
        .target(&source)
        .details(serde_json::json!({
            "import_id": summary.import_id, "created": summary.created, "skipped": summary.skipped,
        }));
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(HttpResponse::Ok().json(summary))
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
    ApiUser(user): ApiUser,
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
    ApiUser(user): ApiUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let task = queue::task(&pool, path.into_inner(), user.id).await?;
    Ok(HttpResponse::Ok().json(task))
}

async fn renew(
    ApiUser(user): ApiUser,
    state: web::Data<AppState>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let policy: LeasePolicy = state.lease;
    let expires_at = queue::renew(&pool, policy, path.into_inner(), &user).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"expires_at": expires_at})))
}

async fn skip(
    ApiUser(user): ApiUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    queue::skip(&pool, path.into_inner(), &user).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn save_draft(
    ApiUser(user): ApiUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, AppError> {
    responses::save_draft(&pool, path.into_inner(), &user, &body).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn submit(
    ApiUser(user): ApiUser,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    part: Option<String>,
    /// `jsonl` (default) or `parquet`.
    format: Option<String>,
    /// Only responses a reviewer accepted.
    #[serde(default)]
    accepted_only: bool,
}

async fn export_part(
    AdminUser(admin): AdminUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let part = match query.part.as_deref() {
        Some(p) => ExportPart::parse(p).map_err(AppError::Validation)?,
        None => ExportPart::for_kind(project.kind)[0],
    };
    if !ExportPart::for_kind(project.kind).contains(&part) {
        return Err(AppError::Validation(format!(
            "a {} project has no {} export",
            project.kind.as_str(),
            part.as_str()
        )));
    }
    let format = query.format.as_deref().unwrap_or("jsonl");
    if !matches!(format, "jsonl" | "parquet") {
        return Err(AppError::Validation(format!(
            "export format {format:?} is not one of: jsonl, parquet"
        )));
    }
    // The audit row and the webhook event commit together.
    let mut tx = pool.begin().await?;
    let event = Event::new(Action::ProjectExport)
        .project(project.id)
        .target(part.as_str())
        .details(serde_json::json!({"format": format, "accepted_only": query.accepted_only}));
    audit::record(&mut *tx, &Actor::user(&admin), event).await?;
    let hook = webhooks::ExportEvent {
        part: part.as_str(),
        format,
        accepted_only: query.accepted_only,
        by: &admin.username,
    };
    webhooks::enqueue_export(&mut *tx, project.id, &hook).await?;
    tx.commit().await?;
    if format == "parquet" {
        return export_parquet(pool.get_ref(), project, part, query.accepted_only).await;
    }
    let filename = format!("{}-{}.jsonl", project.name, part.as_str());
    let rx = export::spawn_jsonl(pool.get_ref().clone(), project, part, query.accepted_only);
    let body = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| {
            let item = chunk
                .map(web::Bytes::from)
                .map_err(actix_web::error::ErrorInternalServerError);
            (item, rx)
        })
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .streaming(body))
}

/// Parquet needs its footer written before the file is complete, so it is made in a
/// temporary file (row group by row group) and then streamed from disk in chunks.
async fn export_parquet(
    pool: &PgPool,
    project: projects::Project,
    part: ExportPart,
    accepted_only: bool,
) -> Result<HttpResponse, AppError> {
    use std::io::Read;
    let file = tempfile::NamedTempFile::new().map_err(AppError::unexpected)?;
    crate::export_parquet::write(pool, &project, part, accepted_only, file.path()).await?;
    let filename = format!("{}-{}.parquet", project.name, part.as_str());
    // The open handle keeps the data readable after the path is removed on drop.
    let reader = file.reopen().map_err(AppError::unexpected)?;
    drop(file);
    let body = stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = vec![0u8; 64 * 1024];
        match reader.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(web::Bytes::from(buf)), Some(reader)))
            }
            Err(e) => Some((Err(actix_web::error::ErrorInternalServerError(e)), None)),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/vnd.apache.parquet")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .streaming(body))
}
