//! Importing items from JSONL or Parquet: every row is checked first (errors carry line
//! numbers), then the whole upload goes in one transaction with UNNEST bulk inserts, so a bad file imports
//! nothing and a good one imports 100k rows in seconds.
//!
//! One JSON object per line:
//! `{"id"?: str, "prompt": str | [{"role","content"}], "draft"?: str, "candidates"?:
//! [{"content", "model"?, "checkpoint"?, "sampling"?}], "meta"?: {..}}`. SFT items may carry a
//! model `draft`; preference items need two or more `candidates`, rating items exactly one.
//!
//! Model-written text (the candidates' `content`, an SFT `draft`) with U+FFFD, the
//! replacement character, is refused: it is what a decoder writes for bytes that were not
//! valid UTF-8, so the generator emitted broken text. A row that means it (a model asked to
//! write one) says `"allow_replacement_char": true`.

use std::collections::HashMap;

use serde::Deserialize;
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::{Candidate, Conversation, Message, ProjectKind};
use crate::store::projects::Project;
use crate::store::{RowError, StoreError, is_unique_violation};

/// Most errors reported for one upload; the count of all of them is in the message.
pub const MAX_REPORTED_ERRORS: usize = 100;
const INSERT_CHUNK: usize = 5_000;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptInput {
    Text(String),
    Messages(Vec<Message>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRow {
    #[serde(default)]
    id: Option<String>,
    prompt: PromptInput,
    #[serde(default)]
    draft: Option<String>,
    #[serde(default)]
    candidates: Option<Vec<Candidate>>,
    #[serde(default)]
    meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// The model-written text may contain U+FFFD on purpose.
    #[serde(default)]
    allow_replacement_char: Option<bool>,
}

/// Refuses model-written `text` that holds U+FFFD, naming where the first one is.
fn check_model_text(text: &str, allowed: bool) -> Result<(), String> {
    match text.chars().position(|c| c == char::REPLACEMENT_CHARACTER) {
        Some(at) if !allowed => Err(format!(
            "contains U+FFFD (the replacement character) at character {at}: the model's \
             output was not valid UTF-8; fix the generator, or set \
             \"allow_replacement_char\": true on the row if it is intended"
        )),
        _ => Ok(()),
    }
}

/// A checked row, ready to insert.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub line: usize,
    pub external_id: Option<String>,
    pub prompt: Conversation,
    pub draft: Option<String>,
    pub candidates: Vec<Candidate>,
    pub meta: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct ImportSummary {
    pub import_id: i64,
    pub items: usize,
}

/// What a project accepts: its kind, and for preference projects whether its items are
/// ranked (then 2 to 9 candidates, all shown at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemRules {
    pub kind: ProjectKind,
    pub ranking: bool,
}

impl ItemRules {
    pub fn of(project: &Project) -> Self {
        Self {
            kind: project.kind,
            ranking: project.ranking,
        }
    }
}

impl From<ProjectKind> for ItemRules {
    fn from(kind: ProjectKind) -> Self {
        Self {
            kind,
            ranking: false,
        }
    }
}

fn check_row(row: ImportRow, rules: ItemRules, line: usize) -> Result<NewItem, String> {
    let kind = rules.kind;
    let prompt = match row.prompt {
        PromptInput::Text(t) => Conversation::from_user_text(t),
        PromptInput::Messages(m) => Conversation::parse(m),
    }
    .map_err(|e| format!("prompt: {e}"))?;
    if let Some(id) = &row.id
        && (id.is_empty() || id.len() > 200 || id.contains('\0'))
    {
        return Err("id must be 1-200 characters without NUL".into());
    }
    if let Some(meta) = &row.meta {
        crate::domain::check_json_text(&serde_json::Value::Object(meta.clone()))
            .map_err(|e| format!("meta: {e}"))?;
    }
    let candidates = row.candidates.unwrap_or_default();
    let replacement_allowed = row.allow_replacement_char.unwrap_or(false);
    match kind {
        ProjectKind::Sft => {
            if !candidates.is_empty() {
                return Err(
                    "candidates belong to preference and rating projects; this is an sft project"
                        .into(),
                );
            }
            if let Some(d) = &row.draft {
                crate::domain::check_content(d)
                    .and_then(|()| check_model_text(d, replacement_allowed))
                    .map_err(|e| format!("draft: {e}"))?;
            }
        }
        ProjectKind::Preference | ProjectKind::Rating => {
            if row.draft.is_some() {
                return Err(format!(
                    "draft belongs to sft projects; this is a {} project",
                    kind.as_str()
                ));
            }
            if kind == ProjectKind::Rating && candidates.len() != 1 {
                return Err(format!(
                    "a rating item needs exactly 1 candidate (the answer to rate), found {}",
                    candidates.len()
                ));
            }
            if kind == ProjectKind::Preference && candidates.len() < 2 {
                return Err(format!(
                    "a preference item needs at least 2 candidates, found {}",
                    candidates.len()
                ));
            }
            if rules.ranking && candidates.len() > crate::domain::MAX_RANKED {
                return Err(format!(
                    "a ranking item has at most {} candidates (all are ranked at once), found {}",
                    crate::domain::MAX_RANKED,
                    candidates.len()
                ));
            }
            if candidates.len() > 16 {
                return Err(format!("at most 16 candidates, found {}", candidates.len()));
            }
            for (i, c) in candidates.iter().enumerate() {
                c.check()
                    .and_then(|()| check_model_text(&c.content, replacement_allowed))
                    .map_err(|e| format!("candidates[{i}]: {e}"))?;
            }
        }
    }
    Ok(NewItem {
        line,
        external_id: row.id,
        prompt,
        draft: row.draft,
        candidates,
        meta: row.meta.unwrap_or_default(),
    })
}

/// Checks one item given as a JSON value (a row of a JSON request body); `line` is its
/// 1-based position there.
pub fn check_value(
    value: serde_json::Value,
    rules: impl Into<ItemRules>,
    line: usize,
) -> Result<NewItem, String> {
    let row: ImportRow =
        serde_json::from_value(value).map_err(|e| format!("not a valid item: {e}"))?;
    check_row(row, rules.into(), line)
}

/// Checks every line of a JSONL upload. Blank lines are skipped; ids must be unique.
pub fn parse_jsonl(
    data: &[u8],
    rules: impl Into<ItemRules>,
) -> Result<Vec<NewItem>, Vec<RowError>> {
    let rules = rules.into();
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let checked = serde_json::from_slice::<ImportRow>(raw)
            .map_err(|e| format!("not a valid item: {e}"))
            .and_then(|row| check_row(row, rules, line));
        match checked {
            Ok(item) => {
                if let Some(id) = &item.external_id
                    && let Some(first) = seen.insert(id.clone(), line)
                {
                    errors.push(RowError {
                        line,
                        message: format!("id {id:?} already used on line {first}"),
                    });
                    continue;
                }
                items.push(item);
            }
            Err(message) => errors.push(RowError { line, message }),
        }
    }
    if items.is_empty() && errors.is_empty() {
        errors.push(RowError {
            line: 0,
            message: "the file has no items".into(),
        });
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(errors)
    }
}

