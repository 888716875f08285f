//! `trainer generate-candidates`: the model in the loop. Prompts come from a labeler project
//! (or a JSONL file); each is rendered with the chat template the model was trained with,
//! answered k times with different seeds until k *different* answers exist, and posted to a
//! preference project as one comparison item whose candidates carry their provenance (model,
//! checkpoint id, sampling settings).
//!
//! Re-running is idempotent: an item's id is `<prompt key>@<checkpoint id>` (prompt key
//! `item-<labeler item id>`, or the file's `id`), prompts whose item the target project
//! already has are not generated again, and the labeler skips ids it already holds.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use format::{ChatTemplate, Message, SPECIAL_TOKENS};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::config::Precision;
use crate::data::mix;
use crate::labeler_client::{Candidate, ComparisonItem, LabelerClient, PromptRow};
use crate::lm::LanguageModel;
use crate::sample::{SamplingParams, TextTokenizer, generate};

/// What `--source` of the import records.
pub const SOURCE_NAME: &str = "trainer generate-candidates";
/// Longest item id the labeler accepts.
const MAX_ID_LEN: usize = 200;

/// How the answers are sampled.
#[derive(Debug, Clone)]
pub struct CandidateSettings {
    /// Different answers per prompt.
    pub k: usize,
    pub max_tokens: usize,
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    /// Base seed; each sample's seed is derived from (seed, prompt key, attempt).
    pub seed: u64,
    /// Samples tried per prompt before giving up on finding k different answers.
    pub max_attempts: usize,
}

impl CandidateSettings {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (2..=16).contains(&self.k),
            "--k {} must be between 2 and 16 (a comparison needs two answers; the labeler takes at most 16)",
            self.k
        );
        ensure!(
            self.temperature > 0.0,
            "--temperature {} samples one answer only (greedy); k different answers need a temperature above 0",
            self.temperature
        );
        ensure!(
            self.max_attempts >= self.k,
            "--max-attempts {} is below --k {}",
            self.max_attempts,
            self.k
        );
        ensure!(self.max_tokens > 0, "--max-tokens must be at least 1");
        self.params(0, None).validate()
    }

    fn params(&self, seed: u64, stop_token: Option<u32>) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            max_tokens: self.max_tokens,
            seed,
            stop_token,
        }
    }

    /// The `sampling` provenance of one candidate.
    fn provenance(&self, seed: u64) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("temperature".into(), json!(self.temperature));
        m.insert("top_k".into(), json!(self.top_k));
        m.insert("top_p".into(), json!(self.top_p));
        m.insert("max_tokens".into(), json!(self.max_tokens));
        m.insert("seed".into(), json!(seed));
        m.insert("stop".into(), json!("<|end|>"));
        m
    }
}

/// Which model answered: a name and an id that changes whenever the weights do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub model: String,
    /// `<run>/step-<N>/<first 12 hex of sha256(model.safetensors)>` for a checkpoint,
    /// `<dir>/<hash>` for a Hugging Face export.
    pub checkpoint: String,
}

/// Names and hashes the model in `dir`; `model_name` overrides the name (the run's).
pub fn provenance(dir: &Path, model_name: Option<&str>) -> Result<Provenance> {
    let abs = dir
        .canonicalize()
        .with_context(|| format!("opening model directory {}", dir.display()))?;
    let own = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    };
    let state_path = abs.join(crate::checkpoint::STATE_FILE);
    let (run, step) = if state_path.exists() {
        let state: Value = serde_json::from_slice(
            &std::fs::read(&state_path)
                .with_context(|| format!("reading {}", state_path.display()))?,
        )
        .with_context(|| format!("parsing {}", state_path.display()))?;
        // runs/NAME/checkpoints/step-N: the run is NAME.
        let run = match abs.parent() {
            Some(parent) if parent.file_name().is_some_and(|n| n == "checkpoints") => {
                parent.parent().map_or_else(|| own(&abs), own)
            }
            _ => own(&abs),
        };
        (run, state["step"].as_u64())
    } else {
        (own(&abs), None)
    };
    // A LoRA checkpoint's own weights are its adapters (its base is named in its config).
    let adapter = abs.join(crate::lora::ADAPTER_FILE);
    let weights = if adapter.exists() {
        adapter
    } else {
        abs.join(crate::checkpoint::MODEL_FILE)
    };
    let hash = file_sha256(&weights)?;
    let run = clean_name(&run);
    let checkpoint = match step {
        Some(step) => format!("{run}/step-{step}/{}", &hash[..12]),
        None => format!("{run}/{}", &hash[..12]),
    };
    Ok(Provenance {
        model: model_name.map_or(run, clean_name),
        checkpoint,
    })
}

/// Letters, digits, `_.-` (others become `-`), at most 64 characters: safe inside item ids.
fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "model".into()
    } else {
        cleaned
    }
}

fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("opening {} to hash it", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

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

/// A model ready to answer prompts in the chat format.
#[derive(Debug)]
pub struct Answerer {
    model: LanguageModel,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    end_of_turn: u32,
    /// Any of these ends an answer (a base model may say EOS instead of `<|end|>`).
    specials: HashSet<u32>,
    settings: CandidateSettings,
    provenance: Provenance,
}

/// The k answers to one prompt, as a comparison item.
#[derive(Debug, Clone)]
pub struct Answered {
    pub item: ComparisonItem,
    /// Tokens sampled, including samples thrown away as duplicates.
    pub tokens: usize,
    pub samples: usize,
}

/// Why a prompt got no item.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PromptFailure {
    #[error("only {found} different non-empty answer(s) in {samples} samples; need {k}")]
    TooFewDistinct {
        found: usize,
        samples: usize,
        k: usize,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Answerer {
    /// Loads the model and tokenizer of `dir` (checkpoint or Hugging Face export).
    pub fn load(
        dir: &Path,
        device: tch::Device,
        settings: CandidateSettings,
        provenance: Provenance,
    ) -> Result<Self> {
        settings.validate()?;
        let (model, _) = crate::lm::load_dir(dir, device, Precision::Auto)
            .with_context(|| format!("loading {}", dir.display()))?;
        let tokenizer_path = dir.join(crate::checkpoint::TOKENIZER_FILE);
        let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
        let special: std::collections::BTreeMap<String, u32> = SPECIAL_TOKENS
            .iter()
            .filter_map(|(name, text)| tokenizer.token_id(text).map(|id| (name.to_string(), id)))
            .collect();
        let template = ChatTemplate::from_special_tokens(&special)
            .with_context(|| format!("{} cannot render chats", tokenizer_path.display()))?;
        Ok(Self {
            end_of_turn: template.end_of_turn(),
            specials: special.values().copied().collect(),
            model,
            tokenizer,
            template,
            settings,
            provenance,
        })
    }

    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Samples until k different answers exist (or `max_attempts` samples were drawn).
    pub fn answer(&self, prompt: &SourcePrompt) -> Result<Answered, PromptFailure> {
        let ids = self
            .template
            .render_prompt(&prompt.messages, &self.tokenizer)
            .map_err(|e| PromptFailure::Invalid(e.to_string()))?;
        let key_hash = mix(&[u64::from_le_bytes(
            Sha256::digest(prompt.key.as_bytes())[..8]
                .try_into()
                .unwrap_or_default(),
        )]);
        let s = &self.settings;
        let mut candidates: Vec<Candidate> = Vec::with_capacity(s.k);
        let mut finish = Vec::with_capacity(s.k);
        let mut tokens = 0;
        let mut samples = 0;
        for attempt in 0..s.max_attempts as u64 {
            if candidates.len() == s.k {
                break;
            }
            let seed = mix(&[s.seed, key_hash, attempt]);
            samples += 1;
            let out = generate(
                &self.model,
                &ids,
                &s.params(seed, Some(self.end_of_turn)),
                true,
            )
            .map_err(|e| PromptFailure::Invalid(format!("{e:#}")))?;
            tokens += out.tokens.len();
            let cut = out
                .tokens
                .iter()
                .position(|t| self.specials.contains(t))
                .unwrap_or(out.tokens.len());
            let reason = match out.tokens.get(cut) {
                Some(&t) if t == self.end_of_turn => "end_of_turn",
                Some(_) => "special_token",
                None => "length",
            };
            let text = self
                .tokenizer
                .decode(&out.tokens[..cut])
                .map_err(|e| PromptFailure::Invalid(format!("{e:#}")))?;
            // The labeler refuses empty text and NUL; a repeat is no comparison.
            if text.trim().is_empty()
                || text.contains('\0')
                || candidates.iter().any(|c| c.content.trim() == text.trim())
            {
                continue;
            }
            finish.push(reason);
            candidates.push(Candidate {
                content: text,
                model: self.provenance.model.clone(),
                checkpoint: self.provenance.checkpoint.clone(),
                sampling: s.provenance(seed),
            });
        }
        if candidates.len() < s.k {
            return Err(PromptFailure::TooFewDistinct {
                found: candidates.len(),
                samples,
                k: s.k,
            });
        }
        let mut meta = Map::new();
        meta.insert("source".into(), prompt.source.clone());
        meta.insert("finish_reasons".into(), json!(finish));
        meta.insert("generated_by".into(), json!(SOURCE_NAME));
        Ok(Answered {
            item: ComparisonItem {
                id: prompt.item_id(&self.provenance.checkpoint),
                prompt: prompt.messages.clone(),
                candidates,
                meta,
            },
            tokens,
            samples,
        })
    }
}

/// Where the prompts come from.
#[derive(Debug, Clone)]
pub enum PromptSource {
    Labeler { project: i64 },
    File(PathBuf),
}

/// One `generate-candidates` run.
#[derive(Debug, Clone)]
pub struct CandidatesJob {
    pub model_dir: PathBuf,
    pub model_name: Option<String>,
    pub source: PromptSource,
    /// The preference project to post to; None for a dry run (nothing is posted).
    pub to_project: Option<i64>,
    /// Also write the items as JSONL (the labeler's import format).
    pub output: Option<PathBuf>,
    pub settings: CandidateSettings,
    /// Items per POST.
    pub batch_size: usize,
    /// Answer at most this many prompts.
    pub limit: Option<usize>,
    pub device: tch::Device,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct CandidatesSummary {
    pub model: String,
    pub checkpoint: String,
    pub prompts: usize,
    /// Prompts whose item the target project already had: not generated again.
    pub already_there: usize,
    /// Items generated this run.
    pub generated: usize,
    /// Items the labeler created, and the ones it already had (a concurrent run).
    pub created: usize,
    pub skipped: usize,
    pub posts: usize,
    /// Prompts without an item, with the reason.
    pub failed: Vec<(String, String)>,
    pub samples: usize,
    pub tokens: usize,
    /// Time spent sampling (model loading and HTTP excluded), and in all.
    pub generate_seconds: f64,
    pub seconds: f64,
}

/// Runs a job: checks the target project, gathers prompts, skips those already answered by
/// this checkpoint, generates, and posts in batches. A prompt that cannot be answered is
/// reported and counted, not fatal; the labeler refusing a post is.
pub fn run(job: &CandidatesJob, client: Option<&LabelerClient>) -> Result<CandidatesSummary> {
    let started = Instant::now();
    let need_client = || {
        client
            .context("--labeler URL and --token (or LABELER_TOKEN) are needed to reach the labeler")
    };
    // Cheap checks first: a wrong URL, token or project fails before the model loads.
    if let Some(to) = job.to_project {
        let project = need_client()?.preference_project(to)?;
        tracing::info!(project = project.id, name = %project.name, "posting to");
    }
    let provenance = provenance(&job.model_dir, job.model_name.as_deref())?;
    let mut prompts = match &job.source {
        PromptSource::Labeler { project } => {
            prompts_from_labeler(*project, need_client()?.all_prompts(*project)?)
        }
        PromptSource::File(path) => prompts_from_file(path)?,
    };
    if let Some(limit) = job.limit {
        prompts.truncate(limit);
    }
    let mut summary = CandidatesSummary {
        model: provenance.model.clone(),
        checkpoint: provenance.checkpoint.clone(),
        prompts: prompts.len(),
        ..Default::default()
    };
    if let Some(to) = job.to_project {
        let existing: HashSet<String> = need_client()?
            .all_prompts(to)?
            .into_iter()
            .map(|p| p.external_id)
            .collect();
        prompts.retain(|p| !existing.contains(&p.item_id(&provenance.checkpoint)));
        summary.already_there = summary.prompts - prompts.len();
    }
    if prompts.is_empty() {
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let answerer = Answerer::load(&job.model_dir, job.device, job.settings.clone(), provenance)?;
    let mut output = match &job.output {
        Some(path) => Some(BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let bar = indicatif::ProgressBar::new(prompts.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} prompts [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut batch: Vec<ComparisonItem> = Vec::with_capacity(job.batch_size);
    let post = |batch: &mut Vec<ComparisonItem>, summary: &mut CandidatesSummary| -> Result<()> {
        if let (Some(to), false) = (job.to_project, batch.is_empty()) {
            let reply = need_client()?
                .post_candidates(to, SOURCE_NAME, batch)
                .with_context(|| format!("posting {} item(s) to project {to}", batch.len()))?;
            summary.created += reply.created;
            summary.skipped += reply.skipped;
            summary.posts += 1;
        }
        batch.clear();
        Ok(())
    };
    for prompt in &prompts {
        let sampling = Instant::now();
        let answered = answerer.answer(prompt);
        summary.generate_seconds += sampling.elapsed().as_secs_f64();
        match answered {
            Ok(answered) => {
                summary.generated += 1;
                summary.samples += answered.samples;
                summary.tokens += answered.tokens;
                if let Some(out) = output.as_mut() {
                    serde_json::to_writer(&mut *out, &answered.item)?;
                    out.write_all(b"\n")?;
                }
                batch.push(answered.item);
            }
            Err(failure) => {
                bar.suspend(|| tracing::warn!(prompt = %prompt.key, "no item: {failure}"));
                summary
                    .failed
                    .push((prompt.key.clone(), failure.to_string()));
            }
        }
        if batch.len() >= job.batch_size.max(1) {
            post(&mut batch, &mut summary)?;
        }
        bar.inc(1);
        bar.set_message(format!(
            "{} generated, {} posted, {} failed",
            summary.generated,
            summary.created + summary.skipped,
            summary.failed.len()
        ));
    }
    post(&mut batch, &mut summary)?;
    bar.finish_and_clear();
    if let (Some(out), Some(path)) = (output.as_mut(), &job.output) {
        out.flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
