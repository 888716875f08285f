//! What an annotator sees of their own work in a project: progress ("12 of 48 left, 30 done
//! today"), their answers a reviewer sent back with the reviewer's comment, and undo of their
//! last submit while nobody has used it yet.
//!
//! "Used" means reviewed (accepted, rejected or edited) or exported. A response counts as
//! exported when an export of its project (any part, any format, through the API or
//! `labeler export`: each writes a `project.export` audit row) started after it was submitted,
//! or less than [`EXPORT_MARGIN_SECS`] before: the export's query reads a snapshot taken a
//! moment after its audit row, so a response committed in that moment may be in the file.
//! The rule is deliberately on the safe side: an export of another part, or an accepted-only
//! one, also ends undo.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::types::Json;

use crate::domain::{Message, MessageRole};
use crate::store::StoreError;
use crate::store::accounts::User;

/// How long before a submit an export may have started and still hold it (see the module).
pub const EXPORT_MARGIN_SECS: i64 = 60;

/// One annotator's progress in a project.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, PartialEq, Eq)]
pub struct MyProgress {
    /// Items in the project.
    pub items: i64,
    /// Items that still need answers (fewer than `overlap` responses that are not rejected).
    pub left: i64,
    /// This annotator's responses in the project since midnight UTC, and ever.
    pub done_today: i64,
    pub done_total: i64,
}

pub async fn progress(
    pool: &PgPool,
    project_id: i64,
    user: &User,
) -> Result<MyProgress, StoreError> {
    Ok(sqlx::query_as::<_, MyProgress>(
        "SELECT \
           (SELECT count(*) FROM items WHERE project_id = $1) AS items, \
           (SELECT count(*) FROM items i WHERE i.project_id = $1 AND \
              (SELECT count(*) FROM responses r WHERE r.item_id = i.id \
                 AND r.review_status <> 'rejected') < i.overlap) AS left, \
           (SELECT count(*) FROM responses WHERE user_id = $2 AND project_id = $1 \
              AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') \
              AS done_today, \
           (SELECT count(*) FROM responses WHERE user_id = $2 AND project_id = $1) AS done_total",
    )
    .bind(project_id)
    .bind(user.id)
    .fetch_one(pool)
    .await?)
}

/// One of the annotator's answers a reviewer rejected, with the reviewer's comment.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    pub response_id: i64,
    pub external_id: String,
    /// The conversation's last user turn (what the item asked).
    pub question: String,
    /// What the annotator submitted: the answer, or the verdict with its rationale.
    pub submitted: String,
    pub comment: String,
    pub reviewer: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
}

type RejectionRow = (
    i64,
    String,
    Json<Vec<Message>>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
);

/// The annotator's rejected answers in a project, newest decision first (at most `limit`).
pub async fn rejections(
    pool: &PgPool,
    project_id: i64,
    user: &User,
    limit: i64,
) -> Result<Vec<Rejection>, StoreError> {
    let rows: Vec<RejectionRow> = sqlx::query_as(
        "SELECT r.id, i.external_id, i.prompt, \
                COALESCE(r.answer, CASE WHEN r.label THEN 'thumbs up' WHEN NOT r.label \
                  THEN 'thumbs down' END || COALESCE(' ' || r.scores::text, '') \
                  || COALESCE('; comment: ' || r.comment, ''), \
                  'ranking (A, B, ...): ' || array_to_string(r.ranking, ', ') \
                  || COALESCE('; rationale: ' || r.rationale, '')), \
                r.choice, r.strength, r.rationale, \
                r.review_comment, u.username, r.reviewed_at \
         FROM responses r JOIN items i ON i.id = r.item_id \
         LEFT JOIN users u ON u.id = r.reviewed_by \
         WHERE r.user_id = $2 AND r.project_id = $1 AND r.review_status = 'rejected' \
         ORDER BY r.reviewed_at DESC NULLS LAST, r.id DESC LIMIT $3",
    )
    .bind(project_id)
    .bind(user.id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, external_id, prompt, answer, choice, strength, rationale, comment, by, at)| {
                let question = prompt
                    .0
                    .iter()
                    .rev()
                    .find(|m| m.role == MessageRole::User)
                    .map(|m| m.content.clone())
                    .unwrap_or_default();
                let submitted = match (answer, choice) {
                    (Some(answer), _) => answer,
                    (None, Some(choice)) => {
                        let mut s = format!("choice: {choice}");
                        if let Some(strength) = strength {
                            s.push_str(&format!(" ({strength})"));
                        }
                        if let Some(rationale) = rationale {
                            s.push_str(&format!("; rationale: {rationale}"));
                        }
                        s
                    }
                    (None, None) => String::new(),
                };
                Rejection {
                    response_id: id,
                    external_id,
                    question,
                    submitted,
                    comment: comment.unwrap_or_default(),
                    reviewer: by,
                    reviewed_at: at,
                }
            },
        )
        .collect())
}

/// The annotator's newest response in the project and whether it may still be undone.
struct LastAnswer {
    response_id: i64,
    assignment_id: i64,
    item_id: i64,
    /// Why not, when it may not.
    refusal: Option<String>,
    /// The answer as a draft body (`answer`, or `choice`, `strength`, `rationale`).
    body: serde_json::Value,
}

