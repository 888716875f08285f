//! Where `trainer grpo` takes its prompts (`data.train`, `data.valid`): an `sft` dataset
//! (each example up to its first supervised token), a JSONL file in the labeler's import
//! shape (`{"id"?, "prompt": "text" | [messages], "meta"?: {"reference"?}}`), or a labeler
//! project through its JSON API (`http://HOST:PORT/projects/N`, the token in
//! `LABELER_TOKEN`), as `generate-candidates` reads them. File and labeler prompts are
//! rendered with the chat template of `init_from`'s `tokenizer.json` (starting with BOS only
//! if `init_from` was trained with it, as `generate-candidates` renders them); a file's
//! `meta.reference` is what `reference` rules look for in the answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use format::{ChatTemplate, TokenizerInfo};

use crate::candidates::labeler_client::LabelerClient;
use crate::candidates::prompts::{SourcePrompt, prompts_from_file, prompts_from_labeler};
use crate::io::checkpoint::TOKENIZER_FILE;
use crate::io::load::document_ids;
use crate::model::tokenizer::TextTokenizer;
use crate::post::data::{self, Rows};

/// How long the labeler may take to answer one page of prompts.
const LABELER_TIMEOUT: Duration = Duration::from_secs(120);

/// A prompt to answer: its tokens (ending with the assistant marker) and, when known, the
/// text a right answer contains.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpoPrompt {
    pub ids: Vec<u32>,
    pub reference: Option<String>,
}

/// What `data.train` or `data.valid` names.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptSource {
    Dataset(PathBuf),
    File(PathBuf),
    Labeler { base_url: String, project: i64 },
}

impl PromptSource {
    /// `http(s)://BASE/projects/N` is a labeler project, a path ending in `.jsonl` a file,
    /// anything else an sft dataset directory.
    pub fn parse(path: &Path) -> Result<Self> {
        let text = path.to_string_lossy();
        if text.starts_with("http://") || text.starts_with("https://") {
            let trimmed = text.trim_end_matches('/');
            let (base, id) = trimmed
                .rsplit_once("/projects/")
                .with_context(|| format!("{text}: a labeler source is BASE_URL/projects/ID"))?;
            let project = id
                .parse::<i64>()
                .ok()
                .filter(|&p| p > 0)
                .with_context(|| format!("{text}: {id:?} is not a project id"))?;
            return Ok(Self::Labeler {
                base_url: base.to_string(),
                project,
            });
        }
        if path.extension().is_some_and(|e| e == "jsonl") {
            return Ok(Self::File(path.to_path_buf()));
        }
        Ok(Self::Dataset(path.to_path_buf()))
    }
}

/// The prompts of `source`, with the tokenizer they are in (the dataset's, or `init_from`'s
/// for a file or a labeler project).
pub fn read(source: &Path, init_from: &Path) -> Result<Rows<GrpoPrompt>> {
    match PromptSource::parse(source)? {
        PromptSource::Dataset(dir) => {
            let rows = data::read_sft(&dir)?;
            let prompts = rows
                .rows
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let end = s.target.iter().position(|&t| t == 1).unwrap_or(s.ids.len());
                    ensure!(end > 0, "{}: example {i} has no prompt", dir.display());
                    Ok(GrpoPrompt {
                        ids: s.ids[..end].to_vec(),
                        reference: None,
                    })
                })
                .collect::<Result<_>>()?;
            Ok(Rows {
                rows: prompts,
                dir: rows.dir,
                tokenizer: rows.tokenizer,
                tokenizer_path: rows.tokenizer_path,
                hash: rows.hash,
            })
        }
        PromptSource::File(path) => {
            let prompts = prompts_from_file(&path)?;
            rendered(source, &prompts, init_from)
        }
        PromptSource::Labeler { base_url, project } => {
            let token = std::env::var("LABELER_TOKEN").map_err(|_| {
                anyhow::anyhow!(
                    "{}: set LABELER_TOKEN to an admin's API token (`labeler token create USER`)",
                    source.display()
                )
            })?;
            let client = LabelerClient::new(&base_url, &token, LABELER_TIMEOUT);
            client.project(project)?;
            let rows = client.all_prompts(project)?;
            ensure!(
                !rows.is_empty(),
                "{}: labeler project {project} has no prompts",
                source.display()
            );
            rendered(source, &prompts_from_labeler(project, rows), init_from)
        }
    }
}

/// Prompts rendered with the chat template of `init_from`'s tokenizer, with BOS only for a
/// model trained with it.
fn rendered(source: &Path, prompts: &[SourcePrompt], init_from: &Path) -> Result<Rows<GrpoPrompt>> {
    let model_dir = crate::io::checkpoint::resolve_run_dir(init_from)?;
    let tokenizer_path = model_dir.join(TOKENIZER_FILE);
    let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
    // Prompts start with BOS only if the model was trained with it (its directory says).
    let special = tokenizer.special_ids_for_model(document_ids(&model_dir)?.bos);
    let template = ChatTemplate::from_special_tokens(&special)
        .with_context(|| format!("{} cannot render chats", tokenizer_path.display()))?;
    let name = source.display();
    let rows = prompts
        .iter()
        .map(|p| {
            let at = match (p.source.get("line"), p.source.get("item_id")) {
                (Some(line), _) => format!("{name}:{line}"),
                (_, Some(item)) => format!("{name}: item {item}"),
                _ => name.to_string(),
            };
            let reference = match p.source.pointer("/meta/reference") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(r)) if !r.trim().is_empty() => Some(r.clone()),
                Some(other) => bail!("{at}: meta.reference must be non-empty text, not {other}"),
            };
            let ids = template
                .render_prompt(&p.messages, &tokenizer)
                .with_context(|| format!("{at}: rendering the prompt"))?;
            Ok(GrpoPrompt { ids, reference })
        })
        .collect::<Result<Vec<_>>>()?;
    ensure!(!rows.is_empty(), "{name}: no prompts");
    let info = TokenizerInfo {
        file: TOKENIZER_FILE.to_string(),
        sha256: format::sha256_file(&tokenizer_path)?,
        vocab_size: tokenizer.vocab_size(),
        special_tokens: special,
    };
    Ok(Rows {
        rows,
        dir: source.to_path_buf(),
        tokenizer: info,
        tokenizer_path,
        hash: String::new(),
    })
}
