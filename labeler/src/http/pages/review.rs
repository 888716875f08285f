//! The review page: a reviewer reads a project's submitted responses, one annotator's or
//! everyone's, and accepts, rejects (with a comment) or edits each one, or accepts a selection
//! at once, through plain forms (CSRF token in each, no script). After a decision the page
//! comes back with the same filter, at the response that now stands where the decided one
//! was (a `#response-N` anchor), so the reader keeps their place.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use minijinja::context;
use serde::Deserialize;
use sqlx::PgPool;

use super::templates::{Templates, html, redirect, user_ctx};
use crate::domain::{Choice, Strength, Username};
use crate::http::auth::{PageForm, PageUser, Reviewers};
use crate::http::error::AppError;
use crate::store::projects;
use crate::store::responses::SubmitBody;
use crate::store::review::{self, Decision, ReviewStatus};

const PAGE: i64 = 50;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/{id}/review", web::get().to(review_page))
        .route("/projects/{id}/review/accept", web::post().to(bulk_accept))
        .route("/projects/{id}/review/{response}", web::post().to(decide));
}

#[derive(Debug, Deserialize)]
struct ReviewQuery {
    status: Option<String>,
    after: Option<i64>,
    annotator: Option<String>,
}

/// Where the page stands: which list, from where, and (after a decision) the response to
/// scroll to. Forms carry it back as hidden fields; the redirect is built from the checked
/// parts, never from text the client sent.
#[derive(Debug, Default, Deserialize)]
struct Place {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    annotator: Option<String>,
    #[serde(default)]
    after: Option<String>,
    /// The response shown after the decided one.
    #[serde(default)]
    anchor: Option<String>,
}

impl Place {
    fn url(&self, project_id: i64) -> String {
        let status = self
            .status
            .as_deref()
            .and_then(|s| ReviewStatus::parse(s).ok())
            .unwrap_or(ReviewStatus::Pending);
        let mut url = format!("/projects/{project_id}/review?status={}", status.as_str());
        if let Some(name) = self
            .annotator
            .as_deref()
            .and_then(|a| Username::parse(a).ok())
        {
            url.push_str(&format!("&annotator={}", name.as_str()));
        }
        if let Some(after) = self.after.as_deref().and_then(|a| a.parse::<i64>().ok()) {
            url.push_str(&format!("&after={after}"));
        }
        if let Some(anchor) = self.anchor.as_deref().and_then(|a| a.parse::<i64>().ok()) {
            url.push_str(&format!("#response-{anchor}"));
        }
        url
    }
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
    let annotator = query
        .annotator
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(|a| Username::parse(a).map_err(AppError::Validation))
        .transpose()?;
    let filter = review::ReviewFilter {
        status: Some(status),
        annotator: annotator.as_ref().map(Username::as_str),
    };
    let responses = review::list(&pool, &project, &filter, query.after.unwrap_or(0), PAGE).await?;
    let annotators = review::annotators(&pool, &project).await?;
    let next_after = (responses.len() as i64 == PAGE)
        .then(|| responses.last().map(|r| r.response_id))
        .flatten();
    let body = templates.render(
        "review.html",
        context! {
            csrf => page.csrf, user => user_ctx(&page.user), project,
            status => status.as_str(), responses, next_after, annotators,
            annotator => annotator.as_ref().map(Username::as_str), after => query.after,
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
    /// Rating edits: `up` or `down`.
    #[serde(default)]
    label: Option<String>,
    /// Rating edits: `aspect=score` separated by commas (blank: none).
    #[serde(default)]
    scores: Option<String>,
    /// Rating edits: the annotator's comment (`comment` is the reviewer's, for a rejection).
    #[serde(default)]
    rating_comment: Option<String>,
    /// Ranking edits: the ranks in the order shown, comma separated.
    #[serde(default)]
    ranking: Option<String>,
    #[serde(flatten)]
    place: Place,
}

/// `helpfulness=4, correctness=5` as a map; an error names the part that is not `name=N`.
fn parse_scores(s: &str) -> Result<BTreeMap<String, i64>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, n) = p
                .split_once('=')
                .ok_or(format!("scores: {p:?} is not aspect=score"))?;
            let n = n
                .trim()
                .parse()
                .map_err(|_| format!("scores: {p:?}: the score is not a number"))?;
            Ok((name.trim().to_string(), n))
        })
        .collect()
}

fn edit_body(form: &DecisionForm) -> Result<SubmitBody, String> {
    let choice = form
        .choice
        .as_deref()
        .map(|c| Choice::parse(c).ok_or(format!("choice {c:?} is not one of: a, b, tie, both_bad")))
        .transpose()?;
    let strength = match form.strength.as_deref() {
        None | Some("") => None,
        Some("slightly") => Some(Strength::Slightly),
        Some("much") => Some(Strength::Much),
        Some(other) => return Err(format!("strength {other:?} is not one of: slightly, much")),
    };
    let label = match form.label.as_deref() {
        None => None,
        Some("up") => Some(true),
        Some("down") => Some(false),
        Some(other) => return Err(format!("label {other:?} is not one of: up, down")),
    };
    let scores = form.scores.as_deref().map(parse_scores).transpose()?;
    let ranking = form
        .ranking
        .as_deref()
        .map(|r| {
            r.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse()
                        .map_err(|_| format!("ranking: {p:?} is not a number"))
                })
                .collect::<Result<Vec<i64>, String>>()
        })
        .transpose()?;
    Ok(SubmitBody {
        answer: form.answer.clone(),
        choice,
        strength,
        rationale: form.rationale.clone(),
        label,
        scores,
        comment: form.rating_comment.clone(),
        ranking,
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
        "edit" => edit_body(&form)
            .and_then(|body| review::parse_edit(body, &project))
            .map_err(AppError::Validation)?,
        other => {
            return Err(AppError::Validation(format!(
                "decision {other:?} is not one of: accept, reject, edit"
            )));
        }
    };
    review::decide(&pool, &user, &project, response_id, decision).await?;
    Ok(redirect(&form.place.url(project_id)))
}

/// The selection of the bulk form: a `r<response id>` checkbox per response, and the place.
async fn bulk_accept(
    PageForm { user, form, .. }: PageForm<BTreeMap<String, String>, Reviewers>,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get(&pool, path.into_inner()).await?;
    let ids: Vec<i64> = form
        .keys()
        .filter_map(|k| k.strip_prefix('r').and_then(|id| id.parse().ok()))
        .collect();
    if ids.is_empty() {
        return Err(AppError::Validation(
            "select the responses to accept first".into(),
        ));
    }
    review::accept_pending(&pool, &user, &project, &ids).await?;
    let place = Place {
        status: form.get("status").cloned(),
        annotator: form.get("annotator").cloned(),
        after: form.get("after").cloned(),
        anchor: None,
    };
    Ok(redirect(&place.url(project.id)))
}
