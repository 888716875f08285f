//! Projects through the API: list and create them, import items (JSONL or Parquet), the model
//! in the loop (prompts out to the trainer, candidates back in) and exports (JSONL streamed,
//! Parquet from a temporary file).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use futures_util::stream;
use serde::Deserialize;
use sqlx::PgPool;

use crate::domain::{Aspect, Aspects, Overlap, ProjectKind, ProjectName};
use crate::http::auth::{Admins, ApiUser};
use crate::http::error::{AppError, json_error};
use crate::http::pagination::page_limit;
use crate::store::audit::{self, Action, Actor, Event};
use crate::store::export::{self, ExportPart};
use crate::store::projects::{self, NewProject};
use crate::store::{import, import_preview, model_loop, webhooks};

/// Routes under `/api`.
pub fn configure(cfg: &mut web::ServiceConfig, max_import_bytes: usize) {
    cfg.route("/projects", web::get().to(list_projects))
        .route("/projects", web::post().to(create_project))
        .service(
            web::resource("/projects/{id}/items")
                .app_data(web::PayloadConfig::new(max_import_bytes))
                .route(web::post().to(import_items)),
        )
        .service(
            web::resource("/projects/{id}/items/preview")
                .app_data(web::PayloadConfig::new(max_import_bytes))
                .route(web::post().to(preview_items)),
        )
        .route("/projects/{id}/prompts", web::get().to(list_prompts))
        .service(
            web::resource("/projects/{id}/candidates")
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_import_bytes)
                        .error_handler(|e, _| json_error(e).into()),
                )
                .route(web::post().to(post_candidates)),
        )
        .route("/projects/{id}/export", web::get().to(export_part));
}

/// Every project for reviewers and admins; annotators do not see archived ones.
async fn list_projects(
    ApiUser { user, .. }: ApiUser,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, AppError> {
    let mut list = projects::list_with_progress(&pool).await?;
    list.retain(|p| user.can_review() || !p.project.archived);
    Ok(HttpResponse::Ok().json(list))
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
    /// Rating projects: `[{"name", "guideline"}]`, the aspects scored 1-5.
    #[serde(default)]
    aspects: Vec<Aspect>,
    /// Preference projects: rank all of an item's candidates (2-9) instead of two.
    #[serde(default)]
    ranking: bool,
}

async fn create_project(
    ApiUser { user: admin, .. }: ApiUser<Admins>,
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
        aspects: Aspects::parse(body.aspects).map_err(AppError::Validation)?,
        ranking: body.ranking,
    };
    let project = projects::create(&pool, &new, Some(admin.id)).await?;
    let event = Event::project_create(&project);
    audit::record(pool.get_ref(), &Actor::user(&admin), event).await?;
    Ok(HttpResponse::Created().json(project))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    #[serde(default)]
    source: Option<String>,
}

/// `POST /api/projects/{id}/items/preview`: what importing this body would do (counts, the
/// first rows, every refused line), nothing written.
async fn preview_items(
    _: ApiUser<Admins>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let preview = import_preview::preview(&pool, &project, body.to_vec()).await?;
    Ok(HttpResponse::Ok().json(preview))
}

async fn import_items(
    ApiUser { user: admin, .. }: ApiUser<Admins>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: web::Query<ImportQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let rules = import::ItemRules::of(&project);
    let items = web::block(move || import::parse_upload(&body, rules))
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
    _: ApiUser<Admins>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: web::Query<PromptsQuery>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let limit = page_limit(query.limit)?;
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
    ApiUser { user: admin, .. }: ApiUser<Admins>,
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
struct ExportQuery {
    part: Option<String>,
    /// `jsonl` (default) or `parquet`.
    format: Option<String>,
    /// Only responses a reviewer accepted.
    #[serde(default)]
    accepted_only: bool,
}

async fn export_part(
    ApiUser { user: admin, .. }: ApiUser<Admins>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let part = match query.part.as_deref() {
        Some(p) => ExportPart::parse(p).map_err(AppError::Validation)?,
        None => ExportPart::for_project(&project)[0],
    };
    if !ExportPart::for_project(&project).contains(&part) {
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
    export::parquet::write(pool, &project, part, accepted_only, file.path()).await?;
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
