//! What an upload would import, before it is imported: the same checks as the import (every
//! row, and ids the project already has), nothing written. The import page shows it, then
//! posts the same file to the import itself.

use serde::Serialize;
use sqlx::PgPool;

use crate::domain::MessageRole;
use crate::store::import::{self, NewItem};
use crate::store::projects::Project;
use crate::store::{RowError, StoreError};

/// Rows shown in full.
const FIRST_ROWS: usize = 5;
/// Errors listed (all are counted).
const MAX_ERRORS: usize = 100;
/// Longest prompt text shown per row, in characters.
const PROMPT_CHARS: usize = 200;

/// One of the first rows as the preview shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewRow {
    pub line: usize,
    pub id: Option<String>,
    /// The last user turn, cut to a readable length.
    pub prompt: String,
    pub turns: usize,
    pub candidates: usize,
    pub draft: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportPreview {
    /// Non-empty lines (JSONL) or rows (Parquet) read.
    pub rows: usize,
    /// Items the import would create: all rows, or none when any row is refused.
    pub items: usize,
    pub with_id: usize,
    pub with_draft: usize,
    pub candidates: usize,
    pub first: Vec<PreviewRow>,
    pub errors_total: usize,
    pub errors: Vec<RowError>,
}

fn row(item: &NewItem) -> PreviewRow {
    let messages = item.prompt.messages();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.role == MessageRole::User)
        .map(|m| m.content.as_str())
        .unwrap_or_default();
    let mut prompt: String = last_user.chars().take(PROMPT_CHARS).collect();
    if last_user.chars().count() > PROMPT_CHARS {
        prompt.push('…');
    }
    PreviewRow {
        line: item.line,
        id: item.external_id.clone(),
        prompt,
        turns: messages.len(),
        candidates: item.candidates.len(),
        draft: item.draft.is_some(),
    }
}

/// Checks `data` (JSONL or Parquet) for `project` as [`import::insert`] would.
pub async fn preview(
    pool: &PgPool,
    project: &Project,
    data: Vec<u8>,
) -> Result<ImportPreview, StoreError> {
    let rules = import::ItemRules::of(project);
    let (lines, parquet, parsed) = tokio::task::spawn_blocking(move || {
        let lines = data
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count();
        let parquet = data.starts_with(b"PAR1");
        (lines, parquet, import::parse_upload(&data, rules))
    })
    .await
    .map_err(StoreError::unexpected)?;
    let (items, mut errors) = match parsed {
        Ok(items) => (items, Vec::new()),
        Err(errors) => (Vec::new(), errors),
    };
    if !items.is_empty() {
        let mut tx = pool.begin().await?;
        let taken = import::existing_ids(&mut tx, project, &items).await?;
        errors.extend(
            items
                .iter()
                .filter(|i| i.external_id.as_ref().is_some_and(|id| taken.contains(id)))
                .map(|i| RowError {
                    line: i.line,
                    message: format!(
                        "id {:?} is already in project {}",
                        i.external_id.as_deref().unwrap_or_default(),
                        project.name
                    ),
                }),
        );
    }
    let errors_total = errors.len();
    errors.truncate(MAX_ERRORS);
    // Parquet is binary: its rows are the items read (none when it was refused).
    let rows = if parquet { items.len() } else { lines };
    Ok(ImportPreview {
        rows,
        items: if errors_total == 0 { items.len() } else { 0 },
        with_id: items.iter().filter(|i| i.external_id.is_some()).count(),
        with_draft: items.iter().filter(|i| i.draft.is_some()).count(),
        candidates: items.iter().map(|i| i.candidates.len()).sum(),
        first: items.iter().take(FIRST_ROWS).map(row).collect(),
        errors_total,
        errors,
    })
}
