//! Exporting responses in the shapes of ARCHITECTURE.md, streamed in constant memory: rows
//! come from a database cursor, become JSONL lines, and leave in ~64 KiB chunks through a
//! bounded channel (the HTTP download and `labeler export` read the same channel).
//!
//! - SFT: `{"id", "messages": [...prompt, {"role": "assistant", "content": answer}], "meta"}`
//! - preference pairs (A or B won): `{"id", "prompt", "chosen", "rejected", "meta"}`
//! - ties and both-bad, never dropped: `{"id", "prompt", "candidates": [[..], [..]],
//!   "label": "tie" | "both_bad", "meta"}`, candidates in the order shown.
//! - ratings, TRL's unpaired shape (KTO): `{"id", "prompt", "completion": [{"role":
//!   "assistant", "content"}], "label": true | false, "meta"}`, the aspect scores in
//!   `meta.scores` and the comment in `meta.comment`.
//! - rankings (preference projects that rank all answers): the ranking itself, `{"id",
//!   "prompt", "completions": [[..], ..], "ranks": [1, 2, 2, ..], "meta"}` (in the order
//!   shown), and every pair it implies exactly once: decided pairs in the pairs file (with
//!   `meta.rank_gap`), tied ones in the ties file, so DPO and the reward model take them as
//!   they are.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::types::Json;
use tokio::sync::mpsc;

use crate::domain::{Candidate, Choice, Message, ProjectKind, Ranking};
use crate::store::StoreError;
use crate::store::projects::Project;

pub mod parquet;

const CHUNK_BYTES: usize = 64 * 1024;

/// Which file of a project's export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportPart {
    /// SFT answers.
    Sft,
    /// Preference verdicts with a winner.
    Pairs,
    /// Preference verdicts `tie` and `both_bad`.
    Ties,
    /// Rating projects: thumbs up/down on one answer.
    Ratings,
    /// Ranking projects: each ranking whole (its pairs are in `pairs` and `ties`).
    Rankings,
}

impl ExportPart {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "sft" => Ok(Self::Sft),
            "pairs" => Ok(Self::Pairs),
            "ties" => Ok(Self::Ties),
            "ratings" => Ok(Self::Ratings),
            "rankings" => Ok(Self::Rankings),
            _ => Err(format!(
                "export part {s:?} is not one of: sft, pairs, ties, ratings, rankings"
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sft => "sft",
            Self::Pairs => "pairs",
            Self::Ties => "ties",
            Self::Ratings => "ratings",
            Self::Rankings => "rankings",
        }
    }
    /// The parts `project` has.
    pub fn for_project(project: &Project) -> &'static [ExportPart] {
        match project.kind {
            ProjectKind::Sft => &[Self::Sft],
            ProjectKind::Preference if project.ranking => {
                &[Self::Pairs, Self::Ties, Self::Rankings]
            }
            ProjectKind::Preference => &[Self::Pairs, Self::Ties],
            ProjectKind::Rating => &[Self::Ratings],
        }
    }
    fn filter(self) -> &'static str {
        match self {
            Self::Sft => "r.answer IS NOT NULL",
            Self::Pairs => "(r.choice IN ('a', 'b') OR r.ranking IS NOT NULL)",
            Self::Ties => "(r.choice IN ('tie', 'both_bad') OR r.ranking IS NOT NULL)",
            Self::Ratings => "r.label IS NOT NULL",
            Self::Rankings => "r.ranking IS NOT NULL",
        }
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    response_id: i64,
    external_id: String,
    username: String,
    created_at: DateTime<Utc>,
    prompt: Json<Vec<Message>>,
    candidates: Json<Vec<Candidate>>,
    item_meta: Value,
    answer: Option<String>,
    choice: Option<String>,
    strength: Option<String>,
    rationale: Option<String>,
    label: Option<bool>,
    scores: Option<Value>,
    comment: Option<String>,
    ranking: Option<Vec<i16>>,
    shown: Vec<i16>,
    time_spent_ms: Option<i64>,
    review_status: String,
    version: i32,
}

fn assistant(content: &str) -> Value {
    json!([{"role": "assistant", "content": content}])
}

fn provenance(c: &Candidate, index: i16) -> Value {
    json!({"index": index, "model": c.model, "checkpoint": c.checkpoint, "sampling": c.sampling})
}

/// The JSONL records of one response: one, or for a ranking, its pairs or ties (maybe none).
fn records(project: &Project, part: ExportPart, row: &Row) -> Result<Vec<Value>, String> {
    match &row.ranking {
        Some(ranks) => ranking_records(project, part, row, ranks),
        None => record(project, part, row).map(|r| vec![r]),
    }
}

/// What every record's `meta` carries: who, when, where from, the review state.
fn common_meta(project: &Project, row: &Row) -> Value {
    json!({
        "annotator": row.username,
        "time": row.created_at.to_rfc3339(),
        "project": project.name,
        "task": project.kind.as_str(),
        "item": row.external_id,
        "response_id": row.response_id,
        "time_spent_ms": row.time_spent_ms,
        "item_meta": row.item_meta,
        "review": {"status": row.review_status, "version": row.version},
    })
}

