//! Projects: what annotators do (write or compare), the guidelines, and the overlap N; and
//! their life: renamed and edited, archived (hidden from annotators, still exported), or
//! deleted while nobody has answered anything in them.

use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

use sqlx::types::Json;

use crate::domain::{Aspect, Aspects, Overlap, ProjectKind, ProjectName};
use crate::store::{StoreError, has_sqlstate, is_unique_violation};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub kind: ProjectKind,
    pub guidelines: String,
    pub overlap: i32,
    pub rationale_required: bool,
    /// Share of handed-out items drawn from the gold items (0 = none mixed in).
    pub gold_rate: f64,
    /// Archived: annotators neither see it nor get its items; leads still review and export.
    pub archived: bool,
    /// Rating projects: the aspects scored 1-5, each with its guideline line.
    pub aspects: Vec<Aspect>,
    /// Preference projects: each task shows all of an item's candidates (2-9) to rank.
    pub ranking: bool,
    /// Model pre-labels: `hidden` (shown after answering), `shown`, or `None` (off).
    pub prelabels: Option<String>,
}

/// A project with its progress, for lists and dashboards.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectProgress {
    #[serde(flatten)]
    pub project: Project,
    pub items: i64,
    /// Responses submitted so far (each item needs `overlap` of them).
    pub responses: i64,
    /// Items that have all `overlap` responses.
    pub complete_items: i64,
}

#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: ProjectName,
    pub kind: ProjectKind,
    pub guidelines: String,
    pub overlap: Overlap,
    pub rationale_required: bool,
    /// Rating projects only (others have none).
    pub aspects: Aspects,
    /// Preference projects only: rank all candidates instead of comparing two.
    pub ranking: bool,
}

type ProjectTuple = (
    i64,
    String,
    String,
    String,
    i32,
    bool,
    f64,
    bool,
    Json<Vec<Aspect>>,
    bool,
    Option<String>,
);

const PROJECT_COLUMNS: &str = "id, name, kind, guidelines, overlap, rationale_required, gold_rate, \
                               archived_at IS NOT NULL, aspects, ranking, prelabels";

fn project_from_row(row: ProjectTuple) -> Result<Project, StoreError> {
    let (
        id,
        name,
        kind,
        guidelines,
        overlap,
        rationale_required,
        gold_rate,
        archived,
        aspects,
        ranking,
        prelabels,
    ) = row;
    Ok(Project {
        id,
        name,
        kind: ProjectKind::parse(&kind).map_err(|e| StoreError::unexpected(anyhow::anyhow!(e)))?,
        guidelines,
        overlap,
        rationale_required,
        gold_rate,
        archived,
        aspects: aspects.0,
        ranking,
        prelabels,
    })
}

pub async fn create(
    pool: &PgPool,
    new: &NewProject,
    created_by: Option<i64>,
) -> Result<Project, StoreError> {
    if new.kind != ProjectKind::Preference && new.ranking {
        return Err(StoreError::Invalid(format!(
            "ranking belongs to preference projects; this is a {} project",
            new.kind.as_str()
        )));
    }
    if new.kind != ProjectKind::Rating && !new.aspects.is_empty() {
        return Err(StoreError::Invalid(format!(
            "aspects belong to rating projects; this is a {} project",
            new.kind.as_str()
        )));
    }
    let row = sqlx::query_as::<_, ProjectTuple>(&format!(
        "INSERT INTO projects (name, kind, guidelines, overlap, rationale_required, created_by, \
                               aspects, ranking) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {PROJECT_COLUMNS}"
    ))
    .bind(new.name.as_str())
    .bind(new.kind.as_str())
    .bind(&new.guidelines)
    .bind(new.overlap.get())
    .bind(new.rationale_required)
    .bind(created_by)
    .bind(Json(new.aspects.as_slice()))
    .bind(new.ranking)
    .fetch_one(pool)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("project {} already exists", new.name.as_str()))
        } else {
            e.into()
        }
    })?;
    project_from_row(row)
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Project, StoreError> {
    let row = sqlx::query_as::<_, ProjectTuple>(&format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(project_from_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("no project {id}")))
}

