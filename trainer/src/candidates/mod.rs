//! `trainer generate-candidates`: the model in the loop. Prompts come from a labeler project
//! (or a JSONL file); each is rendered with the chat template the model was trained with,
//! answered k times with different seeds until k *different* answers exist, and posted to a
//! preference project as one comparison item (or, with k = 1, to a rating project as one
//! answer to judge) whose candidates carry their provenance (model, checkpoint id, sampling
//! settings).
//!
//! Re-running is idempotent: an item's id is `<prompt key>@<checkpoint id>` (prompt key
//! `item-<labeler item id>`, or the file's `id`), prompts whose item the target project
//! already has are not generated again, and the labeler skips ids it already holds.
//!
//! The prompt sources are in `prompts`, the sampling and provenance in `answer`, the HTTP
//! client in `labeler_client`; this module runs a job and reports what it did.

pub mod answer;
pub mod labeler_client;
pub mod prelabel;
pub mod prompts;

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::candidates::answer::{Answerer, CandidateSettings, provenance};
use crate::candidates::labeler_client::{ComparisonItem, LabelerClient};
use crate::candidates::prompts::{prompts_from_file, prompts_from_labeler};

/// What `--source` of the import records.
pub const SOURCE_NAME: &str = "trainer generate-candidates";

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

/// Failed prompts listed by [`CandidatesSummary::render_failures`]; the count says the rest.
const FAILURES_SHOWN: usize = 20;

impl CandidatesSummary {
    /// The one line `trainer generate-candidates` prints when a run ends.
    pub fn render(&self) -> String {
        format!(
            "{}: {} prompt(s); {} already had an item from this checkpoint; generated {} item(s) ({} samples, {} tokens, {:.0} tokens/s); labeler created {}, already had {} ({} post(s)); {} failed; {:.1}s\n",
            self.checkpoint,
            self.prompts,
            self.already_there,
            self.generated,
            self.samples,
            self.tokens,
            self.tokens as f64 / self.generate_seconds.max(1e-9),
            self.created,
            self.skipped,
            self.posts,
            self.failed.len(),
            self.seconds
        )
    }

    /// The first failed prompts with their reasons, a line each.
    pub fn render_failures(&self) -> String {
        self.failed
            .iter()
            .take(FAILURES_SHOWN)
            .map(|(prompt, why)| format!("  {prompt}: {why}\n"))
            .collect()
    }
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
        let project = need_client()?.candidate_project(to, job.settings.k)?;
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