/// Magic bytes at the start (and end) of every Parquet file.
const PARQUET_MAGIC: &[u8] = b"PAR1";

/// Checks an upload: Parquet (recognised by its magic bytes) or JSONL. Parquet rows are
/// turned into the same JSON objects (row `n` reported as line `n`), so both formats share
/// one set of rules: columns `id`, `prompt` (text or list of `{role, content}` structs),
/// `draft`, `candidates` (list of structs), `meta` (struct); nulls count as absent.
pub fn parse_upload(
    data: &[u8],
    rules: impl Into<ItemRules>,
) -> Result<Vec<NewItem>, Vec<RowError>> {
    let rules = rules.into();
    if data.starts_with(PARQUET_MAGIC) {
        let jsonl =
            parquet_to_jsonl(data).map_err(|message| vec![RowError { line: 0, message }])?;
        parse_jsonl(&jsonl, rules)
    } else {
        parse_jsonl(data, rules)
    }
}

fn parquet_to_jsonl(data: &[u8]) -> Result<Vec<u8>, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bytes = actix_web::web::Bytes::copy_from_slice(data);
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let mut out = Vec::new();
    let mut writer = arrow_json::LineDelimitedWriter::new(&mut out);
    for batch in reader {
        let batch = batch.map_err(|e| format!("reading Parquet: {e}"))?;
        writer
            .write(&batch)
            .map_err(|e| format!("converting Parquet rows: {e}"))?;
    }
    writer
        .finish()
        .map_err(|e| format!("converting Parquet rows: {e}"))?;
    Ok(out)
}

