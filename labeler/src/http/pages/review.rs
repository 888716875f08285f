//! The review page: a reviewer reads a project's submitted responses and accepts, rejects
//! (with a comment) or edits each one through plain forms (CSRF token in each, no script).

use actix_web::{HttpResponse, web};
use minijinja::context;
use serde::Deserialize;
use sqlx::PgPool;

use super::templates::{Templates, html, redirect, user_ctx};
use crate::domain::{Choice, Strength};
use crate::http::auth::{PageForm, PageUser, Reviewers};
use crate::http::error::AppError;
use crate::store::projects;
use crate::store::responses::SubmitBody;
use crate::store::review::{self, Decision, ReviewStatus};

const PAGE: i64 = 50;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/{id}/review", web::get().to(review_page))
        .route("/projects/{id}/review/{response}", web::post().to(decide));
}

#[derive(Debug, Deserialize)]
struct ReviewQuery {
    status: Option<String>,
    after: Option<i64>,
}

async fn review_page(
    page: PageUser<Reviewers>,
    pool: web::Data<PgPool>,
    templates: web::Data<Templates>,
    path: web::Path<i64>,
    query: web::Query<ReviewQuery>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let status = ReviewStatus::parse(query.status.as_deref().unwrap_or("pending"))
        .map_err(AppError::Validation)?;
    let responses = review::list(
        &pool,
        &project,
        Some(status),
        query.after.unwrap_or(0),
        PAGE,
    )
    .await?;
    let next_after = (responses.len() as i64 == PAGE)
        .then(|| responses.last().map(|r| r.response_id))
        .flatten();
    let body = templates.render(
        "review.html",
        context! {
            csrf => page.csrf, user => user_ctx(&page.user), project,
            status => status.as_str(), responses, next_after,
        },
    )?;
    Ok(html(body))
}

#[derive(Debug, Deserialize)]
struct DecisionForm {
    decision: String,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    answer: Option<String>,
    #[serde(default)]
    choice: Option<String>,
    #[serde(default)]
    strength: Option<String>,
    #[serde(default)]
    rationale: Option<String>,
}

fn edit_body(form: DecisionForm) -> Result<SubmitBody, String> {
    let choice = form
        .choice
        .map(|c| {
            Choice::parse(&c).ok_or(format!("choice {c:?} is not one of: a, b, tie, both_bad"))
        })
        .transpose()?;
    let strength = match form.strength.as_deref() {
        None | Some("") => None,
        Some("slightly") => Some(Strength::Slightly),
        Some("much") => Some(Strength::Much),
        Some(other) => return Err(format!("strength {other:?} is not one of: slightly, much")),
    };
    Ok(SubmitBody {
        answer: form.answer,
        choice,
        strength,
        rationale: form.rationale,
        time_spent_ms: None,
    })
}

async fn decide(
    PageForm { user, form, .. }: PageForm<DecisionForm, Reviewers>,
    pool: web::Data<PgPool>,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, AppError> {
    let (project_id, response_id) = path.into_inner();
    let project = projects::get(&pool, project_id).await?;
    let decision = match form.decision.as_str() {
        "accept" => Decision::Accept,
        "reject" => {
            Decision::reject(form.comment.as_deref().unwrap_or("")).map_err(AppError::Validation)?
        }
        "edit" => edit_body(form)
            .and_then(|body| review::parse_edit(body, &project))
            .map_err(AppError::Validation)?,
        other => {
            return Err(AppError::Validation(format!(
                "decision {other:?} is not one of: accept, reject, edit"
            )));
        }
    };
    review::decide(&pool, &user, &project, response_id, decision).await?;
    Ok(redirect(&format!("/projects/{project_id}/review")))
}
