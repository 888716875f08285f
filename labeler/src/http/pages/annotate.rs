//! The annotation page (one leased item at a time, the annotator's progress, their answers a
//! reviewer sent back, undo of the last submit; the script does the rest through the API)
//! and the project's guidelines page.

use actix_web::{HttpResponse, web};
use minijinja::context;
use sqlx::PgPool;

use super::markdown;
use super::templates::{Templates, html, user_ctx};
use crate::http::auth::PageUser;
use crate::http::error::AppError;
use crate::state::AppState;
use crate::store::annotator;
use crate::store::projects;
use crate::store::queue;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/{id}/annotate", web::get().to(annotate))
        .route("/projects/{id}/guidelines", web::get().to(guidelines));
}

async fn annotate(
    page: PageUser,
    pool: web::Data<PgPool>,
    state: web::Data<AppState>,
    templates: web::Data<Templates>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    if project.archived {
        return Err(AppError::NotFound(format!(
            "project {} is archived: nothing to annotate there",
            project.name
        )));
    }
    let task = queue::next(&pool, state.lease, project.id, &page.user, &[]).await?;
    let progress = annotator::progress(&pool, project.id, &page.user).await?;
    let rejected = annotator::rejections(&pool, project.id, &page.user, 50).await?;
    let undo = annotator::undoable(&pool, project.id, &page.user).await?;
    let body = templates.render(
        "annotate.html",
        context! {
            csrf => page.csrf,
            user => user_ctx(&page.user),
            lease_seconds => state.lease.lease_seconds,
            guidelines_html => guidelines_html(&project),
            project,
            task,
            progress,
            rejected,
            undo,
        },
    )?;
    Ok(html(body))
}

async fn guidelines(
    page: PageUser,
    pool: web::Data<PgPool>,
    templates: web::Data<Templates>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let body = templates.render(
        "guidelines.html",
        context! {
            csrf => page.csrf,
            user => user_ctx(&page.user),
            guidelines_html => guidelines_html(&project),
            project,
        },
    )?;
    Ok(html(body))
}

/// The project's Markdown guidelines as sanitized HTML, marked safe so the template inserts
/// it as markup (everything else in the templates stays auto-escaped).
fn guidelines_html(project: &projects::Project) -> minijinja::Value {
    minijinja::Value::from_safe_string(markdown::to_html(&project.guidelines))
}
