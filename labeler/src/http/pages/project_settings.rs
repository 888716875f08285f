//! A project's import page (admins: the expected format with a sample beside the file
//! picker, a preview before anything is written) and its settings page: rename it and edit
//! its guidelines and rationale rule, a rating project's aspects (added, reordered, their
//! guidelines edited; one a response scored stays), a preference project's ranking (before
//! the first response),
//! archive it (annotators no longer see it; review and export go on) or bring it back, and
//! delete it while nobody has answered anything in it. Plain forms with the CSRF token; each
//! change is in the audit log, and each form is safe to post twice.

use actix_web::{HttpResponse, web};
use minijinja::context;
use serde::Deserialize;
use sqlx::PgPool;

use super::templates::{Templates, html, redirect, user_ctx};
use crate::domain::{Aspects, ProjectName};
use crate::http::auth::{Admins, PageForm, PageUser};
use crate::http::error::AppError;
use crate::store::StoreError;
use crate::store::audit::{self, Action, Actor, Event};
use crate::store::projects::{self, SettingsChange};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/{id}/import", web::get().to(import_page))
        .route("/projects/{id}/settings", web::get().to(settings_page))
        .route("/projects/{id}/settings", web::post().to(save_settings))
        .route("/projects/{id}/archive", web::post().to(archive))
        .route("/projects/{id}/delete", web::post().to(delete));
}

/// The import page; its script asks `POST /api/projects/{id}/items/preview`, then imports.
async fn import_page(
    page: PageUser<Admins>,
    pool: web::Data<PgPool>,
    templates: web::Data<Templates>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let body = templates.render(
        "import.html",
        context! { csrf => page.csrf, user => user_ctx(&page.user), project },
    )?;
    Ok(html(body))
}

#[derive(Debug, Deserialize)]
struct SettingsQuery {
    #[serde(default)]
    saved: Option<String>,
}

async fn settings_page(
    page: PageUser<Admins>,
    pool: web::Data<PgPool>,
    templates: web::Data<Templates>,
    path: web::Path<i64>,
    query: web::Query<SettingsQuery>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let answered = projects::answered(&pool, project.id).await?;
    let message = query.saved.as_deref().map(|what| match what {
        "archived" => "Archived: annotators no longer see this project.",
        "unarchived" => "Back from the archive: annotators see this project again.",
        _ => "Saved.",
    });
    let body = templates.render(
        "project_settings.html",
        context! {
            csrf => page.csrf, user => user_ctx(&page.user), project, answered, message,
        },
    )?;
    Ok(html(body))
}

#[derive(Debug, Deserialize)]
struct SettingsForm {
    name: String,
    #[serde(default)]
    guidelines: String,
    #[serde(default)]
    rationale_required: Option<String>,
    /// Model pre-labels: `off`, `hidden` or `shown` (absent: unchanged).
    #[serde(default)]
    prelabels: Option<String>,
    /// Rating projects: one `name: guideline` per line, as at creation (absent: unchanged).
    #[serde(default)]
    aspects: Option<String>,
    /// The ranking checkbox was on the form (a preference project nobody answered yet), so
    /// `ranking` absent means unchecked.
    #[serde(default)]
    ranking_shown: Option<String>,
    #[serde(default)]
    ranking: Option<String>,
}

async fn save_settings(
    PageForm { user, form, .. }: PageForm<SettingsForm, Admins>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    crate::domain::check_text(&form.guidelines)
        .map_err(|e| AppError::Validation(format!("guidelines: {e}")))?;
    let change = SettingsChange {
        name: Some(ProjectName::parse(form.name.trim()).map_err(AppError::Validation)?),
        guidelines: Some(form.guidelines),
        rationale_required: Some(form.rationale_required.is_some()),
        gold_rate: None,
        prelabels: match form.prelabels.as_deref() {
            None => None,
            Some("off") => Some(None),
            Some("hidden") => Some(Some("hidden")),
            Some("shown") => Some(Some("shown")),
            Some(other) => {
                return Err(AppError::Validation(format!(
                    "prelabels {other:?} is not one of: off, hidden, shown"
                )));
            }
        },
        aspects: form
            .aspects
            .map(|text| Aspects::parse_flags(&text.lines().map(String::from).collect::<Vec<_>>()))
            .transpose()
            .map_err(AppError::Validation)?,
        ranking: form.ranking_shown.map(|_| form.ranking.is_some()),
    };
    let mut tx = pool.begin().await?;
    let project = projects::update(&mut tx, id, &change).await?;
    let event = Event::new(Action::ProjectUpdate)
        .project(project.id)
        .target(&project.name)
        .details(serde_json::json!({
            "name": project.name, "guidelines": "changed",
            "rationale_required": project.rationale_required, "prelabels": project.prelabels,
            "aspects": project.aspects, "ranking": project.ranking,
        }));
    audit::record(&mut *tx, &Actor::user(&user), event).await?;
    tx.commit().await?;
    Ok(redirect(&format!("/projects/{id}/settings?saved=settings")))
}

#[derive(Debug, Deserialize)]
struct ArchiveForm {
    /// `true` archives, `false` brings back.
    archived: String,
}

async fn archive(
    PageForm { user, form, .. }: PageForm<ArchiveForm, Admins>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let archived = match form.archived.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(AppError::Validation(format!(
                "archived must be true or false, not {other:?}"
            )));
        }
    };
    let mut tx = pool.begin().await?;
    let project = projects::set_archived(&mut *tx, id, archived).await?;
    let action = if archived {
        Action::ProjectArchive
    } else {
        Action::ProjectUnarchive
    };
    let event = Event::new(action).project(id).target(&project.name);
    audit::record(&mut *tx, &Actor::user(&user), event).await?;
    tx.commit().await?;
    let saved = if archived { "archived" } else { "unarchived" };
    Ok(redirect(&format!("/projects/{id}/settings?saved={saved}")))
}

#[derive(Debug, Deserialize)]
struct DeleteForm {
    /// The project's name, typed again.
    confirm: String,
}

async fn delete(
    PageForm { user, form, .. }: PageForm<DeleteForm, Admins>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let project = match projects::get(&pool, id).await {
        Ok(project) => project,
        // Deleted already (the form posted twice): done.
        Err(StoreError::NotFound(_)) if projects::was_deleted(&pool, id).await? => {
            return Ok(redirect("/"));
        }
        Err(e) => return Err(e.into()),
    };
    if form.confirm.trim() != project.name {
        return Err(AppError::Validation(format!(
            "type the project's name ({}) to delete it",
            project.name
        )));
    }
    let mut tx = pool.begin().await?;
    let name = projects::delete(&mut tx, id).await?;
    let event = Event::new(Action::ProjectDelete).project(id).target(&name);
    audit::record(&mut *tx, &Actor::user(&user), event).await?;
    tx.commit().await?;
    Ok(redirect("/"))
}