/// One JSONL record (without the newline).
fn record(project: &Project, part: ExportPart, row: &Row) -> Result<Value, String> {
    let id = format!("{}/{}/{}", project.name, row.external_id, row.username);
    let mut meta = common_meta(project, row);
    if part == ExportPart::Sft {
        let answer = row.answer.as_deref().ok_or("sft response without answer")?;
        let mut messages = serde_json::to_value(&row.prompt.0).map_err(|e| e.to_string())?;
        if let (Some(list), Value::Array(tail)) = (messages.as_array_mut(), assistant(answer)) {
            list.extend(tail);
        }
        return Ok(json!({"id": id, "messages": messages, "meta": meta}));
    }
    if part == ExportPart::Ratings {
        return rating_record(id, meta, row);
    }
    let choice = row
        .choice
        .as_deref()
        .and_then(Choice::parse)
        .ok_or("preference response without a valid choice")?;
    let [left, right] = <[i16; 2]>::try_from(row.shown.as_slice())
        .map_err(|_| format!("shown order {:?} is not a pair", row.shown))?;
    let cand = |i: i16| {
        row.candidates
            .0
            .get(i as usize)
            .ok_or_else(|| format!("candidate {i} missing"))
    };
    let (l, r) = (cand(left)?, cand(right)?);
    let m = meta.as_object_mut().ok_or("meta is an object")?;
    m.insert("choice".into(), json!(choice.as_str()));
    m.insert("strength".into(), json!(row.strength));
    m.insert("rationale".into(), json!(row.rationale));
    m.insert("shown_order".into(), json!([left, right]));
    let prompt = serde_json::to_value(&row.prompt.0).map_err(|e| e.to_string())?;
    match choice {
        Choice::A | Choice::B => {
            let ((wi, w), (li, lo)) = if choice == Choice::A {
                ((left, l), (right, r))
            } else {
                ((right, r), (left, l))
            };
            m.insert("chosen_candidate".into(), provenance(w, wi));
            m.insert("rejected_candidate".into(), provenance(lo, li));
            Ok(json!({
                "id": id, "prompt": prompt,
                "chosen": assistant(&w.content), "rejected": assistant(&lo.content),
                "meta": meta,
            }))
        }
        Choice::Tie | Choice::BothBad => {
            m.insert(
                "candidates".into(),
                json!([provenance(l, left), provenance(r, right)]),
            );
            Ok(json!({
                "id": id, "prompt": prompt,
                "candidates": [assistant(&l.content), assistant(&r.content)],
                "label": choice.as_str(),
                "meta": meta,
            }))
        }
    }
}

/// A ranking as `part`: the whole ranking, or each decided pair (pairs) or tied pair (ties),
/// every pair of answers exactly once across the two.
fn ranking_records(
    project: &Project,
    part: ExportPart,
    row: &Row,
    ranks: &[i16],
) -> Result<Vec<Value>, String> {
    if ranks.len() != row.shown.len() {
        return Err(format!(
            "ranking {ranks:?} does not match the shown order {:?}",
            row.shown
        ));
    }
    let base = format!("{}/{}/{}", project.name, row.external_id, row.username);
    let meta = common_meta(project, row);
    let prompt = serde_json::to_value(&row.prompt.0).map_err(|e| e.to_string())?;
    let cand = |pos: usize| {
        let index = row.shown[pos];
        row.candidates
            .0
            .get(index as usize)
            .map(|c| (index, c))
            .ok_or_else(|| format!("candidate {index} missing"))
    };
    let with = |mut meta: Value, extra: Value| {
        if let (Some(m), Value::Object(extra)) = (meta.as_object_mut(), extra) {
            m.extend(extra);
        }
        meta
    };
    let ranking = json!({"ranks": ranks, "shown_order": row.shown, "rationale": row.rationale});
    if part == ExportPart::Rankings {
        let mut completions = Vec::with_capacity(ranks.len());
        let mut provenances = Vec::with_capacity(ranks.len());
        for pos in 0..ranks.len() {
            let (index, c) = cand(pos)?;
            completions.push(assistant(&c.content));
            provenances.push(provenance(c, index));
        }
        let meta = with(meta, json!({"ranking": ranking, "candidates": provenances}));
        return Ok(vec![json!({
            "id": base, "prompt": prompt, "completions": completions, "ranks": ranks,
            "meta": meta,
        })]);
    }
    let mut out = Vec::new();
    for pair in Ranking::from_stored(ranks.to_vec()).pairs() {
        let tie = pair.gap == 0;
        if tie != (part == ExportPart::Ties) {
            continue;
        }
        let (wi, w) = cand(pair.better)?;
        let (li, lo) = cand(pair.worse)?;
        if tie {
            let meta = with(
                meta.clone(),
                json!({"choice": "tie", "rank_gap": 0, "ranking": ranking,
                       "candidates": [provenance(w, wi), provenance(lo, li)]}),
            );
            out.push(json!({
                "id": format!("{base}/{wi}={li}"), "prompt": prompt,
                "candidates": [assistant(&w.content), assistant(&lo.content)],
                "label": "tie", "meta": meta,
            }));
        } else {
            let meta = with(
                meta.clone(),
                json!({"rank_gap": pair.gap, "ranking": ranking,
                       "chosen_candidate": provenance(w, wi),
                       "rejected_candidate": provenance(lo, li)}),
            );
            out.push(json!({
                "id": format!("{base}/{wi}>{li}"), "prompt": prompt,
                "chosen": assistant(&w.content), "rejected": assistant(&lo.content),
                "meta": meta,
            }));
        }
    }
    Ok(out)
}