/// Turns row errors into the 400 answer: the first [`MAX_REPORTED_ERRORS`] and a count.
pub fn rows_error(mut errors: Vec<RowError>) -> StoreError {
    let total = errors.len();
    errors.truncate(MAX_REPORTED_ERRORS);
    let first = errors
        .first()
        .map(|e| format!("line {}: {}", e.line, e.message))
        .unwrap_or_default();
    StoreError::Rows {
        message: format!("{total} bad row(s); nothing was imported. First: {first}"),
        errors,
    }
}

/// Inserts checked items in one transaction; an id already in the project rejects the whole
/// upload (400 with the lines), so an import never half-applies.
pub async fn insert(
    pool: &PgPool,
    project: &Project,
    source_name: &str,
    items: &[NewItem],
    created_by: Option<i64>,
) -> Result<ImportSummary, StoreError> {
    let mut tx = pool.begin().await?;
    let taken = existing_ids(&mut tx, project, items).await?;
    if !taken.is_empty() {
        let errors = items
            .iter()
            .filter(|i| i.external_id.as_ref().is_some_and(|id| taken.contains(id)))
            .map(|i| RowError {
                line: i.line,
                message: format!(
                    "id {:?} is already in project {}",
                    i.external_id.as_deref().unwrap_or_default(),
                    project.name
                ),
            })
            .collect();
        return Err(rows_error(errors));
    }
    let import_id = new_import(&mut tx, project, source_name, items.len(), created_by).await?;
    let all: Vec<&NewItem> = items.iter().collect();
    insert_rows(&mut tx, project, import_id, &all, OnExisting::Fail).await?;
    tx.commit().await?;
    Ok(ImportSummary {
        import_id,
        items: items.len(),
    })
}

/// What [`insert_new`] did: the items it created and the ids it left alone because the
/// project already had them.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct InsertNewSummary {
    /// None when every item was already there (no import is recorded then).
    pub import_id: Option<i64>,
    pub created: usize,
    pub skipped: usize,
    pub skipped_ids: Vec<String>,
}

/// Inserts the items whose id the project does not have yet, in one transaction, and skips
/// the others (without comparing them): posting the same items twice creates them once. Every
/// item must carry an id. Safe against a concurrent post of the same ids: the unique index
/// decides, and the loser counts the item as skipped.
pub async fn insert_new(
    pool: &PgPool,
    project: &Project,
    source_name: &str,
    items: &[NewItem],
    created_by: Option<i64>,
) -> Result<InsertNewSummary, StoreError> {
    if let Some(item) = items.iter().find(|i| i.external_id.is_none()) {
        return Err(StoreError::unexpected(anyhow::anyhow!(
            "insert_new: item on line {} has no id",
            item.line
        )));
    }
    let mut tx = pool.begin().await?;
    let taken = existing_ids(&mut tx, project, items).await?;
    let fresh: Vec<&NewItem> = items
        .iter()
        .filter(|i| i.external_id.as_ref().is_some_and(|id| !taken.contains(id)))
        .collect();
    let mut import_id = None;
    let mut created = std::collections::HashSet::new();
    if !fresh.is_empty() {
        let id = new_import(&mut tx, project, source_name, fresh.len(), created_by).await?;
        created = insert_rows(&mut tx, project, id, &fresh, OnExisting::Skip).await?;
        if created.len() != fresh.len() {
            // A concurrent post took some of these ids between the check and the insert.
            sqlx::query("UPDATE imports SET rows = $2 WHERE id = $1")
                .bind(id)
                .bind(i32::try_from(created.len()).map_err(StoreError::unexpected)?)
                .execute(&mut *tx)
                .await?;
        }
        import_id = Some(id);
    }
    tx.commit().await?;
    let skipped_ids: Vec<String> = items
        .iter()
        .filter_map(|i| i.external_id.clone())
        .filter(|id| !created.contains(id))
        .collect();
    Ok(InsertNewSummary {
        import_id: import_id.filter(|_| !created.is_empty()),
        created: created.len(),
        skipped: skipped_ids.len(),
        skipped_ids,
    })
}