type LastAnswerRow = (i64, i64, i64, String, i32, bool, serde_json::Value);

const LAST_ANSWER_SQL: &str = "\
SELECT r.id, r.assignment_id, r.item_id, r.review_status, r.version, \
  EXISTS (SELECT 1 FROM audit_log l WHERE l.project_id = r.project_id \
            AND l.action = 'project.export' \
            AND l.at >= r.created_at - make_interval(secs => $3)), \
  jsonb_strip_nulls(jsonb_build_object('answer', r.answer, 'choice', r.choice, \
     'strength', r.strength, 'rationale', r.rationale, 'label', r.label, 'scores', r.scores, \
     'comment', r.comment, 'ranking', r.ranking)) \
FROM responses r \
WHERE r.user_id = $2 AND r.project_id = $1 \
ORDER BY r.id DESC LIMIT 1";

async fn last_answer(
    exec: impl sqlx::PgExecutor<'_>,
    project_id: i64,
    user: &User,
    lock: bool,
) -> Result<Option<LastAnswer>, StoreError> {
    let sql = if lock {
        format!("{LAST_ANSWER_SQL} FOR UPDATE OF r")
    } else {
        LAST_ANSWER_SQL.to_string()
    };
    let row: Option<LastAnswerRow> = sqlx::query_as(&sql)
        .bind(project_id)
        .bind(user.id)
        .bind(EXPORT_MARGIN_SECS as f64)
        .fetch_optional(exec)
        .await?;
    Ok(row.map(
        |(response_id, assignment_id, item_id, review, version, exported, body)| {
            let refusal = if version > 1 {
                Some("a reviewer has edited it".to_string())
            } else if review != "pending" {
                Some(format!("a reviewer has {review} it"))
            } else if exported {
                Some("it is in an export already taken".to_string())
            } else {
                None
            };
            LastAnswer {
                response_id,
                assignment_id,
                item_id,
                refusal,
                body,
            }
        },
    ))
}

/// The assignment of the annotator's last answer in the project when it may be undone.
pub async fn undoable(
    pool: &PgPool,
    project_id: i64,
    user: &User,
) -> Result<Option<i64>, StoreError> {
    Ok(last_answer(pool, project_id, user, false)
        .await?
        .filter(|last| last.refusal.is_none())
        .map(|last| last.assignment_id))
}

/// Takes back the annotator's answer on `assignment_id`, which must be their newest in the
/// project: the response is deleted, its content becomes the assignment's draft and the
/// assignment a live lease again (the item's slot stays counted: submitted and leased both
/// hold one). Refused (409, nothing changed) when that answer was reviewed, edited or
/// exported, or is not their newest; 404 when the assignment is not theirs. An assignment
/// already undone (a double click) is answered as done, so the call is safe to repeat.
///
/// One transaction; the assignment and the response are locked, so a review or a second undo
/// arriving at the same moment waits and then sees the outcome.
pub async fn undo(
    pool: &PgPool,
    project_id: i64,
    user: &User,
    assignment_id: i64,
    lease_seconds: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM assignments \
         WHERE id = $1 AND user_id = $2 AND project_id = $3 FOR UPDATE",
    )
    .bind(assignment_id)
    .bind(user.id)
    .bind(project_id)
    .fetch_optional(&mut *tx)
    .await?;
    match status.as_deref() {
        None => {
            return Err(StoreError::NotFound(format!(
                "no assignment {assignment_id} of yours in project {project_id}"
            )));
        }
        // Undone already (a repeated call), and not answered again since.
        Some("leased") => return Ok(()),
        Some("submitted") => {}
        Some(other) => {
            return Err(StoreError::Conflict(format!(
                "assignment {assignment_id} is {other}: there is no answer to undo"
            )));
        }
    }
    let last = last_answer(&mut *tx, project_id, user, true).await?;
    let Some(last) = last.filter(|l| l.assignment_id == assignment_id) else {
        return Err(StoreError::Conflict(
            "only your last answer in a project can be undone".into(),
        ));
    };
    if let Some(why) = last.refusal {
        return Err(StoreError::Conflict(format!(
            "your last answer can no longer be undone: {why}"
        )));
    }
    sqlx::query(
        "WITH d AS (DELETE FROM responses WHERE id = $1), \
         k AS (DELETE FROM idempotency_keys WHERE user_id = $3 \
                 AND response_body->>'response_id' = $1::text), \
         dr AS (INSERT INTO drafts (user_id, item_id, body) VALUES ($3, $4, $5) \
                ON CONFLICT (user_id, item_id) DO UPDATE SET body = EXCLUDED.body, \
                  updated_at = now()) \
         UPDATE assignments SET status = 'leased', finished_at = NULL, \
           expires_at = now() + make_interval(secs => $6) WHERE id = $2",
    )
    .bind(last.response_id)
    .bind(assignment_id)
    .bind(user.id)
    .bind(last.item_id)
    .bind(&last.body)
    .bind(lease_seconds as f64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
