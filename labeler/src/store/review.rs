//! Review of submitted responses: a reviewer (or an admin) accepts a response, rejects it with
//! a comment, or edits it. A rejection gives the item's slot back (the assignment becomes
//! `rejected`, which the slot trigger does not count), so another annotator answers it and
//! the overlap stays exact; the rejected annotator never gets the item again (the assignment
//! row stays). An edit is a new version: the first edit copies the original into
//! `response_versions` as version 1, `responses` holds the latest. Each decision is written
//! to the audit log in the same transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::types::Json;

use crate::domain::{Aspect, Candidate, Message};
use crate::store::StoreError;
use crate::store::accounts::User;
use crate::store::audit::{self, Action, Actor, Event};
use crate::store::projects::Project;
use crate::store::responses::{Submission, SubmitBody, SubmitRules};

/// Which responses a review list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewStatus {
    Pending,
    Accepted,
    Rejected,
}

impl ReviewStatus {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(Self::Pending),
            "accepted" => Ok(Self::Accepted),
            "rejected" => Ok(Self::Rejected),
            _ => Err(format!(
                "review status {s:?} is not one of: pending, accepted, rejected"
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }
}

/// A reviewer's decision, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept,
    /// The comment says why (required: the annotator and the lead read it).
    Reject(String),
    /// A corrected answer or verdict; the edited response counts as accepted.
    Edit(Submission),
}

impl Decision {
    pub fn reject(comment: &str) -> Result<Self, String> {
        let comment = comment.trim();
        if comment.is_empty() {
            return Err("a rejection needs a comment".into());
        }
        if comment.len() > 10_000 {
            return Err("comment is longer than 10000 bytes".into());
        }
        crate::domain::check_text(comment).map_err(|e| format!("comment: {e}"))?;
        Ok(Self::Reject(comment.to_string()))
    }
}

/// A submitted response as a reviewer sees it: the prompt, what the annotator did, and for
/// preferences the two answers in the order the annotator saw them.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewItem {
    pub response_id: i64,
    pub item_id: i64,
    pub external_id: String,
    pub annotator: String,
    pub created_at: DateTime<Utc>,
    pub time_spent_ms: Option<i64>,
    pub prompt: Vec<Message>,
    pub answer: Option<String>,
    pub choice: Option<String>,
    pub strength: Option<String>,
    pub rationale: Option<String>,
    /// Rating: thumbs up (true) or down, the aspect scores, the comment.
    pub label: Option<bool>,
    pub scores: Option<serde_json::Value>,
    pub comment: Option<String>,
    /// Ranking projects: the rank of each answer shown.
    pub ranking: Option<Vec<i16>>,
    /// Preference: the answers as shown (left, right), with their provenance; rating: the
    /// one answer rated.
    pub shown: Vec<Candidate>,
    pub review_status: ReviewStatus,
    pub review_comment: Option<String>,
    pub version: i32,
}

/// One stored version of an edited response.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Version {
    pub version: i32,
    pub answer: Option<String>,
    pub choice: Option<String>,
    pub strength: Option<String>,
    pub rationale: Option<String>,
    pub label: Option<bool>,
    pub scores: Option<serde_json::Value>,
    pub comment: Option<String>,
    pub ranking: Option<Vec<i16>>,
    pub author: String,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    response_id: i64,
    item_id: i64,
    external_id: String,
    annotator: String,
    created_at: DateTime<Utc>,
    time_spent_ms: Option<i64>,
    prompt: Json<Vec<Message>>,
    answer: Option<String>,
    choice: Option<String>,
    strength: Option<String>,
    rationale: Option<String>,
    label: Option<bool>,
    scores: Option<serde_json::Value>,
    comment: Option<String>,
    ranking: Option<Vec<i16>>,
    shown: Vec<i16>,
    candidates: Json<Vec<Candidate>>,
    review_status: String,
    review_comment: Option<String>,
    version: i32,
}

const SELECT: &str = "SELECT r.id AS response_id, r.item_id, i.external_id, u.username AS annotator, \
       r.created_at, r.time_spent_ms, i.prompt, r.answer, r.choice, r.strength, r.rationale, \
       r.label, r.scores, r.comment, r.ranking, r.shown, i.candidates, r.review_status, r.review_comment, r.version \
     FROM responses r JOIN items i ON i.id = r.item_id JOIN users u ON u.id = r.user_id";

