//! Model pre-labels: a reward model's or checkpoint's suggested verdict per item (a thumb for
//! rating items, the winning candidate for preference items), posted through the API, shown
//! to annotators before they answer (`shown`) or only after (`hidden`: measured without
//! anchoring them), and compared with the humans' verdicts (human-vs-model kappa).

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::domain::ProjectKind;
use crate::stats::agreement;
use crate::store::StoreError;
use crate::store::accounts::User;
use crate::store::projects::Project;
use crate::store::queue::ANSWER_LABELS;

/// When annotators see a project's pre-labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrelabelMode {
    /// Not shown at all.
    Off,
    /// Shown once the annotator has answered the item.
    Hidden,
    /// Shown with the item.
    Shown,
}

impl PrelabelMode {
    /// The stored column (`NULL` for off).
    pub fn stored(self) -> Option<&'static str> {
        match self {
            Self::Off => None,
            Self::Hidden => Some("hidden"),
            Self::Shown => Some("shown"),
        }
    }
}

/// One suggestion as posted: the item by its id, and `label` (rating) or `winner` (a
/// candidate index, preference).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrelabelMark {
    pub id: String,
    #[serde(default)]
    pub label: Option<bool>,
    #[serde(default)]
    pub winner: Option<i16>,
}

/// Stores (or replaces) the suggestions of `source` for `project`'s items, all or none;
/// returns how many. Posting the same body again changes nothing.
pub async fn post(
    pool: &PgPool,
    project: &Project,
    source: &str,
    marks: &[PrelabelMark],
) -> Result<usize, StoreError> {
    if project.kind == ProjectKind::Sft {
        return Err(StoreError::Invalid(
            "pre-labels belong to preference and rating projects".into(),
        ));
    }
    if source.trim().is_empty() || source.len() > 200 {
        return Err(StoreError::Invalid("source: 1 to 200 characters".into()));
    }
    crate::domain::check_text(source).map_err(|e| StoreError::Invalid(format!("source: {e}")))?;
    let mut tx = pool.begin().await?;
    for (i, m) in marks.iter().enumerate() {
        let wrong = |what: &str| StoreError::Invalid(format!("items[{i}]: {what}"));
        let (label, winner) = match (project.kind, m.label, m.winner) {
            (ProjectKind::Rating, Some(label), None) => (Some(label), None),
            (ProjectKind::Rating, _, _) => {
                return Err(wrong("a rating suggestion is \"label\": true or false"));
            }
            (_, None, Some(winner)) => (None, Some(winner)),
            _ => {
                return Err(wrong(
                    "a preference suggestion is \"winner\": a candidate index",
                ));
            }
        };
        let n = sqlx::query(
            "INSERT INTO prelabels (item_id, project_id, source, label, winner) \
             SELECT i.id, i.project_id, $3, $4, $5 FROM items i \
             WHERE i.project_id = $1 AND i.external_id = $2 \
               AND ($5::smallint IS NULL OR ($5 >= 0 AND $5 < jsonb_array_length(i.candidates))) \
             ON CONFLICT (item_id) DO UPDATE SET source = EXCLUDED.source, \
               label = EXCLUDED.label, winner = EXCLUDED.winner, created_at = now()",
        )
        .bind(project.id)
        .bind(&m.id)
        .bind(source)
        .bind(label)
        .bind(winner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(wrong(&format!(
                "no item {:?} in this project{}",
                m.id,
                winner.map_or(String::new(), |w| format!(" with a candidate {w}"))
            )));
        }
    }
    tx.commit().await?;
    Ok(marks.len())
}

/// A suggestion as the annotator sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Suggestion {
    pub source: String,
    /// Rating: true = thumbs up.
    pub label: Option<bool>,
    /// Preference: the label (A, B, ...) of the suggested winner among the answers shown,
    /// or `None` when it was not among them.
    pub winner: Option<&'static str>,
}

/// The suggestion for the caller's assignment: `None` when the project shows none, the item
/// has none, or (mode `hidden`) the caller has not answered it yet.
pub async fn for_assignment(
    pool: &PgPool,
    assignment_id: i64,
    user: &User,
) -> Result<Option<Suggestion>, StoreError> {
    // The project's mode, the assignment's status and shown order, the suggestion.
    type Row = (
        Option<String>,
        String,
        Vec<i16>,
        String,
        Option<bool>,
        Option<i16>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT p.prelabels, a.status, a.shown, l.source, l.label, l.winner \
             FROM assignments a JOIN projects p ON p.id = a.project_id \
             JOIN prelabels l ON l.item_id = a.item_id \
             WHERE a.id = $1 AND a.user_id = $2",
    )
    .bind(assignment_id)
    .bind(user.id)
    .fetch_optional(pool)
    .await?;
    let Some((mode, status, shown, source, label, winner)) = row else {
        return Ok(None);
    };
    let visible = match mode.as_deref() {
        Some("shown") => true,
        Some("hidden") => status == "submitted",
        _ => false,
    };
    if !visible {
        return Ok(None);
    }
    let winner = winner.and_then(|w| {
        shown
            .iter()
            .position(|&s| s == w)
            .and_then(|pos| ANSWER_LABELS.get(pos).copied())
    });
    Ok(Some(Suggestion {
        source,
        label,
        winner,
    }))
}

/// Human-vs-model agreement: every human verdict (not rejected) on an item with a
/// suggestion, paired with it; Cohen's kappa of the pooled pairs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelAgreement {
    pub compared: usize,
    /// Share of human verdicts equal to the model's.
    pub agreement: Option<f64>,
    pub kappa: Option<f64>,
}

pub async fn human_vs_model(
    pool: &PgPool,
    project: &Project,
) -> Result<Option<ModelAgreement>, StoreError> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT r.id, \
           CASE WHEN r.label THEN 'up' WHEN NOT r.label THEN 'down' \
                WHEN r.choice = 'a' THEN 'candidate ' || r.shown[1] \
                WHEN r.choice = 'b' THEN 'candidate ' || r.shown[2] ELSE r.choice END, \
           CASE WHEN l.label THEN 'up' WHEN NOT l.label THEN 'down' \
                ELSE 'candidate ' || l.winner END \
         FROM responses r JOIN prelabels l ON l.item_id = r.item_id \
         WHERE r.project_id = $1 AND r.review_status <> 'rejected' \
           AND (r.label IS NOT NULL OR r.choice IS NOT NULL)",
    )
    .bind(project.id)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let humans: Vec<(i64, &str)> = rows.iter().map(|(id, h, _)| (*id, h.as_str())).collect();
    let model: Vec<(i64, &str)> = rows.iter().map(|(id, _, m)| (*id, m.as_str())).collect();
    let (compared, agreement, kappa) = agreement::cohen_kappa(&humans, &model);
    Ok(Some(ModelAgreement {
        compared,
        agreement,
        kappa,
    }))
}
