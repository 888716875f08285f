//! `trainer prelabel`: a model's suggested verdicts for a labeler project's items, posted
//! through the API (`PUT /api/projects/{id}/prelabels`) so annotators can see them (or be
//! measured against them: the agreement page's human-vs-model kappa). Each answer is scored
//! with a reward model (its score) or, for a checkpoint without a score head, the mean
//! log-probability per token of the answer given the prompt. A rating item gets a thumb up
//! when its answer scores above the threshold (by default the median of the project's
//! scores); a preference item's suggested winner is its best-scored candidate.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use tch::Device;

use crate::candidates::labeler_client::{LabelerClient, Prelabel, PromptRow};
use crate::post::score::Scorer;

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
    /// `reward model` or `mean log-prob per answer token`.
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

/// The score of each of `row`'s candidates.
fn candidate_scores(scorer: &Scorer, row: &PromptRow) -> Result<Vec<f64>> {
    row.candidates
        .iter()
        .enumerate()
        .map(|(i, answer)| {
            scorer
                .score(&row.prompt, answer)
                .with_context(|| format!("candidate {i}"))
        })
        .collect()
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
        scoring: scorer.scoring(),
        ..PrelabelSummary::default()
    };
    let mut scored = Vec::new();
    for row in &rows {
        if row.candidates.is_empty() {
            summary.skipped += 1;
            continue;
        }
        let scores = candidate_scores(&scorer, row)
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