fn item_from_row(row: Row) -> Result<ReviewItem, StoreError> {
    let shown = row
        .shown
        .iter()
        .map(|&i| row.candidates.0.get(i as usize).cloned())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| StoreError::unexpected(anyhow::anyhow!("shown index out of range")))?;
    Ok(ReviewItem {
        response_id: row.response_id,
        item_id: row.item_id,
        external_id: row.external_id,
        annotator: row.annotator,
        created_at: row.created_at,
        time_spent_ms: row.time_spent_ms,
        prompt: row.prompt.0,
        answer: row.answer,
        choice: row.choice,
        strength: row.strength,
        rationale: row.rationale,
        label: row.label,
        scores: row.scores,
        comment: row.comment,
        ranking: row.ranking,
        shown,
        review_status: ReviewStatus::parse(&row.review_status)
            .map_err(|e| StoreError::unexpected(anyhow::anyhow!(e)))?,
        review_comment: row.review_comment,
        version: row.version,
    })
}

/// Which responses a review list shows.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter<'a> {
    /// All statuses when `None`.
    pub status: Option<ReviewStatus>,
    /// One annotator's responses only.
    pub annotator: Option<&'a str>,
}

/// Responses of `project` that pass `filter`, oldest first, after the response id `after`
/// (paging).
pub async fn list(
    pool: &PgPool,
    project: &Project,
    filter: &ReviewFilter<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<ReviewItem>, StoreError> {
    let rows = sqlx::query_as::<_, Row>(&format!(
        "{SELECT} WHERE r.project_id = $1 AND ($2::text IS NULL OR r.review_status = $2) \
           AND r.id > $3 AND ($5::text IS NULL OR u.username = $5) ORDER BY r.id LIMIT $4"
    ))
    .bind(project.id)
    .bind(filter.status.map(ReviewStatus::as_str))
    .bind(after)
    .bind(limit)
    .bind(filter.annotator)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(item_from_row).collect()
}

/// One response with every stored version (empty when it was never edited).
pub async fn get(
    pool: &PgPool,
    response_id: i64,
) -> Result<(i64, ReviewItem, Vec<Version>), StoreError> {
    let row = sqlx::query_as::<_, Row>(&format!("{SELECT} WHERE r.id = $1"))
        .bind(response_id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no response {response_id}")))?;
    let project_id: i64 = sqlx::query_scalar("SELECT project_id FROM responses WHERE id = $1")
        .bind(response_id)
        .fetch_one(pool)
        .await?;
    let versions = sqlx::query_as::<_, Version>(
        "SELECT v.version, v.answer, v.choice, v.strength, v.rationale, v.label, v.scores, \
                v.comment, v.ranking, u.username AS author, \
                v.created_at \
         FROM response_versions v JOIN users u ON u.id = v.author_id \
         WHERE v.response_id = $1 ORDER BY v.version",
    )
    .bind(response_id)
    .fetch_all(pool)
    .await?;
    Ok((project_id, item_from_row(row)?, versions))
}

/// Checks an edit against the project's kind (the same rules as a submit).
pub fn parse_edit(body: SubmitBody, project: &Project) -> Result<Decision, String> {
    Submission::parse(body, SubmitRules::of(project)).map(Decision::Edit)
}

/// Refuses scores of an aspect removed since `project` was read; the lock on the project row
/// keeps its aspects as they are until this edit commits.
async fn check_aspects_now<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    project_id: i64,
    mut scored: impl Iterator<Item = &'a String>,
) -> Result<(), StoreError> {
    let Json(aspects): Json<Vec<Aspect>> =
        sqlx::query_scalar("SELECT aspects FROM projects WHERE id = $1 FOR KEY SHARE")
            .bind(project_id)
            .fetch_one(&mut **tx)
            .await?;
    match scored.find(|name| !aspects.iter().any(|a| &a.name == *name)) {
        Some(gone) => Err(StoreError::Invalid(format!(
            "scores.{gone}: no longer an aspect of this project"
        ))),
        None => Ok(()),
    }
}

/// Applies `decision` to a response of `project`; returns the response as it is now.
pub async fn decide(
    pool: &PgPool,
    reviewer: &User,
    project: &Project,
    response_id: i64,
    decision: Decision,
) -> Result<ReviewItem, StoreError> {
    let mut tx = pool.begin().await?;
    let row: Option<(String, i64, i32, i64, i32)> = sqlx::query_as(
        "SELECT review_status, assignment_id, version, user_id, cardinality(shown) \
         FROM responses \
         WHERE id = $1 AND project_id = $2 FOR UPDATE",
    )
    .bind(response_id)
    .bind(project.id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, assignment_id, version, annotator_id, shown)) = row else {
        return Err(StoreError::NotFound(format!(
            "no response {response_id} in project {}",
            project.id
        )));
    };
    if status == "rejected" {
        return Err(StoreError::Conflict(format!(
            "response {response_id} was rejected; its item went back to the pool"
        )));
    }
    let target = format!("response {response_id}");
    let (action, details) = match &decision {
        Decision::Accept => {
            sqlx::query(
                "UPDATE responses SET review_status = 'accepted', reviewed_by = $2, \
                   reviewed_at = now() WHERE id = $1",
            )
            .bind(response_id)
            .bind(reviewer.id)
            .execute(&mut *tx)
            .await?;
            (
                Action::ReviewAccept,
                serde_json::json!({"version": version}),
            )
        }
        Decision::Reject(comment) => {
            sqlx::query(
                "UPDATE responses SET review_status = 'rejected', reviewed_by = $2, \
                   reviewed_at = now(), review_comment = $3 WHERE id = $1",
            )
            .bind(response_id)
            .bind(reviewer.id)
            .bind(comment)
            .execute(&mut *tx)
            .await?;
            // The slot trigger sees submitted -> rejected and frees one slot of the item.
            sqlx::query(
                "UPDATE assignments SET status = 'rejected' WHERE id = $1 AND status = 'submitted'",
            )
            .bind(assignment_id)
            .execute(&mut *tx)
            .await?;
            (
                Action::ReviewReject,
                serde_json::json!({"comment": comment, "annotator_id": annotator_id}),
            )
        }
        Decision::Edit(submission) => {
            submission
                .check_shown(shown as usize)
                .map_err(StoreError::Invalid)?;
            if let Submission::Rating(rating) = submission {
                check_aspects_now(&mut tx, project.id, rating.scores.keys()).await?;
            }
            let c = submission.columns();
            // Keep the annotator's original as version 1 before the first edit.
            sqlx::query(
                "INSERT INTO response_versions \
                   (response_id, version, answer, choice, strength, rationale, label, scores, \
                    comment, ranking, author_id, created_at) \
                 SELECT id, 1, answer, choice, strength, rationale, label, scores, comment, \
                        ranking, user_id, created_at \
                 FROM responses WHERE id = $1 ON CONFLICT DO NOTHING",
            )
            .bind(response_id)
            .execute(&mut *tx)
            .await?;
            let next = version + 1;
            sqlx::query(
                "INSERT INTO response_versions \
                   (response_id, version, answer, choice, strength, rationale, author_id, label, \
                    scores, comment, ranking) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(response_id)
            .bind(next)
            .bind(c.answer)
            .bind(c.choice)
            .bind(c.strength)
            .bind(c.rationale)
            .bind(reviewer.id)
            .bind(c.label)
            .bind(c.scores)
            .bind(c.comment)
            .bind(c.ranking)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE responses SET answer = $2, choice = $3, strength = $4, rationale = $5, \
                   version = $6, review_status = 'accepted', reviewed_by = $7, \
                   reviewed_at = now(), label = $8, scores = $9, comment = $10, ranking = $11 \
                 WHERE id = $1",
            )
            .bind(response_id)
            .bind(c.answer)
            .bind(c.choice)
            .bind(c.strength)
            .bind(c.rationale)
            .bind(next)
            .bind(reviewer.id)
            .bind(c.label)
            .bind(c.scores)
            .bind(c.comment)
            .bind(c.ranking)
            .execute(&mut *tx)
            .await?;
            (
                Action::ReviewEdit,
                serde_json::json!({"from_version": version, "version": next}),
            )
        }
    };
    let event = Event::new(action)
        .project(project.id)
        .target(&target)
        .details(details);
    audit::record(&mut *tx, &Actor::user(reviewer), event).await?;
    tx.commit().await?;
    let (_, item, _) = get(pool, response_id).await?;
    Ok(item)
}