/// The ids of `items` that the project already has.
pub(crate) async fn existing_ids(
    tx: &mut Transaction<'_, Postgres>,
    project: &Project,
    items: &[NewItem],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let given: Vec<&str> = items
        .iter()
        .filter_map(|i| i.external_id.as_deref())
        .collect();
    let taken: Vec<String> = sqlx::query_scalar(
        "SELECT external_id FROM items WHERE project_id = $1 AND external_id = ANY($2)",
    )
    .bind(project.id)
    .bind(&given)
    .fetch_all(&mut **tx)
    .await?;
    Ok(taken.into_iter().collect())
}

async fn new_import(
    tx: &mut Transaction<'_, Postgres>,
    project: &Project,
    source_name: &str,
    rows: usize,
    created_by: Option<i64>,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO imports (project_id, source_name, rows, created_by) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(project.id)
    .bind(source_name)
    .bind(i32::try_from(rows).map_err(StoreError::unexpected)?)
    .bind(created_by)
    .fetch_one(&mut **tx)
    .await?)
}

/// An id that is already in the project, met at insert time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnExisting {
    /// Fail the whole transaction with 409.
    Fail,
    /// Leave the stored item alone and go on.
    Skip,
}

/// UNNEST bulk inserts in chunks. With [`OnExisting::Skip`], returns the external ids it
/// inserted; with [`OnExisting::Fail`] every item goes in or the call fails, and the set is
/// empty.
async fn insert_rows(
    tx: &mut Transaction<'_, Postgres>,
    project: &Project,
    import_id: i64,
    items: &[&NewItem],
    on_existing: OnExisting,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let conflict = match on_existing {
        OnExisting::Fail => "",
        OnExisting::Skip => {
            "ON CONFLICT (project_id, external_id) DO NOTHING RETURNING external_id"
        }
    };
    let sql = format!(
        "INSERT INTO items (project_id, import_id, overlap, external_id, prompt, draft, \
                            candidates, meta) \
         SELECT $1, $2, $3, x.id, x.prompt::jsonb, x.draft, x.candidates::jsonb, x.meta::jsonb \
         FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
              AS x(id, prompt, draft, candidates, meta) \
         {conflict}"
    );
    let mut inserted = std::collections::HashSet::with_capacity(items.len());
    for chunk in items.chunks(INSERT_CHUNK) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut prompts = Vec::with_capacity(chunk.len());
        let mut drafts = Vec::with_capacity(chunk.len());
        let mut candidates = Vec::with_capacity(chunk.len());
        let mut metas = Vec::with_capacity(chunk.len());
        for item in chunk {
            ids.push(
                item.external_id
                    .clone()
                    .unwrap_or_else(|| format!("{import_id}-{}", item.line)),
            );
            prompts.push(serde_json::to_string(&item.prompt).map_err(StoreError::unexpected)?);
            drafts.push(item.draft.clone());
            candidates
                .push(serde_json::to_string(&item.candidates).map_err(StoreError::unexpected)?);
            metas.push(serde_json::to_string(&item.meta).map_err(StoreError::unexpected)?);
        }
        let query = sqlx::query(&sql)
            .bind(project.id)
            .bind(import_id)
            .bind(project.overlap)
            .bind(&ids)
            .bind(&prompts)
            .bind(&drafts)
            .bind(&candidates)
            .bind(&metas);
        // Only the skipping insert needs the ids back; an import is all or nothing.
        let rows = match on_existing {
            OnExisting::Skip => query.fetch_all(&mut **tx).await.and_then(|rows| {
                rows.iter()
                    .map(|r| sqlx::Row::try_get::<String, _>(r, 0))
                    .collect::<Result<Vec<_>, _>>()
            }),
            OnExisting::Fail => query.execute(&mut **tx).await.map(|_| Vec::new()),
        }
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!(
                    "an item id of this upload is already in project {}; nothing was imported",
                    project.name
                ))
            } else {
                e.into()
            }
        })?;
        inserted.extend(rows);
    }
    Ok(inserted)
}
