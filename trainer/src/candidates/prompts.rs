//! Where `generate-candidates` takes its prompts: a labeler project's items, or a JSONL file
//! in the labeler's import shape. Each prompt gets a key that names it stably across runs,
//! from which its comparison item's id is made.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result, bail};
use format::Message;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::candidates::labeler_client::PromptRow;

/// Longest item id the labeler accepts.
const MAX_ID_LEN: usize = 200;

/// A prompt to answer, with a key that names it stably across runs.
#[derive(Debug, Clone)]
pub struct SourcePrompt {
    pub key: String,
    pub messages: Vec<Message>,
    /// Where it came from, copied into the item's meta.
    pub source: Value,
}

impl SourcePrompt {
    /// The comparison item's id for answers from `checkpoint`.
    pub fn item_id(&self, checkpoint: &str) -> String {
        let id = format!("{}@{checkpoint}", self.key);
        if id.len() <= MAX_ID_LEN {
            id
        } else {
            format!("sha-{}@{checkpoint}", short_hash(self.key.as_bytes()))
        }
    }
}

/// Prompts of a labeler project.
pub fn prompts_from_labeler(project: i64, rows: Vec<PromptRow>) -> Vec<SourcePrompt> {
    rows.into_iter()
        .map(|row| SourcePrompt {
            key: format!("item-{}", row.item_id),
            messages: row.prompt,
            source: json!({"project": project, "item_id": row.item_id,
                           "external_id": row.external_id}),
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptText {
    Text(String),
    Messages(Vec<Message>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptLine {
    #[serde(default)]
    id: Option<String>,
    prompt: PromptText,
    #[serde(default)]
    meta: Option<Map<String, Value>>,
}

/// Prompts of a JSONL file: `{"id"?, "prompt": "text" | [{"role", "content"}], "meta"?}` per
/// line (the labeler's import rows without answers). Without an id a prompt's key is a hash
/// of its messages. Every bad line is reported, with its number, before anything runs.
pub fn prompts_from_file(path: &Path) -> Result<Vec<SourcePrompt>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let name = path.display().to_string();
    let mut prompts = Vec::new();
    let mut errors = Vec::new();
    let mut keys = HashSet::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("reading {name}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: PromptLine = match serde_json::from_str(&line) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("{name}:{n}: not a prompt line: {e}"));
                continue;
            }
        };
        let messages = match parsed.prompt {
            PromptText::Text(text) => vec![Message::new(format::Role::User, text)],
            PromptText::Messages(m) => m,
        };
        if messages.last().map(|m| m.role) != Some(format::Role::User) {
            errors.push(format!("{name}:{n}: the prompt must end with a user turn"));
            continue;
        }
        let key = match &parsed.id {
            Some(id) if !id.is_empty() && !id.contains('\0') => id.clone(),
            Some(_) => {
                errors.push(format!("{name}:{n}: id must be non-empty text"));
                continue;
            }
            None => format!(
                "sha-{}",
                short_hash(&serde_json::to_vec(&messages).context("hashing a prompt")?)
            ),
        };
        if !keys.insert(key.clone()) {
            errors.push(format!("{name}:{n}: prompt {key:?} appears twice"));
            continue;
        }
        prompts.push(SourcePrompt {
            key,
            messages,
            source: json!({"file": name, "line": n, "id": parsed.id, "meta": parsed.meta}),
        });
    }
    if !errors.is_empty() {
        let shown: Vec<&str> = errors.iter().take(10).map(String::as_str).collect();
        bail!(
            "{} bad line(s) in {name}:\n  {}",
            errors.len(),
            shown.join("\n  ")
        );
    }
    Ok(prompts)
}

fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}