pub async fn by_name(pool: &PgPool, name: &str) -> Result<Project, StoreError> {
    let row = sqlx::query_as::<_, ProjectTuple>(&format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE name = $1 AND deleted_at IS NULL"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.map(project_from_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("no project {name:?}")))
}

pub async fn list_with_progress(pool: &PgPool) -> Result<Vec<ProjectProgress>, StoreError> {
    type Row = (
        i64,
        String,
        String,
        String,
        i32,
        bool,
        f64,
        bool,
        Json<Vec<Aspect>>,
        bool,
        Option<String>,
        i64,
        i64,
        i64,
    );
    let rows = sqlx::query_as::<_, Row>(
        "SELECT p.id, p.name, p.kind, p.guidelines, p.overlap, p.rationale_required, p.gold_rate, \
           p.archived_at IS NOT NULL, p.aspects, p.ranking, p.prelabels, \
           (SELECT count(*) FROM items i WHERE i.project_id = p.id), \
           (SELECT count(*) FROM responses r WHERE r.project_id = p.id \
              AND r.review_status <> 'rejected'), \
           (SELECT count(*) FROM items i WHERE i.project_id = p.id AND \
              (SELECT count(*) FROM responses r WHERE r.item_id = i.id \
                 AND r.review_status <> 'rejected') >= i.overlap) \
         FROM projects p WHERE p.deleted_at IS NULL ORDER BY p.id",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(
            |(
                id,
                name,
                kind,
                g,
                o,
                r,
                gold,
                archived,
                aspects,
                rank,
                pre,
                items,
                responses,
                complete,
            )| {
                let row = (id, name, kind, g, o, r, gold, archived, aspects, rank, pre);
                Ok(ProjectProgress {
                    project: project_from_row(row)?,
                    items,
                    responses,
                    complete_items: complete,
                })
            },
        )
        .collect()
}

/// A change of a project's settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub name: Option<ProjectName>,
    pub guidelines: Option<String>,
    pub rationale_required: Option<bool>,
    /// 0 to 1 (checked by the caller and by the database).
    pub gold_rate: Option<f64>,
    /// Model pre-labels: `Some(None)` turns them off.
    pub prelabels: Option<Option<&'static str>>,
    /// Rating projects: the whole new list (added, reordered, guidelines edited; an aspect a
    /// response scored stays).
    pub aspects: Option<Aspects>,
    /// Preference projects, before the first response: rank all answers or compare two.
    pub ranking: Option<bool>,
}

/// Applies `change` and returns the project as it is now. A change of the aspects or of
/// `ranking` first locks the project row (FOR UPDATE), which a submit's lock on it (FOR KEY
/// SHARE, taken before it reads the aspects or the mode) waits for: the checks below see
/// every response stored before, and no response stored after is checked against the old
/// settings.
pub async fn update(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    change: &SettingsChange,
) -> Result<Project, StoreError> {
    if change.aspects.is_some() || change.ranking.is_some() {
        check_shape_change(tx, id, change).await?;
    }
    let row = sqlx::query_as::<_, ProjectTuple>(&format!(
        "UPDATE projects SET guidelines = COALESCE($2, guidelines), \
           rationale_required = COALESCE($3, rationale_required), \
           gold_rate = COALESCE($4, gold_rate), name = COALESCE($5, name), \
           prelabels = CASE WHEN $6 THEN $7 ELSE prelabels END, \
           aspects = COALESCE($8, aspects), ranking = COALESCE($9, ranking) \
         WHERE id = $1 AND deleted_at IS NULL RETURNING {PROJECT_COLUMNS}"
    ))
    .bind(id)
    .bind(change.guidelines.as_deref())
    .bind(change.rationale_required)
    .bind(change.gold_rate)
    .bind(change.name.as_ref().map(ProjectName::as_str))
    .bind(change.prelabels.is_some())
    .bind(change.prelabels.flatten())
    .bind(change.aspects.as_ref().map(|a| Json(a.as_slice())))
    .bind(change.ranking)
    .fetch_optional(&mut **tx)
    .await
    .map_err(|e| match &change.name {
        Some(name) if is_unique_violation(&e) => {
            StoreError::Conflict(format!("project {} already exists", name.as_str()))
        }
        _ => e.into(),
    })?;
    row.map(project_from_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("no project {id}")))
}

