//! `trainer prelabel`: a model's suggested verdicts for a labeler project's items, posted
//! through the API (`PUT /api/projects/{id}/prelabels`) so annotators can see them (or be
//! measured against them: the agreement page's human-vs-model kappa). Each answer is scored
//! with a reward model (its score) or, for a checkpoint without a score head, the mean
//! log-probability per token of the answer given the prompt. A rating item gets a thumb up
//! when its answer scores above the threshold (by default the median of the project's
//! scores); a preference item's suggested winner is its best-scored candidate.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use format::{ChatTemplate, SPECIAL_TOKENS};
use tch::{Device, Kind};

use crate::candidates::labeler_client::{LabelerClient, Prelabel, PromptRow};
use crate::engine::config::Precision;
use crate::io::checkpoint::TOKENIZER_FILE;
use crate::model::language_model::LanguageModel;
use crate::model::tokenizer::TextTokenizer;
use crate::post::data::{self, Sequence};

/// What `trainer prelabel` is asked to do.
#[derive(Debug, Clone)]
pub struct PrelabelJob {
    pub model_dir: PathBuf,
    pub project: i64,
    /// Name the suggestions are stored under (default: the model directory's last two parts).
    pub source: Option<String>,
    /// Thumb up above this score (rating items); default: the median of the scores.
    pub threshold: Option<f64>,
    pub device: Device,
}

/// What `trainer prelabel` did.
#[derive(Debug, Clone, Default)]
pub struct PrelabelSummary {
    pub source: String,
    /// `reward model` or `mean log-prob`.
    pub scoring: &'static str,
    pub items: usize,
    pub thumbs_up: usize,
    pub winners: usize,
    /// Items without an answer to judge (SFT items, skipped).
    pub skipped: usize,
    pub threshold: Option<f64>,
    pub stored: usize,
}

impl PrelabelSummary {
    pub fn render(&self) -> String {
        let verdicts = match self.threshold {
            Some(t) => format!(
                "{} of {} thumb(s) up (above {t:.4})",
                self.thumbs_up, self.items
            ),
            None => format!("{} preference winner(s)", self.winners),
        };
        format!(
            "prelabel {}: scored {} item(s) by {}: {verdicts}; {} without answers skipped; the labeler stored {}\n",
            self.source, self.items, self.scoring, self.skipped, self.stored,
        )
    }
}

/// A reward model or a plain checkpoint, with the chat template of its tokenizer.
struct Scorer {
    model: LanguageModel,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
}

impl Scorer {
    fn load(dir: &Path, device: Device) -> Result<Self> {
        let (model, _) = crate::io::load::load_dir(dir, device, Precision::Auto)
            .with_context(|| format!("loading {}", dir.display()))?;
        let path = dir.join(TOKENIZER_FILE);
        let tokenizer = TextTokenizer::from_file(&path)?;
        let special = SPECIAL_TOKENS
            .iter()
            .filter_map(|(name, text)| tokenizer.token_id(text).map(|id| (name.to_string(), id)))
            .collect();
        let template = ChatTemplate::from_special_tokens(&special)
            .with_context(|| format!("{} cannot render chats", path.display()))?;
        Ok(Self {
            model,
            tokenizer,
            template,
        })
    }

    /// The score of each of `row`'s candidates.
    fn scores(&self, row: &PromptRow) -> Result<Vec<f64>> {
        let prompt = self.template.render_prompt(&row.prompt, &self.tokenizer)?;
        let max = self.model.config().max_position_embeddings as usize;
        let mut scores = Vec::with_capacity(row.candidates.len());
        for (i, answer) in row.candidates.iter().enumerate() {
            let answer = self.template.render_completion(answer, &self.tokenizer)?;
            let seq = Sequence::prompt_answer(&prompt, &answer);
            ensure!(
                seq.ids.len() <= max,
                "candidate {i}: {} tokens exceed the model's context of {max}",
                seq.ids.len()
            );
            let device = self.model.device();
            let batch = data::pack(&[&seq], seq.ids.len(), device)?;
            let score = tch::no_grad(|| -> Result<f64> {
                if self.model.has_score_head() {
                    let s = crate::post::reward::sequence_scores(&self.model, &batch)?;
                    return Ok(f64::try_from(s.f_select(0, 0)?)?);
                }
                let logps = crate::post::grpo::token_logps(&self.model, &batch, 1.0)?;
                let mask = batch.label_target.f_to_kind(Kind::Float)?;
                let total = f64::try_from(logps.f_mul(&mask)?.f_sum(Kind::Double)?)?;
                let count = f64::try_from(mask.f_sum(Kind::Double)?)?;
                Ok(total / count.max(1.0))
            })?;
            scores.push(score);
        }
        Ok(scores)
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// Scores every item of `job.project` with `job.model_dir` and stores the suggestions.
pub fn run(job: &PrelabelJob, client: &LabelerClient) -> Result<PrelabelSummary> {
    let project = client.project(job.project)?;
    let rating = match project.kind.as_str() {
        "rating" => true,
        "preference" => false,
        kind => bail!(
            "project {} ({}) is of kind {kind}; pre-labels belong to rating and preference projects",
            project.id,
            project.name
        ),
    };
    let scorer = Scorer::load(&job.model_dir, job.device)?;
    let rows = client.all_prompts(job.project)?;
    let mut summary = PrelabelSummary {
        source: job
            .source
            .clone()
            .unwrap_or_else(|| default_source(&job.model_dir)),
        scoring: if scorer.model.has_score_head() {
            "reward model"
        } else {
            "mean log-prob"
        },
        ..PrelabelSummary::default()
    };
    let mut scored = Vec::new();
    for row in &rows {
        if row.candidates.is_empty() {
            summary.skipped += 1;
            continue;
        }
        let scores = scorer
            .scores(row)
            .with_context(|| format!("item {} ({})", row.item_id, row.external_id))?;
        scored.push((row.external_id.clone(), scores));
    }
    ensure!(
        !scored.is_empty(),
        "project {} ({}) has no item with an answer to judge",
        project.id,
        project.name
    );
    let threshold = match (rating, job.threshold) {
        (false, _) => None,
        (true, Some(t)) => Some(t),
        (true, None) => median(&mut scored.iter().map(|(_, s)| s[0]).collect::<Vec<_>>()),
    };
    let marks: Vec<Prelabel> = scored
        .iter()
        .map(|(id, scores)| match threshold {
            Some(t) => Prelabel {
                id: id.clone(),
                label: Some(scores[0] > t),
                winner: None,
            },
            None => Prelabel {
                id: id.clone(),
                label: None,
                winner: scores
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i),
            },
        })
        .collect();
    summary.items = marks.len();
    summary.thumbs_up = marks.iter().filter(|m| m.label == Some(true)).count();
    summary.winners = marks.iter().filter(|m| m.winner.is_some()).count();
    summary.threshold = threshold;
    for chunk in marks.chunks(10_000) {
        summary.stored += client.put_prelabels(job.project, &summary.source, chunk)?;
    }
    Ok(summary)
}

/// `run/checkpoints/step-N` -> `run/step-N`: which model, readable on the agreement page.
fn default_source(dir: &Path) -> String {
    let parts: Vec<String> = dir
        .components()
        .rev()
        .filter_map(|c| c.as_os_str().to_str().map(str::to_string))
        .filter(|c| c != "checkpoints" && c != "." && c != "/")
        .take(2)
        .collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}
