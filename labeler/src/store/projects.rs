//! Projects: what annotators do (write or compare), the guidelines, and the overlap N.

use sqlx::{PgExecutor, PgPool};

use crate::domain::{Overlap, ProjectKind, ProjectName};
use crate::store::{StoreError, is_unique_violation};

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
}

type ProjectTuple = (i64, String, String, String, i32, bool, f64);

const PROJECT_COLUMNS: &str = "id, name, kind, guidelines, overlap, rationale_required, gold_rate";

fn project_from_row(row: ProjectTuple) -> Result<Project, StoreError> {
    let (id, name, kind, guidelines, overlap, rationale_required, gold_rate) = row;
    Ok(Project {
        id,
        name,
        kind: ProjectKind::parse(&kind).map_err(|e| StoreError::unexpected(anyhow::anyhow!(e)))?,
        guidelines,
        overlap,
        rationale_required,
        gold_rate,
    })
}

pub async fn create(
    pool: &PgPool,
    new: &NewProject,
    created_by: Option<i64>,
) -> Result<Project, StoreError> {
    let row = sqlx::query_as::<_, ProjectTuple>(&format!(
        "INSERT INTO projects (name, kind, guidelines, overlap, rationale_required, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {PROJECT_COLUMNS}"
    ))
    .bind(new.name.as_str())
    .bind(new.kind.as_str())
    .bind(&new.guidelines)
    .bind(new.overlap.get())
    .bind(new.rationale_required)
    .bind(created_by)
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
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"
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
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.map(project_from_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("no project {name:?}")))
}

pub async fn list_with_progress(pool: &PgPool) -> Result<Vec<ProjectProgress>, StoreError> {
    let rows = sqlx::query_as::<_, (i64, String, String, String, i32, bool, f64, i64, i64, i64)>(
        "SELECT p.id, p.name, p.kind, p.guidelines, p.overlap, p.rationale_required, p.gold_rate, \
           (SELECT count(*) FROM items i WHERE i.project_id = p.id), \
           (SELECT count(*) FROM responses r WHERE r.project_id = p.id \
              AND r.review_status <> 'rejected'), \
           (SELECT count(*) FROM items i WHERE i.project_id = p.id AND \
              (SELECT count(*) FROM responses r WHERE r.item_id = i.id \
                 AND r.review_status <> 'rejected') >= i.overlap) \
         FROM projects p ORDER BY p.id",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(
            |(id, name, kind, g, o, r, gold, items, responses, complete_items)| {
                Ok(ProjectProgress {
                    project: project_from_row((id, name, kind, g, o, r, gold))?,
                    items,
                    responses,
                    complete_items,
                })
            },
        )
        .collect()
}

/// A change of a project's settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub guidelines: Option<String>,
    pub rationale_required: Option<bool>,
    /// 0 to 1 (checked by the caller and by the database).
    pub gold_rate: Option<f64>,
}

/// Applies `change` and returns the project as it is now.
pub async fn update<'e>(
    exec: impl PgExecutor<'e>,
    id: i64,
    change: &SettingsChange,
) -> Result<Project, StoreError> {
    let row = sqlx::query_as::<_, ProjectTuple>(&format!(
        "UPDATE projects SET guidelines = COALESCE($2, guidelines), \
           rationale_required = COALESCE($3, rationale_required), \
           gold_rate = COALESCE($4, gold_rate) \
         WHERE id = $1 RETURNING {PROJECT_COLUMNS}"
    ))
    .bind(id)
    .bind(change.guidelines.as_deref())
    .bind(change.rationale_required)
    .bind(change.gold_rate)
    .fetch_optional(exec)
    .await?;
    row.map(project_from_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("no project {id}")))
}
