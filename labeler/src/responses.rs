//! Submitting answers and autosaving drafts. A submit runs in one transaction that records
//! the response, closes the lease, drops the draft and stores the reply under the caller's
//! idempotency key, so a retried or double-clicked submit stores exactly one response.

use serde::Deserialize;
use sqlx::PgPool;

use crate::accounts::User;
use crate::domain::{Choice, ProjectKind, Strength, Verdict, check_content};
use crate::error::AppError;

/// The body of a submit, before it is checked against the project's kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// SFT: the assistant's answer.
    #[serde(default)]
    pub answer: Option<String>,
    /// Preference: `a`, `b`, `tie` or `both_bad`.
    #[serde(default)]
    pub choice: Option<Choice>,
    #[serde(default)]
    pub strength: Option<Strength>,
    #[serde(default)]
    pub rationale: Option<String>,
    /// Time the annotator spent, as measured by the page.
    #[serde(default)]
    pub time_spent_ms: Option<i64>,
}

/// A checked submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    Answer(String),
    Verdict(Verdict),
}

impl Submission {
    pub fn parse(
        body: SubmitBody,
        kind: ProjectKind,
        rationale_required: bool,
    ) -> Result<Self, String> {
        match kind {
            ProjectKind::Sft => {
                if body.choice.is_some() || body.strength.is_some() {
                    return Err("this is an sft item: send \"answer\", not \"choice\"".into());
                }
                let answer = body
                    .answer
                    .ok_or("missing field \"answer\" (this is an sft item)")?;
                check_content(&answer).map_err(|e| format!("answer: {e}"))?;
                Ok(Self::Answer(answer))
            }
            ProjectKind::Preference => {
                if body.answer.is_some() {
                    return Err("this is a preference item: send \"choice\", not \"answer\"".into());
                }
                let choice = body
                    .choice
                    .ok_or("missing field \"choice\" (this is a preference item)")?;
                Verdict::parse(choice, body.strength, body.rationale, rationale_required)
                    .map(Self::Verdict)
            }
        }
    }
}

/// An `Idempotency-Key` header value: 1-100 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(s: &str) -> Result<Self, String> {
        if (1..=100).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self(s.to_string()))
        } else {
            Err("Idempotency-Key must be 1-100 visible ASCII characters".into())
        }
    }
}

/// Stores the response for `assignment_id`; returns the HTTP status and body to answer with
/// (the stored ones when `key` was seen before). Few round trips: the hot path of annotation.
pub async fn submit(
    pool: &PgPool,
    assignment_id: i64,
    user: &User,
    body: SubmitBody,
    key: Option<IdempotencyKey>,
) -> Result<(u16, serde_json::Value), AppError> {
    let time_spent_ms = body.time_spent_ms.filter(|t| *t >= 0);
    let mut tx = pool.begin().await?;
    if let Some(IdempotencyKey(key)) = &key {
        // A concurrent request with the same key blocks here until it commits.
        let fresh = sqlx::query(
            "INSERT INTO idempotency_keys (user_id, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(user.id)
        .bind(key)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            let saved: Option<(Option<i16>, Option<serde_json::Value>)> = sqlx::query_as(
                "SELECT status_code, response_body FROM idempotency_keys \
                 WHERE user_id = $1 AND key = $2",
            )
            .bind(user.id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((Some(code), Some(body))) = saved {
                return Ok((code as u16, body));
            }
            return Err(AppError::Conflict(
                "a request with this Idempotency-Key is still in progress".into(),
            ));
        }
    }
    let row: Option<(String, i64, i64, Vec<i16>, String, bool)> = sqlx::query_as(
        "SELECT a.status, a.item_id, a.project_id, a.shown, p.kind, p.rationale_required \
         FROM assignments a JOIN projects p ON p.id = a.project_id \
         WHERE a.id = $1 AND a.user_id = $2 FOR UPDATE OF a",
    )
    .bind(assignment_id)
    .bind(user.id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, item_id, project_id, shown, kind, rationale_required)) = row else {
        return Err(AppError::NotFound(format!("no assignment {assignment_id}")));
    };
    let kind = ProjectKind::parse(&kind).map_err(|e| AppError::unexpected(anyhow::anyhow!(e)))?;
    let submission =
        Submission::parse(body, kind, rationale_required).map_err(AppError::Validation)?;
    match status.as_str() {
        "leased" => {}
        "expired" => crate::queue::revive(&mut tx, assignment_id, item_id).await?,
        "submitted" => {
            return Err(AppError::Conflict(format!(
                "assignment {assignment_id} is already submitted"
            )));
        }
        other => {
            return Err(AppError::Conflict(format!(
                "assignment {assignment_id} is {other}"
            )));
        }
    }
    let (answer, choice, strength, rationale) = match &submission {
        Submission::Answer(a) => (Some(a.as_str()), None, None, None),
        Submission::Verdict(v) => (
            None,
            Some(v.choice.as_str()),
            v.strength.map(Strength::as_str),
            v.rationale.as_deref(),
        ),
    };
    // One statement: the response, the closed lease, the dropped draft, the stored reply.
    let response_id: i64 = sqlx::query_scalar(
        "WITH r AS ( \
           INSERT INTO responses (assignment_id, item_id, project_id, user_id, answer, choice, \
                                  strength, rationale, shown, time_spent_ms) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id), \
         a AS (UPDATE assignments SET status = 'submitted', finished_at = now() WHERE id = $1), \
         d AS (DELETE FROM drafts WHERE user_id = $4 AND item_id = $2), \
         k AS (UPDATE idempotency_keys SET status_code = 201, \
                 response_body = jsonb_build_object('response_id', (SELECT id FROM r), \
                                                    'assignment_id', $1::bigint) \
               WHERE user_id = $4 AND key = $11) \
         SELECT id FROM r",
    )
    .bind(assignment_id)
    .bind(item_id)
    .bind(project_id)
    .bind(user.id)
    .bind(answer)
    .bind(choice)
    .bind(strength)
    .bind(rationale)
    .bind(&shown)
    .bind(time_spent_ms)
    .bind(key.as_ref().map(|IdempotencyKey(k)| k.as_str()))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        201,
        serde_json::json!({"response_id": response_id, "assignment_id": assignment_id}),
    ))
}

/// Autosaves the annotator's work in progress on an open assignment.
pub async fn save_draft(
    pool: &PgPool,
    assignment_id: i64,
    user: &User,
    body: &serde_json::Value,
) -> Result<(), AppError> {
    if !body.is_object() {
        return Err(AppError::Validation("a draft must be a JSON object".into()));
    }
    crate::domain::check_json_text(body)
        .map_err(|e| AppError::Validation(format!("draft: {e}")))?;
    let n = sqlx::query(
        "INSERT INTO drafts (user_id, item_id, body) \
         SELECT a.user_id, a.item_id, $3 FROM assignments a \
         WHERE a.id = $1 AND a.user_id = $2 AND a.status IN ('leased', 'expired') \
         ON CONFLICT (user_id, item_id) DO UPDATE SET body = EXCLUDED.body, updated_at = now()",
    )
    .bind(assignment_id)
    .bind(user.id)
    .bind(body)
    .execute(pool)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(AppError::NotFound(format!(
            "no open assignment {assignment_id} of yours"
        )));
    }
    Ok(())
}
