//! Handing out items: leases taken with `FOR UPDATE SKIP LOCKED`, renewed while the page is
//! open and reclaimed when abandoned. The database keeps the promises: `UNIQUE (item_id,
//! user_id)` on assignments (nobody gets an item twice) and `CHECK (taken <= overlap)` on
//! items, with `taken` maintained by a trigger (never more than N live leases plus responses).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::{Candidate, Message, ProjectKind};
use crate::store::accounts::User;
use crate::store::{StoreError, has_sqlstate};

/// Lease policy (from settings).
#[derive(Debug, Clone, Copy)]
pub struct LeasePolicy {
    pub lease_seconds: i64,
    /// Live leases one annotator may hold in one project (the current item and a prefetched
    /// one).
    pub max_leases_per_user: i64,
}

/// How the answers shown are called, left to right (a ranking shows up to nine).
pub const ANSWER_LABELS: [&str; 9] = ["A", "B", "C", "D", "E", "F", "G", "H", "I"];

/// One candidate as the annotator sees it: no model name, so it cannot bias the choice.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ShownAnswer {
    pub label: &'static str,
    pub content: String,
}

/// A leased item, as sent to the annotator.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub assignment_id: i64,
    pub expires_at: DateTime<Utc>,
    pub project_id: i64,
    pub kind: ProjectKind,
    pub item_id: i64,
    pub external_id: String,
    pub prompt: Vec<Message>,
    /// SFT: the model draft to start from, if any.
    pub model_draft: Option<String>,
    /// Preference: the two answers, left (A) then right (B); all of them (A, B, C, ...) in
    /// ranking projects; rating: the one answer.
    pub answers: Vec<ShownAnswer>,
    /// The annotator's autosaved work on this item, if any.
    pub saved_draft: Option<serde_json::Value>,
}

fn is_retryable(e: &sqlx::Error) -> bool {
    // serialization_failure, deadlock_detected
    has_sqlstate(e, "40001") || has_sqlstate(e, "40P01")
}

/// Marks abandoned leases (of one project, or all) expired, which returns their slots to the
/// pool. One caller at a time does the work (an advisory lock); the others skip it.
pub async fn reclaim_expired(pool: &PgPool, project_id: Option<i64>) -> Result<u64, StoreError> {
    let n = sqlx::query(
        "WITH gate AS (SELECT pg_try_advisory_xact_lock(7301, 0) AS ok) \
         UPDATE assignments SET status = 'expired', finished_at = now() \
         WHERE ($1 IS NULL OR project_id = $1) AND status = 'leased' AND expires_at < now() \
           AND (SELECT ok FROM gate)",
    )
    .bind(project_id)
    .execute(pool)
    .await?
    .rows_affected();
    if n > 0 {
        tracing::info!(?project_id, leases = n, "reclaimed expired leases");
    }
    Ok(n)
}

/// The next item for `user` in project `project_id`: a live lease they already hold (not in
/// `exclude`), renewed, or a new lease. `None` when nothing is left for them.
pub async fn next(
    pool: &PgPool,
    policy: LeasePolicy,
    project_id: i64,
    user: &User,
    exclude: &[i64],
) -> Result<Option<Task>, StoreError> {
    let mut reclaimed = false;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_next(pool, policy, project_id, user, exclude).await {
            Err(Retry::Again) | Err(Retry::Db(_)) if attempt < 8 => continue,
            Err(Retry::Again) => {
                return Err(StoreError::Conflict(
                    "too much contention; try again".into(),
                ));
            }
            Err(Retry::Db(e)) => return Err(e.into()),
            Err(Retry::Store(e)) => return Err(e),
            Ok(Some(task)) => return Ok(Some(task)),
            // Before saying "nothing left", give abandoned leases back and look again.
            Ok(None) if !reclaimed => {
                reclaimed = true;
                if reclaim_expired(pool, Some(project_id)).await? == 0 {
                    return Ok(None);
                }
            }
            Ok(None) => return Ok(None),
        }
    }
}

