//! Submitting answers and autosaving drafts. A submit runs in one transaction that records
//! the response, closes the lease, drops the draft and stores the reply under the caller's
//! idempotency key, so a retried or double-clicked submit stores exactly one response.

use std::collections::BTreeMap;

use serde::Deserialize;
use sqlx::PgPool;
use sqlx::types::Json;

use crate::domain::{
    Aspect, Choice, ProjectKind, Ranking, Rating, Strength, Verdict, check_content,
};
use crate::store::StoreError;
use crate::store::accounts::User;
use crate::store::projects::Project;

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
    /// Rating: true = thumbs up, false = thumbs down.
    #[serde(default)]
    pub label: Option<bool>,
    /// Rating: `{"aspect": 1-5}` for some or all of the project's aspects.
    #[serde(default)]
    pub scores: Option<BTreeMap<String, i64>>,
    /// Rating: an optional comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Ranking projects: the rank of each answer in the order shown, 1 = best, equal ranks
    /// for ties.
    #[serde(default)]
    pub ranking: Option<Vec<i64>>,
    /// Time the annotator spent, as measured by the page.
    #[serde(default)]
    pub time_spent_ms: Option<i64>,
}

/// A checked submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    Answer(String),
    Verdict(Verdict),
    Rating(Rating),
    Ranking(Ranking),
}

/// What a submission is checked against: the project's kind and settings.
#[derive(Debug, Clone, Copy)]
pub struct SubmitRules<'a> {
    pub kind: ProjectKind,
    pub rationale_required: bool,
    /// Rating projects: the aspects scores may name.
    pub aspects: &'a [Aspect],
    /// Preference projects that rank all answers.
    pub ranking: bool,
}

impl<'a> SubmitRules<'a> {
    pub fn of(project: &'a Project) -> Self {
        Self {
            kind: project.kind,
            rationale_required: project.rationale_required,
            aspects: &project.aspects,
            ranking: project.ranking,
        }
    }

    fn plain(kind: ProjectKind, rationale_required: bool) -> Self {
        Self {
            kind,
            rationale_required,
            aspects: &[],
            ranking: false,
        }
    }
}

