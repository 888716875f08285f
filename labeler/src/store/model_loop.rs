//! The model in the loop: the trainer pages through a project's prompts, answers them with a
//! checkpoint, and posts the answers back as comparison items (preference projects) or as
//! single answers to rate (rating projects) with their provenance (model, checkpoint,
//! sampling settings). Posting is idempotent by item id: the trainer names each
//! item `<source>@<checkpoint>`, so generating again for the same prompts and checkpoint
//! creates nothing new.

use serde::Serialize;
use sqlx::PgPool;

use crate::domain::{Message, ProjectKind};
use crate::store::import::{self, InsertNewSummary, NewItem};
use crate::store::projects::Project;
use crate::store::{RowError, StoreError};

/// Most items in one candidates post; the trainer sends batches well below this.
pub const MAX_CANDIDATE_ITEMS: usize = 10_000;

/// One prompt to answer, with the answers the item already has (its candidates' text, in
/// their stored order: what a pre-label's `winner` indexes; empty for SFT items).
#[derive(Debug, Clone, Serialize)]
pub struct PromptRow {
    pub item_id: i64,
    pub external_id: String,
    pub prompt: Vec<Message>,
    pub candidates: Vec<String>,
}

/// A page of prompts in item order; `next_after` is the cursor of the next page (absent on
/// the last one).
#[derive(Debug, Clone, Serialize)]
pub struct PromptPage {
    pub prompts: Vec<PromptRow>,
    pub next_after: Option<i64>,
}

/// The prompts of `project`'s items with an id above `after` (keyset pagination: stable
/// while items are added, one index range scan per page).
pub async fn prompts_page(
    pool: &PgPool,
    project: &Project,
    after: i64,
    limit: i64,
) -> Result<PromptPage, StoreError> {
    type Row = (
        i64,
        String,
        sqlx::types::Json<Vec<Message>>,
        sqlx::types::Json<Vec<serde_json::Value>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, external_id, prompt, candidates FROM items \
         WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(project.id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let full = rows.len() as i64 == limit;
    let prompts: Vec<PromptRow> = rows
        .into_iter()
        .map(|(item_id, external_id, prompt, candidates)| PromptRow {
            item_id,
            external_id,
            prompt: prompt.0,
            candidates: candidates
                .0
                .iter()
                .map(|c| c["content"].as_str().unwrap_or_default().to_string())
                .collect(),
        })
        .collect();
    let next_after = if full {
        prompts.last().map(|p| p.item_id)
    } else {
        None
    };
    Ok(PromptPage {
        prompts,
        next_after,
    })
}

/// Checks a candidates post: every item is an import row of a preference project (2 or more
/// candidates) or a rating project (exactly 1), with an id (what makes re-posting
/// idempotent) and, on every candidate, the `model` and `checkpoint` that produced it. Errors name the item by its 1-based position (`line`).
pub fn check_candidates(
    project: &Project,
    items: Vec<serde_json::Value>,
) -> Result<Vec<NewItem>, StoreError> {
    if !matches!(project.kind, ProjectKind::Preference | ProjectKind::Rating) {
        return Err(StoreError::Invalid(format!(
            "project {} is an {} project; candidates go to a preference or rating project",
            project.name,
            project.kind.as_str()
        )));
    }
    if items.is_empty() {
        return Err(StoreError::Invalid("items is empty".into()));
    }
    if items.len() > MAX_CANDIDATE_ITEMS {
        return Err(StoreError::Invalid(format!(
            "{} items in one post; at most {MAX_CANDIDATE_ITEMS}",
            items.len()
        )));
    }
    let mut checked = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (i, value) in items.into_iter().enumerate() {
        let line = i + 1;
        let rules = import::ItemRules::of(project);
        let item = import::check_value(value, rules, line).and_then(|item| {
            let Some(id) = &item.external_id else {
                return Err("id is required: it makes posting again idempotent".into());
            };
            if let Some(first) = seen.insert(id.clone(), line) {
                return Err(format!("id {id:?} already used by item {first}"));
            }
            if let Some(c) = item
                .candidates
                .iter()
                .position(|c| c.model.is_none() || c.checkpoint.is_none())
            {
                return Err(format!(
                    "candidates[{c}]: model and checkpoint are required (the provenance)"
                ));
            }
            Ok(item)
        });
        match item {
            Ok(item) => checked.push(item),
            Err(message) => errors.push(RowError { line, message }),
        }
    }
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(import::rows_error(errors))
    }
}

/// Stores the checked items whose id is new to the project; the others are reported as
/// skipped.
pub async fn post_candidates(
    pool: &PgPool,
    project: &Project,
    source: &str,
    items: &[NewItem],
    created_by: Option<i64>,
) -> Result<InsertNewSummary, StoreError> {
    let summary = import::insert_new(pool, project, source, items, created_by).await?;
    tracing::info!(
        project = project.id,
        created = summary.created,
        skipped = summary.skipped,
        "candidates posted"
    );
    Ok(summary)
}