/// The annotators with responses in `project`, by name.
pub async fn annotators(pool: &PgPool, project: &Project) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT u.username FROM users u \
         WHERE EXISTS (SELECT 1 FROM responses r WHERE r.user_id = u.id AND r.project_id = $1) \
         ORDER BY u.username",
    )
    .bind(project.id)
    .fetch_all(pool)
    .await?)
}

/// Accepts the pending responses among `ids` (of `project`) in one transaction, with an
/// audit row each; the others (accepted, rejected or gone meanwhile) are left as they are, so
/// a second post of the same selection changes nothing. Returns how many were accepted.
pub async fn accept_pending(
    pool: &PgPool,
    reviewer: &User,
    project: &Project,
    ids: &[i64],
) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    let accepted: Vec<(i64, i32)> = sqlx::query_as(
        "UPDATE responses SET review_status = 'accepted', reviewed_by = $3, reviewed_at = now() \
         WHERE project_id = $1 AND id = ANY($2) AND review_status = 'pending' \
         RETURNING id, version",
    )
    .bind(project.id)
    .bind(ids)
    .bind(reviewer.id)
    .fetch_all(&mut *tx)
    .await?;
    let actor = Actor::user(reviewer);
    for (id, version) in &accepted {
        let target = format!("response {id}");
        let event = Event::new(Action::ReviewAccept)
            .project(project.id)
            .target(&target)
            .details(serde_json::json!({"version": version, "bulk": true}));
        audit::record(&mut *tx, &actor, event).await?;
    }
    tx.commit().await?;
    Ok(accepted.len())
}