/// A rating in TRL's unpaired shape.
fn rating_record(id: String, mut meta: Value, row: &Row) -> Result<Value, String> {
    let label = row.label.ok_or("rating response without a label")?;
    let index = *row
        .shown
        .first()
        .ok_or("rating response without its answer")?;
    let answer = row
        .candidates
        .0
        .get(index as usize)
        .ok_or_else(|| format!("candidate {index} missing"))?;
    let m = meta.as_object_mut().ok_or("meta is an object")?;
    m.insert(
        "scores".into(),
        row.scores.clone().unwrap_or_else(|| json!({})),
    );
    m.insert("comment".into(), json!(row.comment));
    m.insert("candidate".into(), provenance(answer, index));
    let prompt = serde_json::to_value(&row.prompt.0).map_err(|e| e.to_string())?;
    Ok(json!({
        "id": id, "prompt": prompt, "completion": assistant(&answer.content),
        "label": label, "meta": meta,
    }))
}

/// Starts streaming `part` of `project`'s responses as JSONL; read chunks from the receiver
/// until it closes. An error mid-way arrives as the last message. Rejected responses are
/// never exported; `accepted_only` also leaves out those not reviewed yet.
pub fn spawn_jsonl(
    pool: PgPool,
    project: Project,
    part: ExportPart,
    accepted_only: bool,
) -> mpsc::Receiver<Result<Vec<u8>, String>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if let Err(e) = produce(&pool, &project, part, accepted_only, &tx).await {
            tracing::error!(project = %project.name, part = part.as_str(), error = %e, "export failed");
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

async fn produce(
    pool: &PgPool,
    project: &Project,
    part: ExportPart,
    accepted_only: bool,
    tx: &mpsc::Sender<Result<Vec<u8>, String>>,
) -> Result<(), String> {
    let review = if accepted_only {
        "r.review_status = 'accepted'"
    } else {
        "r.review_status <> 'rejected'"
    };
    let sql = format!(
        "SELECT r.id AS response_id, i.external_id, u.username, r.created_at, i.prompt, \
                i.candidates, i.meta AS item_meta, r.answer, r.choice, r.strength, r.rationale, \
                r.label, r.scores, r.comment, r.ranking, r.shown, r.time_spent_ms, r.review_status, r.version \
         FROM responses r JOIN items i ON i.id = r.item_id JOIN users u ON u.id = r.user_id \
         WHERE r.project_id = $1 AND {} AND {review} ORDER BY r.id",
        part.filter()
    );
    let mut rows = sqlx::query_as::<_, Row>(&sql).bind(project.id).fetch(pool);
    let mut buf = Vec::with_capacity(CHUNK_BYTES * 2);
    while let Some(row) = rows.try_next().await.map_err(|e| e.to_string())? {
        let values = records(project, part, &row)
            .map_err(|e| format!("response {}: {e}", row.response_id))?;
        for value in values {
            serde_json::to_writer(&mut buf, &value).map_err(|e| e.to_string())?;
            buf.push(b'\n');
        }
        if buf.len() >= CHUNK_BYTES {
            let chunk = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK_BYTES * 2));
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(()); // the reader went away
            }
        }
    }
    if !buf.is_empty() {
        let _ = tx.send(Ok(buf)).await;
    }
    Ok(())
}

/// Writes a part to `path` (the CLI); returns the number of records.
pub async fn write_jsonl(
    pool: &PgPool,
    project: &Project,
    part: ExportPart,
    accepted_only: bool,
    path: &std::path::Path,
) -> Result<usize, StoreError> {
    use std::io::Write;
    let file = std::fs::File::create(path)
        .map_err(|e| StoreError::unexpected(anyhow::anyhow!("creating {}: {e}", path.display())))?;
    let mut out = std::io::BufWriter::new(file);
    let mut rx = spawn_jsonl(pool.clone(), project.clone(), part, accepted_only);
    let mut records = 0;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(|e| StoreError::unexpected(anyhow::anyhow!(e)))?;
        records += chunk.iter().filter(|&&b| b == b'\n').count();
        out.write_all(&chunk).map_err(|e| {
            StoreError::unexpected(anyhow::anyhow!("writing {}: {e}", path.display()))
        })?;
    }
    out.flush()
        .map_err(|e| StoreError::unexpected(anyhow::anyhow!("writing {}: {e}", path.display())))?;
    Ok(records)
}