impl Submission {
    /// Checks `body` against a project's rules.
    pub fn parse(body: SubmitBody, rules: SubmitRules<'_>) -> Result<Self, String> {
        let SubmitRules {
            kind,
            rationale_required,
            aspects,
            ranking,
        } = rules;
        if body.ranking.is_some() && !(kind == ProjectKind::Preference && ranking) {
            return Err(format!(
                "\"ranking\" belongs to preference projects that rank all answers; this is a {} item{}",
                kind.as_str(),
                if kind == ProjectKind::Preference {
                    ": send \"choice\""
                } else {
                    ""
                }
            ));
        }
        let rating_fields = body.label.is_some() || body.scores.is_some() || body.comment.is_some();
        if kind != ProjectKind::Rating && rating_fields {
            return Err(format!(
                "\"label\", \"scores\" and \"comment\" belong to rating items; this is a {} item",
                kind.as_str()
            ));
        }
        match kind {
            ProjectKind::Rating => {
                if body.answer.is_some() || body.choice.is_some() || body.strength.is_some() {
                    return Err(
                        "this is a rating item: send \"label\" (true or false), not \"answer\" or \"choice\""
                            .into(),
                    );
                }
                if body.rationale.is_some() {
                    return Err("this is a rating item: send \"comment\", not \"rationale\"".into());
                }
                let label = body
                    .label
                    .ok_or("missing field \"label\" (true: thumbs up, false: thumbs down)")?;
                Rating::parse(
                    label,
                    body.scores.unwrap_or_default(),
                    body.comment,
                    aspects,
                )
                .map(Self::Rating)
            }
            ProjectKind::Preference if ranking => {
                if body.answer.is_some() || body.choice.is_some() || body.strength.is_some() {
                    return Err(
                        "this is a ranking item: send \"ranking\" (the rank of each answer shown, 1 = best), not \"choice\""
                            .into(),
                    );
                }
                let ranks = body.ranking.ok_or(
                    "missing field \"ranking\" (the rank of each answer shown, 1 = best; ties share a rank)",
                )?;
                Ranking::parse(ranks, body.rationale, rationale_required).map(Self::Ranking)
            }
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

impl Submission {
    /// A ranking orders every answer shown: as many ranks as answers.
    pub fn check_shown(&self, shown: usize) -> Result<(), String> {
        match self {
            Self::Ranking(r) if r.ranks().len() != shown => Err(format!(
                "ranking: {} ranks for {shown} answers shown (one rank per answer, in the order shown)",
                r.ranks().len()
            )),
            _ => Ok(()),
        }
    }
}

/// The `responses` columns a submission fills.
#[derive(Debug, Default)]
pub struct Columns<'a> {
    pub answer: Option<&'a str>,
    pub choice: Option<&'static str>,
    pub strength: Option<&'static str>,
    pub rationale: Option<&'a str>,
    pub label: Option<bool>,
    pub scores: Option<Json<&'a BTreeMap<String, u8>>>,
    pub comment: Option<&'a str>,
    pub ranking: Option<&'a [i16]>,
}

impl Submission {
    /// What a submit stores and what a reviewer's edit writes as the new version.
    pub fn columns(&self) -> Columns<'_> {
        match self {
            Self::Answer(a) => Columns {
                answer: Some(a.as_str()),
                ..Columns::default()
            },
            Self::Verdict(v) => Columns {
                choice: Some(v.choice.as_str()),
                strength: v.strength.map(Strength::as_str),
                rationale: v.rationale.as_deref(),
                ..Columns::default()
            },
            Self::Rating(r) => Columns {
                label: Some(r.label),
                scores: Some(Json(&r.scores)),
                comment: r.comment.as_deref(),
                ..Columns::default()
            },
            Self::Ranking(r) => Columns {
                ranking: Some(r.ranks()),
                rationale: r.rationale.as_deref(),
                ..Columns::default()
            },
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
/// (the stored ones when `key` was seen before). The hot path of annotation: one statement
/// (one round trip, one durable commit) for a live lease; an expired lease or a replayed key
/// takes a second, rarer path.
pub async fn submit(
    pool: &PgPool,
    assignment_id: i64,
    user: &User,
    body: SubmitBody,
    key: Option<IdempotencyKey>,
) -> Result<(u16, serde_json::Value), StoreError> {
    let time_spent_ms = body.time_spent_ms.filter(|t| *t >= 0);
    // The body is checked against every kind of project before the statement, which then
    // stores it only if it fits the assignment's project; the precise error comes after.
    let fits = Fits::of(&body);
    let stored = match sqlx::query_as::<_, (String, Option<i64>)>(SUBMIT_SQL)
        .bind(assignment_id)
        .bind(user.id)
        .bind(key.as_ref().map(|IdempotencyKey(k)| k.as_str()))
        .bind(fits.sft.is_some())
        .bind(fits.preference.is_some())
        .bind(fits.preference_with_rationale)
        .bind(fits.answer())
        .bind(fits.choice())
        .bind(fits.strength())
        .bind(fits.rationale())
        .bind(time_spent_ms)
        .fetch_optional(pool)
        .await
    {
        Ok(row) => row,
        // The key was used before (a retry whose first try committed, maybe on another
        // assignment): nothing of this statement was stored; answer as the first time.
        Err(e) if is_key_conflict(&e) => {
            let stored = match &key {
                Some(key) => replay(pool, user, key).await?,
                None => None,
            };
            return stored.ok_or_else(|| {
                StoreError::unexpected(anyhow::anyhow!(
                    "submit of assignment {assignment_id}: its key conflicts but has no reply"
                ))
            });
        }
        Err(e) => return Err(e.into()),
    };
    let Some((status, response_id)) = stored else {
        return Err(StoreError::NotFound(format!(
            "no assignment {assignment_id}"
        )));
    };
    if let Some(response_id) = response_id {
        return Ok((
            201,
            serde_json::json!({"response_id": response_id, "assignment_id": assignment_id}),
        ));
    }
    match status.as_str() {
        // Not stored: a body that does not fit the project (the general path says why), or one
        // checked against more than the kind (a rating's aspects, a ranking's length), or an
        // expired lease to revive.
        "leased" | "expired" => submit_in_transaction(pool, assignment_id, user, body, key).await,
        // A retry of the submit that stored the answer replays its reply; any other submit
        // (another tab's, with its own key) is told plainly that the answer is in.
        "submitted" => match &key {
            Some(key) => replay(pool, user, key)
                .await?
                .ok_or(StoreError::AlreadySubmitted { assignment_id }),
            None => Err(StoreError::AlreadySubmitted { assignment_id }),
        },
        other => Err(StoreError::Conflict(format!(
            "assignment {assignment_id} is {other}"
        ))),
    }
}

/// Locks the assignment, and only when it is a live lease and the body fits its project:
/// records the response, closes the lease, drops the draft and stores the reply under the
/// idempotency key (a plain INSERT: a key seen before fails the whole statement, which then
/// stored nothing). A concurrent submit of the same assignment waits for the row lock and then
/// sees `submitted`. Returns no row for an assignment that is not the caller's.
const SUBMIT_SQL: &str = "\
WITH a AS ( \
  SELECT a.id, a.status, a.item_id, a.project_id, a.shown, p.kind, p.rationale_required, \
         CASE WHEN p.kind = 'sft' THEN $4 WHEN p.kind = 'rating' OR p.ranking THEN false \
              WHEN p.rationale_required THEN $6 ELSE $5 END AS fits \
  FROM assignments a JOIN projects p ON p.id = a.project_id \
  WHERE a.id = $1 AND a.user_id = $2 FOR UPDATE OF a), \
r AS ( \
  INSERT INTO responses (assignment_id, item_id, project_id, user_id, answer, choice, \
                         strength, rationale, shown, time_spent_ms) \
  SELECT a.id, a.item_id, a.project_id, $2, $7, $8, $9, $10, a.shown, $11 FROM a \
  WHERE a.status = 'leased' AND a.fits \
  RETURNING id, assignment_id, item_id), \
s AS (UPDATE assignments SET status = 'submitted', finished_at = now() \
      WHERE id = (SELECT assignment_id FROM r)), \
d AS (DELETE FROM drafts WHERE user_id = $2 AND item_id = (SELECT item_id FROM r)), \
k AS (INSERT INTO idempotency_keys (user_id, key, status_code, response_body) \
      SELECT $2, $3, 201, jsonb_build_object('response_id', r.id, 'assignment_id', r.assignment_id) \
      FROM r WHERE $3 IS NOT NULL) \
SELECT a.status, (SELECT id FROM r) FROM a";

fn is_key_conflict(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.constraint() == Some("idempotency_keys_pkey"))
}

/// The reply stored under `key`, for a retried submit; `None` when the key was never used
/// (a submit with a fresh key is not a retry). A key whose request has not finished is a
/// conflict.
async fn replay(
    executor: impl sqlx::PgExecutor<'_>,
    user: &User,
    IdempotencyKey(key): &IdempotencyKey,
) -> Result<Option<(u16, serde_json::Value)>, StoreError> {
    let saved: Option<(Option<i16>, Option<serde_json::Value>)> = sqlx::query_as(
        "SELECT status_code, response_body FROM idempotency_keys WHERE user_id = $1 AND key = $2",
    )
    .bind(user.id)
    .bind(key)
    .fetch_optional(executor)
    .await?;
    match saved {
        None => Ok(None),
        Some((Some(code), Some(body))) => Ok(Some((code as u16, body))),
        Some(_) => Err(key_in_progress()),
    }
}

fn key_in_progress() -> StoreError {
    StoreError::Conflict("a request with this Idempotency-Key is still in progress".into())
}

/// The body checked against each kind of project (a body fits at most one kind: `answer`
/// and `choice` exclude each other).
struct Fits {
    sft: Option<Submission>,
    /// Preference, for a project that does not require a rationale.
    preference: Option<Submission>,
    /// Whether it also fits a project that requires one.
    preference_with_rationale: bool,
}

impl Fits {
    fn of(body: &SubmitBody) -> Self {
        let parse = |kind, required| {
            Submission::parse(body.clone(), SubmitRules::plain(kind, required)).ok()
        };
        Self {
            sft: parse(ProjectKind::Sft, false),
            preference: parse(ProjectKind::Preference, false),
            preference_with_rationale: parse(ProjectKind::Preference, true).is_some(),
        }
    }

    fn verdict(&self) -> Option<&Verdict> {
        match &self.preference {
            Some(Submission::Verdict(v)) => Some(v),
            _ => None,
        }
    }

    fn answer(&self) -> Option<&str> {
        match &self.sft {
            Some(Submission::Answer(a)) => Some(a),
            _ => None,
        }
    }

    fn choice(&self) -> Option<&'static str> {
        self.verdict().map(|v| v.choice.as_str())
    }

    fn strength(&self) -> Option<&'static str> {
        self.verdict()
            .and_then(|v| v.strength.map(Strength::as_str))
    }

    fn rationale(&self) -> Option<&str> {
        self.verdict().and_then(|v| v.rationale.as_deref())
    }
}

/// The general path, for a lease that expired before the submit: revives it when the item
/// still has room, in one transaction with the response.
async fn submit_in_transaction(
    pool: &PgPool,
    assignment_id: i64,
    user: &User,
    body: SubmitBody,
    key: Option<IdempotencyKey>,
) -> Result<(u16, serde_json::Value), StoreError> {
    let time_spent_ms = body.time_spent_ms.filter(|t| *t >= 0);
    let mut tx = pool.begin().await?;
    if let Some(idempotency_key) = &key {
        // A concurrent request with the same key blocks here until it commits.
        let fresh = sqlx::query(
            "INSERT INTO idempotency_keys (user_id, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(user.id)
        .bind(&idempotency_key.0)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            // The key is taken: the reply stored under it, or "in progress".
            return replay(&mut *tx, user, idempotency_key)
                .await?
                .ok_or_else(key_in_progress);
        }
    }
    type Row = (
        String,
        i64,
        i64,
        Vec<i16>,
        String,
        bool,
        Json<Vec<Aspect>>,
        bool,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT a.status, a.item_id, a.project_id, a.shown, p.kind, p.rationale_required, \
                p.aspects, p.ranking \
         FROM assignments a JOIN projects p ON p.id = a.project_id \
         WHERE a.id = $1 AND a.user_id = $2 FOR UPDATE OF a FOR KEY SHARE OF p",
    )
    .bind(assignment_id)
    .bind(user.id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, item_id, project_id, shown, kind, rationale_required, aspects, ranking)) =
        row
    else {
        return Err(StoreError::NotFound(format!(
            "no assignment {assignment_id}"
        )));
    };
    let kind = ProjectKind::parse(&kind).map_err(|e| StoreError::unexpected(anyhow::anyhow!(e)))?;
    let rules = SubmitRules {
        kind,
        rationale_required,
        aspects: &aspects.0,
        ranking,
    };
    let submission = Submission::parse(body, rules).map_err(StoreError::Invalid)?;
    submission
        .check_shown(shown.len())
        .map_err(StoreError::Invalid)?;
    match status.as_str() {
        "leased" => {}
        "expired" => crate::store::queue::revive(&mut tx, assignment_id, item_id).await?,
        "submitted" => return Err(StoreError::AlreadySubmitted { assignment_id }),
        other => {
            return Err(StoreError::Conflict(format!(
                "assignment {assignment_id} is {other}"
            )));
        }
    }
    let c = submission.columns();
    // One statement: the response, the closed lease, the dropped draft, the stored reply.
    let response_id: i64 = sqlx::query_scalar(
        "WITH r AS ( \
           INSERT INTO responses (assignment_id, item_id, project_id, user_id, answer, choice, \
                                  strength, rationale, shown, time_spent_ms, label, scores, \
                                  comment, ranking) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12, $13, $14, $15) RETURNING id), \
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
    .bind(c.answer)
    .bind(c.choice)
    .bind(c.strength)
    .bind(c.rationale)
    .bind(&shown)
    .bind(time_spent_ms)
    .bind(key.as_ref().map(|IdempotencyKey(k)| k.as_str()))
    .bind(c.label)
    .bind(c.scores)
    .bind(c.comment)
    .bind(c.ranking)
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
) -> Result<(), StoreError> {
    if !body.is_object() {
        return Err(StoreError::Invalid("a draft must be a JSON object".into()));
    }
    crate::domain::check_json_text(body).map_err(|e| StoreError::Invalid(format!("draft: {e}")))?;
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
        return Err(StoreError::NotFound(format!(
            "no open assignment {assignment_id} of yours"
        )));
    }
    Ok(())
}