enum Retry {
    /// A race with another request of the same user; run again.
    Again,
    /// A retryable database error (deadlock, serialization).
    Db(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Retry {
    fn from(e: sqlx::Error) -> Self {
        if is_retryable(&e) {
            Retry::Db(e)
        } else {
            Retry::Store(e.into())
        }
    }
}

/// What the lease statement saw and did.
#[derive(sqlx::FromRow)]
struct LeaseRow {
    /// `None`: no such project.
    kind: Option<String>,
    /// Whether the project mixes gold items in (the pick was limited to one kind).
    gold_mixed: Option<bool>,
    /// Live leases the user held in this project before the statement.
    held: i64,
    /// Whether one of them is not in `exclude` (and so is handed back, renewed).
    held_usable: bool,
    /// The open item picked for a new lease, if one was looked for and found.
    picked: Option<i64>,
    /// The lease handed out (renewed or new), with its task.
    assignment_id: Option<i64>,
    expires_at: Option<DateTime<Utc>>,
    item_id: Option<i64>,
    external_id: Option<String>,
    prompt: Option<sqlx::types::Json<Vec<Message>>>,
    model_draft: Option<String>,
    candidates: Option<sqlx::types::Json<Vec<Candidate>>>,
    shown: Option<Vec<i16>>,
    saved_draft: Option<serde_json::Value>,
}

/// The hot path of annotation, in one statement (one round trip, one commit): renew a lease
/// the user already holds (a reload), or pick an open item (skipping rows other requests
/// hold) and lease it; then read the task. The trigger counts the slot and the CHECK refuses
/// an overfull item.
///
/// `project_id BETWEEN $1 AND $1` and `ORDER BY project_id, id` are deliberate: with `=` the
/// planner may walk `items_pkey` and filter `taken < overlap` row by row (it assumes open
/// items are spread evenly, while they sit after every taken one), which costs milliseconds
/// per lease once thousands of items are taken. This form can only be served by a
/// `(project_id, id)` index, and the partial `items_open` is the cheapest of those.
///
/// The statement's own commit does not wait for its WAL to reach the disk
/// (`set_config('synchronous_commit', 'off', true)`: for this transaction only). What a crash
/// could then forget is a lease handed out in the last moment before it, never a response:
/// a submit commits durably, and its flush takes all earlier WAL with it, the lease it
/// answers included. A forgotten lease is like an expired one: its slot is free again (the
/// count went with it) and the annotator's submit answers 404, so they fetch the next item.
/// Overlap, one item per annotator and idempotent submits are untouched.
///
/// Gold items are mixed in at the project's `gold_rate`: `$6` is the caller's uniform draw
/// and `$7` flips the kind it chose, so a caller that finds none of the drawn kind can ask
/// for the other with the same draw. `want` is NULL (no filter) when the rate is 0.
const LEASE_SQL: &str = "\
WITH proj AS (SELECT kind, ranking, \
                     CASE WHEN gold_rate > 0 THEN ($6 < gold_rate) <> $7 END AS want \
              FROM projects WHERE id = $1 AND archived_at IS NULL FOR KEY SHARE), \
held AS ( \
  SELECT id, NOT (id = ANY($3)) AS usable FROM assignments \
  WHERE user_id = $2 AND project_id = $1 AND status = 'leased' AND expires_at > now()), \
renewed AS ( \
  UPDATE assignments SET expires_at = now() + make_interval(secs => $4) \
  WHERE id = (SELECT min(id) FROM held WHERE usable) AND user_id = $2 AND status = 'leased' \
  RETURNING id, item_id, shown, expires_at), \
pick AS ( \
  SELECT i.id, jsonb_array_length(i.candidates) AS n FROM items i \
  WHERE i.project_id BETWEEN $1 AND $1 AND i.taken < i.overlap \
    AND ((SELECT want FROM proj) IS NULL \
         OR (i.gold_winner IS NOT NULL) = (SELECT want FROM proj)) \
    AND NOT EXISTS (SELECT 1 FROM held WHERE usable) \
    AND (SELECT count(*) FROM held) < $5 \
    AND NOT EXISTS (SELECT 1 FROM assignments a \
                    WHERE a.item_id = i.id AND a.user_id = $2 AND a.status <> 'expired') \
  ORDER BY i.project_id, i.id LIMIT 1 FOR UPDATE OF i SKIP LOCKED), \
ins AS ( \
  INSERT INTO assignments (item_id, project_id, user_id, status, shown, expires_at) \
  SELECT pick.id, $1, $2, 'leased', \
         CASE (SELECT kind FROM proj) \
              WHEN 'preference' \
              THEN ARRAY(SELECT x::smallint FROM generate_series(0, pick.n - 1) x \
                         ORDER BY random() \
                         LIMIT CASE WHEN (SELECT ranking FROM proj) THEN 9 ELSE 2 END) \
              WHEN 'rating' THEN '{0}'::smallint[] \
              ELSE '{}'::smallint[] END, \
         now() + make_interval(secs => $4) \
  FROM pick \
  ON CONFLICT (item_id, user_id) DO UPDATE \
    SET status = 'leased', shown = EXCLUDED.shown, leased_at = now(), \
        expires_at = EXCLUDED.expires_at, finished_at = NULL \
    WHERE assignments.status = 'expired' \
  RETURNING id, item_id, shown, expires_at), \
got AS (SELECT * FROM renewed UNION ALL SELECT * FROM ins) \
SELECT (SELECT kind FROM proj) AS kind, \
       (SELECT want IS NOT NULL FROM proj) AS gold_mixed, \
       (SELECT count(*) FROM held) AS held, \
       EXISTS (SELECT 1 FROM held WHERE usable) AS held_usable, \
       (SELECT id FROM pick) AS picked, \
       g.id AS assignment_id, g.expires_at, i.id AS item_id, i.external_id, i.prompt, \
       i.draft AS model_draft, i.candidates, g.shown, d.body AS saved_draft \
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS lease_commit \
LEFT JOIN got g ON true \
LEFT JOIN items i ON i.id = g.item_id \
LEFT JOIN drafts d ON d.item_id = g.item_id AND d.user_id = $2";

/// Runs [`LEASE_SQL`] once.
async fn lease(
    pool: &PgPool,
    policy: LeasePolicy,
    project_id: i64,
    user: &User,
    exclude: &[i64],
    gold_draw: f64,
    flip: bool,
) -> Result<LeaseRow, Retry> {
    Ok(sqlx::query_as(LEASE_SQL)
        .bind(project_id)
        .bind(user.id)
        .bind(exclude)
        .bind(policy.lease_seconds as f64)
        .bind(policy.max_leases_per_user)
        .bind(gold_draw)
        .bind(flip)
        .fetch_one(pool)
        .await?)
}

async fn try_next(
    pool: &PgPool,
    policy: LeasePolicy,
    project_id: i64,
    user: &User,
    exclude: &[i64],
) -> Result<Option<Task>, Retry> {
    // One draw decides whether a gold item is offered first; the other kind is asked for
    // (same draw, flipped) only when none of the first is left for this user.
    let draw = rand::random::<f64>();
    let mut row: LeaseRow = lease(pool, policy, project_id, user, exclude, draw, false).await?;
    if row.gold_mixed == Some(true)
        && row.assignment_id.is_none()
        && row.picked.is_none()
        && !row.held_usable
        && row.held < policy.max_leases_per_user
    {
        row = lease(pool, policy, project_id, user, exclude, draw, true).await?;
    }
    let Some(kind) = &row.kind else {
        return Err(Retry::Store(StoreError::NotFound(format!(
            "no project {project_id} open for annotation (none, or archived)"
        ))));
    };
    if row.assignment_id.is_none() {
        if row.held_usable {
            // The lease to hand back was submitted or skipped meanwhile.
            return Err(Retry::Again);
        }
        if row.held >= policy.max_leases_per_user {
            return Err(Retry::Store(StoreError::Conflict(format!(
                "you already hold {} items in this project; submit or skip one first",
                row.held
            ))));
        }
        return match row.picked {
            None => Ok(None),
            // The same user's other request took this item between our snapshot and our lock.
            Some(_) => Err(Retry::Again),
        };
    }
    let kind = ProjectKind::parse(kind).map_err(|e| Retry::Store(unexpected(e)))?;
    let missing = || Retry::Store(unexpected("lease statement returned a partial row"));
    task_from_parts(
        project_id,
        kind,
        TaskParts {
            assignment_id: row.assignment_id.ok_or_else(missing)?,
            expires_at: row.expires_at.ok_or_else(missing)?,
            item_id: row.item_id.ok_or_else(missing)?,
            external_id: row.external_id.ok_or_else(missing)?,
            prompt: row.prompt.ok_or_else(missing)?.0,
            model_draft: row.model_draft,
            candidates: row.candidates.ok_or_else(missing)?.0,
            shown: row.shown.ok_or_else(missing)?,
            saved_draft: row.saved_draft,
        },
    )
    .map(Some)
    .map_err(Retry::Store)
}

fn unexpected(e: impl std::fmt::Display) -> StoreError {
    StoreError::unexpected(anyhow::anyhow!("{e}"))
}

/// Extends a live lease (the page calls this while it is open). An expired lease is revived
/// when the item still has room; otherwise 409.
pub async fn renew(
    pool: &PgPool,
    policy: LeasePolicy,
    assignment_id: i64,
    user: &User,
) -> Result<DateTime<Utc>, StoreError> {
    let mut tx = pool.begin().await?;
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT status, item_id FROM assignments WHERE id = $1 AND user_id = $2 FOR UPDATE",
    )
    .bind(assignment_id)
    .bind(user.id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, item_id)) = row else {
        return Err(StoreError::NotFound(format!(
            "no assignment {assignment_id}"
        )));
    };
    match status.as_str() {
        "leased" => {}
        "expired" => revive(&mut tx, assignment_id, item_id).await?,
        other => {
            return Err(StoreError::Conflict(format!(
                "assignment {assignment_id} is {other}"
            )));
        }
    }
    let expires: DateTime<Utc> = sqlx::query_scalar(
        "UPDATE assignments SET expires_at = now() + make_interval(secs => $2) \
         WHERE id = $1 RETURNING expires_at",
    )
    .bind(assignment_id)
    .bind(policy.lease_seconds as f64)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(expires)
}

