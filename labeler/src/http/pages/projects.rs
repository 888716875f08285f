//! The start page: the projects with their progress, and (for admins) the form that creates
//! one.

use actix_web::{HttpResponse, web};
use minijinja::context;
use serde::Deserialize;
use sqlx::PgPool;

use super::templates::{Templates, html, redirect, user_ctx};
use crate::domain::{Aspects, Overlap, ProjectKind, ProjectName};
use crate::http::auth::{Admins, PageForm, PageUser};
use crate::http::error::AppError;
use crate::store::audit::{self, Actor, Event};
use crate::store::projects::{self, NewProject};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/projects", web::post().to(create_project));
}

async fn index(
    page: PageUser,
    pool: web::Data<PgPool>,
    templates: web::Data<Templates>,
) -> Result<HttpResponse, AppError> {
    let mut projects = projects::list_with_progress(&pool).await?;
    // Archived projects are the leads' business only.
    projects.retain(|p| page.user.can_review() || !p.project.archived);
    let body = templates.render(
        "index.html",
        context! { csrf => page.csrf, user => user_ctx(&page.user), projects },
    )?;
    Ok(html(body))
}

#[derive(Debug, Deserialize)]
struct ProjectForm {
    name: String,
    kind: String,
    overlap: String,
    #[serde(default)]
    guidelines: String,
    #[serde(default)]
    rationale_required: Option<String>,
    /// Rating projects: one `name: guideline` per line.
    #[serde(default)]
    aspects: String,
    /// Preference projects: rank all candidates.
    #[serde(default)]
    ranking: Option<String>,
}

async fn create_project(
    PageForm { user, form, .. }: PageForm<ProjectForm, Admins>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, AppError> {
    let overlap: i64 = form
        .overlap
        .trim()
        .parse()
        .map_err(|_| AppError::Validation("overlap must be a number".into()))?;
    crate::domain::check_text(&form.guidelines)
        .map_err(|e| AppError::Validation(format!("guidelines: {e}")))?;
    let new = NewProject {
        name: ProjectName::parse(form.name.trim()).map_err(AppError::Validation)?,
        kind: ProjectKind::parse(&form.kind).map_err(AppError::Validation)?,
        overlap: Overlap::parse(overlap).map_err(AppError::Validation)?,
        guidelines: form.guidelines,
        rationale_required: form.rationale_required.is_some(),
        aspects: Aspects::parse_flags(&form.aspects.lines().map(String::from).collect::<Vec<_>>())
            .map_err(AppError::Validation)?,
        ranking: form.ranking.is_some(),
    };
    let project = projects::create(&pool, &new, Some(user.id)).await?;
    let event = Event::project_create(&project);
    audit::record(pool.get_ref(), &Actor::user(&user), event).await?;
    Ok(redirect("/"))
}