/// Under the project's row lock: aspects belong to rating projects, and one a stored
/// response scored may be neither removed nor renamed; `ranking` belongs to preference
/// projects and changes only while nothing was answered (its open leases, shown in the old
/// mode, and their drafts are dropped: the annotators' next item comes in the new one).
async fn check_shape_change(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    change: &SettingsChange,
) -> Result<(), StoreError> {
    let row: Option<(String, String, Json<Vec<Aspect>>, bool)> = sqlx::query_as(
        "SELECT name, kind, aspects, ranking FROM projects \
         WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((name, kind, Json(aspects), ranking)) = row else {
        return Err(StoreError::NotFound(format!("no project {id}")));
    };
    if let Some(new) = &change.aspects {
        if kind != ProjectKind::Rating.as_str() && !new.is_empty() {
            return Err(StoreError::Invalid(format!(
                "aspects belong to rating projects; this is a {kind} project"
            )));
        }
        let dropped: Vec<&str> = aspects
            .iter()
            .filter(|old| !new.as_slice().iter().any(|a| a.name == old.name))
            .map(|old| old.name.as_str())
            .collect();
        let scored = scored_by_responses(tx, id, &dropped).await?;
        if !scored.is_empty() {
            let list: Vec<String> = scored
                .iter()
                .map(|(a, n)| format!("{a} (scored by {n} response(s))"))
                .collect();
            return Err(StoreError::Conflict(format!(
                "project {name}: aspect(s) {} cannot be removed or renamed: stored ratings \
                 score them (edit their guideline lines, or add new aspects)",
                list.join(", ")
            )));
        }
    }
    check_ranking(tx, id, change.ranking, (&name, &kind, ranking)).await
}

/// `ranking` (`new`) on the locked project (`name`, `kind`, the current `ranking`).
async fn check_ranking(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    new: Option<bool>,
    (name, kind, ranking): (&str, &str, bool),
) -> Result<(), StoreError> {
    match new {
        Some(true) if kind != ProjectKind::Preference.as_str() => Err(StoreError::Invalid(
            format!("ranking belongs to preference projects; this is a {kind} project"),
        )),
        Some(new) if new != ranking => {
            let answered: i64 =
                sqlx::query_scalar("SELECT count(*) FROM responses WHERE project_id = $1")
                    .bind(id)
                    .fetch_one(&mut **tx)
                    .await?;
            if answered > 0 {
                return Err(StoreError::Conflict(format!(
                    "project {name} has {answered} response(s): ranking can change only \
                     before the first response"
                )));
            }
            drop_open_leases(tx, id).await
        }
        _ => Ok(()),
    }
}

/// Of the aspects `names`, those some stored response of project `id` scored, with how many
/// did, in the order given.
async fn scored_by_responses(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    names: &[&str],
) -> Result<Vec<(String, i64)>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT a, count(*) FROM unnest($2::text[]) WITH ORDINALITY u(a, n) \
         JOIN responses r ON r.project_id = $1 AND r.scores ? a \
         GROUP BY a, n ORDER BY n",
    )
    .bind(id)
    .bind(names)
    .fetch_all(&mut **tx)
    .await?)
}