/// Takes a slot again for an expired lease, if the item is not full meanwhile.
pub(crate) async fn revive(
    tx: &mut Transaction<'_, Postgres>,
    assignment_id: i64,
    item_id: i64,
) -> Result<(), StoreError> {
    let room: bool =
        sqlx::query_scalar("SELECT taken < overlap FROM items WHERE id = $1 FOR UPDATE")
            .bind(item_id)
            .fetch_one(&mut **tx)
            .await?;
    if !room {
        return Err(StoreError::Conflict(
            "your lease on this item expired and other annotators have filled it".into(),
        ));
    }
    sqlx::query("UPDATE assignments SET status = 'leased', finished_at = NULL WHERE id = $1")
        .bind(assignment_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Gives an item up for good: its slot returns to the pool and this annotator will not see
/// it again. `reason` (optional, the annotator's words) is kept for the project's leads.
pub async fn skip(
    pool: &PgPool,
    assignment_id: i64,
    user: &User,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let n = sqlx::query(
        "UPDATE assignments SET status = 'skipped', finished_at = now(), skip_reason = $3 \
         WHERE id = $1 AND user_id = $2 AND status IN ('leased', 'expired')",
    )
    .bind(assignment_id)
    .bind(user.id)
    .bind(reason)
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

type TaskRow = (
    i64,
    DateTime<Utc>,
    i64,
    String,
    i64,
    String,
    sqlx::types::Json<Vec<Message>>,
    Option<String>,
    sqlx::types::Json<Vec<Candidate>>,
    Vec<i16>,
    Option<serde_json::Value>,
);

/// The task view of one of `user_id`'s assignments.
pub async fn task(pool: &PgPool, assignment_id: i64, user_id: i64) -> Result<Task, StoreError> {
    let row: Option<TaskRow> = sqlx::query_as(
        "SELECT a.id, a.expires_at, p.id, p.kind, i.id, i.external_id, i.prompt, i.draft, \
                i.candidates, a.shown, d.body \
         FROM assignments a JOIN items i ON i.id = a.item_id JOIN projects p ON p.id = a.project_id \
         LEFT JOIN drafts d ON d.item_id = a.item_id AND d.user_id = a.user_id \
         WHERE a.id = $1 AND a.user_id = $2",
    )
    .bind(assignment_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    let Some((
        id,
        expires_at,
        project_id,
        kind,
        item_id,
        external_id,
        prompt,
        model_draft,
        candidates,
        shown,
        saved_draft,
    )) = row
    else {
        return Err(StoreError::NotFound(format!(
            "no assignment {assignment_id}"
        )));
    };
    let kind = ProjectKind::parse(&kind).map_err(unexpected)?;
    task_from_parts(
        project_id,
        kind,
        TaskParts {
            assignment_id: id,
            expires_at,
            item_id,
            external_id,
            prompt: prompt.0,
            model_draft,
            candidates: candidates.0,
            shown,
            saved_draft,
        },
    )
}

/// An assignment joined with its item, as read from the database.
struct TaskParts {
    assignment_id: i64,
    expires_at: DateTime<Utc>,
    item_id: i64,
    external_id: String,
    prompt: Vec<Message>,
    model_draft: Option<String>,
    candidates: Vec<Candidate>,
    shown: Vec<i16>,
    saved_draft: Option<serde_json::Value>,
}

/// The annotator's view: the candidates in the order shown, without their provenance.
fn task_from_parts(
    project_id: i64,
    kind: ProjectKind,
    parts: TaskParts,
) -> Result<Task, StoreError> {
    let TaskParts {
        assignment_id,
        expires_at,
        item_id,
        external_id,
        prompt,
        model_draft,
        candidates,
        shown,
        saved_draft,
    } = parts;
    let answers = shown
        .iter()
        .zip(ANSWER_LABELS)
        .map(|(&i, label)| {
            candidates
                .get(i as usize)
                .map(|c| ShownAnswer {
                    label,
                    content: c.content.clone(),
                })
                .ok_or_else(|| unexpected(format!("shown index {i} out of range")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Task {
        assignment_id,
        expires_at,
        project_id,
        kind,
        item_id,
        external_id,
        prompt,
        model_draft,
        answers,
        saved_draft,
    })
}