/// Drops the project's open and expired leases and its drafts (nothing was answered). A
/// lease being submitted right now holds its row: refused, rather than waiting for a submit
/// that waits for this transaction's lock on the project.
async fn drop_open_leases(tx: &mut Transaction<'_, Postgres>, id: i64) -> Result<(), StoreError> {
    let locked = sqlx::query(
        "SELECT id FROM assignments WHERE project_id = $1 AND status IN ('leased', 'expired') \
         FOR UPDATE NOWAIT",
    )
    .bind(id)
    .execute(&mut **tx)
    .await;
    match locked {
        // lock_not_available
        Err(e) if has_sqlstate(&e, "55P03") => {
            return Err(StoreError::Conflict(
                "an annotator is submitting or taking an item of this project right now: try \
                 again"
                    .into(),
            ));
        }
        other => {
            other?;
        }
    }
    sqlx::query(
        "WITH d AS (DELETE FROM drafts WHERE item_id IN (SELECT id FROM items WHERE project_id = $1)) \
         DELETE FROM assignments WHERE project_id = $1 AND status IN ('leased', 'expired')",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Archives a project (`true`) or brings it back (`false`); idempotent.
pub async fn set_archived<'e>(
    exec: impl PgExecutor<'e>,
    id: i64,
    archived: bool,
) -> Result<Project, StoreError> {
    let row = sqlx::query_as::<_, ProjectTuple>(&format!(
        "UPDATE projects SET archived_at = CASE WHEN $2 THEN COALESCE(archived_at, now()) END \
         WHERE id = $1 AND deleted_at IS NULL RETURNING {PROJECT_COLUMNS}"
    ))
    .bind(id)
    .bind(archived)
    .fetch_optional(exec)
    .await?;
    row.map(project_from_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("no project {id}")))
}

/// Deletes a project nobody has answered anything in: its drafts, leases and skips, items,
/// imports and pending webhook events go; the row stays (the audit log refers to it), marked
/// deleted and renamed so the name is free. A project with responses is refused (409:
/// archive it instead), also when one arrives while this runs (its lease row is locked by
/// the submit, and the response's reference to it stops the delete).
pub async fn delete(tx: &mut Transaction<'_, Postgres>, id: i64) -> Result<String, StoreError> {
    let name: Option<String> = sqlx::query_scalar(
        "SELECT name FROM projects WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(name) = name else {
        return Err(StoreError::NotFound(format!("no project {id}")));
    };
    let answered: i64 = sqlx::query_scalar("SELECT count(*) FROM responses WHERE project_id = $1")
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    let refused = || {
        StoreError::Conflict(format!(
            "project {name} has answers: archive it instead (it is then hidden from \
             annotators and can still be exported)"
        ))
    };
    if answered > 0 {
        return Err(refused());
    }
    let result = sqlx::query(
        "WITH d AS (DELETE FROM drafts WHERE item_id IN (SELECT id FROM items WHERE project_id = $1)), \
         w AS (DELETE FROM webhook_events WHERE project_id = $1), \
         a AS (DELETE FROM assignments WHERE project_id = $1 RETURNING 1) \
         SELECT count(*) FROM a",
    )
    .bind(id)
    .execute(&mut **tx)
    .await;
    match result {
        // foreign_key_violation
        Err(e) if has_sqlstate(&e, "23503") => {
            return Err(refused());
        }
        other => {
            other?;
        }
    }
    for table in ["items", "imports"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE project_id = $1"))
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(
        "UPDATE projects SET deleted_at = now(), archived_at = COALESCE(archived_at, now()), \
           name = left('.deleted-' || id || '-' || name, 64), webhook_url = NULL, webhook_secret = NULL \
         WHERE id = $1",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(name)
}

/// Responses in the project (a project with any may not be deleted).
pub async fn answered(pool: &PgPool, id: i64) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM responses WHERE project_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}

/// Whether project `id` existed and was deleted.
pub async fn was_deleted(pool: &PgPool, id: i64) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM projects WHERE id = $1 AND deleted_at IS NOT NULL)",
    )
    .bind(id)
    .fetch_one(pool)
    .await?)
}
